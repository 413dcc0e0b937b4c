"""Argument parsing of the study commands (run, worker, enqueue-thesis, pareto, export, dashboard)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from ecgsearch.study.defaults import DEFAULT_WORKSPACE, SAMPLERS

if TYPE_CHECKING:
    from ecgsearch.commands.run import StudyOptions

__all__ = [
    "confirm_command",
    "dashboard_command",
    "enqueue_command",
    "export_command",
    "pareto_command",
    "report_command",
    "run_command",
]

console = Console()
# Importing torch and optuna takes seconds: commands import what they use, so `--help` stays
# instant. That is also why help texts spell out $ECGSEARCH_STORAGE rather than importing
# ecgsearch.storage.storage.

Workspace = Annotated[Path, typer.Option(help="Folder for the SQLite study, artifacts and prepared data.")]
Storage = Annotated[
    str | None,
    typer.Option(
        help="Storage URL, e.g. postgresql+psycopg2://user@host/db (default: $ECGSEARCH_STORAGE, "
        "else SQLite in the workspace). Passwords: in $ECGSEARCH_STORAGE, PGPASSWORD or ~/.pgpass."
    ),
]
StudyDef = Annotated[
    str, typer.Option(help="A study definition: a .toml file or a shipped name (demo, demo-long, demo-edge, thesis).")
]
StudyName = Annotated[str | None, typer.Option(help="Study name (default: the definition's name).")]
Data = Annotated[str | None, typer.Option(help="A prepared data cache (overrides the definition's data).")]
Seed = Annotated[int, typer.Option(help="Seed; each worker derives its own sampler seed from it.")]
# Study settings: recorded when the study is created; later commands follow them, and one that
# gives another value is refused. So these options have no default of their own here.
STUDY_SETTING = "Study settings (recorded at creation; later workers must agree)"
# Unformatted: one option a line with its help beside it reads as a table of the settings.
# fmt: off
Trials = Annotated[int | None, typer.Option(min=1, rich_help_panel=STUDY_SETTING,
                   help="The study's total trial count (default: the definition's).")]
RaiseTotal = Annotated[bool, typer.Option(rich_help_panel=STUDY_SETTING,
                       help="Raise an existing study's total to --trials (recorded in its settings_log).")]
Sampler = Annotated[str | None, typer.Option(rich_help_panel=STUDY_SETTING,
                    help="tpe, nsga2, gp or random (default: the definition's).")]
MaxMb = Annotated[float | None, typer.Option(rich_help_panel=STUDY_SETTING,
                  help="Size budget in MB: larger trials are infeasible, never trained (default: none).")]
Limits = Annotated[list[str] | None, typer.Option("--max", rich_help_panel=STUDY_SETTING, metavar="METRIC=VALUE",
                   help="A budget, repeatable: size_mb, params, macs, latency_ms or int8_size_mb at most VALUE; "
                        "trials over it are infeasible, never trained. --max-mb X is --max size_mb=X.")]
Thesis = Annotated[bool | None, typer.Option("--thesis/--no-thesis", rich_help_panel=STUDY_SETTING,
                   help="Enqueue E1-E18 as fixed trials (default: when the definition lists them).")]
Heartbeat = Annotated[int | None, typer.Option(min=1, rich_help_panel=STUDY_SETTING,
                      help="Seconds between a running trial's heartbeats (default 30).")]
Grace = Annotated[int | None, typer.Option(min=1, rich_help_panel=STUDY_SETTING,
                  help="Seconds without heartbeat: then a trial is dead and retried (default 90).")]
Retries = Annotated[int | None, typer.Option(min=0, rich_help_panel=STUDY_SETTING,
                    help="Retries of a trial that crashed, was killed or terminated (default 2).")]
StopAfter = Annotated[int | None, typer.Option(min=1, rich_help_panel=STUDY_SETTING,
                      help="Stop a worker after this many same-reason failures in a row (default 3).")]
OutageTimeout = Annotated[float, typer.Option(min=0,
                          help="Seconds to ride out a database outage before the worker gives up.")]
# fmt: on


def _options(
    workspace: Path, storage: str | None, study_def: str, study_name: str | None, data: str | None, seed: int
) -> StudyOptions:
    from ecgsearch.commands.run import StudyOptions

    return StudyOptions(workspace, storage, study_def, study_name, data, seed)


def parse_limits(given: list[str] | None, max_mb: float | None, *, flag: str = "--max") -> dict[str, float]:
    """``--max METRIC=VALUE`` flags (and ``--max-mb``) as metric to largest value; a bad one is a usage error."""
    from ecgsearch.metric_table import LIMIT_METRICS

    limits: dict[str, float] = {}
    for text in given or []:
        metric, _, value = text.partition("=")
        metric = metric.strip()
        if metric not in LIMIT_METRICS:
            raise typer.BadParameter(
                f"{text!r}: the metric must be one of {', '.join(LIMIT_METRICS)} (figures known before training)",
                param_hint=flag,
            )
        try:
            number = float(value)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r}: give METRIC=VALUE with a number, e.g. latency_ms=5", param_hint=flag
            ) from None
        if not number > 0 or number == float("inf"):
            raise typer.BadParameter(f"{text!r}: a budget must be a number above 0", param_hint=flag)
        if metric in limits and limits[metric] != number:
            raise typer.BadParameter(f"{metric} is given twice ({limits[metric]:g} and {number:g})", param_hint=flag)
        limits[metric] = number
    if max_mb is not None:
        if max_mb <= 0:
            raise typer.BadParameter(f"{max_mb} is not a size: give a budget above 0 MB", param_hint="--max-mb")
        if limits.get("size_mb", max_mb) != max_mb:
            raise typer.BadParameter(
                f"--max-mb {max_mb:g} and --max size_mb={limits['size_mb']:g} disagree", param_hint="--max-mb"
            )
        limits["size_mb"] = max_mb
    return limits


def study_limits(given: list[str] | None, max_mb: float | None) -> dict[str, Any]:
    """The study settings the budget flags request (none: the command names no limit)."""
    limits = parse_limits(given, max_mb)
    return {"limits": limits} if limits else {}


def run_command(
    ctx: typer.Context,
    trials: Trials = None,
    study_def: StudyDef = "demo",
    study_name: StudyName = None,
    sampler: Sampler = None,
    data: Data = None,
    seed: Seed = 0,
    max_mb: MaxMb = None,
    max_: Limits = None,
    thesis: Thesis = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
    heartbeat_interval: Heartbeat = None,
    grace_period: Grace = None,
    max_retries: Retries = None,
    stop_after_failures: StopAfter = None,
    raise_total: RaiseTotal = False,
    outage_timeout: OutageTimeout = 600.0,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes here, each taking its own trials (with a GPU: an equal share of its memory each).",
        ),
    ] = 1,
) -> None:
    """Create or resume a study and run its trials in this process, with a live display."""
    from ecgsearch.commands.run import run
    from ecgsearch.storage.storage import StorageSettings
    from ecgsearch.trials.worker_group import worker_argv

    budgets = study_limits(max_, max_mb)
    if sampler is not None and sampler not in SAMPLERS:
        raise typer.BadParameter(f"{sampler!r} is not one of {', '.join(SAMPLERS)}", param_hint="--sampler")
    given = {
        "total": trials,
        "sampler": sampler,
        "thesis": thesis,
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
        "max_retries": max_retries,
        "max_consecutive_failures": stop_after_failures,
    }
    requested = {key: value for key, value in given.items() if value is not None} | budgets
    defaults = StorageSettings()
    # The storage needs heartbeat settings at once; the study's own replace them when it is read.
    settings = StorageSettings(
        heartbeat_interval or defaults.heartbeat_interval,
        grace_period or defaults.grace_period,
        defaults.max_retries if max_retries is None else max_retries,
        outage_timeout,
    )
    # `worker` is this command under another name: a batch job's log gets plain lines, not a live display.
    out = Console(force_terminal=False) if ctx.info_name == "worker" else console
    group = (workers, worker_argv(sys.argv[1:], ctx.info_name or "run")) if workers > 1 else None
    code = run(
        _options(workspace, storage, study_def, study_name, data, seed),
        requested=requested,
        raise_total=raise_total,
        console=out,
        settings=settings,
        group=group,
    )
    raise typer.Exit(code)


WORKER_HELP = "One worker of a shared study (what a Slurm job runs): trials until the study is full."


def enqueue_command(
    study_def: StudyDef = "demo",
    study_name: StudyName = None,
    data: Data = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """Enqueue the definition's fixed thesis trials (E1-E18) that the study does not have yet."""
    from ecgsearch.commands.run import enqueue

    enqueue(_options(workspace, storage, study_def, study_name, data, 0), console=console)


def pareto_command(
    study_name: Annotated[str, typer.Option(help="The study to read.")] = "demo",
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The Pareto front: trial, E-name, validation and test AUROC, MB, params, MACs."""
    from ecgsearch.commands.results import pareto

    pareto(workspace, storage, study_name, as_json=as_json, console=console)


def export_command(
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    trial: Annotated[int | None, typer.Option(help="Export this trial.")] = None,
    best: Annotated[
        bool,
        typer.Option(
            help="Export the feasible trial highest in the study's first maximised "
            "validation objective (val_micro_auroc in the shipped studies)."
        ),
    ] = False,
    max_mb: Annotated[float | None, typer.Option(help="With --best: only trials up to this size.")] = None,
    max_: Annotated[
        list[str] | None,
        typer.Option(
            "--max",
            metavar="METRIC=VALUE",
            help="With --best: only trials within this budget (repeatable), e.g. latency_ms=5.",
        ),
    ] = None,
    retrain: Annotated[bool, typer.Option(help="Retrain the architecture at the study's budget first.")] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Also write model.int8.onnx (static quantization "
            "calibrated on training windows) with its figures in model.json.",
        ),
    ] = False,
    seeds: Annotated[
        int,
        typer.Option(
            help="With --retrain: seeds to train; the one with the best validation micro AUROC (fp32) is kept."
        ),
    ] = 1,
    epochs: Annotated[int | None, typer.Option(help="With --retrain: epochs instead of the study's.")] = None,
    study_name: Annotated[str, typer.Option(help="The study to read.")] = "demo",
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """Write a trial's model directory (model.pt, model.onnx, model.json)."""
    from ecgsearch.commands.results import export

    if (trial is None) == (not best):
        raise typer.BadParameter("give exactly one of --trial N or --best")
    limits = parse_limits(max_, max_mb)
    export(
        workspace,
        storage,
        study_name,
        out,
        trial=trial,
        limits=limits,
        retrain=retrain,
        seeds=seeds,
        epochs=epochs,
        int8=int8,
        console=console,
    )


def confirm_command(
    seeds: Annotated[int, typer.Option(min=2, help="Seeds per network in all; the study's own run is the first.")] = 3,
    front: Annotated[bool, typer.Option("--front", help="Confirm the trials on the Pareto front.")] = False,
    thesis: Annotated[bool, typer.Option("--thesis", help="Confirm the thesis configurations the study ran.")] = False,
    trial: Annotated[list[int] | None, typer.Option("--trial", help="Confirm this trial (repeatable).")] = None,
    run_here: Annotated[
        bool,
        typer.Option(
            "--run/--no-run",
            help="Run the confirmations here; --no-run only "
            "enqueues them for workers (`worker --study-name NAME.confirm`).",
        ),
    ] = True,
    study_name: Annotated[str, typer.Option(help="The study to confirm.")] = "demo",
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
    outage_timeout: OutageTimeout = 600.0,
) -> None:
    """Retrain chosen trials' networks with more seeds, then show mean ± sd.

    The runs are trials of the study NAME.confirm in the same storage: any number of workers share them, a killed one
    loses nothing, and pareto and report show the spread.
    """
    from ecgsearch.commands.confirm import confirm
    from ecgsearch.storage.storage import StorageSettings

    defaults = StorageSettings()
    settings = StorageSettings(defaults.heartbeat_interval, defaults.grace_period, defaults.max_retries, outage_timeout)
    code = confirm(
        workspace,
        storage,
        study_name,
        seeds=seeds,
        front=front,
        thesis=thesis,
        trials=trial or [],
        run_here=run_here,
        settings=settings,
        console=console,
    )
    raise typer.Exit(code)


def dashboard_command(
    study_name: Annotated[str, typer.Option(help="Study whose artifact directory to serve.")] = "demo",
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    unix_socket: Annotated[
        Path | None,
        typer.Option("--socket", help="Serve on this Unix socket (made 0600) instead of a port, for ssh -L."),
    ] = None,
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """Serve optuna-dashboard on the study's storage, with its trial artifacts, behind a token.

    The URL with the token is printed once; ECGSEARCH_DASHBOARD_TOKEN gives a fixed one.
    """
    from ecgsearch.commands.results import dashboard

    dashboard(workspace, storage, study_name, host=host, port=port, unix_socket=unix_socket, console=console)


def report_command(
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    study_name: Annotated[str, typer.Option(help="The study to read.")] = "demo",
    workspace: Workspace = DEFAULT_WORKSPACE,
    storage: Storage = None,
) -> None:
    """HTML report: Pareto front with E1-E18, hypervolume history, thesis comparison."""
    from ecgsearch.analysis.report import write_report
    from ecgsearch.commands.results import load_existing_study

    study, _ = load_existing_study(workspace, storage, study_name)
    console.print(f"report written to {write_report(study, out)}", highlight=False)


def slurm_submit_command(
    workers: Annotated[int, typer.Option(help="Array tasks (workers), one GPU each.")] = 4,
    trials: Annotated[int, typer.Option(min=1, help="The study's total trial count.")] = 200,
    study_def: StudyDef = "thesis",
    study_name: StudyName = None,
    data: Data = None,
    seed: Seed = 0,
    workspace: Annotated[Path, typer.Option(help="Workspace on a filesystem all nodes share.")] = DEFAULT_WORKSPACE,
    storage_file: Annotated[
        Path | None, typer.Option(help="File (mode 600) holding the storage URL; else $ECGSEARCH_STORAGE is used.")
    ] = None,
    gpus_per_task: Annotated[int, typer.Option(help="GPUs per task.")] = 1,
    workers_per_gpu: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes sharing each task's GPU, an equal share of its memory each (--gpus-per-task 1).",
        ),
    ] = 1,
    cpus_per_task: Annotated[int, typer.Option(help="CPUs per task (torch threads follow).")] = 4,
    mem: Annotated[str, typer.Option(help="Memory per task, e.g. 16G.")] = "16G",
    time_limit: Annotated[str, typer.Option("--time", help="Time limit per task, e.g. 24:00:00.")] = "24:00:00",
    stop_margin: Annotated[int, typer.Option(help="Seconds before the limit to stop taking trials.")] = 600,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account.")] = None,
    max_mb: MaxMb = None,
    max_: Limits = None,
    thesis: Thesis = None,
    raise_total: RaiseTotal = False,
    dry_run: Annotated[bool, typer.Option(help="Print the job script instead of submitting it.")] = False,
) -> None:
    """Create the study, enqueue E1-E18, and submit a Slurm array of workers; prints the job id."""
    from ecgsearch.commands.slurm import submit
    from ecgsearch.commands.slurm_jobs import JobSpec

    if workers_per_gpu > 1 and gpus_per_task != 1:
        raise typer.BadParameter(
            "K workers share one GPU: use it with --gpus-per-task 1", param_hint="--workers-per-gpu"
        )
    requested = {"total": trials} | study_limits(max_, max_mb)
    requested |= {"thesis": thesis} if thesis is not None else {}
    # The workers take every setting from the study that submit creates: their command line names none.
    spec = JobSpec(
        study_def=study_def,
        study_name=study_name or "",
        trials=trials,
        data=data or "",
        workspace=str(workspace),
        workers=workers,
        seed=seed,
        gpus_per_task=gpus_per_task,
        workers_per_gpu=workers_per_gpu,
        cpus_per_task=cpus_per_task,
        mem=mem,
        time_limit=time_limit,
        stop_margin_s=stop_margin,
        partition=partition,
        account=account,
    )
    submit(
        _options(workspace, None, study_def, study_name, data, seed),
        spec,
        storage_file=storage_file,
        requested=requested,
        raise_total=raise_total,
        dry_run=dry_run,
        console=console,
    )


def slurm_status_command(
    job: Annotated[str | None, typer.Option(help="The job id `slurm submit` printed.")] = None,
    study_name: Annotated[str, typer.Option(help="The study to count.")] = "thesis",
    storage_file: Annotated[
        Path | None, typer.Option(help="File holding the storage URL (else $ECGSEARCH_STORAGE).")
    ] = None,
) -> None:
    """The array's tasks (squeue) and the study's progress."""
    from ecgsearch.commands.slurm import status

    status(job, study_name, storage_file, console=console)
