"""What a worker and the trial it runs tell each other: progress, the lock, a stop request."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optuna

__all__ = ["EventCallback", "TrialHooks", "TrialInterrupted"]

EventCallback = Callable[[dict[str, Any]], None]


class TrialInterrupted(KeyboardInterrupt):
    """The worker was told to stop mid-trial (SIGTERM): the trial fails and is retried."""


def _ignore(*args: Any) -> None:
    return None


def _never() -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class TrialHooks:
    """What a worker and the objective tell each other during a trial (defaults: an objective
    run alone, e.g. by ``study.optimize`` in a test or a notebook)."""

    # Progress: trial start and end, epochs, waits (the live display, the benchmarks' counters).
    on_event: EventCallback = _ignore
    # The trial this call runs, as soon as it starts (the worker reads its outcome afterwards).
    trial_started: Callable[[optuna.Trial], None] = _ignore
    # The trial exists and its network is chosen: the worker lets the study's ask lock go.
    release_lock: Callable[[], None] = _ignore
    # Whether the worker was told to stop (SIGTERM): checked between epochs and while waiting.
    interrupted: Callable[[], bool] = _never
    # Queue a SIGTERM'd trial's retry, before Optuna records its failure.
    queue_retry: Callable[[optuna.Trial], None] = _ignore
