"""Where studies live: URL resolution, Optuna RDB storage that rides out outages, and locks.

Precedence: ``--storage URL``, then ``ECGSEARCH_STORAGE``, then SQLite in the workspace. A
PostgreSQL password comes from the URL in the environment, PGPASSWORD or ~/.pgpass (libpq reads
both when the URL has none); it is never printed: show URLs with ``redact``.

Outages: every storage call and lock that loses its connection (a database restart, a failover)
is retried with backoff for ``outage_timeout`` seconds, with one log line when the outage starts
and one when it ends; only a database that stays down longer ends the worker
(``StorageUnavailable``). A refused login is not an outage: it fails at once (``StorageRefused``).

Connections: each worker process holds at most three: the storage pool (one, plus one
overflow for Optuna's heartbeat thread) and one lock connection, so PostgreSQL's default
``max_connections`` (100) fits about 30 workers.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from ecgsearch.errors import UserError
from ecgsearch.retry import RetryFailedTrial

__all__ = [
    "STORAGE_ENV",
    "DatabaseLock",
    "OutageGuard",
    "ResilientRDBStorage",
    "StorageRefused",
    "StorageSettings",
    "StorageUnavailable",
    "database_lock",
    "open_storage",
    "redact",
    "resolve_storage_url",
]

STORAGE_ENV = "ECGSEARCH_STORAGE"
T = TypeVar("T")

# Connection errors that waiting cannot cure: a wrong password, user or database name.
_PERMANENT = ("authentication failed", "no password supplied", "does not exist", "permission denied",
              "pg_hba.conf", "could not translate host name", "unable to open database file")  # fmt: skip


class StorageUnavailable(UserError):
    """The database stayed unreachable for longer than the outage bound."""

    exit_code = 1


class StorageRefused(UserError):
    """The database refused the connection for a reason waiting cannot fix (e.g. a wrong password)."""


class StorageSettings:
    """Heartbeat, retry and outage settings (shorter in tests; defaults suit real training).

    With the defaults a worker that died is noticed 90 s after its last heartbeat, so its trial
    is failed and retried within about two minutes.
    """

    def __init__(self, heartbeat_interval: int = 30, grace_period: int = 90, max_retries: int = 2,
                 outage_timeout: float = 600.0) -> None:  # fmt: skip
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


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparseable storage URL>"


def _connection_error(exc: BaseException) -> BaseException | None:
    """The driver's connection error behind ``exc`` (Optuna wraps it in StorageInternalError), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return current.orig if current.orig is not None else current
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return current.orig if current.orig is not None else current
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    # The driver's own message: it names host and port, never the password (SQLAlchemy's
    # str() would add the statement and its parameters).
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class OutageGuard:
    """Runs database calls, retrying through a lost connection for a bounded time.

    Shared by all threads of a process (the main thread and Optuna's heartbeat thread), so one
    outage gives one line when it starts and one when it ends.
    """

    def __init__(self, url: str, timeout: float, log: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.log = log or _log_to_stderr
        self._lock = threading.Lock()
        self._outage_since: float | None = None
        self.outages = 0
        self.last_recovery: float | None = None  # time.monotonic() when the last outage ended

    def call(self, function: Callable[..., T], *args: Any, on_retry: Callable[[], None] | None = None,
             **kwargs: Any) -> T:  # fmt: skip
        """``function(*args, **kwargs)``, retried while the database is unreachable (see the class)."""
        delay = 0.5
        while True:
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                cause = _connection_error(exc)
                if cause is None:
                    raise
                message = _first_line(cause)
                if any(marker in message for marker in _PERMANENT):
                    raise StorageRefused(f"cannot use the storage {redact(self.url)}: {message}") from None
                self._note_failure(message)
                if on_retry is not None:
                    with contextlib.suppress(Exception):
                        on_retry()
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._note_success()
            return result

    @property
    def in_outage(self) -> bool:
        """Whether the last call found the database unreachable."""
        return self._outage_since is not None

    def _note_failure(self, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self._outage_since is None:
                self._outage_since = now
                self.outages += 1
                self.log(f"database unreachable ({message}); retrying for up to {self.timeout:.0f} s")
            elif now - self._outage_since > self.timeout:
                raise StorageUnavailable(
                    f"the storage {redact(self.url)} has been unreachable for {now - self._outage_since:.0f} s "
                    f"(more than the {self.timeout:.0f} s allowed): {message}"
                )

    def _note_success(self) -> None:
        if self._outage_since is None:
            return
        with self._lock:
            if self._outage_since is not None:
                self.log(f"database reachable again after {time.monotonic() - self._outage_since:.0f} s")
                self._outage_since = None
                self.last_recovery = time.monotonic()


def _log_to_stderr(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} storage: {message}\n")
    sys.stderr.flush()


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDBStorage whose every call rides out a database outage (see ``OutageGuard``)."""

    def __init__(self, url: str, *, guard: OutageGuard, **kwargs: Any) -> None:
        self.guard = guard
        # The constructor connects (creates tables, checks the schema version): retried too.
        guard.call(RDBStorage.__init__, self, url, **kwargs)

    def configure_heartbeat(self, interval: int, grace_period: int, max_retries: int) -> None:
        """Use the study's heartbeat settings (known only once the study is read)."""
        self.heartbeat_interval = interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = RetryFailedTrial(max_retries)
        self.failed_trial_callback = self.heartbeat_stale_trial_callback

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # No heartbeat reached the database during an outage: right after one, every running
        # trial looks dead. Judge staleness only once a grace period of beats has been possible.
        since = self.guard.last_recovery
        if self.guard.in_outage or (since is not None and time.monotonic() - since < (self.grace_period or 0)):
            return []
        return self.guard.call(RDBStorage._get_stale_trial_ids, self, study_id, on_retry=self.scoped_session.remove)

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

        return self.guard.call(once, on_retry=self.scoped_session.remove)


# The storage calls Optuna (and its cache layer) makes; each is retried through an outage.
_RETRIED = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
            "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
            "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
            "_create_new_trial", "_set_trial_param", "get_trial_param", "set_trial_intermediate_value",
            "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
            "get_trial", "_get_trials", "_get_best_trial_id", "record_heartbeat")  # fmt: skip


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self.guard.call(method, self, *args, on_retry=self.scoped_session.remove, **kwargs)

    return call


for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retried(_name))


def open_storage(url: str, settings: StorageSettings | None = None) -> ResilientRDBStorage:
    """The study storage for ``url``, with heartbeats and outage retries from ``settings``."""
    settings = settings or StorageSettings()
    if make_url(url).get_backend_name() == "sqlite":
        # Several local processes share one SQLite file: wait for locks instead of failing.
        engine_kwargs: dict = {"connect_args": {"timeout": 60}}
    else:
        # One connection for the main thread, one overflow for the heartbeat thread.
        engine_kwargs = {"pool_size": 1, "max_overflow": 1, "pool_pre_ping": True, "pool_recycle": 1800}
    guard = OutageGuard(url, settings.outage_timeout)
    # Optuna creates its tables on first use; workers starting together would race to do it.
    with database_lock(url, "create-schema", guard=guard):
        return ResilientRDBStorage(
            url,
            guard=guard,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            heartbeat_stale_trial_callback=RetryFailedTrial(settings.max_retries),
        )


class DatabaseLock:
    """A lock all processes sharing one study agree on; acquire/release may span calls.

    PostgreSQL: a session-level advisory lock on a dedicated connection, reconnected after an
    outage (the server drops a lost session's locks itself). SQLite: ``flock`` on a file beside
    the database (SQLite studies are shared only by processes of one machine).
    """

    def __init__(self, url: str, name: str, guard: OutageGuard | None = None) -> None:
        self._key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        parsed = make_url(url)
        self._engine = None
        self._file = None
        self._guard = guard or OutageGuard(url, StorageSettings().outage_timeout)
        self._session: sqlalchemy.Connection | None = None
        self._held = False
        if parsed.get_backend_name() == "sqlite":
            self._path = Path(f"{parsed.database}.{hashlib.sha256(name.encode()).hexdigest()[:12]}.lock")
        else:
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)

    def acquire(self) -> None:
        """Block until this process holds the lock (reconnecting through an outage)."""
        if self._engine is None:
            self._file = open(self._path, "a")  # held until release()
            fcntl.flock(self._file, fcntl.LOCK_EX)
            self._held = True
            return
        self._guard.call(self._acquire_once, on_retry=self._drop_session)
        self._held = True

    def _acquire_once(self) -> None:
        # One connection for the lock's lifetime: a worker takes it before every trial.
        if self._session is None:
            self._session = self._engine.connect()
        self._session.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        self._session.commit()

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                session.invalidate()
            with contextlib.suppress(Exception):
                session.close()

    def release(self) -> None:
        """Let the lock go; a lost connection has already let it go on the server."""
        if not self._held:
            return
        self._held = False
        if self._engine is None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
            return
        try:
            self._session.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._session.commit()
        except Exception as exc:
            if _connection_error(exc) is None:
                raise
            # The connection is gone, and with it the server-side lock: nothing left to release.
            self._drop_session()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now."""
        return self._held

    def close(self) -> None:
        """Release the lock and close its connection."""
        self.release()
        self._drop_session()


@contextlib.contextmanager
def database_lock(url: str, name: str, guard: OutageGuard | None = None) -> Iterator[None]:
    """Hold the lock ``name`` (shared by every process on this storage) for the block."""
    lock = DatabaseLock(url, name, guard)
    lock.acquire()
    try:
        yield
    finally:
        lock.close()
