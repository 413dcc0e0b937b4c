"""A worker: takes trials from one study until the study holds its trial total.

``total`` counts every trial that is not FAIL (thesis, searched, repeated, infeasible, running
and waiting ones); a failed trial is replaced by its retry. Counting and creating the next
trial happen under a database lock, released as soon as the trial exists, so any number of
workers fill a study to exactly ``total``.

On SIGUSR1 (Slurm's warning before the time limit) the worker finishes its trial and takes no
other. A crashing trial (an exception, e.g. out of memory) is recorded FAIL with its reason and
retried at most ``max_retries`` times. On SIGTERM (scancel, a Slurm time limit) the running
trial is failed and re-enqueued by the worker itself, and the worker stops; a worker killed
outright is caught by Optuna's heartbeat, whose callback retries its trial.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from ecgnet.runner import DataSpec, load_data
from ecgsearch.objective import EventCallback, TrialInterrupted, TrialObjective
from ecgsearch.signals import install_time_warning_handler, time_warning
from ecgsearch.storage import DatabaseLock
from ecgsearch.study import SearchContext, create_sampler, enqueue_thesis, open_study

__all__ = ["WorkerReport", "data_spec_of", "run_worker", "worker_seed"]


@dataclasses.dataclass
class WorkerReport:
    trials_run: int = 0
    failed: int = 0
    terminated: bool = False
    stopped_by_deadline: bool = False


def worker_seed(seed: int) -> int:
    """Each worker's own sampler seed, derived from the run's seed and where the worker runs."""
    where = f"{seed}:{socket.gethostname()}:{os.environ.get('SLURM_ARRAY_TASK_ID', '')}:{os.getpid()}"
    return int.from_bytes(hashlib.sha256(where.encode()).digest()[:4], "big")


def data_spec_of(context: SearchContext) -> DataSpec:
    data = context.definition.data
    return DataSpec(
        cache=str(context.cache),
        split_dir=data.get("split_dir"),
        test=data.get("test", "cpsc"),
        folds=int(data.get("folds", 5)),
        fold=int(data.get("fold", 0)),
        split_seed=int(data.get("split_seed", 0)),
        class_set=data.get("class_set", "thesis17"),
        max_train_records=data.get("max_train_records"),
    )


def _study_is_full(study: optuna.Study, total: int) -> bool:
    # Counting queries, not a load of every trial: this runs under the lock before each trial.
    storage, study_id = study._storage, study._study_id
    if storage.get_n_trials(study_id, TrialState.WAITING):
        return False  # enqueued trials (thesis, retries) are asked for, not created
    return storage.get_n_trials(study_id) - storage.get_n_trials(study_id, TrialState.FAIL) >= total


def run_worker(
    context: SearchContext,
    total: int,
    *,
    sampler_name: str | None = None,
    max_mb: float | None = None,
    thesis: bool = True,
    on_event: EventCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    objective_class: type[TrialObjective] = TrialObjective,
) -> WorkerReport:
    """Run trials in this process until the study holds ``total`` trials (or a stop is asked)."""
    sampler = create_sampler(context.definition, sampler_name, worker_seed(context.seed))
    study = open_study(context, sampler=sampler)
    if thesis:
        enqueue_thesis(study, context, list(context.definition.fixed_trials)[:total])
    spec = data_spec_of(context)
    data = load_data(spec, window=context.definition.training.window, seed=context.definition.training.seed)
    lock = DatabaseLock(context.storage_url, f"ask:{study.study_name}")
    state = {"in_trial": False, "terminate": False}

    def release_lock() -> None:
        state["in_trial"] = True
        lock.release()

    objective = objective_class(context, data, spec, max_mb=max_mb, on_event=on_event, before_trial=release_lock,
                                interrupted=lambda: state["terminate"])  # fmt: skip
    report = WorkerReport()

    def on_sigterm(signum: int, frame: Any) -> None:
        state["terminate"] = True
        if state["in_trial"]:
            raise TrialInterrupted("SIGTERM")  # in the main thread: Optuna fails the running trial

    # Slurm's --signal=USR1@T: the time limit is T seconds away; finish the trial, take no more.
    install_time_warning_handler()
    previous_handlers = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    try:
        while not state["terminate"]:
            if time_warning.is_set() or (should_stop is not None and should_stop()):
                report.stopped_by_deadline = True
                break
            lock.acquire()
            if _study_is_full(study, total):
                lock.release()
                break
            objective.current_trial = None
            try:
                study.optimize(objective, n_trials=1, catch=(Exception,))
            except TrialInterrupted:
                report.terminated = True
            finally:
                state["in_trial"] = False
                if lock.held:
                    lock.release()
            if objective.current_trial is None:
                continue
            report.trials_run += 1
            # One trial's row, not the whole study: this runs after every trial.
            frozen = study._storage.get_trial(objective.current_trial._trial_id)
            if frozen.state == TrialState.FAIL:
                report.failed += 1
                _record_failure(study, frozen, context)
        # A SIGTERM after the trial's last check: that trial stands, and the worker stops.
        report.terminated = report.terminated or state["terminate"]
    finally:
        lock.close()
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    return report


def _record_failure(study: optuna.Study, trial: optuna.trial.FrozenTrial, context: SearchContext) -> None:
    """Enqueue a failed trial's retry (Optuna's retry rule, at most N times) and log why it failed."""
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=context.settings.max_retries)(study, trial)
    log = context.workspace.logs / f"{context.study_name}-trial-{trial.number}.log"
    with open(log, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} FAIL: {trial.user_attrs.get('fail_reason', 'unknown')}\n")
