"""A worker: takes trials from one study until the study holds its trial total.

``total`` counts every trial that is not FAIL (thesis, searched, repeated, infeasible, running
and waiting ones); a failed trial is replaced by its retry. Counting and creating the next
trial happen under a database lock, released as soon as the trial exists, so any number of
workers fill a study to exactly ``total``.

On SIGUSR1 (Slurm's warning before the time limit) the worker finishes its trial and takes no
other. A crashing trial (an exception, e.g. out of memory) is recorded FAIL with its reason and
retried at most ``max_retries`` times. On SIGTERM (scancel, a Slurm time limit) the running
trial is failed and re-enqueued by the worker itself, and the worker stops.

In a confirm study (``ecgsearch.trials.confirm``) the worker runs ``ConfirmObjective`` on the enqueued
runs only.

Dead workers never block a study: before each trial, under the lock, RUNNING trials whose
heartbeat stopped for longer than the grace period are failed and their retries enqueued
(same parameters). A worker that finds the study at its total while other workers' trials
still run waits for them rather than leaving, so a retry always finds a worker; it leaves when
no trial runs. When ``max_consecutive_failures`` trials in a row fail for the same reason, the
worker stops and says why instead of burning its allocation on a loop of failures.
"""

from __future__ import annotations

import collections
import dataclasses
import signal
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from ecgnet.runner import load_data
from ecgsearch.analysis.seeds import is_confirm_study
from ecgsearch.storage.connection_guard import LockLost
from ecgsearch.storage.optuna_internals import (
    count_trials,
    set_trial_user_attr,
    storage_backend,
    trial_by_id,
    trial_row,
)
from ecgsearch.storage.retry import RetryFailedTrial
from ecgsearch.storage.storage import DatabaseLock, database_lock, lock_target
from ecgsearch.study.proposals import UnseenProposalSampler
from ecgsearch.study.study import SearchContext, enqueue_thesis, open_study, study_settings
from ecgsearch.trials.confirm import ConfirmObjective
from ecgsearch.trials.hooks import EventCallback, TrialHooks, TrialInterrupted
from ecgsearch.trials.objective import LOCK_LOST_REASON, TrialObjective
from ecgsearch.trials.pretraining_figures import calibrate_latency
from ecgsearch.trials.signals import ignore_unraisable, install_time_warning_handler, time_warning
from ecgsearch.trials.worker_group import claim_gpu_share

__all__ = ["WorkerReport", "run_worker"]

# How long a full study's worker waits between looks at trials other workers are running: from
# a second (the last trials of a study often end within it) growing to ten (a long wait costs the
# database one look per worker every ten seconds).
FIRST_WAIT_POLL_SECONDS = 1.0
MAX_WAIT_POLL_SECONDS = 10.0
WAIT_POLL_GROWTH = 1.5


@dataclasses.dataclass
class WorkerReport:
    """What one worker did, for the command line's summary and exit code."""

    trials_run: int = 0
    failed: int = 0
    terminated: bool = False
    stopped_by_deadline: bool = False
    reaped: int = 0  # trials of dead workers this worker failed (their retries follow)
    lock_losses: int = 0  # asks started over because the ask lock went with its connection
    systematic_failure: str | None = None  # the reason shared by the failures that stopped it


def _fill_state(study: optuna.Study, total: int, *, enqueued_only: bool = False) -> str:
    """``open`` (a trial to run), ``full`` (done: ``total`` trials, none running) or ``wait``.

    ``wait``: the study is at its total but other workers still run trials; one of them may die,
    and its retry must find a worker, so this one waits instead of leaving. ``enqueued_only``
    (a confirm study): only enqueued trials are run, none is sampled to reach the total.
    """
    # One read of the study (Optuna's cache layer fetches only trials that changed), counted here.
    states = collections.Counter(t.state for t in study.get_trials(deepcopy=False))
    if states[TrialState.WAITING]:
        return "open"  # enqueued trials (thesis, retries) are asked for, not created
    if not enqueued_only and sum(states.values()) - states[TrialState.FAIL] < total:
        return "open"
    return "wait" if states[TrialState.RUNNING] else "full"


def _reap_dead_trials(study: optuna.Study) -> int:
    """Fail the RUNNING trials whose worker stopped beating; Optuna's callback enqueues their retries."""
    before = count_trials(study, TrialState.FAIL)
    optuna.storages.fail_stale_trials(study)
    return count_trials(study, TrialState.FAIL) - before


def run_worker(
    context: SearchContext,
    *,
    study: optuna.Study | None = None,
    on_event: EventCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    objective_class: type[TrialObjective] | None = None,
) -> WorkerReport:
    """Run trials in this process until the study holds its total (or a stop is asked).

    Total, limits, sampler and heartbeat come from the study's settings (``open_study``); pass
    ``study`` when the caller opened it already (one storage, one connection pool).
    ``on_event`` receives progress events; ``should_stop`` is asked before each trial (a True
    ends the worker as a near time limit does). ``objective_class`` trains each trial:
    ``TrialObjective``, or ``ConfirmObjective`` in a confirm study, by default.

    A trial's failure never raises here: it is recorded, retried and counted in the report.
    SIGTERM fails the running trial, queues its retry and ends the worker; SIGUSR1 lets the
    trial finish and ends it.
    """
    return _Worker(context, study or open_study(context), on_event, should_stop, objective_class).run()


class _Worker:
    """One worker's state; ``run`` is its loop: ask a trial under the lock, run it, count it.

    The ask lock's scope: reaping dead trials, counting, creating the trial and sampling its
    network. The objective lets it go (``TrialHooks.release_lock``) before anything else; lost
    mid-ask, the ask starts over.
    """

    def __init__(
        self,
        context: SearchContext,
        study: optuna.Study,
        on_event: EventCallback | None,
        should_stop: Callable[[], bool] | None,
        objective_class: type[TrialObjective] | None,
    ) -> None:
        self.context, self.study = context, study
        self.on_event = on_event or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.settings = settings = study_settings(study)
        self.confirming = is_confirm_study(study)
        if settings.thesis:
            enqueue_thesis(study, context, list(context.definition.fixed_trials)[: settings.total])
        data = load_data(context.data_spec, context.definition.training)
        self.backend = storage_backend(study)
        self.lock = DatabaseLock(
            lock_target(study, context.storage_url), f"ask:{study.study_name}", reacquire_on_loss=False
        )
        self.in_trial = self.terminate = False
        self.current_trial: optuna.Trial | None = None
        self.retries_queued: set[int] = set()
        hooks = TrialHooks(
            on_event=self.on_event,
            trial_started=self._trial_started,
            release_lock=self._release_lock,
            interrupted=lambda: self.terminate,
            queue_retry=self._queue_retry,
        )
        objective_class = objective_class or (ConfirmObjective if self.confirming else TrialObjective)
        self.objective = objective_class(
            context,
            data,
            context.data_spec,
            limits=settings.limits,
            latency_calibration=self._latency_calibration(len(data.classes)),
            hooks=hooks,
        )
        self.report = WorkerReport()
        self.recent_failures: list[str] = []
        self.max_poll = max(FIRST_WAIT_POLL_SECONDS, min(float(settings.heartbeat_interval), MAX_WAIT_POLL_SECONDS))
        self.poll = FIRST_WAIT_POLL_SECONDS
        self.waiting_shown = False

    def _latency_calibration(self, num_classes: int):
        definition = self.context.definition
        if "latency_ms" not in {o.metric for o in definition.objectives} | set(self.settings.limits):
            return None
        # Under the lock: workers starting together agree on the study's reference latency.
        with database_lock(lock_target(self.study, self.context.storage_url), self.lock.name):
            return calibrate_latency(self.study, num_classes, definition.latency_samples, definition.latency_runs)

    def _trial_started(self, trial: optuna.Trial) -> None:
        self.current_trial = trial

    def _release_lock(self) -> None:
        self.in_trial = True
        held = self.lock.held_seconds
        self.lock.release()
        self.on_event({"event": "ask_lock_released", "held_seconds": held})

    def _queue_retry(self, trial: optuna.Trial) -> None:
        """A SIGTERM'd trial's retry: free, and queued before the FAIL is recorded."""
        RetryFailedTrial(self.settings.max_retries)(self.study, trial_row(self.study, trial), counts=False)
        self.retries_queued.add(trial.number)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # A second SIGTERM (Slurm signals every process of a task, and a worker group forwards
        # its own) must not interrupt the first one's retry bookkeeping.
        already = self.terminate
        self.terminate = True
        if self.in_trial and not already:
            raise TrialInterrupted("SIGTERM")  # in the main thread: Optuna fails the running trial

    def run(self) -> WorkerReport:
        # Slurm's --signal=USR1@T: the time limit is T seconds away; finish the trial, take no more.
        install_time_warning_handler()
        claim_gpu_share()
        previous_handlers = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_sigterm)}
        # The handler's exception can land in a finalizer or a weakref callback, where Python drops
        # it with an "Exception ignored" traceback; the flag it set stops the trial at its next check.
        restore_unraisable_hook = ignore_unraisable(TrialInterrupted)
        try:
            while not self.terminate:
                if time_warning.is_set() or self.should_stop():
                    self.report.stopped_by_deadline = True
                    break
                step = self._ask_and_run()
                if step == "full" or (step == "ran" and self._count_trial()):
                    break
            # A SIGTERM after the trial's last check: that trial stands, and the worker stops.
            self.report.terminated = self.report.terminated or self.terminate
        finally:
            self.lock.close()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            restore_unraisable_hook()
        return self.report

    def _ask_and_run(self) -> str:
        """Take the lock, reap dead trials, and run one trial if the study has room.

        ``ran`` (a trial ran, whatever its outcome), ``full`` (the study is done), ``again``
        (waited for running trials, or the ask started over after a lost lock).
        """
        study, report = self.study, self.report
        self.backend.asked_trial_id = None
        self.current_trial = None
        try:
            # The study is read before the lock is taken: under it, Optuna's cache layer then
            # fetches only the trials that changed meanwhile (the first read of 10,000 trials takes
            # most of a minute, which every other worker would wait out).
            trials = study.get_trials(deepcopy=False)
            if isinstance(study.sampler, UnseenProposalSampler):
                study.sampler.remember(trials)
            self.lock.acquire()
            reaped = _reap_dead_trials(study)
            report.reaped += reaped
            if reaped:
                self.on_event({"event": "reaped", "trials": reaped})
            fill = _fill_state(study, self.settings.total, enqueued_only=self.confirming)
            if fill != "open":
                self.lock.release()
                if fill == "full":
                    return "full"
                if not self.waiting_shown:
                    self.on_event({"event": "study_waiting", "running": count_trials(study, TrialState.RUNNING)})
                    self.waiting_shown = True
                time.sleep(self.poll)
                self.poll = min(self.poll * WAIT_POLL_GROWTH, self.max_poll)
                return "again"
            self.waiting_shown = False
            self.poll = FIRST_WAIT_POLL_SECONDS
            study.optimize(self.objective, n_trials=1, catch=(Exception,))
        except TrialInterrupted:
            report.terminated = True
        except LockLost:
            # The lock went with its connection mid-ask: another worker may have asked since, so
            # this ask's count is stale. A trial it already made is failed and queued again (free).
            report.lock_losses += 1
            self.on_event({"event": "lock_lost"})
            if self.backend.asked_trial_id is not None and self.current_trial is None:
                _abandon_trial(study, self.backend.asked_trial_id, self.context, self.settings.max_retries)
            return "again"
        finally:
            self.in_trial = False
            if self.lock.held:
                self.lock.release()
        return "again" if self.current_trial is None else "ran"

    def _count_trial(self) -> bool:
        """Count the trial just run; True when failures in a row for one reason should stop the worker."""
        report, settings = self.report, self.settings
        report.trials_run += 1
        # One trial's row, not the whole study: this runs after every trial.
        frozen = trial_row(self.study, self.current_trial)
        if frozen.state != TrialState.FAIL:
            self.recent_failures.clear()
            return False
        report.failed += 1
        reason = frozen.user_attrs.get("fail_reason", "unknown")
        stopped_by_sigterm = report.terminated or self.terminate
        lock_lost = reason == LOCK_LOST_REASON
        # A trial stopped by SIGTERM or by a lost lock did nothing wrong: its retry does not
        # count toward the limit.
        _record_failure(
            self.study,
            frozen,
            self.context,
            settings.max_retries,
            counts=not (stopped_by_sigterm or lock_lost),
            queued=frozen.number in self.retries_queued,
        )
        if lock_lost:
            report.lock_losses += 1
            self.on_event({"event": "lock_lost"})
        if stopped_by_sigterm or lock_lost:
            return False
        self.recent_failures.append(reason)
        recent = self.recent_failures[-settings.max_consecutive_failures :]
        if len(self.recent_failures) >= settings.max_consecutive_failures and len(set(recent)) == 1:
            report.systematic_failure = reason
            return True
        return False


def _record_failure(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    context: SearchContext,
    max_retries: int,
    *,
    counts: bool,
    queued: bool = False,
) -> None:
    """Enqueue a failed trial's retry (at most ``max_retries`` counted ones; ``queued``: done already)
    and log why it failed."""
    if not queued:
        RetryFailedTrial(max_retries)(study, trial, counts=counts)
    log = context.workspace.logs / f"{context.study_name}-trial-{trial.number}.log"
    with open(log, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} FAIL: {trial.user_attrs.get('fail_reason', 'unknown')}\n")


def _abandon_trial(study: optuna.Study, trial_id: int, context: SearchContext, max_retries: int) -> None:
    """Fail a trial this worker created but never ran, and queue it again without counting a retry."""
    trial = trial_by_id(study, trial_id)
    if trial.state != TrialState.RUNNING:
        return
    set_trial_user_attr(study, trial, "fail_reason", LOCK_LOST_REASON)
    study.tell(trial.number, state=TrialState.FAIL)
    _record_failure(study, trial_row(study, trial), context, max_retries, counts=False)
