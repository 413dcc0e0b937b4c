"""Every figure a study can optimise or limit, and what it is: one row per metric.

Objective names (the definition schema), the metrics a limit may name, what an untrained trial
reports, hypervolume references and which axes are logarithmic all derive from ``METRIC_TABLE``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from ecgnet.metric_names import HEADLINE_METRICS, INT8_METRICS

__all__ = [
    "INT8_PREFIX",
    "LIMIT_METRICS",
    "METRICS",
    "METRIC_TABLE",
    "UNTRAINED",
    "Metric",
    "dominates",
    "hypervolume_reference",
    "is_log_scale",
]

INT8_PREFIX = "val_int8_"
# Chance: an AUROC at or below it counts for nothing.
CHANCE_AUROC = 0.5


@dataclasses.dataclass(frozen=True)
class Metric:
    """One figure of a trial."""

    name: str
    direction: Literal["maximize", "minimize"]
    # Known before training (a size, a count, a time): a limit (``--max``) may name it, and it is
    # compared and plotted on a log10 scale.
    before_training: bool
    # Hypervolume reference: the worst value that still counts.
    reference: float
    # The validation metric of the int8-quantized network that pairs with this one, if any.
    int8_twin: str | None = None

    @property
    def untrained(self) -> float:
        """What a trial that trained nothing reports for it (chance for AUROC, else 0); samplers ignore it."""
        return CHANCE_AUROC if self.name.endswith("auroc") else 0.0


def _validation(name: str, twin: str | None = None) -> Metric:
    return Metric(name, "maximize", False, CHANCE_AUROC if name.endswith("auroc") else 0.0, twin)


def _cost(name: str, reference: float) -> Metric:
    return Metric(name, "minimize", True, reference)


# E10 (51 MB, 13.5 M params, 2.9 GMACs) fits inside the size references.
METRIC_TABLE: dict[str, Metric] = {
    m.name: m
    for m in (
        *(_validation(f"val_{n}", f"{INT8_PREFIX}{n}" if n in INT8_METRICS else None) for n in HEADLINE_METRICS),
        *(_validation(f"{INT8_PREFIX}{n}") for n in INT8_METRICS),
        _cost("size_mb", 64.0),  # torch.save(state_dict) bytes / 2**20
        _cost("params", 2.0**24),
        _cost("macs", 1e10),
        _cost("latency_ms", 1000.0),  # CPU latency, scaled to the study's reference machine
        _cost("int8_size_mb", 64.0),
    )
}
# Objective name -> direction, as the definition schema accepts them.
METRICS = {m.name: m.direction for m in METRIC_TABLE.values()}
# What a limit (``--max METRIC=VALUE``) may name.
LIMIT_METRICS = tuple(m.name for m in METRIC_TABLE.values() if m.before_training)
# What an untrained (infeasible) trial reports for each validation metric.
UNTRAINED = {m.name: m.untrained for m in METRIC_TABLE.values() if not m.before_training}


def hypervolume_reference(metric: str) -> float:
    """The metric's hypervolume reference (a name outside the table: chance for an AUROC, else 0)."""
    known = METRIC_TABLE.get(metric)
    if known is not None:
        return known.reference
    return CHANCE_AUROC if metric.endswith("auroc") else 0.0


def is_log_scale(metric: str) -> bool:
    """Sizes, counts and times: compared in hypervolume and plotted on a log10 scale."""
    known = METRIC_TABLE.get(metric)
    return known is not None and known.before_training


def dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """Plain Pareto dominance of value vectors: no worse in every objective, better in one."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    gains = [s * (x - y) for s, x, y in zip(signs, a, b, strict=True)]
    return all(g >= 0 for g in gains) and any(g > 0 for g in gains)
