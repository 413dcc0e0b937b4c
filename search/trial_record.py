"""The record a trial leaves in the study: its user attributes, how they are written, and the
one reading of each.

A worker's objective (``trials.objective.TrialObjective``, ``trials.confirm.ConfirmObjective``) writes them;
pareto, report, confirm, slurm status and the training-cost figures read them. The keys:

=====================  ==========================================================================
``thesis_experiment``  E1-E18: the thesis configuration a fixed trial trains (set when enqueued)
``confirms_trial``     a confirmation run: the main study's trial whose network it trains again
``seed``               a confirmation run: its training seed
``identity``           ``{config_key, worker, params}``: the network, data and training it trains
``size_mb``, ``macs``  figures known before training; ``latency_ms`` and ``int8_size_mb`` when an
                       objective or a limit names them, ``measured`` their notes
``infeasible``         why the network is over a limit: it was not trained
``trained``            True when this trial trained its network (a repeat or a stopped trial: False)
``repeats_trial``      the earlier trial whose network (and result) a repeat reuses
``val_micro_auroc``,   the headline figures, standing alone so that a narrow read finds them
``test_micro_auroc``
``result``             ``{"val": {...}, "test": {...}}``: every metric of the trained network
``history``            each epoch's training loss and validation metrics
``artifacts``          artifact ids of model.pt and model.json
``rung_<epoch>``       the figures an early-stopping rung compared (``early_stopping``)
``stopped``            where and why early stopping stopped it (a PRUNED trial)
``fail_reason``        why a FAIL trial failed
=====================  ==========================================================================
"""

from __future__ import annotations

import hashlib
import json
import statistics
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from ecgnet.metric_names import HEADLINE_METRICS
from ecgsearch.metric_table import INT8_PREFIX

if TYPE_CHECKING:
    from ecgnet.runner import RunOutcome

__all__ = [
    "CONFIRMS_ATTR",
    "INHERITED_BY_RETRY",
    "REPORT_ATTRS",
    "REUSED_BY_REPEAT",
    "ROW_ATTRS",
    "RUNG_ATTR_PREFIX",
    "SEED_ATTR",
    "THESIS_ATTR",
    "config_key",
    "constraint_name",
    "is_feasible",
    "is_trained",
    "mean_record",
    "network_trial",
    "result_record",
    "trained_figures",
]

THESIS_ATTR = "thesis_experiment"
CONFIRMS_ATTR = "confirms_trial"
SEED_ATTR = "seed"
RUNG_ATTR_PREFIX = "rung_"

# What a retry of a failed trial inherits: what it was enqueued to train.
INHERITED_BY_RETRY = (THESIS_ATTR, CONFIRMS_ATTR, SEED_ATTR)
# What a repeat copies from the trial whose network it repeats (it trains nothing itself).
REUSED_BY_REPEAT = ("val_micro_auroc", "test_micro_auroc", "result", "artifacts", "history")
# What a row of pareto, confirm and the report reads of each trial. Reading only these skips each
# trial's epoch history, log and artifact ids: most of what a large study holds.
ROW_ATTRS = (
    THESIS_ATTR,
    "val_micro_auroc",
    "test_micro_auroc",
    "result",
    "size_mb",
    "identity",
    "latency_ms",
    "int8_size_mb",
    "repeats_trial",
    "infeasible",
    "trained",
)
# The report reads, besides, the epochs each trial trained and where it stopped.
REPORT_ATTRS = (*ROW_ATTRS, "history", "stopped")


def is_feasible(trial: FrozenTrial) -> bool:
    """Within every limit (its constraints) and so not refused before training."""
    return all(v <= 0 for v in trial.constraints.values()) and "infeasible" not in trial.user_attrs


def is_trained(trial: FrozenTrial) -> bool:
    """Complete, feasible, with values from training: its own, or the run of the network it repeats."""
    return (
        trial.state == TrialState.COMPLETE
        and is_feasible(trial)
        and trial.user_attrs.get("val_micro_auroc") is not None
    )


def network_trial(trial: FrozenTrial) -> int:
    """The trial that trained this trial's network (a repeat reuses an earlier trial's result)."""
    return int(trial.user_attrs.get("repeats_trial", trial.number))


def result_record(outcome: RunOutcome, int8_val: dict[str, float] | None = None) -> dict[str, Any]:
    """A trained trial's ``result`` attribute: validation and test figures, and how training went.

    ``int8_val``: the validation figures of the network quantized to int8, when an objective names one.
    """
    val, test, result = outcome.result.val_metrics, outcome.test_metrics, outcome.result
    record = {
        "val": {name: val[name] for name in HEADLINE_METRICS},
        "test": {name: test[name] for name in HEADLINE_METRICS},
        "training": {"seconds": round(result.seconds, 2), "cut_by_time_limit": result.cut_by_time_limit},
    }
    if int8_val is not None:
        record["int8"] = {"val": int8_val}
    return record


def mean_record(records: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The ``result`` of a network trained with several seeds (``result_record`` per seed): each
    figure's mean over the seeds, how the first seed trained, and every seed's own record."""
    first = next(iter(records.values()))

    def mean(part: dict[str, float], path: tuple[str, ...]) -> dict[str, float]:
        return {name: statistics.fmean(_at(r, path)[name] for r in records.values()) for name in part}

    record = {
        "val": mean(first["val"], ("val",)),
        "test": mean(first["test"], ("test",)),
        "training": first["training"],
    }
    if "int8" in first:
        record["int8"] = {"val": mean(first["int8"]["val"], ("int8", "val"))}
    return record | {"seeds": {str(seed): r for seed, r in records.items()}}


def _at(record: dict[str, Any], path: tuple[str, ...]) -> dict[str, float]:
    for key in path:
        record = record[key]
    return record


def trained_figures(record: dict[str, Any]) -> dict[str, float]:
    """The figures an objective may name once a network is trained (from its ``result``), by metric name."""
    figures = {f"val_{name}": record["val"][name] for name in HEADLINE_METRICS}
    return figures | {f"{INT8_PREFIX}{name}": value for name, value in record.get("int8", {}).get("val", {}).items()}


HOW_NOT_WHAT = ("resident_data",)


def config_key(arch_dict: dict[str, Any], training: dict[str, Any], data: dict[str, Any]) -> str:
    """Identity of what a trial computes: canonical network + training + data settings.

    Settings of how data travels (``HOW_NOT_WHAT``) are left out: they change no result, and
    the keys of studies made before they existed stay valid.
    """
    training = {k: v for k, v in training.items() if k not in HOW_NOT_WHAT}
    text = json.dumps({"arch": arch_dict, "training": training, "data": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def constraint_name(metric: str) -> str:
    """The constraint a limit on ``metric`` sets: "max_mb" for size (as studies always had), else max_<metric>."""
    return "max_mb" if metric == "size_mb" else f"max_{metric}"
