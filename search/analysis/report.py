"""The study report: Pareto front with E1-E18 marked, seed spread, hypervolume, thesis comparison.

Hypervolume is ``ecgsearch.analysis.hypervolume``'s: the headline numbers on (AUROC, log10 MB), and in
all the study's objectives as numbers and by trial; under early stopping the report also plots
the (AUROC, log10 MB) one against cumulative training epochs (``ecgsearch.analysis.training_cost``).
"""

from __future__ import annotations

import html
import itertools
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from ecgnet.thesis import thesis_experiments
from ecgsearch.analysis.hypervolume import (
    REFERENCE_AUROC,
    REFERENCE_MB,
    hypervolume,
    objective_hypervolume,
    running_hypervolumes,
)
from ecgsearch.analysis.results import (
    TrialRow,
    feasible_trained,
    pareto_rows,
    repeats_line,
    seed_table,
    spread_text,
    study_classes,
    study_space,
    trial_row,
)
from ecgsearch.analysis.seeds import SeedSummary, robustly_dominates
from ecgsearch.analysis.training_cost import hypervolume_by_epochs, training_cost
from ecgsearch.metric_table import INT8_PREFIX, dominates, hypervolume_reference, is_log_scale
from ecgsearch.storage.optuna_internals import trial_summaries
from ecgsearch.trial_record import REPORT_ATTRS, RUNG_ATTR_PREFIX

__all__ = ["hypervolume_history", "report_data", "write_report"]


def hypervolume_history(
    study: optuna.Study, metric_names: list[str], trials: list[FrozenTrial] | None = None
) -> list[tuple[int, float]]:
    """(trial number, hypervolume in the study's objectives of all feasible trained trials up to it).

    On (val micro AUROC, MB) studies this is the (AUROC, log10 MB) hypervolume; with latency or
    int8 objectives it is the N-objective one the report's headline gives. ``trials``: the study's,
    already read.
    """
    trials = sorted(feasible_trained(study, trials), key=lambda t: t.number)
    if study.metric_names:
        directions = [d.name.lower() for d in study.directions]
        curve = running_hypervolumes(
            [tuple(t.values) for t in trials],
            directions,
            lambda front: objective_hypervolume(front, metric_names, directions),
        )
    else:  # objectives without names have no references: the (AUROC, MB) figure every trial records
        curve = running_hypervolumes(
            [(t.user_attrs["val_micro_auroc"], t.user_attrs["size_mb"]) for t in trials],
            ("maximize", "minimize"),
            hypervolume,
        )
    return [(t.number, value) for t, value in zip(trials, curve, strict=True)]


def _objective_figures(row: TrialRow, metric_names: list[str]) -> dict[str, Any]:
    """A row's objectives for robust dominance: validation metrics as seed summaries, sizes as values."""
    figures: dict[str, Any] = {}
    for name in metric_names:
        spread = row.seeds["val"].get(name.removeprefix("val_")) if name.startswith("val_") else None
        figures[name] = SeedSummary(**spread) if spread else row.objectives[name]
    return figures


def report_data(study: optuna.Study) -> dict[str, Any]:
    """Everything the HTML report shows, as plain data.

    The front is the study's own (``pareto_rows``, as ``ecgsearch pareto`` prints it), in the
    study's objectives (``study.metric_names``). Each thesis configuration lists the searched
    trials that dominate it, plainly (on the values the study recorded, one seed each) and
    robustly (on the mean over seeds, see ``ecgsearch.analysis.seeds``).
    """
    metric_names = list(study.metric_names or [f"objective {i}" for i in range(len(study.directions))])
    directions = [d.name.lower() for d in study.directions]
    # One narrow read of every trial (no parameters, no logs or artifact ids), shared by every figure.
    trials = trial_summaries(study, REPORT_ATTRS, key_prefixes=(RUNG_ATTR_PREFIX,))
    seeds = seed_table(study, trials)
    space, classes = study_space(study), study_classes(study)
    # No MACs: the report shows none (an older study's trials did not record them).
    rows = [
        trial_row(t, space, classes, metric_names=metric_names, seeds=seeds, macs=False)
        for t in feasible_trained(study, trials)
    ]
    front = pareto_rows(study, seeds, macs=False)
    searched = [r for r in rows if r.thesis is None]
    figures = {r.trial: _objective_figures(r, metric_names) for r in rows}
    thesis = {}
    for name, experiment in thesis_experiments().items():
        measured = next((r for r in rows if r.thesis == name), None)
        plain = [o.trial for o in searched if measured and dominates(o.values, measured.values, directions)]
        robust = [
            o.trial
            for o in searched
            if measured and robustly_dominates(figures[o.trial], figures[measured.trial], metric_names, directions)
        ]
        thesis[name] = {
            "measured": measured,
            "reference": experiment.reference,
            "dominated_by": plain,
            "robustly_dominated_by": robust,
        }
    measured = [e for e in thesis.values() if e["measured"]]
    return {
        "metric_names": metric_names,
        "directions": directions,
        "rows": rows,
        "front": front,
        "thesis": thesis,
        "dominance": {
            "thesis_measured": len(measured),
            "plain": sum(bool(e["dominated_by"]) for e in measured),
            "robust": sum(bool(e["robustly_dominated_by"]) for e in measured),
            "thesis_with_seeds": sum(e["measured"].seeds["count"] > 1 for e in measured),
        },
        "hypervolume": {
            "searched": hypervolume([(r.val_micro_auroc, r.size_mb) for r in searched]),
            "thesis": hypervolume([(r.val_micro_auroc, r.size_mb) for r in rows if r.thesis]),
            "all": hypervolume([(r.val_micro_auroc, r.size_mb) for r in rows]),
        },
        # In all the study's objectives (three with latency), to fixed references per objective.
        "objective_hypervolume": {
            name: objective_hypervolume([tuple(r.values) for r in subset], metric_names, directions)
            for name, subset in (("searched", searched), ("thesis", [r for r in rows if r.thesis]), ("all", rows))
        },
        "hypervolume_history": hypervolume_history(study, metric_names, trials),
        "hypervolume_by_epochs": hypervolume_by_epochs(trials),
        "cost": training_cost(study, trials),
        "stopped": stopped_points(trials, metric_names),
    }


def stopped_points(trials: list[FrozenTrial], metric_names: list[str]) -> list[dict[str, Any]]:
    """Trials stopped at a rung: their objectives at the last rung they reached (never a final figure)."""
    points = []
    for trial in (t for t in trials if t.state == optuna.trial.TrialState.PRUNED):
        rung = trial.user_attrs.get("stopped", {}).get("rung")
        figures = trial.user_attrs.get(f"{RUNG_ATTR_PREFIX}{rung}")
        if rung is not None and figures is not None:
            objectives = dict(zip(metric_names, figures, strict=True))
            points.append({"trial": trial.number, "rung": rung, "objectives": objectives})
    return points


def _axes(metric_names: list[str], directions: list[str]) -> tuple[str, str]:
    """The plot's y (the first maximised objective) and x (the first minimised one)."""
    y = next((m for m, d in zip(metric_names, directions, strict=True) if d == "maximize"), metric_names[0])
    x = next((m for m, d in zip(metric_names, directions, strict=True) if d == "minimize"), metric_names[-1])
    return x, y


def _trace(rows: list[TrialRow], x: str, y: str, **style: Any) -> go.Scatter:
    """Rows as points on two of the study's objectives."""
    return go.Scatter(x=[r.objectives[x] for r in rows], y=[r.objectives[y] for r in rows], **style)


def _scatter(data: dict[str, Any]) -> go.Figure:
    rows, front = data["rows"], data["front"]
    x, y = _axes(data["metric_names"], data["directions"])
    figure = go.Figure()
    figure.add_trace(
        _trace(
            rows,
            x,
            y,
            mode="markers",
            name="trials",
            marker={"color": "lightgray", "size": 7},
            text=[f"trial {r.trial}" for r in rows],
        )
    )
    figure.add_trace(
        _trace(
            front,
            x,
            y,
            mode="lines+markers",
            name="Pareto front",
            line={"shape": "hv"},
            marker={"size": 9},
            text=[f"trial {r.trial}" for r in front],
        )
    )
    stopped = data["stopped"]
    if stopped:
        figure.add_trace(
            go.Scatter(
                x=[p["objectives"][x] for p in stopped],
                y=[p["objectives"][y] for p in stopped],
                mode="markers",
                name="stopped early (figures at its rung"
                + ("; fp32 standing in for int8" if y.startswith(INT8_PREFIX) else "")
                + ")",
                marker={"color": "gainsboro", "symbol": "circle-open", "size": 7},
                text=[f"trial {p['trial']}, stopped at epoch {p['rung']}" for p in stopped],
            )
        )
    thesis_rows = [r for r in rows if r.thesis]
    figure.add_trace(
        _trace(
            thesis_rows,
            x,
            y,
            mode="markers+text",
            name="thesis E1-E18",
            text=[r.thesis for r in thesis_rows],
            textposition="top center",
            marker={"symbol": "diamond", "size": 10},
        )
    )
    metric = y.removeprefix("val_")
    confirmed = [r for r in rows if r.seeds["count"] > 1 and metric in r.seeds["val"]]
    if confirmed and y.startswith("val_"):
        figure.add_trace(
            go.Scatter(
                x=[r.objectives[x] for r in confirmed],
                y=[r.seeds["val"][metric]["mean"] for r in confirmed],
                error_y={"type": "data", "array": [r.seeds["val"][metric]["sd"] for r in confirmed]},
                mode="markers",
                name="mean ± sd over seeds",
                marker={"symbol": "cross", "size": 8},
                text=[f"trial {r.trial}, {r.seeds['count']} seeds" for r in confirmed],
            )
        )
    log_x = is_log_scale(x)
    figure.update_layout(
        title=f"{y} vs {x} (study objectives)",
        xaxis_title=x + (" (log scale)" if log_x else ""),
        yaxis_title=y,
        xaxis_type="log" if log_x else "linear",
        height=640,
    )
    return figure


def _references(names: list[str]) -> str:
    return ", ".join(f"{n} {hypervolume_reference(n):g}" for n in names)


def _projections(data: dict[str, Any]) -> list[go.Figure]:
    """With three or more objectives, every pair of them: trials, the front (in all objectives), E1-E18."""
    names, rows, front = data["metric_names"], data["rows"], data["front"]
    front_ids = {r.trial for r in front}
    figures = []
    for x, y in itertools.combinations(names, 2):
        figure = go.Figure()
        for label, subset, marker in (
            ("trials", [r for r in rows if r.trial not in front_ids], {"color": "lightgray", "size": 7}),
            ("Pareto front (all objectives)", front, {"size": 9}),
            ("thesis E1-E18", [r for r in rows if r.thesis], {"symbol": "diamond-open", "size": 11}),
        ):
            figure.add_trace(
                _trace(
                    subset,
                    x,
                    y,
                    mode="markers",
                    name=label,
                    marker=marker,
                    text=[r.thesis or f"trial {r.trial}" for r in subset],
                )
            )
        figure.update_layout(
            title=f"{y} vs {x}",
            xaxis_title=x,
            yaxis_title=y,
            xaxis_type="log" if is_log_scale(x) else "linear",
            yaxis_type="log" if is_log_scale(y) else "linear",
            height=420,
        )
        figures.append(figure)
    return figures


def _objective_hypervolume_bullet(names: list[str], volumes: dict[str, float]) -> str:
    """The hypervolume in the study's own objectives; none on (val micro AUROC, MB) studies,
    where it is the (AUROC, log10 MB) figure the report already gives."""
    if names == ["val_micro_auroc", "size_mb"]:
        return ""
    return f"""<li>Hypervolume in the study's {len(names)} objectives ({html.escape(", ".join(names))}; validation
metrics as they are, sizes and times on a log10 scale, to fixed references: {html.escape(_references(names))}):
searched trials <b id="hv-objectives-searched">{volumes["searched"]:.4f}</b>, thesis configurations
<b id="hv-objectives-thesis">{volumes["thesis"]:.4f}</b>, all {volumes["all"]:.4f}.</li>"""


def _dominance_cell(trials: list[int], rows: dict[int, TrialRow], data: dict[str, Any]) -> str:
    """How many searched trials dominate a thesis configuration, and the best of them by the
    study's first objective (a list would run to pages on a long study)."""
    if not trials:
        return "-"
    name, direction = data["metric_names"][0], data["directions"][0]
    sign = 1 if direction == "maximize" else -1
    best = max(trials, key=lambda t: (sign * rows[t].objectives[name], -t))
    return f"{len(trials)} (best: {best})"


def write_report(study: optuna.Study, out: Path | str) -> Path:
    """Write a self-contained HTML report (plotly included inline)."""
    data = report_data(study)
    rows, front = data["rows"], data["front"]
    history = data["hypervolume_history"]
    hv = go.Figure(go.Scatter(x=[n for n, _ in history], y=[v for _, v in history], mode="lines+markers"))
    hv.update_layout(
        title=f"Hypervolume in the study's objectives ({', '.join(data['metric_names'])}) by trial, "
        f"to {_references(data['metric_names'])}",
        xaxis_title="trial number",
        yaxis_title="hypervolume",
        height=420,
    )
    by_epochs = data["hypervolume_by_epochs"]
    cost_plot = go.Figure(go.Scatter(x=[e for e, _ in by_epochs], y=[v for _, v in by_epochs], mode="lines+markers"))
    cost_plot.update_layout(
        title="Hypervolume on (val micro AUROC, log10 MB) against cumulative training epochs (the cost of the search)",
        xaxis_title="training epochs spent (all trials, in order of finishing)",
        yaxis_title="hypervolume",
        height=420,
    )
    cost = data["cost"]
    names = data["metric_names"]
    # When every trained trial spent the same epochs (none stopped early, none trained more
    # seeds), epochs are trials times a constant: the curve by trial again.
    steps = {later - earlier for (earlier, _), (later, _) in itertools.pairwise([(0, 0.0), *by_epochs])} - {0}
    same_curve = len(steps) <= 1 and names == ["val_micro_auroc", "size_mb"]
    cost_figure = (
        f"<p>No trial was stopped early: hypervolume against epochs is the curve by trial above, "
        f"{cost.epochs} epochs in all.</p>"
        if same_curve
        else cost_plot.to_html(full_html=False, include_plotlyjs=False)
    )
    front_table = [
        "<tr><th>trial</th><th>thesis</th>"
        + "".join(f"<th>{html.escape(m)}</th>" for m in names)
        + "<th>val µAUROC (mean ± sd, seeds)</th><th>val µAUPRC (mean ± sd, seeds)</th></tr>"
    ]
    for r in front:
        cells = [
            str(r.trial),
            r.thesis or "",
            *(f"{r.objectives[m]:.4g}" for m in names),
            *(spread_text(r, m, count=True) for m in ("val_micro_auroc", "val_micro_auprc")),
        ]
        front_table.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")

    table = [
        "<tr><th>exp</th><th>MB here</th><th>MB thesis</th><th>val µAUROC here</th><th>test µAUROC here</th>"
        '<th>µAUROC thesis</th><th>val µAUPRC here</th><th>µAUPRC thesis (its "Micro Precision")</th>'
        '<th>val MAUPRC here</th><th>MAUPRC thesis (its "Macro Precision")</th>'
        f"<th>dominated by searched trials: count (best by {html.escape(names[0])})</th>"
        "<th>robustly dominated by: count (best)</th></tr>"
    ]
    by_trial = {r.trial: r for r in rows}
    for name, entry in data["thesis"].items():
        m, ref = entry["measured"], entry["reference"]
        cells = [
            name,
            f"{m.size_mb:.3f}" if m else "-",
            f"{ref.model_size_mb:.2f}",
            spread_text(m, "val_micro_auroc", count=True) if m else "not run",
            f"{m.test_micro_auroc:.4f}" if m and m.test_micro_auroc is not None else "-",
            f"{ref.micro_auroc:.2f}",
            spread_text(m, "val_micro_auprc", count=True),
            f"{ref.micro_auprc:.2f}",
            spread_text(m, "val_macro_auprc", count=True),
            f"{ref.macro_auprc:.2f}",
            _dominance_cell(entry["dominated_by"], by_trial, data),
            _dominance_cell(entry["robustly_dominated_by"], by_trial, data),
        ]
        table.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    counts, volumes, objective_volumes = data["dominance"], data["hypervolume"], data["objective_hypervolume"]
    title = html.escape(study.study_name)
    objective_bullet = _objective_hypervolume_bullet(names, objective_volumes)
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto} td,th{padding:2px 8px;text-align:right}"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ecgsearch report: {title}</title>
<style>{style}</style></head>
<body><h1>Study {title}</h1>
<p>{len(rows)} trained feasible trials; Pareto front of {len(front)} trials in the study's objectives
({html.escape(", ".join(names))}). {html.escape(repeats_line(study))}.</p>
<h2>Searched trials vs the thesis's configurations</h2>
<ul>
<li>Thesis configurations dominated by a searched trial (on the values the study recorded, one seed
each): <b id="plain-count">{counts["plain"]}</b> of {counts["thesis_measured"]}.</li>
<li>Robustly dominated (no larger, and mean validation metric better by more than two standard
errors of the difference, over seeds from <code>ecgsearch confirm</code>): <b id="robust-count">{counts["robust"]}</b>
of {counts["thesis_measured"]} ({counts["thesis_with_seeds"]} of them have two or more seeds; with one
seed nothing is claimed).</li>
<li>Hypervolume on (val micro AUROC, log10 MB), reference AUROC {REFERENCE_AUROC}, {REFERENCE_MB:g} MB:
searched trials <b id="hv-searched">{volumes["searched"]:.4f}</b>, thesis configurations
<b id="hv-thesis">{volumes["thesis"]:.4f}</b>, all {volumes["all"]:.4f}.</li>
{objective_bullet}
</ul>
{_scatter(data).to_html(full_html=False, include_plotlyjs=True)}
{"".join(f.to_html(full_html=False, include_plotlyjs=False) for f in _projections(data)) if len(names) > 2 else ""}
<h2>Pareto front (as <code>ecgsearch pareto</code> lists it)</h2>
<table id="front">{"".join(front_table)}</table>
{hv.to_html(full_html=False, include_plotlyjs=False)}
<h2>Training cost</h2>
<p>Training epochs spent: <b id="epochs-spent">{cost.epochs}</b>; the same trials at the full budget (every
stopped trial trained to the end): <b id="epochs-full">{cost.full_budget_epochs}</b>
({cost.ratio:.0%}). {cost.stopped} trials were stopped early; their figures at the rung are greyed in the
plot above and never on the front.</p>
{cost_figure}
<h2>E1-E18 here and in the thesis (Table 4.1)</h2>
<p>Sizes are comparable with the thesis's. AUROC and AUPRC are comparable only when this study trained
on the thesis's data with its protocol; on synthetic data (the demo) only the sizes are comparable.
The thesis's "precision" columns are average precision (AUPRC), as its base code computed them.</p>
<table id="thesis">{"".join(table)}</table></body></html>"""
    out = Path(out)
    out.write_text(page)
    return out
