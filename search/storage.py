"""Where studies live: URL resolution, Optuna RDB storage with heartbeats, and locks.

Precedence: ``--storage URL``, then ``ECGSEARCH_STORAGE``, then SQLite in the workspace. A
PostgreSQL password comes from the URL in the environment, PGPASSWORD or ~/.pgpass (libpq reads
both when the URL has none); it is never printed: show URLs with ``redact``.

Pools: each worker process holds one RDBStorage (pool_size + max_overflow connections) plus one
heartbeat connection, and one lock connection; with the defaults a worker needs at most 4
connections, so 32 workers fit in 130 and PostgreSQL's default max_connections (100) needs
raising for more than ~24 workers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

__all__ = ["STORAGE_ENV", "StorageSettings", "database_lock", "open_storage", "redact", "resolve_storage_url"]

STORAGE_ENV = "ECGSEARCH_STORAGE"


class StorageSettings:
    """Heartbeat and retry settings (shorter in tests; defaults suit real training)."""

    def __init__(self, heartbeat_interval: int = 60, grace_period: int = 180, max_retries: int = 2) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retries = max_retries


def resolve_storage_url(cli_url: str | None, workspace: Path) -> str:
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


def open_storage(url: str, settings: StorageSettings | None = None) -> optuna.storages.RDBStorage:
    settings = settings or StorageSettings()
    if make_url(url).get_backend_name() == "sqlite":
        # Several local processes share one SQLite file: wait for locks instead of failing.
        engine_kwargs: dict = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_size": 2, "max_overflow": 1, "pool_pre_ping": True, "pool_recycle": 1800}
    # Optuna creates its tables on first use; workers starting together would race to do it.
    with database_lock(url, "create-schema"):
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=settings.max_retries
            ),
        )


class DatabaseLock:
    """A lock all processes sharing one study agree on; acquire/release may span calls.

    PostgreSQL: a session-level advisory lock on a dedicated connection. SQLite: ``flock`` on a
    file beside the database (SQLite studies are shared only by processes of one machine).
    """

    def __init__(self, url: str, name: str) -> None:
        self._key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        parsed = make_url(url)
        self._engine = None
        self._file = None
        if parsed.get_backend_name() == "sqlite":
            self._path = Path(f"{parsed.database}.{hashlib.sha256(name.encode()).hexdigest()[:12]}.lock")
        else:
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
            self._session: sqlalchemy.Connection | None = None
            self._connection: sqlalchemy.Connection | None = None

    def acquire(self) -> None:
        if self._engine is not None:
            # One connection for the lock's lifetime: a worker takes it before every trial.
            if self._session is None:
                self._session = self._engine.connect()
            self._session.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
            self._session.commit()
            self._connection = self._session
        else:
            self._file = open(self._path, "a")  # held until release()
            fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._engine is not None and self._connection is not None:
            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._connection.commit()
            self._connection = None
        elif self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @property
    def held(self) -> bool:
        return self._connection is not None if self._engine is not None else self._file is not None

    def close(self) -> None:
        self.release()
        if self._engine is not None and self._session is not None:
            self._session.close()
            self._session = None


@contextlib.contextmanager
def database_lock(url: str, name: str) -> Iterator[None]:
    lock = DatabaseLock(url, name)
    lock.acquire()
    try:
        yield
    finally:
        lock.close()
