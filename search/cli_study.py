"""Argument parsing of the study commands (run, worker, enqueue-thesis, pareto, export, dashboard)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ecgsearch.run_commands import StudyOptions

__all__ = ["dashboard_command", "enqueue_command", "export_command", "pareto_command", "report_command",
           "run_command"]  # fmt: skip

console = Console()
# Importing torch and optuna takes seconds: commands import what they use, so `--help` stays
# instant. That is also why the default workspace lives here and help texts spell out
# $ECGSEARCH_STORAGE rather than importing ecgsearch.workspace or ecgsearch.storage.
DEFAULT_WORKSPACE = Path("ecgsearch-work")

Workspace = Annotated[Path, typer.Option(help="Folder for the SQLite study, artifacts and prepared data.")]
Storage = Annotated[
    str | None,
    typer.Option(help="Storage URL, e.g. postgresql+psycopg2://user@host/db (default: $ECGSEARCH_STORAGE, "
                 "else SQLite in the workspace). Passwords: in $ECGSEARCH_STORAGE, PGPASSWORD or ~/.pgpass."),
]  # fmt: skip
StudyDef = Annotated[str, typer.Option(help="A study definition: a .toml file or a shipped name (demo, thesis).")]
StudyName = Annotated[str | None, typer.Option(help="Study name (default: the definition's name).")]
Data = Annotated[str | None, typer.Option(help="A prepared data cache (overrides the definition's data).")]
Seed = Annotated[int, typer.Option(help="Seed; each worker derives its own sampler seed from it.")]
Trials = Annotated[int | None, typer.Option(help="The study's total trial count (default: the definition's).")]
Sampler = Annotated[str | None, typer.Option(help="tpe (default), nsga2, gp or random.")]
MaxMb = Annotated[float | None, typer.Option(help="Size budget in MB: larger trials are infeasible, never trained.")]
Thesis = Annotated[bool, typer.Option("--thesis/--no-thesis", help="Enqueue E1-E18 as fixed trials.")]
Heartbeat = Annotated[int, typer.Option(help="Seconds between a running trial's heartbeats.")]
Grace = Annotated[int, typer.Option(help="Seconds without heartbeat after which a trial counts as dead.")]
Retries = Annotated[int, typer.Option(help="Retries of a trial that crashed, was killed or terminated.")]


def _options(workspace: Path, storage: str | None, study_def: str, study_name: str | None, data: str | None,
             seed: int) -> StudyOptions:  # fmt: skip
    from ecgsearch.run_commands import StudyOptions

    return StudyOptions(workspace, storage, study_def, study_name, data, seed)


def run_command(
    ctx: typer.Context,
    trials: Trials = None,
    study_def: StudyDef = "demo",
    study_name: StudyName = None,
    sampler: Sampler = None,
    data: Data = None,
    seed: Seed = 0,
    max_mb: MaxMb = None,
    thesis: Thesis = True,
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
    heartbeat_interval: Heartbeat = 60,
    grace_period: Grace = 180,
    max_retries: Retries = 2,
) -> None:
    """Create or resume a study and run its trials in this process, with a live display."""
    from ecgsearch.run_commands import run
    from ecgsearch.storage import StorageSettings

    # `worker` is this command under another name: a batch job's log gets plain lines, not a live display.
    out = Console(force_terminal=False) if ctx.info_name == "worker" else console
    settings = StorageSettings(heartbeat_interval, grace_period, max_retries)
    run(_options(workspace, storage, study_def, study_name, data, seed), trials=trials, sampler=sampler,
        max_mb=max_mb, thesis=thesis, console=out, settings=settings)  # fmt: skip


WORKER_HELP = "One worker of a shared study (what a Slurm job runs): trials until the study is full."


def enqueue_command(
    study_def: StudyDef = "demo",
    study_name: StudyName = None,
    data: Data = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """Enqueue the definition's fixed thesis trials (E1-E18) that the study does not have yet."""
    from ecgsearch.run_commands import enqueue

    enqueue(_options(workspace, storage, study_def, study_name, data, 0), console=console)


def pareto_command(
    study_name: Annotated[str, typer.Option(help="The study to read.")] = "demo",
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The Pareto front: trial, E-name, validation and test AUROC, MB, params, MACs."""
    from ecgsearch.result_commands import pareto

    pareto(workspace, storage, study_name, as_json=as_json, console=console)


def export_command(
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    trial: Annotated[int | None, typer.Option(help="Export this trial.")] = None,
    best: Annotated[bool, typer.Option(help="Export the best validation AUROC among feasible trials.")] = False,
    max_mb: Annotated[float | None, typer.Option(help="With --best: only trials up to this size.")] = None,
    retrain: Annotated[bool, typer.Option(help="Retrain the architecture at the study's budget first.")] = False,
    seeds: Annotated[int, typer.Option(help="With --retrain: seeds to train; the best by validation is kept.")] = 1,
    epochs: Annotated[int | None, typer.Option(help="With --retrain: epochs instead of the study's.")] = None,
    study_name: Annotated[str, typer.Option(help="The study to read.")] = "demo",
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """Write a trial's model directory (model.pt, model.onnx, model.json)."""
    from ecgsearch.result_commands import export

    if (trial is None) == (not best):
        raise typer.BadParameter("give exactly one of --trial N or --best")
    export(workspace, storage, study_name, out, trial=trial, max_mb=max_mb, retrain=retrain, seeds=seeds,
           epochs=epochs, console=console)  # fmt: skip


def dashboard_command(
    study_name: Annotated[str, typer.Option(help="Study whose artifact directory to serve.")] = "demo",
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """Serve optuna-dashboard on the study's storage, with its trial artifacts."""
    from ecgsearch.result_commands import dashboard

    dashboard(workspace, storage, study_name, host=host, port=port, console=console)


def report_command(
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    study_name: Annotated[str, typer.Option(help="The study to read.")] = "demo",
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """HTML report: Pareto front with E1-E18, hypervolume history, thesis comparison."""
    from ecgsearch.report import write_report
    from ecgsearch.result_commands import load_existing_study

    study, _ = load_existing_study(workspace, storage, study_name)
    console.print(f"report written to {write_report(study, out)}", highlight=False)


def slurm_submit_command(
    workers: Annotated[int, typer.Option(help="Array tasks (workers), one GPU each.")] = 4,
    trials: Annotated[int, typer.Option(help="The study's total trial count.")] = 200,
    study_def: StudyDef = "thesis",
    study_name: StudyName = None,
    data: Data = None,
    seed: Seed = 0,
    workspace: Annotated[Path, typer.Option(help="Workspace on a filesystem all nodes share.")] = DEFAULT_WORKSPACE,
    storage_file: Annotated[
        Path | None, typer.Option(help="File (mode 600) holding the storage URL; else $ECGSEARCH_STORAGE is used.")
    ] = None,
    gpus_per_task: Annotated[int, typer.Option(help="GPUs per task.")] = 1,
    cpus_per_task: Annotated[int, typer.Option(help="CPUs per task (torch threads follow).")] = 4,
    mem: Annotated[str, typer.Option(help="Memory per task, e.g. 16G.")] = "16G",
    time_limit: Annotated[str, typer.Option("--time", help="Time limit per task, e.g. 24:00:00.")] = "24:00:00",
    stop_margin: Annotated[int, typer.Option(help="Seconds before the limit to stop taking trials.")] = 600,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account.")] = None,
    max_mb: MaxMb = None,
    thesis: Thesis = True,
    dry_run: Annotated[bool, typer.Option(help="Print the job script instead of submitting it.")] = False,
) -> None:
    """Create the study, enqueue E1-E18, and submit a Slurm array of workers; prints the job id."""
    from ecgsearch.slurm_commands import submit
    from ecgsearch.slurm_jobs import JobSpec

    extra = ("--max-mb", str(max_mb)) if max_mb is not None else ()
    extra += () if thesis else ("--no-thesis",)
    spec = JobSpec(study_def=study_def, study_name=study_name or "", trials=trials, data=data or "",
                   workspace=str(workspace), workers=workers, seed=seed, gpus_per_task=gpus_per_task,
                   cpus_per_task=cpus_per_task, mem=mem, time_limit=time_limit, stop_margin_s=stop_margin,
                   partition=partition, account=account, extra_args=extra)  # fmt: skip
    submit(_options(workspace, None, study_def, study_name, data, seed), spec, storage_file=storage_file,
           thesis=thesis, dry_run=dry_run, console=console)  # fmt: skip


def slurm_status_command(
    job: Annotated[str | None, typer.Option(help="The job id `slurm submit` printed.")] = None,
    study_name: Annotated[str, typer.Option(help="The study to count.")] = "thesis",
    storage_file: Annotated[
        Path | None, typer.Option(help="File holding the storage URL (else $ECGSEARCH_STORAGE).")
    ] = None,
) -> None:
    """The array's tasks (squeue) and the study's progress."""
    from ecgsearch.slurm_commands import status

    status(job, study_name, storage_file, console=console)
