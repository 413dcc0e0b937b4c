"""What a study's training cost, in epochs: per trial, in all, against the full budget, and per hypervolume.

Epochs are the cost axis of early stopping (hours depend on the machine and the network, epochs
do not). A trial's own epochs are the entries of its history; a repeat (which reused another
trial's result) and an infeasible trial trained none. Failed attempts count: their epochs were
spent, and their retries train again.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecgnet.train_config import TrainConfig
from ecgsearch.analysis.hypervolume import hypervolume, running_hypervolumes
from ecgsearch.trial_record import is_trained

__all__ = ["TrainingCost", "epochs_trained", "hypervolume_by_epochs", "stopped_at_rungs", "training_cost"]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def epochs_trained(trial: FrozenTrial) -> int:
    """The epochs this trial trained itself (0 for a repeat, whose history is the repeated trial's);
    a trial near the front that trained more seeds ([seeds] front) counts each seed's."""
    attrs = trial.user_attrs
    if "repeats_trial" in attrs or "infeasible" in attrs or "repeats_stopped_trial" in attrs.get("stopped", {}):
        return 0
    seeds = len((attrs.get("result") or {}).get("seeds", {})) or 1
    return len(attrs.get("history", [])) * seeds


def stopped_at_rungs(trials: list[FrozenTrial]) -> dict[int | None, int]:
    """How many trials stopped at each rung epoch (key None: stopped as a repeat of a stopped network)."""
    counts: dict[int | None, int] = {}
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            rung = trial.user_attrs.get("stopped", {}).get("rung")
            counts[rung] = counts.get(rung, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: math.inf if item[0] is None else item[0]))


@dataclasses.dataclass(frozen=True)
class TrainingCost:
    """Epochs a study spent, and what the same trials would have spent had none been stopped."""

    epochs: int
    full_budget_epochs: int
    stopped: int

    @property
    def ratio(self) -> float:
        return self.epochs / self.full_budget_epochs if self.full_budget_epochs else 1.0


def budget_epochs(study: optuna.Study) -> int | None:
    """The epochs a trial of this study trains in full (None when the budget is in steps).

    A definition that leaves ``epochs`` out trains TrainConfig's default.
    """
    training = study.user_attrs.get("definition", {}).get("training", {})
    if training.get("max_steps") is not None:
        return None
    return int(training.get("epochs", TrainConfig().epochs))


def training_cost(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> TrainingCost:
    """Epochs spent by every finished or running trial, and the full-budget equivalent.

    The equivalent is the same trials with each one stopped at a rung trained to the end: a
    network stopped as a repeat would have been a repeat of a finished network, costing nothing.
    ``trials``: the study's, already read (with their ``history`` and ``stopped`` attributes).
    """
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    spent = sum(epochs_trained(t) for t in trials)
    full = budget_epochs(study)
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    extra = 0
    if full is not None:
        extra = sum(max(0, full - epochs_trained(t)) for t in stopped if "rung" in t.user_attrs.get("stopped", {}))
    return TrainingCost(epochs=spent, full_budget_epochs=spent + extra, stopped=len(stopped))


def hypervolume_by_epochs(trials: list[FrozenTrial]) -> list[tuple[int, float]]:
    """(cumulative epochs, hypervolume of the feasible trained trials so far), in order of finishing.

    Hypervolume is the report's (val micro AUROC, log10 MB); each finished trial adds its epochs,
    and a complete feasible one its point.
    """
    never = datetime.datetime.max
    finished = sorted(
        (t for t in trials if t.state in FINISHED), key=lambda t: (t.datetime_complete or never, t.number)
    )
    points: list[tuple[float, float] | None] = []
    epochs, cumulative = 0, []
    for trial in finished:
        epochs += epochs_trained(trial)
        cumulative.append(epochs)
        attrs = trial.user_attrs
        points.append((attrs["val_micro_auroc"], attrs["size_mb"]) if is_trained(trial) else None)
    return list(zip(cumulative, running_hypervolumes(points, ("maximize", "minimize"), hypervolume), strict=True))
