"""`ecgsearch run|worker|enqueue-thesis`: the live display around ``run_worker``."""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ecgsearch.definition import DefinitionError, load_definition
from ecgsearch.storage import StorageSettings, redact, resolve_storage_url
from ecgsearch.study import SearchContext, StudyMismatchError, enqueue_thesis, open_study
from ecgsearch.worker import run_worker
from ecgsearch.workspace import Workspace

__all__ = ["StudyOptions", "enqueue", "quiet_optuna", "run", "search_context"]


@dataclasses.dataclass
class StudyOptions:
    workspace: Path
    storage: str | None
    study_def: str
    study_name: str | None
    data: str | None
    seed: int


def quiet_optuna() -> None:
    """Our display replaces Optuna's per-trial log lines and experimental-feature warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def search_context(options: StudyOptions, settings: StorageSettings | None = None) -> SearchContext:
    quiet_optuna()
    try:
        definition = load_definition(options.study_def)
    except DefinitionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    workspace = Workspace(options.workspace)
    url = resolve_storage_url(options.storage, options.workspace)
    try:
        return SearchContext.prepare(definition, workspace, url, study_name=options.study_name,
                                     data=options.data, seed=options.seed, settings=settings)  # fmt: skip
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


class LiveDisplay:
    """Study progress, the current trial's training, and one line per finished trial."""

    def __init__(self, console: Console, total: int, done: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=console,
        )  # fmt: skip
        self.study_task = self.progress.add_task("study trials", total=total, completed=done, status="")
        self.train_task = self.progress.add_task("training", total=None, status="", visible=False)
        self.started: dict[int, float] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "trial_start":
            self.started[event["trial"]] = time.perf_counter()
            label = f" ({event['thesis']})" if event.get("thesis") else ""
            description = f"trial {event['trial']}{label}"
            self.progress.update(self.train_task, visible=True, completed=0, total=None,
                                 description=description, status=f"{event['size_mb']:.2f} MB")  # fmt: skip
        elif kind == "step":
            self.progress.update(self.train_task, completed=event["step"], total=event["total_steps"],
                                 status=f"epoch {event['epoch'] + 1}  loss {event['loss']:.4f}")  # fmt: skip
        elif kind == "waiting":
            self.progress.update(self.train_task, status=f"same network as running trial {event['for']}: waiting")
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
    trials: int | None,
    sampler: str | None,
    max_mb: float | None,
    thesis: bool,
    console: Console,
    settings: StorageSettings | None = None,
) -> None:
    context = search_context(options, settings)
    total = trials or context.definition.default_trials
    console.print(
        f"study [bold]{context.study_name}[/bold] ({context.definition.source}), {total} trials, "
        f"storage {redact(context.storage_url)}, data {context.cache}",
        highlight=False,
    )
    try:
        study = open_study(context)
    except StudyMismatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    done = sum(t.state != optuna.trial.TrialState.FAIL for t in study.get_trials(deepcopy=False))
    display = LiveDisplay(console, total, min(done, total))
    with display.progress:
        report = run_worker(context, total, sampler_name=sampler, max_mb=max_mb, thesis=thesis, on_event=display)
    console.print(
        f"this process ran {report.trials_run} trial(s) ({report.failed} failed)"
        + ("; stopped by SIGTERM" if report.terminated else "")
        + ("; stopped taking trials: time limit near (SIGUSR1)" if report.stopped_by_deadline else "")
        + f". Pareto front: ecgsearch pareto --study-name {context.study_name}",
        highlight=False,
    )
    if report.terminated:
        raise typer.Exit(143)


def enqueue(options: StudyOptions, *, console: Console) -> None:
    context = search_context(options)
    try:
        study = open_study(context)
    except StudyMismatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    added = enqueue_thesis(study, context)
    console.print(f"enqueued {len(added)} thesis trial(s): {', '.join(added) or 'all were already there'}")
