"""Slurm's time-limit warning (SIGUSR1), noted from the moment the command line starts.

Python's default action for SIGUSR1 is to end the process, and Slurm may send the warning
early: the handler is installed before anything slow is imported.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["install_time_warning_handler", "time_warning"]

time_warning = threading.Event()


def _note(signum: int, frame: Any) -> None:
    time_warning.set()


def install_time_warning_handler() -> None:
    """Note SIGUSR1 in ``time_warning`` instead of letting it end the process."""
    signal.signal(signal.SIGUSR1, _note)
