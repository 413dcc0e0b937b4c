"""`ecgsearch train` and `ecgsearch predict`: progress display and summaries around ecgnet."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecgnet.arch import ArchConfig, ArchConfigError
from ecgnet.predict import predict_files
from ecgnet.runner import DataSpec, export_outcome, summarize_seeds, train_seeds
from ecgnet.thesis import thesis_experiments
from ecgnet.train_config import TrainConfig
from ecgsearch.errors import InputError, UserError

__all__ = ["predict", "resolve_arch", "train"]

TOP_CLASSES = 4


def resolve_arch(arch: str) -> ArchConfig:
    """An E-name (E1..E18), a JSON file, or inline JSON of ArchConfig fields."""
    experiments = thesis_experiments()
    if arch.upper() in experiments:
        return experiments[arch.upper()].config
    try:
        data = json.loads(Path(arch).read_text()) if Path(arch).is_file() else json.loads(arch)
    except (json.JSONDecodeError, OSError):
        raise UserError(
            f"--arch {arch!r} is neither an experiment name ({', '.join(experiments)}), a JSON file nor JSON"
        ) from None
    try:
        return ArchConfig.from_dict(data.get("arch", data))
    except (ArchConfigError, TypeError) as exc:
        raise UserError(f"--arch: {exc}") from None


def train(
    arch: ArchConfig,
    spec: DataSpec,
    config: TrainConfig,
    *,
    seeds: int,
    out: Path | None,
    as_json: bool,
    console: Console,
) -> None:
    """Train one architecture for each seed, print the summary (or JSON) and export the best seed."""
    # With --json, stdout is for the one JSON document (`| jq`); epoch lines go to stderr.
    progress_console = Console(stderr=True, highlight=False) if as_json else console
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=progress_console, disable=as_json) as bar:
        tasks: dict[int, Any] = {}

        def on_progress(event: dict[str, Any]) -> None:
            if event["seed"] not in tasks:
                tasks[event["seed"]] = bar.add_task(f"seed {event['seed']}", total=None, status="")
            task = tasks[event["seed"]]
            if event["event"] == "step":
                bar.update(
                    task,
                    completed=event["step"],
                    total=event["total_steps"],
                    status=f"epoch {event['epoch'] + 1} loss {event['loss']:.4f}",
                )
            else:
                bar.console.print(
                    f"  epoch {event['epoch']}: loss {event['train_loss']:.4f}  "
                    f"val micro AUROC {event['micro_auroc']:.4f}  macro AUROC {event['macro_auroc']:.4f}  "
                    f"micro AUPRC {event['micro_auprc']:.4f}",
                    highlight=False,
                )

        try:
            outcomes, data = train_seeds(arch, spec, config, seeds, progress=on_progress)
        except FileNotFoundError as exc:
            raise InputError(str(exc)) from None
    best = max(outcomes, key=lambda o: o.result.val_metrics["micro_auroc"])
    summary = summarize_seeds(outcomes)
    if out is not None:
        export_outcome(best, out, data, spec, config, seeds=summary, selected_seed=best.seed)
    report = {
        "arch": arch.to_dict(),
        "seeds": [o.seed for o in outcomes],
        "summary": summary,
        "selected_seed": best.seed,
        "exported_to": str(out) if out else None,
        "cut_by_time_limit": any(o.result.cut_by_time_limit for o in outcomes),
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="validation (selection) and held-out test")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    for key, figures in summary.items():
        table.add_row(key, f"{figures['mean']:.4f}", f"{figures['std']:.4f}")
    console.print(table)
    if out is not None:
        console.print(f"exported seed {best.seed} (best validation micro AUROC) to {out}", highlight=False)


def predict(model_dir: Path, records: list[Path], *, as_json: bool, console: Console, int8: bool = False) -> int:
    """Predict raw records with a model directory; returns the exit code (1 if any record failed)."""
    try:
        results = predict_files(model_dir, records, int8=int8)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    failed = [r for r in results if r.error]
    if as_json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        ok = [r for r in results if not r.error]
        if ok:
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False, caption="all probabilities: --json")
            table.add_column("record", no_wrap=True)
            table.add_column("labels over threshold")
            table.add_column(f"top {TOP_CLASSES} probabilities")
            for r in ok:
                top = sorted(r.probabilities.items(), key=lambda item: -item[1])[:TOP_CLASSES]
                table.add_row(Path(r.path).name, " ".join(r.labels) or "-", "  ".join(f"{c} {p:.2f}" for c, p in top))
            console.print(table)
        for r in failed:
            print(f"error: {r.path}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
