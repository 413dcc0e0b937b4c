"""Hypervolume on (AUROC, log10 MB), the figure the report, the benchmarks and early stopping's cost curve share.

The reference point is AUROC 0.5, 64 MB: the area of the (AUROC up, log-size down) plane that a
set of points dominates and the reference point bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ecgsearch.metric_table import METRIC_TABLE, hypervolume_reference, is_log_scale
from ecgsearch.storage.optuna_internals import hypervolume_of_losses

__all__ = [
    "REFERENCE_AUROC",
    "REFERENCE_MB",
    "hypervolume",
    "objective_hypervolume",
    "running_hypervolumes",
]

# The report's headline hypervolume is on (val micro AUROC, MB), to these references.
REFERENCE_AUROC = METRIC_TABLE["val_micro_auroc"].reference
REFERENCE_MB = METRIC_TABLE["size_mb"].reference


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated by (AUROC, MB) points in the (AUROC up, log10 MB down) plane, to the reference."""
    # Minimisation form: x = -AUROC, y = log10 MB; keep points that beat the reference in both.
    reference = (-REFERENCE_AUROC, math.log10(REFERENCE_MB))
    kept = sorted((-a, math.log10(mb)) for a, mb in points if a > REFERENCE_AUROC and mb < REFERENCE_MB)
    return _sweep(kept, reference)


def _sweep(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """2-D hypervolume of minimisation points: sweep along x, keeping the running minimum of y."""
    area, best_y = 0.0, reference[1]
    for i, (x, y) in enumerate(points):
        best_y = min(best_y, y)
        next_x = points[i + 1][0] if i + 1 < len(points) else reference[0]
        area += (next_x - x) * (reference[1] - best_y)
    return area


def _loss(metric: str, direction: str, value: float) -> float:
    if is_log_scale(metric):
        value = math.log10(max(value, 1e-12))
    return -value if direction == "maximize" else value


def objective_hypervolume(points: list[tuple[float, ...]], metric_names: list[str], directions: list[str]) -> float:
    """Hypervolume of points in the study's objectives (any number), to the fixed references."""
    reference = tuple(_loss(m, d, hypervolume_reference(m)) for m, d in zip(metric_names, directions, strict=True))
    losses = [
        tuple(_loss(m, d, v) for m, d, v in zip(metric_names, directions, point, strict=True)) for point in points
    ]
    return hypervolume_of_losses(losses, reference)


def running_hypervolumes(
    points: Sequence[tuple[float, ...] | None],
    directions: Sequence[str],
    measure: Callable[[list[tuple[float, ...]]], float],
) -> list[float]:
    """``measure`` of the first i points, for every i (None: a step that adds no point).

    Measured on the running front only, and again only when a point joins it: a dominated point
    adds no hypervolume. Linear in the points where measuring every prefix is quadratic (minutes
    for a 10,000-trial study).
    """
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]

    def covers(a: tuple[float, ...], b: tuple[float, ...]) -> bool:  # a at least as good as b everywhere
        return all(s * x <= s * y for s, x, y in zip(signs, a, b, strict=True))

    front: list[tuple[float, ...]] = []
    value = measure(front)
    history = []
    for point in points:
        if point is not None and not any(covers(q, point) for q in front):
            front = [q for q in front if not covers(point, q)] + [point]
            value = measure(front)
        history.append(value)
    return history
