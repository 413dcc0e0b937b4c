"""`ecgsearch run|worker|enqueue-thesis`: the live display around ``run_worker``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ecgsearch.analysis.results import repeats_line
from ecgsearch.analysis.seeds import is_confirm_study
from ecgsearch.errors import UserError
from ecgsearch.storage.optuna_internals import storage_backend
from ecgsearch.storage.optuna_logging import quiet_optuna
from ecgsearch.storage.storage import StorageSettings, redact, resolve_storage_url
from ecgsearch.study.definition import load_definition
from ecgsearch.study.study import SearchContext, enqueue_thesis, open_study, study_settings
from ecgsearch.study.workspace import Workspace
from ecgsearch.trials.worker_group import run_group

__all__ = ["RepeatedFailure", "StudyOptions", "enqueue", "run", "search_context"]


@dataclasses.dataclass
class StudyOptions:
    """What every study command is told: workspace, storage, definition, study name, data, seed."""

    workspace: Path
    storage: str | None
    study_def: str
    study_name: str | None
    data: str | None
    seed: int


class RepeatedFailure(UserError):
    """Trials kept failing for one reason: the worker stopped instead of failing the rest."""

    exit_code = 1


def search_context(
    options: StudyOptions,
    settings: StorageSettings | None = None,
    requested: dict[str, Any] | None = None,
    raise_total: bool = False,
) -> SearchContext:
    """Definition, workspace, storage and data of a study command; user errors end in ``error:``."""
    quiet_optuna()
    definition = load_definition(options.study_def)
    workspace = Workspace(options.workspace)
    url = resolve_storage_url(options.storage, options.workspace)
    try:
        return SearchContext.prepare(
            definition,
            workspace,
            url,
            study_name=options.study_name,
            data=options.data,
            seed=options.seed,
            settings=settings,
            requested=requested,
            raise_total=raise_total,
        )
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None


class LiveDisplay:
    """Study progress, the current trial's training, and one line per finished trial."""

    def __init__(self, console: Console, total: int, done: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        )
        self.study_task = self.progress.add_task("study trials", total=total, completed=done, status="")
        self.train_task = self.progress.add_task("training", total=None, status="", visible=False)
        self.started: dict[int, float] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "trial_start":
            self.started[event["trial"]] = time.perf_counter()
            label = f" ({event['thesis']})" if event.get("thesis") else ""
            description = f"trial {event['trial']}{label}"
            self.progress.update(
                self.train_task,
                visible=True,
                completed=0,
                total=None,
                description=description,
                status=f"{event['size_mb']:.2f} MB",
            )
        elif kind == "step":
            self.progress.update(
                self.train_task,
                completed=event["step"],
                total=event["total_steps"],
                status=f"epoch {event['epoch'] + 1}  loss {event['loss']:.4f}",
            )
        elif kind == "front_seeds":
            self.progress.update(self.train_task, status=f"near the front: training {event['seeds']} seeds")
        elif kind == "waiting":
            self.progress.update(self.train_task, status=f"same network as running trial {event['for']}: waiting")
        elif kind == "reaped":
            self.progress.console.print(
                f"failed {event['trials']} trial(s) of worker(s) that stopped beating; their retries follow",
                highlight=False,
            )
        elif kind == "lock_lost":
            self.progress.console.print(
                "the study's lock went with a lost database connection during an ask; asking again", highlight=False
            )
        elif kind == "study_waiting":
            self.progress.console.print(
                f"the study is at its total; waiting for {event['running']} trial(s) other workers run "
                "(a retry runs here if one of them dies)",
                highlight=False,
            )
        elif kind == "trial_end":
            seconds = time.perf_counter() - self.started.get(event["trial"], time.perf_counter())
            values = event.get("values")
            shown = "  ".join(f"{v:.4f}" for v in values) if values else ""
            label = f" {event['thesis']:>4}" if event.get("thesis") else "     "
            self.progress.console.print(
                f"trial {event['trial']:>4}{label}  {event.get('size_mb', float('nan')):8.3f} MB  "
                f"{event['outcome']:<18} {shown}  ({seconds:.0f} s)",
                highlight=False,
            )
            self.progress.advance(self.study_task)
            self.progress.update(self.train_task, visible=False)


def run(
    options: StudyOptions,
    *,
    requested: dict[str, Any],
    raise_total: bool,
    console: Console,
    settings: StorageSettings | None = None,
    group: tuple[int, list[str]] | None = None,
) -> int:
    """Open (or create) the study with the settings given, then run trials with a live display.

    ``group``: (K, a worker's arguments): K worker processes run the trials instead
    (``ecgsearch.trials.worker_group``), their lines interleaved; this process waits for them.
    Returns the exit code: 0, or 143 when SIGTERM stopped the worker (its trial is re-enqueued).
    """
    context = search_context(options, settings, requested, raise_total)
    study = open_study(context)
    if group is not None:
        return _run_group(context, study, group, console)
    for change in context.changes:
        console.print(f"study {context.study_name}: {change} (recorded in the study's settings_log)", highlight=False)
    chosen = study_settings(study)
    budget = "".join(f", {name} at most {value:g}" for name, value in chosen.limits.items())
    console.print(
        f"study [bold]{context.study_name}[/bold] ({context.definition.source}), {chosen.total} trials{budget}, "
        f"sampler {chosen.sampler}, storage {redact(context.storage_url)}, data {context.cache}",
        highlight=False,
    )
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state not in (TrialState.FAIL, TrialState.WAITING, TrialState.RUNNING) for t in trials)
    # A confirm study runs what `ecgsearch confirm` enqueued, not up to a total.
    total = sum(t.state != TrialState.FAIL for t in trials) if is_confirm_study(study) else chosen.total
    display = LiveDisplay(console, total, min(done, total))
    # Here, not at the top: the worker brings the training stack (torch: seconds of imports),
    # which the commands that only plan or submit never need.
    from ecgsearch.trials.worker import run_worker

    with display.progress:
        report = run_worker(context, study=study, on_event=display)
    console.print(
        f"this process ran {report.trials_run} trial(s) ({report.failed} failed)"
        + ("; stopped by SIGTERM" if report.terminated else "")
        + ("; stopped taking trials: time limit near (SIGUSR1)" if report.stopped_by_deadline else "")
        + f". Pareto front: ecgsearch pareto --study-name {context.study_name}",
        highlight=False,
    )
    console.print(f"study {context.study_name}: {repeats_line(study)}", highlight=False)
    if report.systematic_failure is not None:
        raise RepeatedFailure(
            f"{chosen.max_consecutive_failures} trials in a row failed with the same error, so this worker "
            f"stopped: {report.systematic_failure} (trial logs in {context.workspace.logs})"
        )
    return 143 if report.terminated else 0


def _run_group(context: SearchContext, study: optuna.Study, group: tuple[int, list[str]], console: Console) -> int:
    count, worker_args = group
    console.print(
        f"study {context.study_name}: {count} worker processes on this machine "
        f"(each an equal share of a GPU's memory where there is one)",
        highlight=False,
    )
    # The study exists (created above, before any worker starts: no creation race); the
    # workers open their own connections, so this process keeps none while it waits.
    engine = getattr(storage_backend(study), "engine", None)
    if engine is not None:
        engine.dispose()
    code = run_group(worker_args, count)
    console.print(
        f"{count} workers ended (exit code {code}). Pareto front: ecgsearch pareto --study-name {context.study_name}",
        highlight=False,
    )
    console.print(f"study {context.study_name}: {repeats_line(study)}", highlight=False)
    return code


def enqueue(options: StudyOptions, *, console: Console) -> None:
    """Enqueue the definition's thesis trials the study lacks, and say which."""
    context = search_context(options)
    study = open_study(context)
    added = enqueue_thesis(study, context)
    console.print(f"enqueued {len(added)} thesis trial(s): {', '.join(added) or 'all were already there'}")
