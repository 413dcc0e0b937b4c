"""Workers on a connection budget (real PostgreSQL, roles created with CONNECTION LIMIT).

A worker holds at most one connection and none while it trains; a lock is held on that one
connection and waited for without any; a role's limit makes workers wait their turn (one line
each), never fail; a lock lost with its connection is noticed before the next call runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg2
import pytest
import sqlalchemy
from optuna.trial import TrialState
from search_helpers import ONE_THREAD, environment, load, unique_name, wait_for, worker_command

from ecgsearch.storage.connection_guard import LockLost, StorageUnavailable
from ecgsearch.storage.db_lock import DatabaseLock
from ecgsearch.storage.storage import StorageSettings, open_storage

pytestmark = pytest.mark.services

# .ci/services.sh runs PostgreSQL with its socket here and trust for local connections.
ADMIN_SOCKET = "/tmp/ci-pg"


def _admin(statement: str, *params: object) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(host=ADMIN_SOCKET, user="postgres", dbname="postgres")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def capped_role(postgres_url: str, limit: int) -> Iterator[tuple[str, str]]:
    """A fresh role and database whose connections are capped at ``limit``: (URL without password, password)."""
    role, password = f"capped_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    _admin(f"CREATE ROLE {role} LOGIN PASSWORD %s CONNECTION LIMIT {limit}", password)
    _admin(f"CREATE DATABASE {role} OWNER {role}")
    base = sqlalchemy.engine.make_url(postgres_url)
    try:
        yield f"postgresql+psycopg2://{role}@{base.host}:{base.port}/{role}", password
    finally:
        _admin(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
        _admin(f"DROP ROLE IF EXISTS {role}")


def _connections(role: str) -> int:
    return _admin("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", role)[0][0]


@pytest.fixture
def role_password(monkeypatch):
    """Sets PGPASSWORD for this process (libpq reads it), as a user's environment would."""

    def use(password: str) -> None:
        monkeypatch.setenv("PGPASSWORD", password)

    return use


def test_a_storage_holds_one_connection_at_most_and_none_when_idle(postgres_url, role_password) -> None:
    with capped_role(postgres_url, 5) as (url, password):
        role_password(password)
        role = sqlalchemy.engine.make_url(url).username
        storage = open_storage(url)
        study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _connections(role))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        for _ in range(5):  # storage calls from the heartbeat thread too
            trial = study.ask()
            storage.record_heartbeat(trial._trial_id)
            trial.suggest_int("x", 0, 9)
            study.tell(trial, (0.5, 1.0))
        stop.set()
        sampler.join()
        assert peak[0] == 1
        wait_for(lambda: _connections(role) == 0, 5, "the idle connection to close")


def test_a_lock_is_held_on_the_storage_connection_and_waited_for_without_one(postgres_url, role_password) -> None:
    """Role capped at 2: one process holds the lock (one connection); a second waits holding none,
    so the holder's calls and a third party's connection still fit under the cap."""
    with capped_role(postgres_url, 2) as (url, password):
        role_password(password)
        role = sqlalchemy.engine.make_url(url).username
        holder, waiter = open_storage(url), open_storage(url)
        lock = DatabaseLock(holder, "ask:s")
        lock.acquire()
        got = threading.Event()

        def wait_for_lock() -> None:
            other = DatabaseLock(waiter, "ask:s")
            other.acquire()
            got.set()
            other.release()

        thread = threading.Thread(target=wait_for_lock)
        thread.start()
        time.sleep(1.0)
        assert not got.is_set()
        optuna.create_study(storage=holder, study_name="s")  # the holder's calls run on its one connection
        samples = []
        for _ in range(20):
            samples.append(_connections(role))
            time.sleep(0.02)
        assert max(samples) <= 2 and min(samples) == 1  # the waiter's tries come and go; the holder stays
        lock.release()
        thread.join(timeout=10)
        assert got.is_set()


def test_a_lock_lost_with_its_connection_stops_the_next_call(postgres_url, role_password) -> None:
    with capped_role(postgres_url, 3) as (url, password):
        role_password(password)
        role = sqlalchemy.engine.make_url(url).username
        storage = open_storage(url)
        optuna.create_study(storage=storage, study_name="s")
        lock = DatabaseLock(storage, "ask:s", reacquire_on_loss=False)
        lock.acquire()
        _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", role)
        with pytest.raises(LockLost):
            storage.get_study_id_from_name("s")
        assert not lock.held
        assert storage.get_study_id_from_name("s") >= 0  # later calls run (without the lock)
        # A lock that is taken again on loss: the call waits for it and then runs, holding it.
        again = DatabaseLock(storage, "enqueue:s")
        again.acquire()
        _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", role)
        assert storage.get_study_id_from_name("s") >= 0
        assert again.held
        rows = _admin("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid IN "
                      "(SELECT pid FROM pg_stat_activity WHERE usename = %s)", role)  # fmt: skip
        assert rows[0][0] == 1
        again.release()


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_reaped(postgres_url, role_password) -> None:
    with capped_role(postgres_url, 3) as (url, password):
        role_password(password)
        storage = open_storage(url, StorageSettings(heartbeat_interval=1, grace_period=2))
        study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
        orphan = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})  # no heartbeat was ever recorded
        optuna.storages.fail_stale_trials(study)  # starts its clock
        assert study.get_trials()[0].state == TrialState.RUNNING
        time.sleep(3.5)
        optuna.storages.fail_stale_trials(study)
        states = [t.state for t in study.get_trials()]
        assert states[orphan.number] == TrialState.FAIL
        assert states[-1] == TrialState.WAITING  # its retry, same parameters
        assert study.get_trials()[-1].params == orphan.params


def test_more_workers_than_the_role_has_connections_fill_the_study_exactly(postgres_url: str, tmp_path: Path) -> None:
    """A role capped at 3 connections: 4 real workers (2 trials each) end with exactly the total, all exiting 0,
    and a worker refused a connection says so once per wait, naming the role's limit."""
    workers = 4
    total = 2 * workers
    with capped_role(postgres_url, 3) as (url, password):
        name = unique_name("capped")
        env = environment(url, PGPASSWORD=password, **ONE_THREAD)
        command = worker_command(tmp_path, name, total, "--heartbeat-interval", "2")
        procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]  # fmt: skip
        outputs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0] * workers, [err[-1500:] for _, err in outputs]
        trials = load_with_password(url, password, name)
        assert len(trials) == total and all(t.state == TrialState.COMPLETE for t in trials)
        for _, err in outputs:
            assert "Traceback" not in err
            assert "unreachable" not in err  # a limit is not an outage
            for line in err.splitlines():
                if "connection limit" in line:
                    assert "role connection limit" in line and "CONNECTION LIMIT" in line
        assert password not in "".join(out + err for out, err in outputs)


def load_with_password(url: str, password: str, name: str) -> list[optuna.trial.FrozenTrial]:
    os.environ["PGPASSWORD"] = password
    try:
        return load(url, name).get_trials()
    finally:
        del os.environ["PGPASSWORD"]


def test_the_lock_wait_names_its_holder_and_has_a_bound(postgres_url, role_password, monkeypatch) -> None:
    with capped_role(postgres_url, 3) as (url, password):
        role_password(password)
        holder, waiter = open_storage(url), open_storage(url)
        lock = DatabaseLock(holder, "ask:s")
        lock.acquire()
        lines: list[str] = []
        waiter.guard.log = lines.append
        other = DatabaseLock(waiter, "ask:s", wait_timeout=1.5)
        monkeypatch.setattr("ecgsearch.storage.db_lock.WAIT_REPORT_SECONDS", 0.5)
        with pytest.raises(StorageUnavailable, match=r"waited \d+ s for the database lock 'ask:s', held by ecgsearch"):
            other.acquire()
        assert len(lines) == 1 and re.search(r"held by ecgsearch \S+:\d+ \(server pid \d+", lines[0])
        lock.release()


class _CutsItsLockConnectionOnce(optuna.samplers.BaseSampler):
    """Wraps a sampler; during the first ask it proposes for, the worker's connections are cut server-side."""

    def __init__(self, base: optuna.samplers.BaseSampler, role: str) -> None:
        self.base, self.role, self.cut = base, role, False

    def infer_relative_search_space(self, study, trial):
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        if not self.cut and not trial.system_attrs.get("fixed_params"):
            self.cut = True
            _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", self.role)
            study.get_trials(deepcopy=False)  # a sampler reads the study: this call finds the lock gone
        return self.base.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.base.sample_independent(study, trial, param_name, param_distribution)


def test_an_ask_whose_lock_was_lost_starts_over_and_the_study_still_ends_at_its_total(
    postgres_url: str, tmp_path: Path, role_password
) -> None:
    """The lock connection is cut in the middle of an ask (after the trial was created): that trial
    is failed with the reason and queued again uncounted, and the study ends with exactly its total."""
    from search_helpers import TINY

    from ecgsearch.study.definition import load_definition
    from ecgsearch.study.study import SearchContext, open_study
    from ecgsearch.study.workspace import Workspace
    from ecgsearch.trials.worker import run_worker

    with capped_role(postgres_url, 3) as (url, password):
        role_password(password)
        role = sqlalchemy.engine.make_url(url).username
        context = SearchContext.prepare(load_definition(TINY), Workspace(tmp_path), url, study_name="cut",
                                        requested={"total": 3, "thesis": False})  # fmt: skip
        sampler = _CutsItsLockConnectionOnce(optuna.samplers.RandomSampler(seed=0), role)
        study = open_study(context, sampler=sampler)
        events: list[dict] = []
        report = run_worker(context, study=study, on_event=events.append)
        assert sampler.cut and report.lock_losses == 1 and {"event": "lock_lost"} in events
        trials = load(url, "cut").get_trials()
        failed = [t for t in trials if t.state == TrialState.FAIL]
        assert len(failed) == 1 and "lock was lost" in failed[0].user_attrs["fail_reason"]
        assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number)
        assert retry.state == TrialState.COMPLETE and retry.system_attrs["retry_count"] == 0
