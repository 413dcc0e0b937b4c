"""Where studies live: URL resolution, and Optuna's RDB storage on a connection budget, riding out outages.

Precedence: ``--storage URL``, then ``ECGSEARCH_STORAGE``, then SQLite in the workspace. A
PostgreSQL password comes from the URL in the environment, PGPASSWORD or ~/.pgpass (libpq reads
both when the URL has none); it is never printed: show URLs with ``redact``.

Outages and connection limits: every storage call goes through ``OutageGuard``
(``ecgsearch.storage.connection_guard``): an outage is retried for ``outage_timeout`` seconds, a
refusal for a connection limit waits its turn, a refused login fails at once.

Connections (PostgreSQL): a process holds **at most one**, and **none while it trains**. The
pool has one connection and no overflow; calls from all threads take turns on it; it is closed
once no call has used it for ``IDLE_CLOSE_SECONDS`` (at once after a heartbeat), unless a
database lock is held on it (``ecgsearch.storage.db_lock``: a lock is held on this same connection,
never on a second one). Only the first process on an empty database briefly holds a second
connection, for the lock under which Optuna's tables are created.

Besides ``ecgsearch.storage.optuna_internals``, this module is the one place that overrides RDBStorage's
private methods (``_get_stale_trial_ids``, ``_create_new_trial``) and retries others
(``_set_trial_param``, ``_get_trials``, ``_get_best_trial_id``); pyproject pins optuna < 6.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from ecgsearch.storage.connection_guard import LockLost, OutageGuard, StorageRefused, StorageUnavailable, redact
from ecgsearch.storage.db_lock import DatabaseLock, database_lock, lock_key
from ecgsearch.storage.optuna_internals import read_trial_summaries, running_trials_without_heartbeat, storage_backend
from ecgsearch.storage.retry import RetryFailedTrial

__all__ = [
    "STORAGE_ENV",
    "DatabaseLock",
    "OutageGuard",
    "ResilientRDBStorage",
    "StorageRefused",
    "StorageSettings",
    "StorageUnavailable",
    "database_lock",
    "lock_target",
    "open_storage",
    "redact",
    "resolve_storage_url",
]

STORAGE_ENV = "ECGSEARCH_STORAGE"
# An idle connection is closed this long after its last call: long enough to serve one burst of
# calls (an ask, a trial's attributes, a tell) on one connection, short enough that a worker
# that trains holds none.
IDLE_CLOSE_SECONDS = 0.25


class StorageSettings:
    """Heartbeat, retry and outage settings (shorter in tests; defaults suit real training).

    With the defaults a worker that died is noticed 90 s after its last heartbeat, so its trial
    is failed and retried within about two minutes.
    """

    def __init__(
        self, heartbeat_interval: int = 30, grace_period: int = 90, max_retries: int = 2, outage_timeout: float = 600.0
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retries = max_retries
        self.outage_timeout = outage_timeout


def resolve_storage_url(cli_url: str | None, workspace: Path) -> str:
    """``--storage``, else ``ECGSEARCH_STORAGE``, else SQLite in the workspace."""
    url = cli_url or os.environ.get(STORAGE_ENV)
    if url:
        return url
    return f"sqlite:///{(workspace / 'study.db').resolve()}"


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDBStorage on at most one connection, whose every call rides out outages and limits."""

    def __init__(self, url: str, *, guard: OutageGuard, **kwargs: Any) -> None:
        self.guard = guard
        self._pinned: list[DatabaseLock] = []
        self._pinned_connection: Any = None  # the DBAPI connection the pinned locks live on
        self._last_call = 0.0
        self.asked_trial_id: int | None = None  # the last trial this process created or took from the queue
        # The constructor connects (creates tables, checks the schema version): retried too.
        guard.call(RDBStorage.__init__, self, url, **kwargs)
        if self.engine.url.get_backend_name() != "sqlite":
            sqlalchemy.event.listen(self.engine, "checkout", self._on_checkout)
            guard.after_call = self._after_call
            _watch_idle(self)

    def configure_heartbeat(self, interval: int, grace_period: int, max_retries: int) -> None:
        """Use the study's heartbeat settings (known only once the study is read)."""
        self.heartbeat_interval = interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = RetryFailedTrial(max_retries)
        self.failed_trial_callback = self.heartbeat_stale_trial_callback

    # Locks pinned on the one connection (see ecgsearch.storage.db_lock).
    def pin(self, lock: DatabaseLock, connection: Any) -> None:
        """Keep ``connection`` open while ``lock`` is held on it."""
        self._pinned.append(lock)
        self._pinned_connection = connection

    def unpin(self, lock: DatabaseLock) -> Any:
        """Stop keeping the connection for ``lock``; returns that connection, or None if the lock was lost."""
        if lock not in self._pinned:
            return None
        self._pinned.remove(lock)
        connection = self._pinned_connection
        if not self._pinned:
            self._pinned_connection = None
        return connection

    def _on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # A call about to run on another connection than the one the locks live on: that one
        # was lost, and the server let the locks go. Stop the call before it runs unlocked.
        if self._pinned and dbapi_connection is not self._pinned_connection:
            lost, self._pinned, self._pinned_connection = list(self._pinned), [], None
            for lock in lost:
                lock.lost()
            raise LockLost(lost[0])

    def _after_call(self) -> None:
        self._last_call = time.monotonic()

    def _close_idle(self) -> None:
        with self.guard.call_lock:
            if not self._pinned:
                # Only connections idle in the pool are closed; calls take turns, so none is in use now.
                self.engine.pool.dispose()
            self._last_call = 0.0

    def close_if_idle(self) -> None:
        """Close the connection if no call has used it for ``IDLE_CLOSE_SECONDS`` (and no lock is held on it)."""
        last = self._last_call
        if last and time.monotonic() - last >= IDLE_CLOSE_SECONDS:
            self._close_idle()

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat, retried; the connection is let go at once (the worker is training)."""
        try:
            self.guard.call(RDBStorage.record_heartbeat, self, trial_id, on_retry=self.scoped_session.remove)
        except LockLost:  # noticed here, in the heartbeat thread: the lock is marked lost; beat on
            self.guard.call(RDBStorage.record_heartbeat, self, trial_id, on_retry=self.scoped_session.remove)
        if self.engine.url.get_backend_name() != "sqlite":
            self._close_idle()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # No heartbeat reached the database during an outage: right after one, every running
        # trial looks dead. Judge staleness only once a grace period of beats has been possible.
        since = self.guard.last_recovery
        if self.guard.in_outage or (since is not None and time.monotonic() - since < (self.grace_period or 0)):
            return []
        # A trial whose worker died between the ask and its first heartbeat has no heartbeat row,
        # and Optuna never finds it stale: its clock starts now, so it is reaped a grace period on.
        for trial_id in self.guard.call(
            running_trials_without_heartbeat, self, study_id, on_retry=self.scoped_session.remove
        ):
            self.guard.call(RDBStorage.record_heartbeat, self, trial_id, on_retry=self.scoped_session.remove)
        return self.guard.call(RDBStorage._get_stale_trial_ids, self, study_id, on_retry=self.scoped_session.remove)

    def trial_summaries(self, study_id: int, user_keys: tuple[str, ...], key_prefixes: tuple[str, ...]) -> list[Any]:
        """``optuna_internals.trial_summaries``'s narrow read, retried."""
        return self.guard.call(
            read_trial_summaries, self, study_id, user_keys, key_prefixes, on_retry=self.scoped_session.remove
        )

    def _create_new_trial(self, study_id: int, template_trial: Any = None) -> Any:
        frozen = self.guard.call(
            RDBStorage._create_new_trial, self, study_id, template_trial, on_retry=self.scoped_session.remove
        )
        if frozen.state == TrialState.RUNNING:
            self.asked_trial_id = frozen._trial_id
        return frozen

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        """Optuna's call, retried; a retry that finds its own first attempt committed succeeds."""
        attempts = 0

        def once() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # The first attempt committed, then lost its connection before the answer came.
                if attempts > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise

        updated = self.guard.call(once, on_retry=self.scoped_session.remove)
        if updated and state == TrialState.RUNNING:
            self.asked_trial_id = trial_id  # a queued trial (thesis, retry) taken by this process
        return updated


_idle_watched: weakref.WeakSet[ResilientRDBStorage] = weakref.WeakSet()
_idle_watcher_lock = threading.Lock()
_idle_watcher: threading.Thread | None = None


def _watch_idle(storage: ResilientRDBStorage) -> None:
    """Let one thread per process close the idle connections of every open storage (held weakly)."""
    global _idle_watcher
    with _idle_watcher_lock:
        _idle_watched.add(storage)
        if _idle_watcher is None:
            _idle_watcher = threading.Thread(target=_close_idle_connections, name="ecgsearch-idle-close", daemon=True)
            _idle_watcher.start()


def _close_idle_connections() -> None:
    while True:
        time.sleep(IDLE_CLOSE_SECONDS / 4)
        for storage in list(_idle_watched):
            with contextlib.suppress(Exception):
                storage.close_if_idle()


# The storage calls Optuna (and its cache layer) makes; each is retried through an outage.
_RETRIED = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "_set_trial_param",
    "get_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "_get_trials",
    "_get_best_trial_id",
)


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self.guard.call(method, self, *args, on_retry=self.scoped_session.remove, **kwargs)

    return call


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retried(_name))


def lock_target(study: optuna.Study, url: str) -> ResilientRDBStorage | str:
    """Where ``study``'s locks are taken: its own storage (and connection), else the SQLite file at ``url``."""
    backend = storage_backend(study)
    return backend if isinstance(backend, ResilientRDBStorage) else url


def open_storage(url: str, settings: StorageSettings | None = None) -> ResilientRDBStorage:
    """The study storage for ``url``, with heartbeats and outage retries from ``settings``."""
    settings = settings or StorageSettings()
    guard = OutageGuard(url, settings.outage_timeout)
    options = {
        "heartbeat_interval": settings.heartbeat_interval,
        "grace_period": settings.grace_period,
        "heartbeat_stale_trial_callback": RetryFailedTrial(settings.max_retries),
    }
    if make_url(url).get_backend_name() == "sqlite":
        # Several local processes share one SQLite file: wait for locks instead of failing.
        engine_kwargs: dict = {"connect_args": {"timeout": 60}}
        with database_lock(url, "create-schema"):
            return ResilientRDBStorage(url, guard=guard, engine_kwargs=engine_kwargs, **options)
    # One connection, no overflow (see the module); the application name tells workers apart
    # in pg_stat_activity.
    application = f"ecgsearch {socket.gethostname()}:{os.getpid()}"[:63]
    engine_kwargs = {
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": 3600,
        "pool_pre_ping": True,
        "connect_args": {"application_name": application},
    }
    version = guard.call(_schema_version, url, engine_kwargs)
    if version is None:
        _create_optuna_tables(url, guard, engine_kwargs)
        version = guard.call(_schema_version, url, engine_kwargs)
    # Optuna's own schema check needs two connections at once; the same check, on one.
    storage = ResilientRDBStorage(
        url,
        guard=guard,
        engine_kwargs=engine_kwargs,
        skip_table_creation=True,
        skip_compatibility_check=True,
        **options,
    )
    head = storage.get_head_version()
    if version != head:
        raise StorageRefused(
            f"the storage {redact(url)} has Optuna's table schema {version}, this Optuna needs {head}: "
            "run `optuna storage upgrade --storage URL` (or install the Optuna that made it)"
        )
    return storage


def _schema_version(url: str, engine_kwargs: dict) -> str | None:
    """The revision Optuna's tables are stamped with, or None when there are none yet (one short connection)."""
    connect_args = engine_kwargs["connect_args"]
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            if not sqlalchemy.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def _create_optuna_tables(url: str, guard: OutageGuard, engine_kwargs: dict) -> None:
    """Create Optuna's tables in an empty database, once, however many workers start together.

    Under the ``create-schema`` lock, waited for without holding a connection. The holder creates
    the tables on the lock's own connection (Optuna's table creation opens a second connection
    while one is open: on a single static connection, both are that one).
    """
    key = lock_key("create-schema")
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args=engine_kwargs["connect_args"]
    )
    pause = 0.05
    try:
        while True:
            connection = guard.call(_try_advisory_lock, engine, key)
            if connection is not None:
                try:
                    if guard.call(_schema_version, url, engine_kwargs) is None:
                        dbapi = connection.dbapi_connection
                        on_one = {"poolclass": sqlalchemy.pool.StaticPool, "creator": lambda c=dbapi: c}
                        guard.call(RDBStorage, url, engine_kwargs=on_one)
                    return
                finally:
                    connection.close()  # the server lets the lock go with its session
            if guard.call(_schema_version, url, engine_kwargs) is not None:
                return
            time.sleep(random.uniform(0.5, 1.0) * pause)
            pause = min(pause * 2, 2.0)
    finally:
        engine.dispose()


def _try_advisory_lock(engine: sqlalchemy.Engine, key: int) -> Any:
    """A new connection holding the session advisory lock ``key``, or None (and no connection)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        got = cursor.fetchone()[0]
        cursor.close()
        connection.commit()
    except BaseException:
        connection.close()
        raise
    if not got:
        connection.close()
        return None
    return connection
