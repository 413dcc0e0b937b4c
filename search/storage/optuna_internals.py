"""Every use of Optuna's private API in ecgsearch, in one place.

The public API has no counting query, no look-up of one trial's row by number or by trial
object, no way to reuse the trials the sampler just read, and none to open a second study
through the storage (and connection pool) a study already holds; on a shared PostgreSQL study
with thousands of trials those matter (each worker runs them before and after every trial).
Each function below has a test in ``tests/test_optuna_internals.py``, and pyproject pins
``optuna>=5.0,<6``: a new major version is checked here first.
"""

from __future__ import annotations

import json
from collections.abc import Collection

import numpy as np
import optuna
import sqlalchemy
from optuna._hypervolume import compute_hypervolume
from optuna.samplers._base import _CONSTRAINTS_KEY
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.study._multi_objective import _fast_non_domination_rank, _get_pareto_front_trials_by_trials
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "count_trials",
    "hypervolume_of_losses",
    "non_domination_ranks",
    "pareto_front",
    "running_trials_without_heartbeat",
    "set_trial_user_attr",
    "sibling_study",
    "storage_backend",
    "trial_by_id",
    "trial_by_number",
    "trial_row",
    "trial_summaries",
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
            .where(
                models.TrialModel.study_id == study_id,
                models.TrialModel.state == TrialState.RUNNING,
                models.TrialHeartbeatModel.trial_heartbeat_id.is_(None),
            )
        )
        return [row[0] for row in connection.execute(query)]


def non_domination_ranks(
    values: list[list[float]], directions: list[optuna.study.StudyDirection], n_below: int | None = None
) -> list[int]:
    """Each point's non-domination rank (0: the front) under ``directions``; Optuna's own sort.

    With ``n_below``, ranking stops once that many points are ranked; the rest share a higher rank.
    """
    signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in directions])
    losses = np.asarray(values, dtype=float).reshape(len(values), len(directions)) * signs
    return [int(r) for r in _fast_non_domination_rank(losses, n_below=n_below)]


# The system attributes Optuna keeps a trial's constraint values in (feasible: all <= 0): one list
# under CONSTRAINTS_KEY (older studies) or one value per constraint under "constraints:NAME".
CONSTRAINTS_KEY = _CONSTRAINTS_KEY


def trial_summaries(
    study: optuna.Study, user_keys: Collection[str], key_prefixes: Collection[str] = ()
) -> list[FrozenTrial]:
    """Every trial with its state, values, constraints and only the user attributes named in ``user_keys``
    or starting with one of ``key_prefixes``.

    No parameters and no other attributes: enough to count trials and find the front of a large
    study. On an RDB storage four narrow queries replace Optuna's read of everything, which takes
    about 20 s for 10,000 trials with their epoch histories; other storages give the whole trials.
    """
    backend = storage_backend(study)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return study.get_trials(deepcopy=False)
    read = getattr(backend, "trial_summaries", None)  # ResilientRDBStorage: through its outage guard
    if read is not None:
        return read(study._study_id, tuple(user_keys), tuple(key_prefixes))
    return read_trial_summaries(backend, study._study_id, tuple(user_keys), tuple(key_prefixes))


def read_trial_summaries(
    storage: optuna.storages.RDBStorage, study_id: int, user_keys: tuple[str, ...], key_prefixes: tuple[str, ...] = ()
) -> list[FrozenTrial]:
    """``trial_summaries`` on an RDB storage (the queries; the caller adds retries)."""
    trial, value = models.TrialModel.__table__, models.TrialValueModel.__table__
    user, system = models.TrialUserAttributeModel.__table__, models.TrialSystemAttributeModel.__table__

    def of_study(table: sqlalchemy.Table, *columns: str) -> sqlalchemy.Select:
        joined = table.join(trial, trial.c.trial_id == table.c.trial_id)
        return sqlalchemy.select(*(table.c[c] for c in columns)).select_from(joined).where(trial.c.study_id == study_id)

    with _create_scoped_session(storage.scoped_session) as session:
        columns = (trial.c[c] for c in ("trial_id", "number", "state", "datetime_start", "datetime_complete"))
        rows = session.execute(sqlalchemy.select(*columns).where(trial.c.study_id == study_id)).all()
        values = session.execute(of_study(value, "trial_id", "objective", "value", "value_type")).all()
        # autoescape: "_" in a prefix is a character, not LIKE's wildcard.
        wanted = [user.c.key.in_(user_keys), *(user.c.key.startswith(p, autoescape=True) for p in key_prefixes)]
        users = session.execute(of_study(user, "trial_id", "key", "value_json").where(sqlalchemy.or_(*wanted))).all()
        named = system.c.key.startswith(CONSTRAINTS_KEY + ":", autoescape=True)
        constraints = session.execute(
            of_study(system, "trial_id", "key", "value_json").where(
                sqlalchemy.or_(system.c.key == CONSTRAINTS_KEY, named)
            )
        ).all()
    objective_values: dict[int, dict[int, float]] = {}
    for trial_id, objective, stored, kind in values:
        objective_values.setdefault(trial_id, {})[objective] = models.TrialValueModel.stored_repr_to_value(stored, kind)
    user_attrs: dict[int, dict] = {}
    for trial_id, key, text in users:
        user_attrs.setdefault(trial_id, {})[key] = json.loads(text)
    system_attrs: dict[int, dict] = {}
    for trial_id, key, text in constraints:
        system_attrs.setdefault(trial_id, {})[key] = json.loads(text)
    summaries = []
    for trial_id, number, state, started, completed in sorted(rows, key=lambda r: r.number):
        by_objective = objective_values.get(trial_id)
        summaries.append(
            FrozenTrial(
                number=number,
                state=state,
                value=None,
                datetime_start=started,
                datetime_complete=completed,
                params={},
                distributions={},
                user_attrs=user_attrs.get(trial_id, {}),
                system_attrs=system_attrs.get(trial_id, {}),
                intermediate_values={},
                trial_id=trial_id,
                values=[by_objective[i] for i in sorted(by_objective)] if by_objective else None,
            )
        )
    return summaries


def pareto_front(trials: list[FrozenTrial], directions: list[optuna.study.StudyDirection]) -> list[FrozenTrial]:
    """The COMPLETE trials no other dominates; only feasible ones when any has constraints (as ``best_trials``)."""
    constrained = any(t.constraints for t in trials)
    return _get_pareto_front_trials_by_trials(trials, directions, consider_constraint=constrained)
