"""`ecgsearch slurm submit|status`: the study prepared before the array starts, then sbatch."""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path

import optuna
import typer
from rich.console import Console

from ecgsearch.run_commands import StudyOptions, search_context
from ecgsearch.slurm_jobs import JobSpec, render_script, slurm_status, storage_file_problem, submit_script
from ecgsearch.storage import STORAGE_ENV, redact
from ecgsearch.study import StudyMismatchError, enqueue_thesis, open_study

__all__ = ["status", "submit"]


def _storage_url(storage_file: Path | None) -> str | None:
    if storage_file is None:
        return os.environ.get(STORAGE_ENV)
    problem = storage_file_problem(str(storage_file))
    if problem:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    return storage_file.read_text().strip()


def submit(options: StudyOptions, spec: JobSpec, *, storage_file: Path | None, thesis: bool, dry_run: bool,
           console: Console) -> None:  # fmt: skip
    url = _storage_url(storage_file)
    if url is None and not dry_run:
        typer.echo(f"error: workers need a shared storage: set {STORAGE_ENV} or give --storage-file", err=True)
        raise typer.Exit(2)
    context = search_context(dataclasses.replace(options, storage=url))
    spec = dataclasses.replace(spec, data=str(context.cache), study_name=context.study_name,
                               storage_file=str(storage_file.resolve()) if storage_file else None)  # fmt: skip
    script = render_script(spec)
    if dry_run:
        typer.echo(script)
        return
    try:
        study = open_study(context)
    except StudyMismatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    added = enqueue_thesis(study, context, list(context.definition.fixed_trials)[: spec.trials]) if thesis else []
    try:
        job_id, path = submit_script(script, Path(options.workspace), context.study_name)
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    console.print(
        f"study {context.study_name} on {redact(context.storage_url)}: {len(added)} thesis trial(s) enqueued; "
        f"submitted {path} as job {job_id} ({spec.workers} tasks)",
        highlight=False,
    )
    typer.echo(job_id)


def status(job_id: str | None, study_name: str, storage_file: Path | None, *, console: Console) -> None:
    if job_id:
        tasks = slurm_status(job_id)
        for task in tasks:
            console.print(f"task {task['task']:<14} {task['state']:<10} {task['elapsed']:>10}  {task['reason']}",
                          highlight=False)  # fmt: skip
        if not tasks:
            console.print(f"job {job_id}: no task is queued or running (all ended)")
    url = _storage_url(storage_file)
    if url is None:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=url)
    counts = collections.Counter(t.state.name for t in study.get_trials(deepcopy=False))
    total = study.user_attrs.get("definition", {}).get("default_trials")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    workers = collections.Counter(t.user_attrs.get("identity", {}).get("worker", "?") for t in complete)
    console.print(f"study {study_name}: " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
                  + (f" (definition's default total {total})" if total else ""), highlight=False)  # fmt: skip
    console.print(f"completed trials per worker: {dict(workers)}", highlight=False)
