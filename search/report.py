"""The study report: Pareto front with E1-E18 marked, hypervolume history, thesis comparison.

Hypervolume is computed on (AUROC, log10 MB) with the reference point AUROC 0.5, 64 MB: the
area of the (AUROC, log-size) plane that the front dominates and the reference point bounds.
The same definition serves the report and the search benchmark (``hypervolume``).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go

from ecgnet.thesis import thesis_experiments
from ecgsearch.results import feasible_trained, repeats_line
from ecgsearch.study import THESIS_ATTR

__all__ = ["REFERENCE_AUROC", "REFERENCE_MB", "hypervolume", "hypervolume_history", "report_data", "write_report"]

REFERENCE_AUROC = 0.5
REFERENCE_MB = 64.0


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated by (AUROC, MB) points in the (AUROC up, log10 MB down) plane, to the reference."""
    # Minimisation form: x = -AUROC, y = log10 MB; keep points that beat the reference in both.
    reference = (-REFERENCE_AUROC, math.log10(REFERENCE_MB))
    kept = sorted((-a, math.log10(mb)) for a, mb in points if a > REFERENCE_AUROC and mb < REFERENCE_MB)
    return _sweep(kept, reference)


def _sweep(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """2-D hypervolume of minimisation points: sweep along x, keeping the running minimum of y."""
    area, best_y = 0.0, reference[1]
    for i, (x, y) in enumerate(points):
        best_y = min(best_y, y)
        next_x = points[i + 1][0] if i + 1 < len(points) else reference[0]
        area += (next_x - x) * (reference[1] - best_y)
    return area


def _feasible_trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in feasible_trained(study) if t.user_attrs.get("val_micro_auroc") is not None]


def hypervolume_history(study: optuna.Study) -> list[tuple[int, float]]:
    """(trial number, hypervolume of all feasible trained trials up to it)."""
    trials = sorted(_feasible_trained(study), key=lambda t: t.number)
    points: list[tuple[float, float]] = []
    history = []
    for t in trials:
        points.append((t.user_attrs["val_micro_auroc"], t.user_attrs["size_mb"]))
        history.append((t.number, hypervolume(points)))
    return history


def _dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    better_or_equal = a["auroc"] >= b["auroc"] and a["mb"] <= b["mb"]
    return better_or_equal and (a["auroc"] > b["auroc"] or a["mb"] < b["mb"])


def report_data(study: optuna.Study) -> dict[str, Any]:
    """Everything the HTML report shows, as plain data: front, hypervolume history, thesis comparison."""
    rows = [
        {"trial": t.number, "thesis": t.user_attrs.get(THESIS_ATTR), "auroc": t.user_attrs["val_micro_auroc"],
         "test_auroc": t.user_attrs.get("test_micro_auroc"), "mb": t.user_attrs["size_mb"]}
        for t in _feasible_trained(study)
    ]  # fmt: skip
    front = [r for r in rows if not any(_dominates(o, r) for o in rows)]
    searched = [r for r in rows if r["thesis"] is None]
    thesis = {}
    for name, experiment in thesis_experiments().items():
        measured = next((r for r in rows if r["thesis"] == name), None)
        dominated_by = [o["trial"] for o in searched if measured and _dominates(o, measured)]
        thesis[name] = {"measured": measured, "reference": experiment.reference, "dominated_by": dominated_by}
    return {"rows": rows, "front": sorted(front, key=lambda r: r["mb"]), "thesis": thesis,
            "hypervolume": hypervolume_history(study)}  # fmt: skip


def write_report(study: optuna.Study, out: Path | str) -> Path:
    """Write a self-contained HTML report (plotly included inline)."""
    data = report_data(study)
    rows, front = data["rows"], data["front"]
    scatter = go.Figure()
    scatter.add_trace(go.Scatter(x=[r["mb"] for r in rows], y=[r["auroc"] for r in rows], mode="markers",
                                 name="trials", marker={"color": "lightgray", "size": 7},
                                 text=[f"trial {r['trial']}" for r in rows]))  # fmt: skip
    scatter.add_trace(go.Scatter(x=[r["mb"] for r in front], y=[r["auroc"] for r in front], mode="lines+markers",
                                 name="Pareto front", line={"shape": "hv"}, marker={"size": 9},
                                 text=[f"trial {r['trial']}" for r in front]))  # fmt: skip
    thesis_rows = [r for r in rows if r["thesis"]]
    scatter.add_trace(go.Scatter(x=[r["mb"] for r in thesis_rows], y=[r["auroc"] for r in thesis_rows],
                                 mode="markers+text", name="thesis E1-E18", text=[r["thesis"] for r in thesis_rows],
                                 textposition="top center", marker={"symbol": "diamond", "size": 10}))  # fmt: skip
    scatter.update_layout(title="Validation micro AUROC vs model size", xaxis_title="model size (MB, log scale)",
                          yaxis_title="validation micro AUROC", xaxis_type="log")  # fmt: skip
    history = data["hypervolume"]
    hv = go.Figure(go.Scatter(x=[n for n, _ in history], y=[v for _, v in history], mode="lines+markers"))
    hv.update_layout(title=f"Hypervolume on (AUROC, log10 MB), reference AUROC {REFERENCE_AUROC}, {REFERENCE_MB:g} MB",
                     xaxis_title="trial number", yaxis_title="hypervolume")  # fmt: skip

    table = ["<tr><th>exp</th><th>MB here</th><th>MB thesis</th><th>val µAUROC here</th><th>test µAUROC here</th>"
             "<th>µAUROC thesis</th><th>dominated by searched trials</th></tr>"]  # fmt: skip
    for name, entry in data["thesis"].items():
        m, ref = entry["measured"], entry["reference"]
        cells = [name, f"{m['mb']:.3f}" if m else "-", f"{ref.model_size_mb:.2f}",
                 f"{m['auroc']:.4f}" if m else "not run", f"{m['test_auroc']:.4f}" if m and m["test_auroc"] else "-",
                 f"{ref.micro_auroc:.2f}", ", ".join(map(str, entry["dominated_by"])) or "-"]  # fmt: skip
        table.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    dominated = [n for n, e in data["thesis"].items() if e["dominated_by"]]
    title = html.escape(study.study_name)
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto} td,th{padding:2px 8px;text-align:right}"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>ecgsearch report: {title}</title>
<style>{style}</style></head>
<body><h1>Study {html.escape(study.study_name)}</h1>
<p>{len(rows)} trained feasible trials; Pareto front of {len(front)} trials.
Thesis configurations dominated by the searched front: {html.escape(", ".join(dominated) or "none")}.
{html.escape(repeats_line(study))}.</p>
{scatter.to_html(full_html=False, include_plotlyjs=True)}
{hv.to_html(full_html=False, include_plotlyjs=False)}
<h2>E1-E18 here and in the thesis (Table 4.1)</h2>
<p>Sizes are comparable with the thesis's. AUROC is comparable only when this study trained on the
thesis's data with its protocol; on synthetic data (the demo) only the sizes are comparable.</p>
<table>{"".join(table)}</table></body></html>"""
    out = Path(out)
    out.write_text(page)
    return out
