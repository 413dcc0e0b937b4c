"""The one error type for input a user can fix (a file, a record, a setting).

Its message names the file or setting and the problem; command lines print it as one
``error: ...`` line instead of a traceback.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input: a missing, truncated or malformed file, or a value out of range."""
