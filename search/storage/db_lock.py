"""Locks every process sharing one study agrees on, held without a connection of their own.

PostgreSQL: a session-level advisory lock taken on the storage's one connection, which stays
open (pinned) while the lock is held; the holder's storage calls run on that same connection,
so holding a lock never needs a second one. Waiting holds no connection at all: the waiter
tries (``pg_try_advisory_lock``) and lets its connection go between tries, with growing jittered
pauses, so waiters cannot use up a connection budget the holder needs. A wait that lasts says
what it waits for (the holder's application name and since when), and gives up after
``wait_timeout``.

If the pinned connection is lost while the lock is held (a database restart, a network cut),
the server has let the lock go and another process may take it. The next storage call notices
(its connection is not the pinned one) and raises ``LockLost`` before it runs: a lock made with
``reacquire_on_loss`` is taken again and the call goes on; otherwise the caller decides (the
worker's ask lock: the ask starts over, see ``ecgsearch.trials.worker``). When Optuna's heartbeat
thread is the first to notice (the ask has ended and the trial's network is chosen), the lock
is only marked lost: the trial goes on, and the objective's duplicate check covers a network
another worker may have chosen meanwhile.

SQLite: ``flock`` on a file beside the database (SQLite studies are shared only by processes
of one machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy
from sqlalchemy.engine import make_url

from ecgsearch.storage.connection_guard import StorageUnavailable

if TYPE_CHECKING:
    from ecgsearch.storage.storage import ResilientRDBStorage

__all__ = ["DatabaseLock", "database_lock", "lock_key"]


# A wait this long gets a line naming the holder; one this long ends the wait with an error.
WAIT_REPORT_SECONDS = 30.0
WAIT_TIMEOUT_SECONDS = 1800.0
_FIRST_PAUSE, _LONGEST_PAUSE = 0.02, 1.0


def lock_key(name: str) -> int:
    """The advisory-lock key every process derives from the lock's name (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class DatabaseLock:
    """A lock named ``name`` on the study storage; acquire/release may span calls (see the module)."""

    def __init__(
        self,
        target: ResilientRDBStorage | str,
        name: str,
        *,
        reacquire_on_loss: bool = True,
        wait_timeout: float = WAIT_TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self.reacquire_on_loss = reacquire_on_loss
        self.wait_timeout = wait_timeout
        digest = hashlib.sha256(name.encode()).digest()
        self._key = lock_key(name)
        self._held = False
        self._acquired_at = 0.0
        self._file = None
        url = make_url(target if isinstance(target, str) else str(target.engine.url))
        self._sqlite = url.get_backend_name() == "sqlite"
        if self._sqlite:
            self._path = Path(f"{url.database}.{digest.hex()[:12]}.lock")
        elif isinstance(target, str):
            raise ValueError("a PostgreSQL lock is taken through the study's storage, not a URL")
        else:
            self.storage = target

    @property
    def held(self) -> bool:
        """Whether this process holds the lock now (False once it was lost)."""
        return self._held

    @property
    def held_seconds(self) -> float:
        """How long the lock has been held (0 when it is not)."""
        return time.monotonic() - self._acquired_at if self._held else 0.0

    def acquire(self) -> None:
        """Wait until this process holds the lock."""
        if self._sqlite:
            self._acquire_file()
            self._acquired_at = time.monotonic()
            return
        started = time.monotonic()
        reported = False
        pause = _FIRST_PAUSE
        while not self.storage.guard.call(self._try_once):
            waited = time.monotonic() - started
            if waited > self.wait_timeout:
                raise StorageUnavailable(
                    f"waited {waited:.0f} s for the database lock {self.name!r}, held by {self._holder()}; "
                    "that process may be stuck: end it (its lock goes with its connection)"
                )
            if not reported and waited > WAIT_REPORT_SECONDS:
                self.storage.guard.log(
                    f"waiting {waited:.0f} s for the database lock {self.name!r}, held by {self._holder()}"
                )
                reported = True
            time.sleep(random.uniform(0.5, 1.0) * pause)
            pause = min(pause * 2, _LONGEST_PAUSE)
        self._held = True
        self._acquired_at = time.monotonic()

    def _try_once(self) -> bool:
        with self.storage.engine.connect() as connection:
            got = connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
            connection.commit()
            if got:
                self.storage.pin(self, connection.connection.dbapi_connection)
        return bool(got)

    def _holder(self) -> str:
        high, low = (self._key >> 32) & 0xFFFFFFFF, self._key & 0xFFFFFFFF
        query = sqlalchemy.text(
            "SELECT a.application_name, a.pid, a.backend_start FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :high "
            "AND l.objid = :low AND l.objsubid = 1"
        )
        with contextlib.suppress(Exception):
            row = self.storage.guard.call(self._query_one, query, {"high": high, "low": low})
            if row is not None:
                return f"{row[0] or 'a client'} (server pid {row[1]}, connected since {row[2]:%Y-%m-%d %H:%M:%S})"
        return "another process"

    def _query_one(self, query: sqlalchemy.TextClause, params: dict) -> tuple | None:
        with self.storage.engine.connect() as connection:
            return connection.execute(query, params).first()

    def release(self) -> None:
        """Let the lock go; a lost connection has already let it go on the server."""
        if not self._held:
            return
        self._held = False
        if self._sqlite:
            # Removed while still locked, so no lock file outlives the command: a waiter that
            # opened this file finds it unlinked once it gets the lock, and opens a new one.
            self._path.unlink(missing_ok=True)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
            return
        self.storage.guard.call(self._release_once)

    def _release_once(self) -> None:
        pinned = self.storage.unpin(self)
        if pinned is None:
            return  # lost with its connection (the server let it go)
        with self.storage.engine.connect() as connection:
            if connection.connection.dbapi_connection is pinned:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                connection.commit()

    def lost(self) -> None:
        """Called by the storage when the lock's connection is gone."""
        self._held = False

    def close(self) -> None:
        """Release the lock if held."""
        self.release()

    def _acquire_file(self) -> None:
        while True:
            lock_file = open(self._path, "a")  # held until release()
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                if os.fstat(lock_file.fileno()).st_ino == os.stat(self._path).st_ino:
                    break  # the file at the path, not one its last holder removed
            except FileNotFoundError:
                pass
            lock_file.close()
        self._file = lock_file
        self._held = True


@contextlib.contextmanager
def database_lock(target: ResilientRDBStorage | str, name: str) -> Iterator[None]:
    """Hold the lock ``name`` (shared by every process on this storage) for the block."""
    lock = DatabaseLock(target, name)
    lock.acquire()
    try:
        yield
    finally:
        lock.close()
