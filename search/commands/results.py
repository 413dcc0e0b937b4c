"""`ecgsearch pareto|export|dashboard`: tables and files around ``ecgsearch.analysis.results``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from rich import box
from rich.console import Console
from rich.table import Table

from ecgsearch.analysis.results import (
    SHOWN_METRICS,
    pareto_rows,
    ranking_metric,
    repeats_line,
    spread_text,
    within_limits,
)
from ecgsearch.api import export as export_model
from ecgsearch.api import load_study, pick_trial
from ecgsearch.errors import UserError
from ecgsearch.storage.storage import StorageSettings, open_storage, redact, resolve_storage_url
from ecgsearch.study.definition import StudyDefinition, parse_definition
from ecgsearch.study.workspace import Workspace

if TYPE_CHECKING:
    from ecgnet.runner import LoadedData

__all__ = ["dashboard", "export", "load_existing_study", "pareto"]


def load_existing_study(workspace: Path, storage: str | None, study_name: str) -> tuple[optuna.Study, str]:
    """The study ``study_name`` (``api.load_study``) and its storage URL."""
    return load_study(study_name, workspace=workspace, storage=storage), resolve_storage_url(storage, workspace)


def pareto(workspace: Path, storage: str | None, study_name: str, *, as_json: bool, console: Console) -> None:
    """Print the study's Pareto front (a table, or JSON), with mean +- sd where seeds were confirmed."""
    study, _ = load_existing_study(workspace, storage, study_name)
    rows = pareto_rows(study)
    if as_json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"Pareto front of {study_name}: {' vs '.join(study.metric_names or [])}",
        caption="val = validation; µ/M = micro/macro; AUPRC = average precision (the thesis's "
        "'precision'); mean ± sd over seeds where `ecgsearch confirm` ran more than one",
    )
    shown = [f"val_{name}" for name in SHOWN_METRICS]
    extra = [m for m in study.metric_names or [] if m not in (*shown, "size_mb", "params", "macs")]
    headers = (
        "trial",
        "thesis",
        "val µAUROC",
        "val MAUROC",
        "val µAUPRC",
        "val MAUPRC",
        *extra,
        "test µAUROC",
        "MB",
        "params",
        "GMACs",
        "seeds",
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "thesis" else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r.trial),
            r.thesis or "",
            *(spread_text(r, metric) for metric in shown),
            *(spread_text(r, m) if m.startswith("val_") else _fmt(r.objectives.get(m)) for m in extra),
            _fmt(r.test_micro_auroc),
            f"{r.size_mb:.3f}",
            f"{r.params:,}",
            f"{r.macs / 1e9:.3f}",
            str(r.seeds["count"]),
        )
    print_table(console, table)
    console.print(repeats_line(study), highlight=False)


def print_table(console: Console, table: Table) -> None:
    """Print ``table``; piped or redirected, at the width it needs (no terminal width to keep to)."""
    if console.is_terminal:
        console.print(table)
        return
    width = console.width
    console.width = max(width, console.measure(table, options=console.options.update_width(1000)).maximum)
    try:
        console.print(table)
    finally:
        console.width = width


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def export(
    workspace: Path,
    storage: str | None,
    study_name: str,
    out: Path,
    *,
    trial: int | None,
    limits: dict[str, float],
    retrain: bool,
    seeds: int,
    epochs: int | None,
    console: Console,
    int8: bool = False,
) -> None:
    """Write a trial's model directory, from its artifacts or retrained with ``seeds`` seeds.

    ``int8``: also ``model.int8.onnx``, calibrated on the study's training windows, scored on its
    validation and test sets (``ecgnet.int8.add_int8``).
    """
    from ecgnet.runner import export_outcome, load_data, train_seeds  # training and ONNX: only here

    study, _ = load_existing_study(workspace, storage, study_name)
    chosen = pick_trial(study, trial, limits)
    if not retrain:
        export_model(study, out, trial=chosen.number)
        how = "" if trial is not None else f" (highest {ranking_metric(study)}{within_limits(limits)})"
        console.print(f"exported trial {chosen.number}{how} to {out}", highlight=False)
        if int8:
            definition = definition_of(study)
            spec = dataclasses.replace(definition.data_spec, cache=study.user_attrs["data_cache"])
            _add_int8(out, load_data(spec, definition.training), console)
        return
    definition = definition_of(study)
    config = definition.training if epochs is None else dataclasses.replace(definition.training, epochs=epochs)
    arch = definition.space.arch_of(chosen.params)
    # The whole training set: the study's max_train_records is a search budget, not the model's.
    spec = dataclasses.replace(definition.data_spec, cache=study.user_attrs["data_cache"], max_train_records=None)
    outcomes, data = train_seeds(arch, spec, config, seeds)
    for outcome in outcomes:
        console.print(f"seed {outcome.seed}: val micro AUROC {outcome.result.val_metrics['micro_auroc']:.4f}")
    kept = max(outcomes, key=lambda o: o.result.val_metrics["micro_auroc"])
    export_outcome(
        kept,
        out,
        data,
        spec,
        config,
        exported_from={"study": study_name, "trial": chosen.number},
        retrained={"seeds": [o.seed for o in outcomes], "kept_seed": kept.seed},
    )
    console.print(f"retrained trial {chosen.number} (blocks {list(arch.blocks)}) and exported to {out}")
    if int8:
        _add_int8(out, data, console)


def _add_int8(out: Path, data: LoadedData, console: Console) -> None:
    from ecgnet.export import MODEL_INT8_ONNX
    from ecgnet.int8 import add_int8

    figures = add_int8(out, data.train, data.val, data.test)
    int8, fp32 = figures["int8"], figures["fp32_onnx"]
    console.print(
        f"int8: {out / MODEL_INT8_ONNX}, {int8['size_mb']:.3f} MB ({int8['size_mb'] / fp32['size_mb']:.2f}x fp32), "
        f"val micro AUROC {int8['validation']['micro_auroc']:.4f} (fp32 {fp32['validation']['micro_auroc']:.4f}), "
        f"{int8['latency_ms']:.2f} ms (fp32 {fp32['latency_ms']:.2f} ms, one thread)",
        highlight=False,
    )


def definition_of(study: optuna.Study) -> StudyDefinition:
    return parse_definition(study.user_attrs["definition"], study.user_attrs.get("definition_source", "study"))


def dashboard(
    workspace: Path,
    storage: str | None,
    study_name: str,
    *,
    host: str,
    port: int,
    unix_socket: Path | None = None,
    console: Console,
) -> None:
    """Serve optuna-dashboard on the study's storage with its artifact store, behind a token (blocks)."""
    from optuna_dashboard import wsgi

    from ecgsearch.commands.dashboard_server import TOKEN_ENV, TokenGate, serve, token_from_environment

    try:
        token = token_from_environment()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    study, url = load_existing_study(workspace, storage, study_name)
    artifact_dir = study.user_attrs.get("artifact_dir", str(Workspace(workspace).artifacts))
    store = optuna.artifacts.FileSystemArtifactStore(artifact_dir)
    app = TokenGate(
        wsgi(open_storage(url, StorageSettings()), artifact_store=store),
        token,
        cookie_name=f"ecgsearch-dashboard-{port if unix_socket is None else 'socket'}",
    )

    def announce() -> None:  # once the server listens: a script may open the URL at once
        console.print(f"optuna-dashboard for {redact(url)} (artifacts {artifact_dir})", highlight=False)
        if unix_socket is None:
            where = f"http://{host}:{port}"
        else:
            where = "http://localhost:8080"
            console.print(
                f"on the Unix socket {unix_socket} (mode 0600); from a laptop: "
                f"ssh -N -L 8080:{unix_socket} <this host>, then open",
                highlight=False,
            )
        shown = "<the token in $" + TOKEN_ENV + ">" if os.environ.get(TOKEN_ENV) else token
        console.print(f"{where}/dashboard?token={shown}", highlight=False, soft_wrap=True)

    serve(app, host=host, port=port, unix_socket=unix_socket, ready=announce)
