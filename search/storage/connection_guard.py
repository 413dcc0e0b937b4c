"""How one process talks to the study database: one call at a time, through outages and connection limits.

Three kinds of connection failure, told apart by the driver's message:

- **refused for good** (a wrong password, user or database): ``StorageRefused`` at once;
- **refused for a limit** (the role's or database's ``CONNECTION LIMIT``, the server's
  ``max_connections``): the process waits its turn with jittered backoff, with no clock running
  out (others are making progress with the connections there are), and says once which limit
  was hit and what to change (then at most once every ten minutes);
- **an outage** (the server is down or restarting, the connection dropped): retried with backoff
  for ``outage_timeout`` seconds, with one line when it starts and one when it ends; a database
  that stays down longer ends the worker (``StorageUnavailable``).

Calls from all threads of a process (the main thread, Optuna's heartbeat thread) take turns
(``call_lock``), so a process never needs a second connection for a second thread.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy.engine import make_url

from ecgsearch.errors import UserError

__all__ = ["LockLost", "OutageGuard", "StorageRefused", "StorageUnavailable", "connection_error", "limit_hit", "redact"]

T = TypeVar("T")

# Connection errors that waiting cannot cure: a wrong password, user or database name.
_PERMANENT = (
    "authentication failed",
    "no password supplied",
    "does not exist",
    "permission denied",
    "pg_hba.conf",
    "could not translate host name",
    "unable to open database file",
)
# PostgreSQL's refusals for a connection limit, and which limit each names.
_LIMITS = {
    "too many connections for role": "role",
    "too many connections for database": "database",
    "sorry, too many clients already": "server",
    "remaining connection slots are reserved": "server",
}
_WHAT_TO_CHANGE = {
    "role": "raise the role's limit (ALTER ROLE ... CONNECTION LIMIT n) or run fewer workers",
    "database": "raise the database's limit (ALTER DATABASE ... CONNECTION LIMIT n) or run fewer workers",
    "server": "raise the server's max_connections or run fewer workers",
}
# Refusals for a limit come and go while many workers share it: one line for the first, then at
# most one this often, however many waits there were in between.
LIMIT_REMINDER_SECONDS = 600.0


class StorageUnavailable(UserError):
    """The database stayed unreachable for longer than the outage bound."""

    exit_code = 1


class StorageRefused(UserError):
    """The database refused the connection for a reason waiting cannot fix (e.g. a wrong password)."""


class LockLost(Exception):
    """The connection that held a database lock was lost while the lock was held (see ``ecgsearch.storage.db_lock``)."""

    def __init__(self, lock: Any) -> None:
        super().__init__(f"the database lock {lock.name!r} was lost with its connection")
        self.lock = lock


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparseable storage URL>"


def connection_error(exc: BaseException) -> BaseException | None:
    """The driver's connection error behind ``exc`` (Optuna wraps it in StorageInternalError), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return current.orig if current.orig is not None else current
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return current.orig if current.orig is not None else current
        # A driver's own error, unwrapped (a raw connection's connect): by PEP 249's class names.
        if not isinstance(current, sqlalchemy.exc.SQLAlchemyError) and any(
            cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(current).__mro__
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def limit_hit(message: str) -> str | None:
    """Which connection limit (``role``, ``database``, ``server``) refused a connection, or None."""
    return next((kind for marker, kind in _LIMITS.items() if marker in message), None)


def _first_line(exc: BaseException) -> str:
    # The driver's own message: it names host and port, never the password (SQLAlchemy's
    # str() would add the statement and its parameters).
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class OutageGuard:
    """Runs database calls one at a time, through outages and connection limits (see the module).

    ``after_call`` (set by the storage) runs after each outermost call, still in turn: the
    storage uses it to let an idle connection go.
    """

    def __init__(self, url: str, timeout: float, log: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.log = log or _log_to_stderr
        self.call_lock = threading.RLock()
        self.after_call: Callable[[], None] | None = None
        self._state_lock = threading.Lock()
        self._depth = threading.local()
        self._outage_since: float | None = None
        self.outages = 0
        self.last_recovery: float | None = None  # time.monotonic() when the last outage ended
        self.limit_refusals = 0  # connections refused for a limit, in all
        self._limit_logged_at: float | None = None

    def call(
        self, function: Callable[..., T], *args: Any, on_retry: Callable[[], None] | None = None, **kwargs: Any
    ) -> T:
        """``function(*args, **kwargs)``, retried through outages and limits (see the module)."""
        delay = 0.5
        limit_delay = 0.2
        while True:
            try:
                result = self._call_in_turn(function, *args, **kwargs)
            except LockLost as lost:
                if not lost.lock.reacquire_on_loss:
                    raise
                lost.lock.acquire()  # waits its turn like any acquire, then the call runs again
                continue
            except Exception as exc:
                cause = connection_error(exc)
                if cause is None:
                    raise
                message = _first_line(cause)
                if any(marker in message for marker in _PERMANENT):
                    raise StorageRefused(f"cannot use the storage {redact(self.url)}: {message}") from None
                if on_retry is not None:
                    with contextlib.suppress(Exception):
                        on_retry()
                kind = limit_hit(message)
                if kind is not None:
                    self._note_limit(kind, message)
                    # Full jitter: workers refused together do not come back together.
                    time.sleep(random.uniform(0.5, 1.0) * limit_delay)
                    limit_delay = min(limit_delay * 2, 5.0)
                    continue
                self._note_failure(message)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._note_success()
            return result

    def _call_in_turn(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.call_lock:
            depth = getattr(self._depth, "value", 0)
            self._depth.value = depth + 1
            try:
                return function(*args, **kwargs)
            finally:
                self._depth.value = depth
                if depth == 0 and self.after_call is not None:
                    self.after_call()

    @property
    def in_outage(self) -> bool:
        """Whether the last call found the database unreachable."""
        return self._outage_since is not None

    def _note_limit(self, kind: str, message: str) -> None:
        now = time.monotonic()
        with self._state_lock:
            self.limit_refusals += 1
            if self._limit_logged_at is not None and now - self._limit_logged_at < LIMIT_REMINDER_SECONDS:
                return
            self._limit_logged_at = now
        self.log(
            f"the database's {kind} connection limit is reached ({message}); waiting for a free connection. "
            f"Each worker needs one connection while it talks to the database and none while it trains; "
            f"to wait less, {_WHAT_TO_CHANGE[kind]}"
        )

    def _note_failure(self, message: str) -> None:
        now = time.monotonic()
        with self._state_lock:
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
        with self._state_lock:
            if self._outage_since is not None:
                self.log(f"database reachable again after {time.monotonic() - self._outage_since:.0f} s")
                self._outage_since = None
                self.last_recovery = time.monotonic()


def _log_to_stderr(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} storage: {message}\n")
    sys.stderr.flush()
