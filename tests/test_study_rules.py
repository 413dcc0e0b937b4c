"""A study's rules on SQLite: repeats not trained again, SIGTERM, size budgets, a study's
definition and data kept, other studies not read, and the demo from a fresh folder."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import (
    ECGSEARCH,
    TINY,
    edited,
    environment,
    run,
    sqlite_study,
    sqlite_url,
    unique_name,
    worker_command,
)

from ecgsearch.study.definition import load_definition
from ecgsearch.study.study import SearchContext, StudyMismatchError, open_study
from ecgsearch.study.workspace import Workspace


def test_a_repeated_configuration_is_not_trained_again(tmp_path: Path) -> None:
    name = unique_name("dup")
    first = run(worker_command(tmp_path, name, 2, "--no-thesis"), environment(None))
    assert first.returncode == 0, first.stderr
    study = sqlite_study(tmp_path, name)
    original = study.get_trials()[0]
    study.enqueue_trial(dict(original.params))
    again = run(worker_command(tmp_path, name, 3, "--no-thesis", "--raise-total"), environment(None))
    assert again.returncode == 0, again.stderr
    repeat = sqlite_study(tmp_path, name).get_trials()[2]
    assert repeat.params == original.params
    assert repeat.user_attrs["repeats_trial"] == original.number and repeat.user_attrs["trained"] is False
    assert repeat.values == original.values and repeat.user_attrs["result"] == original.user_attrs["result"]
    assert repeat.user_attrs["artifacts"] == original.user_attrs["artifacts"]
    assert f"repeats trial {original.number}" in again.stdout


def test_a_sigterm_whose_exception_is_swallowed_still_fails_the_trial(tmp_path: Path) -> None:
    """Python drops a signal handler's exception raised inside a finalizer: the flag must still stop the trial."""
    from ecgsearch.trials.objective import TrialObjective
    from ecgsearch.trials.worker import run_worker

    class SwallowingObjective(TrialObjective):
        def _train(self, trial, arch, **options):
            try:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here and raises ...
                time.sleep(1)
            except KeyboardInterrupt:
                pass  # ... and the exception is lost, as in a garbage-collection callback
            return super()._train(trial, arch, **options)

    name = unique_name("swallow")
    context = SearchContext.prepare(load_definition(TINY), Workspace(tmp_path), sqlite_url(tmp_path),
                                    study_name=name, requested={"total": 3, "thesis": False})  # fmt: skip
    report = run_worker(context, objective_class=SwallowingObjective)
    assert report.terminated and report.trials_run == 1 and report.failed == 1
    first, retry = sqlite_study(tmp_path, name).get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "worker terminated (SIGTERM)"
    assert "history" not in first.user_attrs  # stopped at the first training step, not after training
    assert retry.state == TrialState.WAITING and retry.params == first.params


def test_trials_over_the_size_budget_are_infeasible_and_never_trained(tmp_path: Path) -> None:
    name = unique_name("budget")
    result = run(worker_command(tmp_path, name, 4, "--max-mb", "0.5"), environment(None))
    assert result.returncode == 0, result.stderr
    trials = sqlite_study(tmp_path, name).get_trials()
    over = [t for t in trials if t.user_attrs["size_mb"] > 0.5]
    under = [t for t in trials if t.user_attrs["size_mb"] <= 0.5]
    assert over and under  # E16 (0.81 MB) is over, E18 (0.28 MB) under
    for t in over:
        assert t.constraints["max_mb"] > 0 and "result" not in t.user_attrs and t.user_attrs["trained"] is False
        assert t.values[0] == 0.5 and not (tmp_path / "logs" / f"{name}-trial-{t.number}.log").exists()
    for t in under:
        assert t.constraints["max_mb"] <= 0 and t.user_attrs["trained"] is True


def test_a_worker_with_another_definition_is_refused(tmp_path: Path) -> None:
    name = unique_name("refuse")
    assert run(worker_command(tmp_path, name, 1, "--no-thesis"), environment(None)).returncode == 0
    other = tmp_path / "other.toml"
    other.write_text(edited(TINY.read_text(), ("epochs = 1", "epochs = 2")))
    cmd = worker_command(tmp_path, name, 2, "--no-thesis")
    cmd[cmd.index(str(TINY))] = str(other)
    refused = run(cmd, environment(None))
    assert refused.returncode == 2
    assert f"study {name!r} was created with another study definition" in refused.stderr
    assert len(sqlite_study(tmp_path, name).get_trials()) == 1


def test_the_study_records_its_data_and_refuses_other_data(tmp_path: Path, synthetic_cache_path: Path) -> None:
    name = unique_name("data")
    definition = load_definition(TINY)
    workspace = Workspace(tmp_path)
    url = sqlite_url(tmp_path)
    context = SearchContext.prepare(definition, workspace, url, study_name=name)
    open_study(context)
    other = SearchContext.prepare(definition, workspace, url, study_name=name, data=str(synthetic_cache_path))
    with pytest.raises(StudyMismatchError, match="another data cache"):
        open_study(other)


def test_opening_a_study_reads_no_trials_of_other_studies(tmp_path: Path) -> None:
    """A shared storage holds many studies; a worker opening one must not load all of their trials."""
    import sqlalchemy

    url = sqlite_url(tmp_path)
    other = optuna.create_study(study_name="other", storage=url, directions=["maximize", "minimize"])
    other.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", record)
    try:
        for _ in range(2):  # creates the study, then opens it again
            open_study(SearchContext.prepare(load_definition(TINY), Workspace(tmp_path), url, study_name="mine"))
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", record)
    assert statements and not [s for s in statements if "FROM trials" in s], statements


def test_ecgsearch_run_with_no_arguments_works_on_sqlite_and_stops_cleanly(tmp_path: Path) -> None:
    """The demo from a fresh folder: the default workspace, SQLite, thesis trials first.

    The whole demo (30 trials) takes about five minutes here; the test lets the first trial (E1)
    start training, then stops the run as a scheduler would, with SIGTERM: E1 fails and is queued
    again, E-name and all.
    """

    from ecgsearch.storage.storage import open_storage

    env = environment(None)
    demo = subprocess.Popen([*ECGSEARCH, "run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    database = tmp_path / "ecgsearch-work" / "study.db"
    deadline = time.monotonic() + 300

    def training() -> bool:
        if not database.exists():
            return False
        try:
            # Through the schema lock: `run` may be creating the tables right now.
            study = optuna.load_study(study_name="demo", storage=open_storage(f"sqlite:///{database}"))
        except KeyError:
            return False
        return any("identity" in t.user_attrs for t in study.get_trials(states=(TrialState.RUNNING,)))

    while not training() and time.monotonic() < deadline and demo.poll() is None:
        time.sleep(0.5)
    demo.send_signal(signal.SIGTERM)
    stdout, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 143, stderr[-3000:]
    study = optuna.load_study(study_name="demo", storage=f"sqlite:///{database}")
    trials = study.get_trials()
    assert [t.user_attrs.get("thesis_experiment") for t in trials[:2]] == ["E1", "E2"]
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_reason"] == "worker terminated (SIGTERM)"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].user_attrs["thesis_experiment"] == "E1" and retry[0].params == trials[0].params, stdout
    assert all(t.state != TrialState.RUNNING for t in trials)
    assert sum(t.user_attrs.get("thesis_experiment") is not None for t in trials) == 18 + 1  # E1-E18 once, E1's retry
    assert "study demo" in stdout and "30 trials" in stdout, stdout
    assert (tmp_path / "ecgsearch-work" / "data" / "synthetic-400-seed0.h5").exists()
