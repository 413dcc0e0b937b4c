"""Retrying a failed trial: the same parameters, enqueued, at most N times.

Optuna's ``RetryHeartbeatStaleTrialCallback`` copies every user attribute of the failed trial
into its retry, so a retry that then completes would still carry ``fail_reason`` and the dead
attempt's history and log path. Ours carries over only what names the trial (its thesis
experiment, or the network and seed of a confirmation run) and the retry chain
(``failed_trial``: the first attempt; ``retry_history``: every failed attempt), which is where
Optuna's retry rule and the dashboard look.

Only failures the trial may have caused count toward the limit (``retry_count``): a crash, or
a worker that died (out of memory kills the worker). A trial stopped by SIGTERM (scancel, a
time limit) did nothing wrong, so its retry is free.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecgsearch.trial_record import INHERITED_BY_RETRY

__all__ = ["RetryFailedTrial", "retried_trials"]


class RetryFailedTrial:
    """Enqueue a failed trial again (usable as RDBStorage's heartbeat_stale_trial_callback)."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial, *, counts: bool = True) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        count = trial.system_attrs.get("retry_count", len(history) - 1) + int(counts)
        if count > self.max_retry:
            return
        system_attrs: dict[str, Any] = {
            "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
            "retry_history": history,
            "retry_count": count,
        }
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k in INHERITED_BY_RETRY}
        study.add_trial(
            optuna.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=user_attrs,
                system_attrs=system_attrs,
            )
        )


def retried_trials(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials some later trial retries."""
    return {number for t in trials for number in t.system_attrs.get("retry_history", [])}
