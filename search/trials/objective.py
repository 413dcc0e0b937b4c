"""What one trial does: size first, budget check, duplicate check, train, record, upload.

Size, MACs, CPU latency and int8 size are known before training
(``ecgsearch.trials.pretraining_figures``), so a trial over a limit (``--max-mb``, ``--max
latency_ms=5``) is marked infeasible with ``Trial.set_constraint`` and never trained (it
reports chance-level AUROC, 0.5, which the samplers ignore for infeasible trials). A trial
whose network and training equal a finished trial's takes that trial's values and records
which trial it repeats; one equal to a trial still RUNNING waits for it (the one that started
first trains), never trains in parallel.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ecgnet.runner import DataSpec, LoadedData, RunOutcome, export_outcome, reseeded, train_and_evaluate
from ecgnet.train import StopHook
from ecgnet.train_config import TrainConfig
from ecgsearch.metric_table import INT8_PREFIX, UNTRAINED
from ecgsearch.storage.connection_guard import LockLost
from ecgsearch.storage.optuna_internals import trials_just_read
from ecgsearch.study.early_stopping import rung_decision
from ecgsearch.study.front_seeds import near_front
from ecgsearch.study.study import WORKER_ID, SearchContext
from ecgsearch.trial_record import (
    REUSED_BY_REPEAT,
    RUNG_ATTR_PREFIX,
    THESIS_ATTR,
    config_key,
    constraint_name,
    is_trained,
    mean_record,
    result_record,
    trained_figures,
)
from ecgsearch.trials.duplicates import wait_for_duplicate
from ecgsearch.trials.hooks import TrialHooks, TrialInterrupted
from ecgsearch.trials.pretraining_figures import LatencyCalibration, pretraining_figures

__all__ = ["LOCK_LOST_REASON", "TrialObjective", "rung_metric"]

# A trial failed because the study's lock went with its connection while its network was chosen.
LOCK_LOST_REASON = "the study's lock was lost during the ask; queued again"
ARTIFACT_FILES = ("model.pt", "model.json")
# Figures recorded as their own user attributes when measured (size_mb always is).
EDGE_FIGURES = {"macs", "latency_ms", "int8_size_mb"}


def rung_metric(metric: str) -> str:
    """The epoch-history figure that stands for validation ``metric`` at a rung.

    An int8 figure is measured once, after training; at a rung its fp32 twin stands in, for
    every trial alike, so rankings at a rung stay comparable.
    """
    return metric.removeprefix(INT8_PREFIX) if metric.startswith(INT8_PREFIX) else metric.removeprefix("val_")


class TrialObjective:
    """The objective function of the study (callable with an ``optuna.Trial``).

    ``limits``: metric to the largest value a feasible trial may have (the study's settings).
    """

    def __init__(
        self,
        context: SearchContext,
        data: LoadedData,
        data_spec: DataSpec,
        *,
        limits: dict[str, float] | None = None,
        latency_calibration: LatencyCalibration | None = None,
        hooks: TrialHooks | None = None,
    ) -> None:
        self.context = context
        self.data = data
        self.data_spec = data_spec
        self.limits = dict(limits or {})
        self.latency_calibration = latency_calibration
        self.hooks = hooks or TrialHooks()
        self.on_event = self.hooks.on_event
        self.artifact_store = optuna.artifacts.FileSystemArtifactStore(str(context.workspace.artifacts))
        self.current_trial: optuna.Trial | None = None

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        self.current_trial = trial
        self.hooks.trial_started(trial)
        try:
            # Optuna samples a trial's parameters lazily, at its first suggestion: they are chosen
            # here, while the worker still holds the study's lock, so that no two workers turn
            # their proposals into the same network (ecgsearch.study.proposals).
            trial.relative_params  # noqa: B018
        except LockLost:
            trial.set_user_attr("fail_reason", LOCK_LOST_REASON)
            raise
        self.hooks.release_lock()
        try:
            values = self._run(trial)
            self._stop_if_interrupted()
            return values
        except optuna.TrialPruned:
            raise  # stopped at a rung: PRUNED, not failed (its record is set where it stopped)
        except BaseException as exc:
            # KeyboardInterrupt covers the worker's SIGTERM: the trial fails and is retried.
            reason = "worker terminated (SIGTERM)" if isinstance(exc, KeyboardInterrupt) else repr(exc)
            trial.set_user_attr("fail_reason", reason[:500])
            if isinstance(exc, KeyboardInterrupt):
                # Queued before Optuna records the failure: a worker counting the study between the
                # two would find a place free and make one trial too many (seen in a Slurm test).
                self.hooks.queue_retry(trial)
            self.on_event({"event": "trial_end", "trial": trial.number, "outcome": f"FAIL: {reason[:200]}"})
            raise

    def _stop_if_interrupted(self) -> None:
        # A signal handler's exception can land inside a finalizer (a garbage-collection
        # callback), where Python prints and drops it; the flag it set is checked here too.
        if self.hooks.interrupted():
            raise TrialInterrupted("SIGTERM")

    def _network(self, trial: optuna.Trial):
        """The trial's network (its parameters suggested: chosen now, under the ask lock)."""
        params = self.context.definition.space.suggest(trial)
        return self.context.definition.space.arch_of(params, num_classes=len(self.data.classes)).canonical()

    def _start(self, trial: optuna.Trial, arch, *, identity: dict[str, Any], shown: dict[str, Any] | None = None):
        """Record the figures known before training and the trial's identity; announce the trial.

        Returns the figures and the event fields every later event of this trial repeats.
        """
        figures = self._pretraining_figures(trial, arch)
        trial.set_user_attr("identity", {**identity, "worker": WORKER_ID, "params": int(figures["params"])})
        event = {"trial": trial.number, "thesis": trial.user_attrs.get(THESIS_ATTR), "size_mb": figures["size_mb"]}
        self.on_event({"event": "trial_start", **event, "arch": arch.to_dict(), **(shown or {})})
        return figures, event

    def _finish(
        self,
        trial: optuna.Trial,
        outcome: RunOutcome,
        record: dict[str, Any],
        figures: dict[str, float],
        event: dict[str, Any],
        outcome_text: str,
    ) -> tuple[float, ...]:
        """Record a trained network's ``result`` (``record``), keep its model (``outcome``'s),
        announce the end; returns the values the trial reports."""
        trial.set_user_attr("result", record)
        trial.set_user_attr("trained", True)
        self._upload(trial, outcome)
        values = self._values({**figures, **trained_figures(record)})
        self.on_event({"event": "trial_end", **event, "outcome": outcome_text, "values": values})
        return values

    def _scored(self, outcome: RunOutcome) -> dict[str, Any]:
        """A trained run's ``result_record``, with int8 figures when an objective names one."""
        return result_record(outcome, self._int8_scores(outcome))

    def _front_seeds(
        self, trial: optuna.Trial, arch, figures: dict[str, float], record: dict[str, Any]
    ) -> dict[int, dict[str, Any]]:
        """Under ``[seeds] front = N``: the records of N - 1 more seeds when the first run comes
        near the current front (``front_seeds.near_front``), else none."""
        settings, definition = self.context.definition.front_seeds, self.context.definition
        if not settings.active:
            return {}
        directions = [o.direction for o in definition.objectives]
        point = self._values({**figures, **trained_figures(record)})
        others = [
            t.values
            for t in trials_just_read(trial.study, fresh=True)
            if t.number != trial.number and is_trained(t) and t.values
        ]
        noisy = [o.metric.startswith("val_") for o in definition.objectives]
        if not near_front(point, others, directions, noisy, settings.margin):
            return {}
        self.on_event({"event": "front_seeds", "trial": trial.number, "seeds": settings.front})
        records = {}
        for k in range(1, settings.front):
            training = dataclasses.replace(definition.training, seed=definition.training.seed + k)
            records[training.seed] = self._scored(self._train(trial, arch, training=training, keep_history=False))
        return records

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        definition = self.context.definition
        arch = self._network(trial)
        key = config_key(arch.to_dict(), definition.training.to_dict(), self.data_spec.to_dict())
        figures, event = self._start(trial, arch, identity={"config_key": key})

        over = []
        for name, limit in self.limits.items():
            trial.set_constraint(constraint_name(name), figures[name] - limit)
            if figures[name] > limit:
                over.append(f"{name} {figures[name]:.4g} is over the limit of {limit:g}")
        if over:
            trial.set_user_attr("trained", False)
            trial.set_user_attr("infeasible", "; ".join(over))
            self.on_event({"event": "trial_end", **event, "outcome": "infeasible"})
            return self._values({**figures, **UNTRAINED})

        repeated = wait_for_duplicate(trial, key, self.hooks)
        if repeated is not None and repeated.state == TrialState.PRUNED and self._protected(trial):
            repeated = None  # E1-E18 run their full budget, whatever was stopped before
        if repeated is not None and repeated.state == TrialState.PRUNED:
            # A network stopped at a rung is not trained again, and never passes for a finished one.
            reason = f"repeats trial {repeated.number}, which was stopped early"
            trial.set_user_attr("stopped", {"repeats_stopped_trial": repeated.number, "reason": reason})
            trial.set_user_attr("trained", False)
            self.on_event({"event": "trial_end", **event, "outcome": "stopped (repeat)"})
            raise optuna.TrialPruned(reason)
        if repeated is not None:
            for name, value in repeated.user_attrs.items():
                if name in REUSED_BY_REPEAT:
                    trial.set_user_attr(name, value)
            trial.set_user_attr("repeats_trial", repeated.number)
            trial.set_user_attr("trained", False)
            self.on_event(
                {
                    "event": "trial_end",
                    **event,
                    "outcome": f"repeats trial {repeated.number}",
                    "values": tuple(repeated.values),
                }
            )
            return tuple(repeated.values)

        outcome = self._train(trial, arch, should_stop=self._rung_check(trial, figures))
        if outcome.result.stopped_early:
            epochs = len(outcome.result.history)
            trial.set_user_attr(
                "stopped", {"rung": epochs, "epochs_trained": epochs, "reason": outcome.result.stopped_early}
            )
            trial.set_user_attr("trained", False)
            self.on_event({"event": "trial_end", **event, "outcome": f"stopped at rung {epochs}"})
            raise optuna.TrialPruned(outcome.result.stopped_early)
        record = self._scored(outcome)
        more = self._front_seeds(trial, arch, figures, record)
        if more:
            record = mean_record({definition.training.seed: record, **more})
        trial.set_user_attr("val_micro_auroc", record["val"]["micro_auroc"])
        trial.set_user_attr("test_micro_auroc", record["test"]["micro_auroc"])
        return self._finish(
            trial, outcome, record, figures, event, f"trained, mean of {len(more) + 1} seeds" if more else "trained"
        )

    def _pretraining_figures(self, trial: optuna.Trial, arch) -> dict[str, float]:
        """Size, params and MACs, and the costlier figures an objective or a limit names, recorded on the trial.

        MACs (a pass through a zeroed copy, about 0.1 s) are always recorded, so that reading a
        study needs no network built; latency and int8 size cost an export and timed runs, a quantization:
        measured only when named.
        """
        definition = self.context.definition
        wanted = {o.metric for o in definition.objectives} | set(self.limits) | {"macs"}
        if any(metric.startswith(INT8_PREFIX) for metric in wanted):
            # Quantize the untrained network first: a structure the quantizer cannot take then
            # fails in a second, not after training (and again in every retry).
            wanted.add("int8_size_mb")
        figures, notes = pretraining_figures(
            arch,
            wanted,
            calibration=self.latency_calibration,
            samples=definition.latency_samples,
            runs=definition.latency_runs,
        )
        # Every attribute is one database round trip: the figures a user sorts by stand alone,
        # the rest is grouped.
        trial.set_user_attr("size_mb", figures["size_mb"])
        for name in sorted(EDGE_FIGURES & wanted):
            trial.set_user_attr(name, figures[name])
        if notes:
            trial.set_user_attr("measured", notes)
        return figures

    def _int8_scores(self, outcome: RunOutcome) -> dict[str, float] | None:
        """The trained network's int8 validation figures, when an objective names one (else None).

        A quantization and a pass over the validation records: done only when asked for.
        """
        if not any(o.metric.startswith(INT8_PREFIX) for o in self.context.definition.objectives):
            return None
        from ecgnet.int8 import int8_scores  # onnx: over a second to import, for int8 objectives only

        result = outcome.result
        return int8_scores(result.model, self.data.train, self.data.val, self.data.classes, result.thresholds)

    def _values(self, figures: dict[str, float]) -> tuple[float, ...]:
        values = tuple(float(figures[o.metric]) for o in self.context.definition.objectives)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"objective values {values} are not finite (e.g. a validation set without positives)")
        return values

    def _protected(self, trial: optuna.Trial) -> bool:
        """Whether ``[early_stopping]`` spares this trial (a thesis configuration, by default)."""
        settings = self.context.definition.early_stopping
        return settings is not None and settings.protect_thesis and trial.user_attrs.get(THESIS_ATTR) is not None

    def _rung_check(self, trial: optuna.Trial, figures: dict[str, float]) -> StopHook | None:
        """The trainer's stop hook under ``[early_stopping]``: record this trial at each rung, then rank it.

        Every trial records its objectives at a rung (user attribute ``rung_<epoch>``), protected
        thesis trials too, so that they count in others' rankings; only unprotected ones stop.
        The ranking reads every trial's record afresh (running, finished and stopped ones; not
        failed attempts, whose retries record their own).
        """
        settings = self.context.definition.early_stopping
        if settings is None:
            return None
        objectives = self.context.definition.objectives
        directions = tuple(o.direction for o in objectives)
        protected = self._protected(trial)

        bracket = settings.bracket(trial.number)
        # A protected trial records every rung: it is a reference in every bracket's rankings.
        rungs = settings.rungs if protected else settings.rungs_of(trial.number)

        def check(entry: dict[str, Any]) -> str | None:
            epoch = entry["epoch"]
            if epoch not in rungs:
                return None
            point = [
                float(entry[rung_metric(o.metric)] if o.metric.startswith("val_") else figures[o.metric])
                for o in objectives
            ]
            if not all(math.isfinite(v) for v in point):
                return None
            key = f"{RUNG_ATTR_PREFIX}{epoch}"
            trial.set_user_attr(key, point)
            if protected:
                return None
            recorded = {
                t.number: tuple(t.user_attrs[key])
                for t in trials_just_read(trial.study, fresh=True)
                if key in t.user_attrs
                and t.state != TrialState.FAIL
                and (settings.bracket(t.number) == bracket or self._protected(t))
            }
            recorded[trial.number] = tuple(point)
            decision = rung_decision(
                trial.number, recorded, directions, eta=settings.eta, min_trials=settings.min_trials
            )
            return None if decision.proceed else f"stopped at rung {epoch}: {decision.reason}"

        return check

    def _train(
        self,
        trial: optuna.Trial,
        arch,
        *,
        training: TrainConfig | None = None,
        should_stop: StopHook | None = None,
        keep_history: bool = True,
    ) -> RunOutcome:
        """Train ``arch`` (``training``: another seed's), logging each epoch; ``keep_history``:
        the epochs are the trial's ``history`` (its first seed's)."""
        log_path = self.context.workspace.logs / f"{self.context.study_name}-trial-{trial.number}.log"
        trial.set_user_attr("log", str(log_path))
        history: list[dict[str, Any]] = []
        with open(log_path, "a") as log:
            log.write(f"trial {trial.number} arch {json.dumps(arch.to_dict())}\n")

            def on_progress(event: dict[str, Any]) -> None:
                self._stop_if_interrupted()
                if event["event"] == "epoch" and keep_history:
                    history.append({k: v for k, v in event.items() if k != "event"})
                    # Per-epoch metrics go to user attributes: trial.report is unavailable in
                    # multi-objective studies.
                    trial.set_user_attr("history", history)
                if event["event"] == "epoch":
                    log.write(json.dumps(event) + "\n")
                    log.flush()
                self.on_event({**event, "trial": trial.number})

            outcome = self._train_run(arch, training or self.context.definition.training, on_progress, should_stop)
            log.write(f"done in {outcome.result.seconds:.1f} s\n")
        return outcome

    def _train_run(
        self, arch, training: TrainConfig, progress: Callable[[dict[str, Any]], None], should_stop: StopHook | None
    ) -> RunOutcome:
        # Another seed draws its own training crops too (as `train --seeds` does).
        data = (
            self.data if training.seed == self.context.definition.training.seed else reseeded(self.data, training.seed)
        )
        return train_and_evaluate(arch, data, training, progress=progress, should_stop=should_stop)

    def _upload(self, trial: optuna.Trial, outcome) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            # No ONNX: a trial keeps model.pt and model.json (ARTIFACT_FILES), from which `export`
            # writes the ONNX file; exporting it here cost 0.2-0.8 s a trial (2 s the first time).
            model_dir = export_outcome(
                outcome,
                Path(tmp) / "model",
                self.data,
                self.data_spec,
                self.context.definition.training,
                onnx=False,
                trial=trial.number,
                study=self.context.study_name,
            )
            self.upload_files(trial, model_dir)

    def upload_files(self, trial: optuna.Trial, model_dir: Path) -> None:
        """Store model.pt and model.json as the trial's artifacts."""
        artifacts = {
            name: optuna.artifacts.upload_artifact(
                artifact_store=self.artifact_store, file_path=str(model_dir / name), study_or_trial=trial
            )
            for name in ARTIFACT_FILES
        }
        trial.set_user_attr("artifacts", artifacts)
