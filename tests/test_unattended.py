"""A study left alone on a cluster: dead workers, a database restart, conflicting settings, failure loops.

The PostgreSQL tests restart the real server (``.ci/services.sh pg-restart``) and kill real
worker processes; the settings and failure tests run on SQLite.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from search_helpers import (
    ECGSEARCH,
    ONE_THREAD,
    TINY,
    ecgsearch,
    edited,
    environment,
    load,
    run,
    running_trials,
    slow_definition,
    sqlite_url,
    unique_name,
    wait_for,
    worker_command,
)

from ecgsearch.storage.retry import RetryFailedTrial
from ecgsearch.storage.storage import StorageSettings, open_storage
from ecgsearch.study.definition import load_definition
from ecgsearch.study.study import SearchContext, open_study
from ecgsearch.study.workspace import Workspace
from ecgsearch.trials.duplicates import wait_for_duplicate
from ecgsearch.trials.hooks import TrialInterrupted
from ecgsearch.trials.signals import ignore_unraisable

SERVICES = Path(__file__).resolve().parents[1] / ".ci" / "services.sh"


def definition_with(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = edited(TINY.read_text(), *edits)
    path = tmp_path / f"def-{len(list(tmp_path.glob('def-*')))}.toml"
    path.write_text(text)
    return path


def command_with(definition: Path, cmd: list[str]) -> list[str]:
    return [str(definition) if part == str(TINY) else part for part in cmd]


def slow_worker(tmp_path: Path, name: str, total: int, *flags: str) -> list[str]:
    """A worker command for trials of several seconds (no thesis trials)."""
    return command_with(slow_definition(tmp_path), worker_command(tmp_path, name, total, "--no-thesis", *flags))


@pytest.mark.services
def test_a_dead_workers_trial_in_a_full_study_is_reaped_and_retried(postgres_url: str, tmp_path: Path) -> None:
    """Finding: the dead trial counted toward the total, so the survivor left and the study stayed short forever."""
    name = unique_name("reap")
    env = environment(postgres_url)
    # A grace period longer than the survivor's own trial: it meets the full study while the dead trial "runs".
    cmd = slow_worker(tmp_path, name, 2, "--heartbeat-interval", "1", "--grace-period", "30", "--max-retries", "1")
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: running_trials(postgres_url, name), 120, "the victim's running trial")
    dead = running_trials(postgres_url, name)[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = run(cmd, env, timeout=300)
    assert survivor.returncode == 0, survivor.stderr[-2000:]
    assert "waiting for 1 trial(s) other workers run" in survivor.stdout
    assert "failed 1 trial(s) of worker(s) that stopped beating" in survivor.stdout
    trials = load(postgres_url, name).get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    # The stored attempt, not the snapshot (which can precede its last suggestions); a kill
    # between two suggestions leaves it some parameters, and the retry keeps them all.
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params.items() >= trials[dead.number].params.items()
    assert "fail_reason" not in retries[0].user_attrs  # the retry's record is its own, not the dead attempt's
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.services
def test_workers_ride_out_a_postgresql_restart(outage_postgres, tmp_path: Path) -> None:
    """Finding: a restart killed every worker with a traceback from the lock connection."""
    postgres_url, server = outage_postgres
    name = unique_name("restart")
    env = environment(postgres_url, **ONE_THREAD)
    cmd = slow_worker(tmp_path, name, 4, "--heartbeat-interval", "1", "--grace-period", "30", "--outage-timeout", "120")
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]  # fmt: skip
    wait_for(lambda: len(running_trials(postgres_url, name)) == 2, 180, "both workers training")
    restart = subprocess.run(["bash", str(SERVICES), "pg-restart", "3"], env=server, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert restart.returncode == 0, restart.stdout + restart.stderr
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    stderr = "".join(err for _, err in outputs)
    assert "database unreachable" in stderr and "database reachable again" in stderr and "Traceback" not in stderr
    assert postgres_url.split(":")[2].split("@")[0] not in stderr + "".join(out for out, _ in outputs)
    trials = load(postgres_url, name).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4, [t.state for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # The trials in hand when the server went away were told afterwards, not lost: nothing failed.
    assert not [t for t in trials if t.state == TrialState.FAIL]


@pytest.mark.services
def test_a_worker_holds_at_most_one_connection_and_none_while_it_trains(postgres_url: str, tmp_path: Path) -> None:
    name = unique_name("conns")
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    cmd = slow_worker(tmp_path, name, 2)
    worker = subprocess.Popen(cmd, env=environment(postgres_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    # This worker's connections only, by the application name it gives them: the database's
    # other sessions (autovacuum after the restart test, other tests' stragglers) are not its own.
    application = f"ecgsearch {socket.gethostname()}:{worker.pid}"[:63]

    def connections() -> int:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app"
            return int(conn.execute(sqlalchemy.text(query), {"app": application}).scalar())

    samples = []
    while worker.poll() is None:
        samples.append(connections())
        time.sleep(0.05)
    engine.dispose()
    _, err = worker.communicate()
    assert worker.returncode == 0, err[-2000:]
    started = samples.index(1) if 1 in samples else len(samples)
    print(f"\npeak PostgreSQL connections of one worker: {max(samples)}; "
          f"none in {samples[started:].count(0)} of {len(samples) - started} samples after the first")  # fmt: skip
    assert max(samples) == 1
    # Training holds no connection (these epochs are short, so each epoch's history write
    # reconnects for a moment); a worker holding one for life would never show 0.
    assert samples[started:].count(0) >= 5


def test_study_settings_are_recorded_and_a_conflicting_worker_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    name = unique_name("settings")
    env = environment(None)
    first = run(worker_command(tmp_path, name, 3, "--max-mb", "0.5", "--no-thesis"), env)
    assert first.returncode == 0, first.stderr
    study = load(sqlite_url(tmp_path), name)
    assert study.user_attrs["settings"]["total"] == 3 and study.user_attrs["settings"]["limits"] == {"size_mb": 0.5}
    for flags, message in [
        (("--max-mb", "0.0001"), "the size_mb limit is 0.5 in study"),
        (("--max", "latency_ms=5"), "the latency_ms limit is not set in study"),
        (("--trials", "4"), "total is 3 in study"),
        (("--trials", "2"), "a study's total cannot be lowered"),
        (("--sampler", "random"), "sampler is 'tpe' in study"),
        (("--grace-period", "5"), "grace_period is 90 in study"),
    ]:
        # In this process (a refusal comes before any work; a new interpreter costs seconds of imports).
        args = [part for part in worker_command(tmp_path, name, 3)[len(ECGSEARCH) :] if part not in ("--trials", "3")]
        code, _, err = ecgsearch(capsys, monkeypatch, *args, *flags)
        assert code == 2, (flags, err)
        assert err.startswith("error: ") and message in err and "Traceback" not in err
        assert err.count("\n") == 1, err
    # A worker that names no setting follows the study: the budget constrains its trials too.
    cmd = [part for part in worker_command(tmp_path, name, 3) if part not in ("--trials", "3")]
    raised = run([*cmd, "--trials", "5", "--raise-total"], env)
    assert raised.returncode == 0, raised.stderr
    assert "total raised from 3 to 5" in raised.stdout
    study = load(sqlite_url(tmp_path), name)
    trials = study.get_trials()
    assert len(trials) == 5 and all("max_mb" in t.constraints for t in trials)
    assert study.user_attrs["settings"]["total"] == 5
    [entry] = study.user_attrs["settings_log"]
    assert entry["change"] == "total raised from 3 to 5" and ":pid" in entry["by"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_trial_total_below_one_is_refused_before_any_work(tmp_path: Path, value: str) -> None:
    cmd = [*ECGSEARCH, "worker", "--study-def", str(TINY), "--trials", value, "--workspace", str(tmp_path)]
    result = run(cmd, environment(None))
    assert result.returncode == 2 and result.stderr.startswith("error: Invalid value for '--trials'")
    assert result.stderr.count("\n") == 1 and not (tmp_path / "study.db").exists()


def test_a_worker_stops_when_trials_keep_failing_for_the_same_reason(tmp_path: Path) -> None:
    """A definition asking for CUDA on a machine without it: every trial fails the same way."""
    cuda = definition_with(tmp_path, ("window = 512", 'window = 512\ndevice = "cuda"'))
    name = unique_name("loop")
    result = run(command_with(cuda, worker_command(tmp_path, name, 6, "--no-thesis", "--max-retries", "1")),
                 environment(None))  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 3 trials in a row failed with the same error, so this worker stopped: ")
    assert "Traceback" not in result.stderr
    trials = load(sqlite_url(tmp_path), name).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 3 and len({t.user_attrs["fail_reason"] for t in failed}) == 1
    # What is left is at most the last failure's retry, waiting for a worker on a node that has CUDA.
    assert [t.state for t in trials if t not in failed] in ([], [TrialState.WAITING])


def test_sigterm_leaves_one_line_not_optunas_traceback(tmp_path: Path) -> None:
    name = unique_name("quiet")
    cmd = slow_worker(tmp_path, name, 2)
    worker = subprocess.Popen(cmd, env=environment(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: running_trials(sqlite_url(tmp_path), name), 120, "a running trial")
    time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    stdout, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr and "failed with parameters" not in stderr, stderr[-3000:]
    assert "FAIL: worker terminated (SIGTERM)" in stdout


def test_an_interrupt_inside_a_finalizer_is_dropped_quietly_and_other_errors_are_not() -> None:
    """Where a SIGTERM lands in a weakref callback (a rare race the test above once met), no traceback."""
    seen: list[BaseException] = []
    original = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: seen.append(unraisable.exc_value)

    class Raises:
        def __init__(self, error: BaseException) -> None:
            self.error = error

        def __del__(self) -> None:
            raise self.error

    try:
        restore = ignore_unraisable(TrialInterrupted)
        Raises(TrialInterrupted("SIGTERM"))  # dropped at once: its __del__ raises where nothing can catch
        other = ValueError("a real problem")
        Raises(other)
        restore()
        Raises(TrialInterrupted("after"))
    finally:
        sys.unraisablehook = original
    assert [str(e) for e in seen] == ["a real problem", "after"] and seen[0] is other


def test_a_worker_quiets_interrupts_in_finalizers_while_it_runs_and_restores_the_hook(tmp_path: Path, capsys,
                                                                                      monkeypatch) -> None:  # fmt: skip
    installed: list[tuple[type[BaseException], object]] = []

    def recording(kind: type[BaseException]):
        restore = ignore_unraisable(kind)
        installed.append((kind, sys.unraisablehook))
        return restore

    monkeypatch.setattr("ecgsearch.trials.worker.ignore_unraisable", recording)
    before = sys.unraisablehook
    args = worker_command(tmp_path, unique_name("hook"), 1)[len(ECGSEARCH) :]
    code, _, err = ecgsearch(capsys, monkeypatch, *args)
    assert code == 0, err
    [(kind, hook)] = installed
    assert kind is TrialInterrupted and hook is not before and sys.unraisablehook is before


def test_settings_merge_rules() -> None:
    from ecgsearch.study.settings import SettingsConflict, StudySettings, settle

    defaults = StudySettings(total=30, sampler="tpe", thesis=True, heartbeat_interval=30,
                             grace_period=90, max_retries=2, max_consecutive_failures=3)  # fmt: skip
    new, changes = settle(None, defaults, {"total": 10, "limits": {"size_mb": 2.0}})
    assert (new.total, new.limits, new.sampler, changes) == (10, {"size_mb": 2.0}, "tpe", [])
    same, changes = settle(new, defaults, {"total": 10})
    assert same == new and changes == []
    raised, changes = settle(new, defaults, {"total": 12}, raise_total=True)
    assert raised.total == 12 and changes == ["total raised from 10 to 12"]
    with pytest.raises(SettingsConflict, match="cannot be lowered"):
        settle(new, defaults, {"total": 5}, raise_total=True)
    with pytest.raises(SettingsConflict, match="needs --trials"):
        settle(new, defaults, {}, raise_total=True)
    with pytest.raises(SettingsConflict, match=r"the size_mb limit is 2\.0 .* --max-mb 1: drop the flag"):
        settle(new, defaults, {"limits": {"size_mb": 1.0}})
    # A limit the command does not name stays the study's; one it names again is no conflict.
    both, _ = settle(None, defaults, {"limits": {"size_mb": 2.0, "latency_ms": 5.0}})
    assert settle(both, defaults, {"limits": {"latency_ms": 5.0}})[0] == both
    # A study from before limits held the size budget reads it as one.
    old = {**new.to_dict(), "max_mb": 3.0}
    del old["limits"]
    assert StudySettings.from_dict(old).limits == {"size_mb": 3.0}
    assert json.loads(json.dumps(new.to_dict())) == new.to_dict()  # stored as a user attribute


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_retry_that_starts_after_a_higher_numbered_duplicate_waits_for_it(tmp_path: Path) -> None:
    """Found by bench/chaos.py: the retry (lower number, enqueued earlier) trained beside the newer duplicate."""
    context = SearchContext.prepare(load_definition(TINY), Workspace(tmp_path), sqlite_url(tmp_path),
                                    study_name="dup-order", requested={"total": 4, "thesis": False})  # fmt: skip
    study = open_study(context)
    params = context.definition.space.params_of(context.definition.space.arch_of(
        {"blocks_1": 1, "blocks_2": 1, "blocks_3": 1, "blocks_4": 1, "width_multiplier": 0.125,
         "conv_type": "standard", "se": False, "bn1": True, "bn2": True, "conv2": True, "stem": "7/3",
         "block_kernel": 7, "metadata_features": 10, "dropout": 0.2}))  # fmt: skip
    identity = {"identity": {"config_key": "k"}}
    study.enqueue_trial(params)  # trial 0: the retry, waiting for a worker
    distributions = context.definition.space.distributions()
    study.add_trial(optuna.trial.create_trial(state=TrialState.RUNNING, params=params, distributions=distributions,
                                              user_attrs=identity))  # fmt: skip
    newer = study.get_trials()[1]  # trial 1: a new proposal of the same network, training since now
    retry = study.ask()
    assert retry.number == 0 and retry.datetime_start > newer.datetime_start

    def finish_newer() -> None:
        time.sleep(1.5)
        storage = open_storage(sqlite_url(tmp_path))
        storage.set_trial_user_attr(newer._trial_id, "trained", True)
        storage.set_trial_state_values(newer._trial_id, TrialState.COMPLETE, [0.7, 0.1])

    finisher = threading.Thread(target=finish_newer)
    finisher.start()
    started = time.monotonic()
    repeated = wait_for_duplicate(retry, "k")
    finisher.join()
    assert repeated is not None and repeated.number == 1 and time.monotonic() - started >= 1.5


def test_retries_count_crashes_but_not_sigterms(tmp_path: Path) -> None:
    study = optuna.create_study(storage=sqlite_url(tmp_path), directions=["maximize", "minimize"])
    failed_attrs = {"fail_reason": "x", "log": "a.log", "thesis_experiment": "E18"}
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=failed_attrs))
    retry = RetryFailedTrial(max_retry=1)
    for _ in range(3):  # three SIGTERMs in a row: each gets a free retry
        retry(study, study.get_trials()[-1], counts=False)
        study.tell(study.ask(), state=TrialState.FAIL)
    retry(study, study.get_trials()[-1])  # a crash: the one counted retry
    study.tell(study.ask(), state=TrialState.FAIL)
    retry(study, study.get_trials()[-1])  # a second crash: no retry left
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 5
    assert trials[-1].system_attrs["retry_history"] == [0, 1, 2, 3] and trials[-1].system_attrs["retry_count"] == 1
    assert trials[-1].system_attrs["failed_trial"] == 0
    assert trials[1].user_attrs == {"thesis_experiment": "E18"}  # not the failed attempt's reason or log


@pytest.mark.services
def test_a_wrong_database_password_is_one_line_and_never_shown(postgres_url: str, tmp_path: Path) -> None:
    wrong = sqlalchemy.engine.make_url(postgres_url).set(password="not-the-password-42")
    env = environment(wrong.render_as_string(hide_password=False), PGPASSWORD="")
    result = run(worker_command(tmp_path, unique_name("auth"), 1), env, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith("error: cannot use the storage postgresql+psycopg2://optuna:***@")
    assert "password authentication failed" in result.stderr and "not-the-password-42" not in result.stderr


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_right_after_a_database_outage_no_running_trial_counts_as_dead(tmp_path: Path) -> None:
    """No heartbeat could be written during the outage: reaping then would fail every live trial."""
    storage = open_storage(sqlite_url(tmp_path), StorageSettings(heartbeat_interval=1, grace_period=1))
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)  # SQLite's clock has one-second steps: this is surely more than the 1 s grace
    study_id = storage.get_study_id_from_name(study.study_name)
    assert storage._get_stale_trial_ids(study_id) == [trial._trial_id]  # silent longer than the grace period
    storage.guard.last_recovery = time.monotonic()  # the database just came back
    assert storage._get_stale_trial_ids(study_id) == []
    storage.guard.last_recovery = time.monotonic() - 1.5  # a grace period of beats has been possible since
    assert storage._get_stale_trial_ids(study_id) == [trial._trial_id]
