"""Errors the command line reports as one ``error: ...`` line and an exit code instead of a traceback."""

from __future__ import annotations

from ecgnet.errors import InputError

__all__ = ["InputError", "UserError"]


class UserError(Exception):
    """Ends a command with one ``error: ...`` line and ``exit_code``.

    By default a mistake the user can correct (a flag, a study setting, a name; exit 2), the
    message saying which and how. Subclasses for what no input of the user's fixes set
    ``exit_code = 1`` (the database stayed unreachable, trials kept failing for one reason).
    """

    exit_code = 2
