"""The ``ecgsearch`` command line: argument parsing only; each command calls one function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ecgsearch import __version__
from ecgsearch.private_files import GROUP_READABLE_ENV, private_files
from ecgsearch.trials.signals import install_time_warning_handler

install_time_warning_handler()


def _flags_without_type(option: typer.core.TyperOption, ctx: typer.Context) -> str | None:
    """typer 0.29 shows a flag's type in --help (``--thesis <bool>``), as if it took a value."""
    return None if option.is_flag else _option_type(option, ctx)


_option_type = getattr(typer.core.TyperOption, "display_type_rich", None)
if _option_type is not None:  # older typer prints no type for flags anyway
    typer.core.TyperOption.display_type_rich = _flags_without_type

app = typer.Typer(
    help="Multi-objective architecture search for 12-lead ECG classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
arch_app = typer.Typer(help="Named architectures (the thesis's E1-E18) and their sizes.", no_args_is_help=True)
app.add_typer(arch_app, name="arch")
data_app = typer.Typer(help="Prepare, inspect and split ECG data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

from ecgsearch.cli import study as cli_study  # noqa: E402 - the study commands live in their own module

app.command("run")(cli_study.run_command)
app.command("worker", help=cli_study.WORKER_HELP)(cli_study.run_command)
app.command("enqueue-thesis")(cli_study.enqueue_command)
app.command("pareto")(cli_study.pareto_command)
app.command("export")(cli_study.export_command)
app.command("confirm")(cli_study.confirm_command)
app.command("dashboard")(cli_study.dashboard_command)
app.command("report")(cli_study.report_command)
slurm_app = typer.Typer(help="Workers as a Slurm job array on one shared study.", no_args_is_help=True)
slurm_app.command("submit")(cli_study.slurm_submit_command)
slurm_app.command("status")(cli_study.slurm_status_command)
app.add_typer(slurm_app, name="slurm")

console = Console()
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ecgsearch {__version__}")
        raise typer.Exit()


@app.callback()
def app_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
    group_readable: Annotated[
        bool,
        typer.Option(
            "--group-readable",
            envvar=GROUP_READABLE_ENV,
            help="Let your group read what this command creates (default: you alone).",
        ),
    ] = False,
) -> None:
    """Multi-objective architecture search for 12-lead ECG classifiers."""
    private_files(group_readable=group_readable)


@arch_app.command("list")
def arch_list(as_json: JsonOption = False) -> None:
    """Table of E1-E18: params, MB, MACs, and the thesis's reported size and metrics."""
    from ecgsearch.analysis.arch_report import arch_rows, arch_table

    rows = arch_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        console.print(arch_table(rows))


@arch_app.command("show")
def arch_show(
    name: Annotated[str, typer.Argument(help="An experiment name, e.g. E12.")],
    as_json: JsonOption = False,
) -> None:
    """One named architecture: its full config, sizes and the thesis's figures."""
    from ecgsearch.analysis.arch_report import arch_config_table, arch_rows, arch_table

    try:
        rows = arch_rows([name])
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(json.dumps(rows[0], indent=2))
        return
    console.print(f"[bold]{rows[0]['name']}[/bold]: {rows[0]['description']}")
    console.print(arch_table(rows))
    console.print(arch_config_table(rows[0]["arch"]))


@data_app.command("prepare")
def data_prepare(
    sources: Annotated[list[Path], typer.Argument(help="Data directories (searched recursively) or .hea files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The cache file to write (HDF5).")],
    workers: Annotated[int, typer.Option(help="Worker processes (0 = one per CPU core).")] = 0,
    source: Annotated[
        str | None,
        typer.Option(help="Source name for records whose names are not Challenge names (your own data)."),
    ] = None,
    preprocess: Annotated[
        str, typer.Option(help="exact (samples at k/250 s) or base-code (as the thesis's base code computes).")
    ] = "exact",
    as_json: JsonOption = False,
) -> None:
    """Read, check and preprocess records into one cache; resumes an interrupted run."""
    from ecgsearch.commands.data import prepare

    prepare(
        sources,
        out,
        workers=workers or None,
        own_source=source,
        preprocess=preprocess,
        as_json=as_json,
        console=console,
    )


@data_app.command("info")
def data_info(
    cache: Annotated[Path, typer.Argument(help="A cache written by `ecgsearch data prepare`.")],
    class_set: Annotated[str, typer.Option(help="thesis17, thesis17-literal or challenge2021.")] = "thesis17",
    as_json: JsonOption = False,
) -> None:
    """Records per source and per class, and records with no class of the set."""
    from ecgsearch.commands.data import info

    info(cache, class_set, as_json=as_json, console=console)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the records into (one subfolder per source).")],
    records: Annotated[int, typer.Option(help="How many records in all.")] = 1200,
    seed: Annotated[int, typer.Option(help="Everything written is a function of the seed.")] = 0,
) -> None:
    """Write synthetic 12-lead records in the real CinC (WFDB) and SPH (HDF5) formats."""
    from ecgnet.data.synth import write_synthetic_dataset

    counts = write_synthetic_dataset(out, records=records, seed=seed)
    console.print(f"{sum(counts.values())} synthetic records in {out}: {counts}", highlight=False)


@data_app.command("split")
def data_split(
    cache: Annotated[Path, typer.Argument(help="A cache written by `ecgsearch data prepare`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for train.csv, val.csv, test.csv.")],
    test: Annotated[
        str,
        typer.Option(
            help="Held-out sources: cpsc (thesis split 1), g12ec, sph, ptb, chapman-ningbo, or any one source "
            "of the cache (e.g. a --source of `data prepare`)."
        ),
    ] = "cpsc",
    folds: Annotated[int, typer.Option(help="Validation folds of the training pool.")] = 5,
    fold: Annotated[int, typer.Option(help="Which fold validates (0-based).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the stratified fold assignment.")] = 0,
    class_set: Annotated[str, typer.Option(help="Class set the stratification uses.")] = "thesis17",
) -> None:
    """Leave-source-out test set and patient-grouped, label-stratified validation fold."""
    from ecgsearch.commands.data import split

    split(cache, out, test=test, folds=folds, fold=fold, seed=seed, class_set=class_set, console=console)


@app.command("train")
def train_command(
    arch: Annotated[str, typer.Option(help="E1..E18, a JSON file or inline JSON of architecture fields.")],
    data: Annotated[Path, typer.Option(help="A cache written by `ecgsearch data prepare`.")],
    out: Annotated[Path | None, typer.Option(help="Export the model directory here.")] = None,
    split: Annotated[Path | None, typer.Option(help="A folder from `ecgsearch data split`.")] = None,
    test: Annotated[str, typer.Option(help="Held-out sources when no --split is given.")] = "cpsc",
    fold: Annotated[int, typer.Option(help="Validation fold when no --split is given.")] = 0,
    class_set: Annotated[str, typer.Option(help="thesis17, thesis17-literal or challenge2021.")] = "thesis17",
    epochs: Annotated[int, typer.Option(help="Training epochs (the thesis: 30).")] = 30,
    max_steps: Annotated[int | None, typer.Option(help="Budget in optimizer steps instead of epochs.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (the thesis: 256).")] = 256,
    window: Annotated[int, typer.Option(help="Training window in samples at 250 Hz.")] = 4096,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 0.003,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    seeds: Annotated[int, typer.Option(help="Train this many seeds; report mean and spread.")] = 1,
    tune_thresholds: Annotated[bool, typer.Option(help="Per-class thresholds maximising validation F1.")] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Safety cap on wall-clock seconds per run.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Train one architecture on a cache, score validation and test, export the model."""
    from ecgnet.runner import DataSpec
    from ecgnet.train_config import TrainConfig
    from ecgsearch.commands.model import resolve_arch, train

    spec = DataSpec(str(data), str(split) if split else None, test=test, fold=fold, class_set=class_set)
    config = TrainConfig(
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        window=window,
        learning_rate=lr,
        seed=seed,
        tune_thresholds=tune_thresholds,
        max_seconds=max_seconds,
        device=device,
    )
    train(resolve_arch(arch), spec, config, seeds=seeds, out=out, as_json=as_json, console=console)


@app.command("predict")
def predict_command(
    model_dir: Annotated[Path, typer.Argument(help="A model directory (from `train --out` or `export`).")],
    records: Annotated[list[Path], typer.Argument(help="WFDB .hea/.mat or SPH .h5 files.")],
    as_json: JsonOption = False,
    int8: Annotated[bool, typer.Option("--int8", help="Run model.int8.onnx (from `export --int8`).")] = False,
) -> None:
    """Class probabilities and labels over threshold for raw records; exit 1 if any failed."""
    from ecgsearch.commands.model import predict

    raise typer.Exit(predict(model_dir, records, as_json=as_json, console=console, int8=int8))


def main() -> None:
    """The console script: a user's mistake or an unreachable database ends in one ``error:`` line.

    Bad flags too (exit 2): a batch job's log should say what was wrong in one greppable line.
    """
    try:  # typer carries its own copy of click from 0.26 on
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:
        from click.exceptions import ClickException, NoArgsIsHelpError

    from ecgsearch.errors import InputError, UserError

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        raise SystemExit(2) from None
    except ClickException as exc:
        command = f" (see `{exc.ctx.command_path} --help`)" if getattr(exc, "ctx", None) is not None else ""
        typer.echo(f"error: {exc.format_message()}{command}", err=True)
        raise SystemExit(exc.exit_code) from None
    except (UserError, InputError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    raise SystemExit(code if isinstance(code, int) else 0)
