"""`ecgsearch data ...`: progress display and summaries around ecgnet's data functions."""

from __future__ import annotations

import json
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ecgnet.data.cache import prepare_cache
from ecgnet.data.cache_reader import ECGCache
from ecgnet.data.labels import CLASS_SETS
from ecgnet.data.preprocess import PREPROCESS_STYLES, PreprocessConfig
from ecgnet.data.sources import check_source_name
from ecgnet.data.splits import make_split, write_split
from ecgsearch.errors import UserError

__all__ = ["info", "prepare", "split"]


def prepare(
    sources: list[Path],
    out: Path,
    *,
    workers: int | None,
    as_json: bool,
    console: Console,
    own_source: str | None = None,
    preprocess: str = "exact",
) -> None:
    """Build a cache from record folders, with a progress bar; the counts and rejects at the end.

    ``own_source`` is the source of records whose names are not Challenge names; ``preprocess``
    the style (``exact`` or ``base-code``).
    """
    config = _preprocess_config(preprocess)
    if own_source is not None:
        try:
            check_source_name(own_source)
        except ValueError as exc:
            raise UserError(f"--source: {exc}") from None
    columns = (TextColumn("preprocessing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=as_json, transient=False) as bar:
        task = bar.add_task("records", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = prepare_cache(
            sources, out, workers=workers, config=config, own_source=own_source, progress=on_progress
        )
    summary = {
        "cache": str(report.cache),
        "preprocess": config.style,
        "records": report.records,
        "rejected": len(report.rejected),
        "rejects_file": str(report.rejects_file),
        "per_source": report.per_source,
        "resumed_chunks": report.resumed_chunks,
        "seconds": round(report.seconds, 2),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    if report.resumed_chunks:
        console.print(f"resumed an interrupted run: {report.resumed_chunks} chunk(s) were already done")
    for path, reason in report.rejected[:20]:
        console.print(f"[yellow]rejected[/yellow] {path}: {reason}", highlight=False)
    if len(report.rejected) > 20:
        console.print(f"... and {len(report.rejected) - 20} more")
    console.print(
        f"{report.records} records cached in {report.cache} (preprocess {config.style}, {report.seconds:.1f} s); "
        f"{len(report.rejected)} rejected, listed in {report.rejects_file}",
        highlight=False,
    )


def _preprocess_config(style: str) -> PreprocessConfig:
    if style not in PREPROCESS_STYLES:
        raise UserError(f"--preprocess: unknown style {style!r}; known: {', '.join(PREPROCESS_STYLES)}")
    return PreprocessConfig(style=style)


def info(cache_path: Path, class_set: str, *, as_json: bool, console: Console) -> None:
    """Records per source and per class of a cache (a table, or JSON)."""
    if class_set not in CLASS_SETS:
        raise UserError(f"unknown class set {class_set!r}; known: {', '.join(CLASS_SETS)}")
    try:
        summary = ECGCache(cache_path).info(class_set)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console.print(
        f"{summary['records']} records, {summary['hours']:.1f} h, preprocess {summary['preprocess']}, "
        f"class set {summary['class_set']}; "
        f"{summary['unlabeled']} record(s) have no class of this set",
        highlight=False,
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("class", no_wrap=True)
    sources = list(summary["per_source"])
    for source in sources:
        table.add_column(source, justify="right")
    table.add_column("total", justify="right")
    table.add_row("records", *(str(summary["per_source"][s]) for s in sources), str(summary["records"]))
    for abbreviation, total in summary["per_class"].items():
        row = [str(summary["per_source_class"][s][abbreviation]) for s in sources]
        table.add_row(abbreviation, *row, str(total))
    console.print(table)


def split(cache_path: Path, out: Path, *, console: Console, **options: object) -> None:
    """Write the train/val/test record lists of a leave-source-out, patient-grouped split."""
    try:
        result = make_split(ECGCache(cache_path), **options)  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    write_split(result, out)
    console.print(
        f"train {len(result.train)}, val {len(result.val)}, test {len(result.test)} records "
        f"(test sources: {', '.join(result.description['test_sources'])}) written to {out}",
        highlight=False,
    )
