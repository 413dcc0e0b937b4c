"""`ecgsearch slurm submit|status`: the study prepared before the array starts, then sbatch."""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from ecgsearch.analysis.seeds import is_confirm_study
from ecgsearch.commands.run import StudyOptions, search_context
from ecgsearch.commands.slurm_jobs import JobSpec, render_script, slurm_status, storage_file_problem, submit_script
from ecgsearch.errors import UserError
from ecgsearch.storage.optuna_internals import trial_summaries
from ecgsearch.storage.optuna_logging import quiet_optuna
from ecgsearch.storage.storage import STORAGE_ENV, open_storage, redact
from ecgsearch.study.settings import SETTINGS_ATTR
from ecgsearch.study.study import enqueue_thesis, open_study, study_settings

__all__ = ["status", "submit"]


def _storage_url(storage_file: Path | None) -> str | None:
    if storage_file is None:
        return os.environ.get(STORAGE_ENV)
    problem = storage_file_problem(str(storage_file))
    if problem:
        raise UserError(problem)
    return storage_file.read_text().strip()


def submit(
    options: StudyOptions,
    spec: JobSpec,
    *,
    storage_file: Path | None,
    requested: dict[str, Any],
    raise_total: bool,
    dry_run: bool,
    console: Console,
) -> None:
    """Create the study with its settings, enqueue E1-E18, then submit the worker array (or print it)."""
    url = _storage_url(storage_file)
    if url is None and not dry_run:
        raise UserError(f"workers need a shared storage: set {STORAGE_ENV} or give --storage-file")
    if url is not None and options.study_name and _is_confirm_study(url, options.study_name):
        # `ecgsearch confirm --no-run` made it: its workers run what it enqueued, whatever the total.
        requested, raise_total = {}, False
    context = search_context(dataclasses.replace(options, storage=url), requested=requested, raise_total=raise_total)
    spec = dataclasses.replace(
        spec,
        data=str(context.cache),
        study_name=context.study_name,
        storage_file=str(storage_file.resolve()) if storage_file else None,
    )
    script = render_script(spec)
    if dry_run:
        print(script)
        return
    study = open_study(context)
    settings = study_settings(study)
    added = (
        enqueue_thesis(study, context, list(context.definition.fixed_trials)[: settings.total])
        if settings.thesis
        else []
    )
    try:
        job_id, path = submit_script(script, Path(options.workspace), context.study_name)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    console.print(
        f"study {context.study_name} on {redact(context.storage_url)}: {len(added)} thesis trial(s) enqueued; "
        f"submitted {path} as job {job_id} ({spec.workers} tasks"
        + (f", {spec.workers_per_gpu} workers each" if spec.workers_per_gpu > 1 else "")
        + ")",
        highlight=False,
    )
    print(job_id)


def _is_confirm_study(url: str, study_name: str) -> bool:
    quiet_optuna()
    try:
        return is_confirm_study(optuna.load_study(study_name=study_name, storage=open_storage(url)))
    except KeyError:
        return False


def status(job_id: str | None, study_name: str, storage_file: Path | None, *, console: Console) -> None:
    """Print the array's tasks (squeue) and the study's trial counts against its recorded total."""
    if job_id:
        tasks = slurm_status(job_id)
        for task in tasks:
            console.print(
                f"task {task['task']:<14} {task['state']:<10} {task['elapsed']:>10}  {task['reason']}", highlight=False
            )
        if not tasks:
            console.print(f"job {job_id}: no task is queued or running (all ended)")
    url = _storage_url(storage_file)
    if url is None:
        return
    quiet_optuna()
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise UserError(f"no study {study_name!r} in {redact(url)}") from None
    trials = trial_summaries(study, ("identity",))  # not every trial whole: a study may hold 10,000
    counts = collections.Counter(t.state.name for t in trials)
    total = study.user_attrs.get(SETTINGS_ATTR, {}).get("total")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    workers = collections.Counter(t.user_attrs.get("identity", {}).get("worker", "?") for t in complete)
    console.print(
        f"study {study_name}: "
        + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
        + (f" of a total of {total}" if total else ""),
        highlight=False,
    )
    console.print(f"completed trials per worker: {dict(workers)}", highlight=False)
