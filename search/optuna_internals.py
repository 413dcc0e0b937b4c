"""Every use of Optuna's private API in ecgsearch, in one place.

The public API has no counting query, no look-up of one trial's row by number or by trial
object, no way to reuse the trials the sampler just read, and none to open a second study
through the storage (and connection pool) a study already holds; on a shared PostgreSQL study
with thousands of trials those matter (each worker runs them before and after every trial).
Each function below has a test in ``tests/test_optuna_internals.py``, and pyproject pins
``optuna>=5.0,<6``: a new major version is checked here first.
"""

from __future__ import annotations

import numpy as np
import optuna
import sqlalchemy
from optuna._hypervolume import compute_hypervolume
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "count_trials",
    "hypervolume_of_losses",
    "running_trials_without_heartbeat",
    "set_trial_user_attr",
    "sibling_study",
    "storage_backend",
    "trial_by_id",
    "trial_by_number",
    "trial_row",
    "trials_just_read",
]


def count_trials(study: optuna.Study, state: TrialState | None = None) -> int:
    """How many trials the study holds (in ``state``); Optuna's cache layer re-reads only unfinished trials."""
    states = None if state is None else (state,)
    return study._storage.get_n_trials(study._study_id, states)


def trial_row(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> FrozenTrial:
    """One trial as stored now (one row, not the whole study)."""
    return study._storage.get_trial(trial._trial_id)


def trial_by_id(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """The trial with storage id ``trial_id`` (what a storage call returned), as stored now."""
    return study._storage.get_trial(trial_id)


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial | None:
    """The trial numbered ``number``, or None; never list indexing (where -1 is the last trial)."""
    if number < 0:
        return None
    try:
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    except KeyError:
        return None
    return study._storage.get_trial(trial_id)


def trials_just_read(study: optuna.Study, *, fresh: bool) -> list[FrozenTrial]:
    """The study's trials; ``fresh=False`` reuses what the sampler read moments ago in this ask."""
    return study._get_trials(deepcopy=False, use_cache=not fresh)


def storage_backend(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage behind Optuna's cache layer (our ResilientRDBStorage, for an RDB study)."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def set_trial_user_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: object) -> None:
    """Record a user attribute on a trial a sampler is given (a FrozenTrial, which has no setter)."""
    study._storage.set_trial_user_attr(trial._trial_id, key, value)


def sibling_study(study: optuna.Study, name: str) -> optuna.Study | None:
    """The study ``name`` in ``study``'s storage, through the same storage object (one pool), or None."""
    try:
        return optuna.load_study(study_name=name, storage=study._storage)
    except KeyError:
        return None


def hypervolume_of_losses(losses: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """Hypervolume of minimisation points bounded by ``reference`` (Optuna's exact algorithm, any dimension).

    Points not better than the reference in every objective add nothing and are left out first.
    """
    kept = [p for p in losses if all(v < r for v, r in zip(p, reference, strict=True))]
    if not kept:
        return 0.0
    return float(compute_hypervolume(np.asarray(kept, dtype=float), np.asarray(reference, dtype=float)))


def running_trials_without_heartbeat(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    """Ids of the study's RUNNING trials with no heartbeat row (Optuna's staleness check skips them)."""
    from optuna.storages._rdb import models

    with storage.engine.connect() as connection:
        query = (
            sqlalchemy.select(models.TrialModel.trial_id)
            .outerjoin(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
            .where(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING,
                   models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
        )  # fmt: skip
        return [row[0] for row in connection.execute(query)]
