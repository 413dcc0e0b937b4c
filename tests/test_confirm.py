"""Seed noise: robust dominance by hand, and `ecgsearch confirm` on a study (SQLite; PostgreSQL in test_slurm).

The study: the tiny definition with a 0.5 MB budget (E16 is infeasible), E18, three searched
trials and one enqueued repeat of E18. Confirmation retrains with a second seed; pareto and the
report then show mean ± sd, and the report's front is the pareto command's.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path

import pytest
from optuna.trial import TrialState
from search_helpers import ecgsearch, environment, load, run, sqlite_url, unique_name, worker_command

from ecgsearch.analysis.results import SHOWN_METRICS, TrialRow, seed_summary, seed_table
from ecgsearch.analysis.seeds import SeedSummary, robustly_dominates
from ecgsearch.metric_table import dominates

NAMES = ["val_micro_auroc", "size_mb"]
DIRECTIONS = ["maximize", "minimize"]


def test_plain_dominance_follows_the_directions() -> None:
    assert dominates([0.8, 1.0], [0.7, 1.0], DIRECTIONS)
    assert not dominates([0.8, 1.0], [0.8, 1.0], DIRECTIONS)  # equal is not better
    assert not dominates([0.9, 2.0], [0.8, 1.0], DIRECTIONS)  # larger
    assert dominates([0.8, 0.5], [0.8, 1.0], DIRECTIONS)


def test_robust_dominance_needs_two_standard_errors_of_the_difference() -> None:
    thesis = {"val_micro_auroc": SeedSummary(5, 0.775, 0.022), "size_mb": 0.28}
    # Standard error of the difference: sqrt(0.022**2 / 5 * 2) = 0.01391; two of them: 0.02783.
    clearly = {"val_micro_auroc": SeedSummary(5, 0.805, 0.022), "size_mb": 0.28}
    barely = {"val_micro_auroc": SeedSummary(5, 0.800, 0.022), "size_mb": 0.2}
    assert robustly_dominates(clearly, thesis, NAMES, DIRECTIONS)
    assert not robustly_dominates(barely, thesis, NAMES, DIRECTIONS)  # 0.025 is noise here
    bigger = {"val_micro_auroc": SeedSummary(5, 0.9, 0.022), "size_mb": 0.3}
    assert not robustly_dominates(bigger, thesis, NAMES, DIRECTIONS)
    one_seed = {"val_micro_auroc": SeedSummary(1, 0.95, None), "size_mb": 0.1}
    assert not robustly_dominates(one_seed, thesis, NAMES, DIRECTIONS)  # no spread known: no claim


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """The tiny study on SQLite (PostgreSQL: tests/test_slurm.py confirms through a Slurm array there)."""
    workspace, name = tmp_path_factory.mktemp("confirm") / "ws", unique_name("confirm")
    url = sqlite_url(workspace)
    env = environment(None)
    first = run(worker_command(workspace, name, 5, "--max-mb", "0.5"), env)
    assert first.returncode == 0, first.stderr + first.stdout
    trials = load(url, name).get_trials()
    e18 = next(t for t in trials if t.user_attrs.get("thesis_experiment") == "E18")
    e16 = next(t for t in trials if t.user_attrs.get("thesis_experiment") == "E16")
    load(url, name).enqueue_trial(e18.params)  # a repeat: it reuses E18's result
    again = run(worker_command(workspace, name, 5), env)
    assert again.returncode == 0, again.stderr + again.stdout
    repeat = load(url, name).get_trials()[-1]
    return {"workspace": workspace, "name": name, "url": url, "e18": e18, "e16": e16, "repeat": repeat}


def test_confirm_adds_seeds_that_pareto_and_report_show(study: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    workspace, name, url = study["workspace"], study["name"], study["url"]
    e18, e16, repeat = study["e18"], study["e16"], study["repeat"]
    assert "infeasible" in e16.user_attrs and repeat.user_attrs["repeats_trial"] == e18.number

    common = ["--study-name", name, "--workspace", workspace]
    code, out, err = ecgsearch(capsys, monkeypatch, "pareto", *common, "--json")
    assert code == 0, err
    front = [row["trial"] for row in json.loads(out)]
    assert e16.number not in front
    # The repeat of E18 is confirmed through E18: one run per seed for the network.
    code, out, err = ecgsearch(capsys, monkeypatch, "confirm", *common, "--thesis", "--trial", repeat.number,
                               "--seeds", "2")  # fmt: skip
    assert code == 0, err + out
    assert "1 new run(s) enqueued" in out
    runs = load(url, f"{name}.confirm").get_trials()
    assert len(runs) == 1 and runs[0].state == TrialState.COMPLETE
    assert runs[0].user_attrs["confirms_trial"] == e18.number and runs[0].user_attrs["seed"] == 1
    assert runs[0].params == e18.params

    code, out, err = ecgsearch(capsys, monkeypatch, "pareto", *common, "--json")
    rows = {row["trial"]: row for row in json.loads(out)}
    seed_values = [e18.user_attrs["val_micro_auroc"], runs[0].user_attrs["result"]["val"]["micro_auroc"]]
    assert seed_values[0] != seed_values[1]  # another seed, another result
    # E18 may or may not be on the front: its spread is checked whether pareto lists it or not.
    e18_spread = seed_summary(seed_table(load(url, name))[e18.number])
    assert e18_spread["seeds"] == [0, 1]
    assert e18_spread["val"]["micro_auroc"]["sd"] == pytest.approx(statistics.stdev(seed_values))
    for number in (e18.number, repeat.number):
        if number in rows:
            spread = rows[number]["seeds"]["val"]["micro_auroc"]
            assert rows[number]["seeds"]["seeds"] == [0, 1]
            assert spread["mean"] == pytest.approx(statistics.fmean(seed_values))
            assert spread["sd"] == pytest.approx(statistics.stdev(seed_values))

    code, out, err = ecgsearch(capsys, monkeypatch, "confirm", *common, "--thesis", "--seeds", "2")
    assert code == 0 and "0 new run(s) enqueued" in out, err + out

    report = tmp_path / "report.html"
    code, _, err = ecgsearch(capsys, monkeypatch, "report", *common, "--out", report)
    assert code == 0, err
    page = report.read_text()
    front_table = page.split('<table id="front">')[1].split("</table>")[0]
    assert [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", front_table)] == front
    # Plotly writes its figure as JSON, where "±" is escaped.
    assert "mean \\u00b1 sd over seeds" in page and '"error_y"' in page and 'id="robust-count">' in page
    e18_row = page.split("<td>E18</td>")[1].split("</tr>")[0]
    assert f"± {statistics.stdev(seed_values):.4f} (2)" in e18_row


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "say which trials to confirm"),
        (("--trial", "E16"), "it is not a trained feasible trial (infeasible: "),
        (("--trial", "99"), "(no such trial)"),
        (("--front", "--seeds", "1"), "--seeds"),
    ],
)
def test_confirm_refuses_what_it_cannot_confirm(study: dict, extra, message: str, capsys, monkeypatch) -> None:
    extra = [str(study["e16"].number) if part == "E16" else part for part in extra]
    code, _, err = ecgsearch(capsys, monkeypatch, "confirm", "--study-name", study["name"], "--workspace",
                             study["workspace"], *extra)  # fmt: skip
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_row_has_a_column_for_every_validation_metric_it_shows() -> None:
    columns = {field.name for field in dataclasses.fields(TrialRow)}
    assert {f"val_{name}" for name in SHOWN_METRICS} <= columns
