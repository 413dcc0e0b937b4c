"""Seed noise: every seed's result of a network, their spread, and dominance that survives it.

A trial trains once, with the study's training seed. ``ecgsearch confirm`` trains chosen
networks again with other seeds, as trials of the companion study ``NAME.confirm`` (see
``ecgsearch.trials.confirm``); each of those records ``confirms_trial`` (the network's trial in the
main study) and ``seed``. ``seed_runs`` gathers both into one table per network.

Robust dominance: a trial dominates another robustly when it is at least as good in every
objective that has no seed noise (sizes) and, in every validation metric among the objectives,
its mean over seeds is better by more than two standard errors of the difference of the means
(``sqrt(sd_a**2 / n_a + sd_b**2 / n_b)``). It needs at least two seeds of each trial; with one
seed nothing is known about the noise, so nothing is claimed.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecgsearch.storage.optuna_internals import sibling_study
from ecgsearch.trial_record import CONFIRMS_ATTR, SEED_ATTR

__all__ = [
    "CONFIRM_OF_ATTR",
    "SeedSummary",
    "confirm_study_name",
    "confirmation_trials",
    "is_confirm_study",
    "robustly_dominates",
    "seed_runs",
    "study_training_seed",
    "summarize",
]

# The companion study of ``ecgsearch confirm`` (see ``ecgsearch.trials.confirm``): NAME.confirm.
CONFIRM_SUFFIX = ".confirm"
# A study user attribute of the confirm study: the name of the study it confirms.
CONFIRM_OF_ATTR = "confirms_study"


def confirm_study_name(study_name: str) -> str:
    return study_name + CONFIRM_SUFFIX


def is_confirm_study(study: optuna.Study) -> bool:
    return CONFIRM_OF_ATTR in study.user_attrs


def study_training_seed(study: optuna.Study) -> int:
    """The seed every trial of ``study`` trained with (the definition's ``[training] seed``)."""
    return int(study.user_attrs["definition"].get("training", {}).get("seed", 0))


def confirmation_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE runs of ``study``'s confirm study (none when it has no confirm study)."""
    confirm = sibling_study(study, confirm_study_name(study.study_name))
    if confirm is None:
        return []
    complete = confirm.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in complete if CONFIRMS_ATTR in t.user_attrs]


# The margin of robust dominance, in standard errors of the difference of two means.
STANDARD_ERRORS = 2.0


@dataclasses.dataclass(frozen=True)
class SeedSummary:
    """Mean and sample standard deviation of one figure over ``n`` seeds (sd is None for one seed)."""

    n: int
    mean: float
    sd: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "sd": self.sd}  # by hand: asdict is 10x slower, per trial


def summarize(values: list[float]) -> SeedSummary:
    return SeedSummary(len(values), statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


def seed_runs(trials: list[FrozenTrial], confirmations: list[FrozenTrial], study_seed: int) -> dict[int, dict]:
    """Per trained trial number: ``{seed: {"val": {...}, "test": {...}}}``, its own run and confirmations.

    ``trials`` are the main study's, ``confirmations`` the COMPLETE trials of its confirm study.
    """
    runs: dict[int, dict[int, dict]] = {}
    for trial in trials:
        result = trial.user_attrs.get("result")
        if trial.user_attrs.get("trained") and result:
            # A trial near the front trained several seeds ([seeds] front) and recorded each.
            own = {int(seed): r for seed, r in result["seeds"].items()} if "seeds" in result else {study_seed: result}
            runs[trial.number] = {seed: _run_figures(r) for seed, r in own.items()}
    for confirmation in confirmations:
        result = confirmation.user_attrs.get("result")
        source = confirmation.user_attrs.get(CONFIRMS_ATTR)
        if result and source in runs:
            runs[source][int(confirmation.user_attrs[SEED_ATTR])] = _run_figures(result)
    return runs


def _run_figures(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A run's validation and test figures; the int8 model's validation ones as ``int8_<name>`` (when measured)."""
    int8 = {f"int8_{name}": value for name, value in result.get("int8", {}).get("val", {}).items()}
    return {"val": {**result["val"], **int8}, "test": result["test"]}


def robustly_dominates(a: dict[str, Any], b: dict[str, Any], metric_names: list[str], directions: list[str]) -> bool:
    """Robust dominance of ``a`` over ``b`` (see the module's docstring).

    ``a`` and ``b`` map each objective name to a value (deterministic figures) or, for the
    validation metrics, to a ``SeedSummary``.
    """
    for name, direction in zip(metric_names, directions, strict=True):
        sign = 1.0 if direction == "maximize" else -1.0
        x, y = a[name], b[name]
        if isinstance(x, SeedSummary):
            if x.sd is None or y.sd is None:
                return False
            margin = STANDARD_ERRORS * math.sqrt(x.sd**2 / x.n + y.sd**2 / y.n)
            if not sign * (x.mean - y.mean) > margin:
                return False
        elif sign * (x - y) < 0:
            return False
    return True
