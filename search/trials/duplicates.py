"""A trial whose network a finished or running trial already trains: which one it repeats."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from ecgsearch.storage.optuna_internals import trials_just_read
from ecgsearch.trials.hooks import TrialHooks, TrialInterrupted

__all__ = ["DUPLICATE_POLL_SECONDS", "wait_for_duplicate"]

DUPLICATE_POLL_SECONDS = 2.0


def wait_for_duplicate(
    trial: optuna.Trial, key: str, hooks: TrialHooks | None = None
) -> optuna.trial.FrozenTrial | None:
    """A finished (else a stopped) trial with the same key, waiting while an earlier one still runs.

    Start time, not trial number, decides who trains: a retry keeps the number it was given
    when enqueued, so it can start after a higher-numbered trial that proposed the same
    network. Both sides read the same stored start times, so exactly one of them waits.
    """
    hooks = hooks or TrialHooks()
    study = trial.study
    mine = (trial.datetime_start, trial.number)
    first_look = True
    while True:
        if hooks.interrupted():
            raise TrialInterrupted("SIGTERM")
        # The first look reuses the trials the sampler read moments ago, in this ask, instead
        # of reading every trial again; waiting for a running duplicate reads fresh ones.
        trials = trials_just_read(study, fresh=not first_look)
        first_look = False
        same = [
            t for t in trials if t.user_attrs.get("identity", {}).get("config_key") == key and t.number != trial.number
        ]
        # A finished network's result first; else one stopped at a rung (not trained again).
        done = [t for t in same if t.state == TrialState.COMPLETE and t.user_attrs.get("trained")]
        done = done or [t for t in same if t.state == TrialState.PRUNED]
        if done:
            return min(done, key=lambda t: t.number)
        running = [t for t in same if t.state == TrialState.RUNNING and (t.datetime_start, t.number) < mine]
        if not running:
            return None
        hooks.on_event({"event": "waiting", "trial": trial.number, "for": running[0].number})
        time.sleep(DUPLICATE_POLL_SECONDS)
        # The trial waited for may belong to a dead worker, and every other worker may be
        # waiting too: fail it here once its heartbeat is stale (its retry is enqueued).
        optuna.storages.fail_stale_trials(study)
