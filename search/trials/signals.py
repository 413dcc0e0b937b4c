"""Signals: Slurm's time-limit warning (SIGUSR1), and quiet interrupts inside finalizers.

Python's default action for SIGUSR1 is to end the process, and Slurm may send the warning
early: the handler is installed before anything slow is imported.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ignore_unraisable", "install_time_warning_handler", "time_warning"]

time_warning = threading.Event()


def _note(signum: int, frame: Any) -> None:
    time_warning.set()


def install_time_warning_handler() -> None:
    """Note SIGUSR1 in ``time_warning`` instead of letting it end the process."""
    signal.signal(signal.SIGUSR1, _note)


def ignore_unraisable(kind: type[BaseException]) -> Callable[[], None]:
    """Drop, without a word, an exception of ``kind`` that Python cannot raise; returns the undo.

    A signal handler's exception raised while a finalizer or weakref callback runs cannot
    propagate: Python prints "Exception ignored in ..." and a traceback. Any other such
    exception still goes to the hook installed before.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, kind):
            previous(unraisable)

    def restore() -> None:
        sys.unraisablehook = previous

    sys.unraisablehook = hook
    return restore
