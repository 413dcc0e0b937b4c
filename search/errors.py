"""Errors the command line reports as one ``error: ...`` line (exit 2) instead of a traceback."""

from __future__ import annotations

from ecgnet.errors import InputError

__all__ = ["InputError", "UserError"]


class UserError(Exception):
    """A mistake the user can correct (a flag, a study setting, a name): the message says which and how."""
