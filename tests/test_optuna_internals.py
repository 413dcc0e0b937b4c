"""Each use of Optuna's private API (ecgsearch.storage.optuna_internals) on a real SQLite study.

When a new Optuna release moves one of these, the test naming it fails first.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import sqlite_url

from ecgsearch.storage.optuna_internals import (
    count_trials,
    hypervolume_of_losses,
    non_domination_ranks,
    pareto_front,
    running_trials_without_heartbeat,
    set_trial_user_attr,
    sibling_study,
    storage_backend,
    trial_by_id,
    trial_by_number,
    trial_row,
    trial_summaries,
    trials_just_read,
)
from ecgsearch.storage.storage import ResilientRDBStorage, open_storage


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    """Five trials: three COMPLETE, one FAIL, one WAITING."""
    study = optuna.create_study(storage=open_storage(sqlite_url(tmp_path)), study_name="s",
                                directions=["maximize", "minimize"])  # fmt: skip
    for value in (0.5, 0.6, 0.7):
        study.add_trial(optuna.trial.create_trial(values=[value, 1.0]))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    study.enqueue_trial({})
    return study


def test_count_trials_counts_all_and_by_state(study: optuna.Study) -> None:
    assert count_trials(study) == 5
    assert count_trials(study, TrialState.COMPLETE) == 3
    assert count_trials(study, TrialState.FAIL) == 1 and count_trials(study, TrialState.WAITING) == 1
    assert count_trials(study, TrialState.RUNNING) == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_trial_row_reads_the_stored_state_of_a_running_trial(study: optuna.Study) -> None:
    trial = study.ask()  # takes the WAITING trial
    assert trial_row(study, trial).state == TrialState.RUNNING
    study.tell(trial, [0.9, 2.0])
    row = trial_row(study, trial)
    assert row.state == TrialState.COMPLETE and row.values == [0.9, 2.0] and row.number == trial.number


def test_trial_by_number_finds_existing_numbers_only(study: optuna.Study) -> None:
    assert trial_by_number(study, 2).values == [0.7, 1.0]
    assert trial_by_number(study, 99) is None
    assert trial_by_number(study, -1) is None  # list indexing would return the last trial


def test_trial_by_id_reads_the_trial_a_storage_call_named(study: optuna.Study) -> None:
    trial = study.ask()
    assert trial_by_id(study, trial._trial_id).number == trial.number


def test_running_trials_without_heartbeat_lists_those_optuna_never_finds_stale(study: optuna.Study) -> None:
    beating, silent = study.ask(), study.ask()
    backend = storage_backend(study)
    backend.record_heartbeat(beating._trial_id)
    assert running_trials_without_heartbeat(backend, study._study_id) == [silent._trial_id]


def test_trials_just_read_reuses_or_refreshes(study: optuna.Study) -> None:
    assert [t.number for t in trials_just_read(study, fresh=True)] == [0, 1, 2, 3, 4]
    assert [t.number for t in trials_just_read(study, fresh=False)] == [0, 1, 2, 3, 4]
    study.add_trial(optuna.trial.create_trial(values=[0.1, 0.1]))
    assert [t.values for t in trials_just_read(study, fresh=True)][-1] == [0.1, 0.1]


def test_storage_backend_is_our_resilient_storage(study: optuna.Study) -> None:
    backend = storage_backend(study)
    assert isinstance(backend, ResilientRDBStorage) and backend.guard.outages == 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_set_trial_user_attr_writes_on_the_frozen_trial_a_sampler_gets(study: optuna.Study) -> None:
    frozen = trial_row(study, study.ask())  # as samplers see the trial being asked for: running, frozen
    set_trial_user_attr(study, frozen, "note", ["a", 1])
    assert trial_by_number(study, frozen.number).user_attrs["note"] == ["a", 1]


def test_sibling_study_opens_another_study_of_the_same_storage(study: optuna.Study) -> None:
    other = optuna.create_study(storage=study._storage, study_name="s.confirm", directions=["maximize", "minimize"])
    other.add_trial(optuna.trial.create_trial(values=[0.9, 2.0]))
    found = sibling_study(study, "s.confirm")
    assert found is not None and [t.values for t in found.get_trials()] == [[0.9, 2.0]]
    assert sibling_study(study, "no such study") is None


def test_hypervolume_of_losses_is_optunas_exact_hypervolume() -> None:
    # Two boxes to the reference (3, 3, 3): 2x2x2 from (1, 1, 1) and 1x3x3 from (2, 0, 0), overlapping in 1x2x2.
    assert hypervolume_of_losses([(1.0, 1.0, 1.0), (2.0, 0.0, 0.0)], (3.0, 3.0, 3.0)) == pytest.approx(8 + 9 - 4)
    assert hypervolume_of_losses([(4.0, 0.0, 0.0)], (3.0, 3.0, 3.0)) == 0.0  # not inside the reference


def constrained_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """40 trials: COMPLETE ones with values, user attributes and constraints (some infeasible), a FAIL, a WAITING."""
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    rng = random.Random(0)
    for i in range(40):
        values = [rng.random(), math.inf if i == 7 else rng.random()]
        study.add_trial(optuna.trial.create_trial(
            values=values, user_attrs={"kept": i, "dropped": {"history": [i] * 5}, "rung_3": [i], "rungs3": i},
            # Both of Optuna's forms: a list (older studies), one key per constraint (set_constraint).
            system_attrs={"constraints": [rng.uniform(-1, 0.3)]} if i % 2 else {"constraints:mb": rng.uniform(-1, 0.3)},
        ))  # fmt: skip
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"kept": -1}))
    study.enqueue_trial({})
    return study


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_trial_summaries_hold_what_a_full_read_holds_but_only_the_named_attributes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url(tmp_path) if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = constrained_study(open_storage(url), f"summaries-{tmp_path.name}")
    try:
        full = study.get_trials(deepcopy=False)
        summaries = trial_summaries(study, ("kept",))
        assert [(t.number, t.state, t.values, t.constraints, t._trial_id) for t in summaries] == [
            (t.number, t.state, t.values, t.constraints, t._trial_id) for t in full
        ]
        kept_only = [{"kept": t.user_attrs["kept"]} if t.user_attrs else {} for t in full]
        assert [t.user_attrs for t in summaries] == kept_only
        assert summaries[7].values[1] == math.inf and all(not t.params for t in summaries)
        # A prefix is matched as text: "rung_" takes rung_3, not rungs3 (LIKE's "_" matches any character).
        with_rungs = trial_summaries(study, ("kept",), key_prefixes=("rung_",))
        assert with_rungs[5].user_attrs == {"kept": 5, "rung_3": [5]}
    finally:
        optuna.delete_study(study_name=study.study_name, storage=study._storage)


def test_pareto_front_of_summaries_is_optunas_best_trials(tmp_path: Path) -> None:
    study = constrained_study(open_storage(sqlite_url(tmp_path)), "s")
    front = pareto_front(trial_summaries(study, ()), study.directions)
    assert front and [t.number for t in front] == [t.number for t in study.best_trials]


def test_non_domination_ranks_put_the_front_first() -> None:
    maximize, minimize = optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE
    # (accuracy up, size down): the first two are the front, the third is behind the first, the last behind all.
    ranks = non_domination_ranks([[0.9, 2.0], [0.8, 1.0], [0.85, 3.0], [0.1, 9.0]], [maximize, minimize])
    assert ranks == [0, 0, 1, 2]
