"""Edge objectives in a study: latency as a third objective, limits before training, N-objective results.

The study: the tiny definition with CPU latency as a third objective and an int8-size limit
that E16 (0.23 MB in int8) breaks and E18 (0.09 MB) keeps. Int8 size depends on the network's
structure only, so the limit's outcome is the same on every machine; latency is not, and is
only checked for being recorded with how it was measured.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from search_helpers import TINY, ecgsearch, edited, load, sqlite_url, unique_name

from ecgnet.latency import model_latency
from ecgnet.model import ECGResNet
from ecgnet.thesis import thesis_config
from ecgsearch.analysis.hypervolume import hypervolume, objective_hypervolume, running_hypervolumes
from ecgsearch.analysis.report import hypervolume_history, report_data
from ecgsearch.analysis.results import best_trial, ranking_metric
from ecgsearch.storage.optuna_internals import hypervolume_of_losses
from ecgsearch.trials.pretraining_figures import LATENCY_REFERENCE_ATTR

THREE = ["val_micro_auroc", "size_mb", "latency_ms"]
DIRECTIONS = ["maximize", "minimize", "minimize"]


def test_objective_hypervolume_equals_the_two_objective_one_and_extends_to_three() -> None:
    points = [(0.75, 6.4), (0.6, 0.64), (0.7, 6.4), (0.45, 0.01), (0.9, 100.0), (0.8, 3.0)]
    two = objective_hypervolume(points, THREE[:2], DIRECTIONS[:2])
    assert two == pytest.approx(hypervolume(points))
    # One point: a box of (AUROC - 0.5) x log10(64 / MB) x log10(1000 / ms).
    box = objective_hypervolume([(0.8, 1.0, 10.0)], THREE, DIRECTIONS)
    assert box == pytest.approx(0.3 * math.log10(64) * 2)
    # A dominated point adds nothing; one past a reference adds nothing.
    assert objective_hypervolume([(0.8, 1.0, 10.0), (0.7, 2.0, 20.0), (0.9, 1.0, 5000.0)], THREE,
                                 DIRECTIONS) == pytest.approx(box)  # fmt: skip
    assert hypervolume_of_losses([(1.0, 1.0, 1.0), (0.0, 0.0, 0.0)], (2.0, 2.0, 2.0)) == pytest.approx(8.0)
    assert hypervolume_of_losses([(3.0, 0.0, 0.0)], (2.0, 2.0, 2.0)) == 0.0


POINT = st.tuples(st.sampled_from([0.4, 0.6, 0.7, 0.8, 0.9]), st.sampled_from([0.1, 1.0, 5.0, 80.0]),
                  st.sampled_from([1.0, 10.0, 2000.0]))  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), POINT), max_size=25))
def test_running_hypervolumes_equal_the_hypervolume_of_every_prefix(points: list) -> None:
    # Few distinct values: ties, duplicates, dominated points and points past a reference are common.
    measure = lambda front: objective_hypervolume(front, THREE, DIRECTIONS)  # noqa: E731
    running = running_hypervolumes(points, DIRECTIONS, measure)
    prefixes = [[p for p in points[: i + 1] if p is not None] for i in range(len(points))]
    assert running == pytest.approx([measure(prefix) for prefix in prefixes])
    two = [None if p is None else p[:2] for p in points]
    assert running_hypervolumes(two, DIRECTIONS[:2], hypervolume) == pytest.approx(
        [hypervolume([p for p in two[: i + 1] if p is not None]) for i in range(len(two))]
    )


def test_the_hypervolume_history_is_in_the_studys_objectives() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    study.set_metric_names(THREE)
    points = [(0.8, 1.0, 10.0), (0.7, 0.5, 5.0), (0.9, 2.0, 20.0), (0.6, 4.0, 40.0)]
    for auroc, mb, ms in points:
        study.add_trial(optuna.trial.create_trial(values=[auroc, mb, ms], user_attrs={
            "val_micro_auroc": auroc, "size_mb": mb, "trained": True}))  # fmt: skip
    history = hypervolume_history(study, THREE)
    assert [n for n, _ in history] == [0, 1, 2, 3]
    for k, (_, value) in enumerate(history, start=1):
        assert value == pytest.approx(objective_hypervolume(points[:k], THREE, DIRECTIONS))
    assert history[3][1] == history[2][1]  # the last point is dominated
    assert history[-1][1] != pytest.approx(hypervolume([p[:2] for p in points]))  # not the (AUROC, MB) one
    # With the two objectives of the default studies it is the (AUROC, log10 MB) hypervolume.
    two = optuna.create_study(directions=DIRECTIONS[:2])
    two.set_metric_names(THREE[:2])
    for auroc, mb, _ in points:
        two.add_trial(optuna.trial.create_trial(values=[auroc, mb], user_attrs={"trained": True,
                                                                              "val_micro_auroc": auroc}))  # fmt: skip
    assert hypervolume_history(two, THREE[:2])[-1][1] == pytest.approx(hypervolume([p[:2] for p in points]))


def test_export_best_ranks_by_the_studys_first_maximised_validation_objective() -> None:
    """In a study that searched for the best int8 model, --best is the best int8 model."""
    for metric, want in (("val_int8_micro_auroc", 1), ("val_micro_auroc", 0)):
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.set_metric_names([metric, "size_mb"])
        # Trial 0 is better in fp32, trial 1 after quantization.
        for fp32, int8 in ((0.85, 0.80), (0.81, 0.82)):
            value = int8 if metric.startswith("val_int8") else fp32
            study.add_trial(optuna.trial.create_trial(values=[value, 1.0], user_attrs={
                "val_micro_auroc": fp32, "size_mb": 1.0, "trained": True}))  # fmt: skip
        assert ranking_metric(study) == metric and best_trial(study).number == want


@pytest.fixture(scope="module")
def edge_study(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("edge")
    definition = root / "edge.toml"
    definition.write_text(
        edited(
            TINY.read_text(),
            (
                """[sampler]""",
                """[[objectives]]
metric = "latency_ms"
direction = "minimize"

[sampler]""",
            ),
        )
        + "\n[latency]\nsamples = 1024\nruns = 30\n"
    )
    return {"workspace": root / "ws", "definition": definition, "name": unique_name("edge")}


def test_a_three_objective_study_with_an_int8_limit(edge_study: dict, capsys, monkeypatch) -> None:
    workspace, name = edge_study["workspace"], edge_study["name"]
    common = ["--study-name", name, "--workspace", workspace]
    code, out, err = ecgsearch(capsys, monkeypatch, "worker", "--study-def", edge_study["definition"], *common,
                               "--trials", "4", "--max", "int8_size_mb=0.2")  # fmt: skip
    assert code == 0, err + out
    assert "int8_size_mb at most 0.2" in out
    study = load(sqlite_url(workspace), name)
    assert study.metric_names == THREE
    trials = {t.user_attrs.get("thesis_experiment") or t.number: t for t in study.get_trials()}
    e16, e18 = trials["E16"], trials["E18"]
    # Over the int8 limit: infeasible before training, with its constraint set.
    assert e16.state == TrialState.COMPLETE and "history" not in e16.user_attrs
    assert e16.user_attrs["infeasible"].startswith("int8_size_mb 0.2")
    assert e16.constraints == {"max_int8_size_mb": pytest.approx(e16.user_attrs["int8_size_mb"] - 0.2)}
    assert (
        e18.user_attrs["trained"] and e18.user_attrs["int8_size_mb"] < 0.2 and e18.constraints["max_int8_size_mb"] < 0
    )
    # Latency: the third objective, scaled to the study's reference CPU, recorded with how it was measured.
    reference = study.user_attrs[LATENCY_REFERENCE_ATTR]
    assert reference["network"] == "E1" and reference["samples"] == 1024 and reference["median_ms"] > 0
    measured = e18.user_attrs["measured"]["latency"]
    assert measured["runs"] == 30 and measured["cpu"] and measured["onnxruntime"]
    assert e18.values[2] == pytest.approx(e18.user_attrs["latency_ms"])
    assert e18.user_attrs["latency_ms"] == pytest.approx(measured["median_ms"] * measured["scale"])

    code, out, err = ecgsearch(capsys, monkeypatch, "pareto", *common, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows and all(set(row["objectives"]) == set(THREE) and row["latency_ms"] > 0 for row in rows)
    assert e16.number not in {row["trial"] for row in rows}

    # export --best within limits: the highest validation AUROC among trials within them.
    fastest = min((t for t in study.get_trials() if t.user_attrs.get("trained")), key=lambda t: t.values[2])
    within = f"latency_ms={fastest.values[2] * 1.0001}"
    code, out, err = ecgsearch(capsys, monkeypatch, "export", "--best", "--max", within, "--out", workspace / "best",
                               "--int8", *common)  # fmt: skip
    assert code == 0, err
    assert f"exported trial {fastest.number} (highest val_micro_auroc within latency_ms " in out and "int8: " in out
    int8 = json.loads((workspace / "best" / "model.json").read_text())["int8"]
    assert (workspace / "best" / "model.int8.onnx").exists() and int8["int8"]["size_mb"] < int8["fp32_onnx"]["size_mb"]
    assert set(int8["int8"]["test"]) == {"micro_auroc", "macro_auroc", "micro_auprc", "macro_auprc"}
    code, out, err = ecgsearch(capsys, monkeypatch, "export", "--best", "--max", "macs=1", "--out",
                               workspace / "none", *common)  # fmt: skip
    assert code == 2 and "did not measure macs" in err

    code, out, err = ecgsearch(capsys, monkeypatch, "report", *common, "--out", workspace / "report.html")
    assert code == 0, err
    page = (workspace / "report.html").read_text()
    assert "latency_ms vs size_mb" in page  # a pairwise projection
    data = report_data(load(sqlite_url(workspace), name))
    volumes = data["objective_hypervolume"]
    for subset in ("searched", "thesis"):  # the page shows the hypervolume in all three objectives
        assert f'id="hv-objectives-{subset}">{volumes[subset]:.4f}</b>' in page
    assert data["hypervolume_history"][-1][1] == pytest.approx(volumes["all"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--max", "latency=5"],
            "'latency=5': the metric must be one of size_mb, params, macs, latency_ms, int8_size_mb",
        ),
        (["--max", "latency_ms=fast"], "give METRIC=VALUE with a number"),
        (["--max", "latency_ms=-1"], "a budget must be a number above 0"),
        (["--max-mb", "1", "--max", "size_mb=2"], "--max-mb 1 and --max size_mb=2 disagree"),
        (["--max", "val_micro_auroc=0.9"], "the metric must be one of"),
    ],
)
def test_a_bad_limit_is_one_error_line_before_any_study(flags: list[str], message: str, tmp_path: Path, capsys,
                                                        monkeypatch) -> None:  # fmt: skip
    code, _, err = ecgsearch(capsys, monkeypatch, "run", "--study-def", TINY, "--workspace", tmp_path / "ws", *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ws" / "study.db").exists()


def test_an_int8_validation_objective_is_the_exported_int8_models_figure(tmp_path: Path, capsys, monkeypatch) -> None:
    """val_int8_micro_auroc: measured after training, fp32 standing in at rungs, equal to what export --int8 scores."""
    definition = tmp_path / "int8.toml"
    definition.write_text(
        edited(
            TINY.read_text(),
            ('metric = "val_micro_auroc"', 'metric = "val_int8_micro_auroc"'),
            ("epochs = 1", "epochs = 2"),
        )
        + "\n[early_stopping]\nrungs = [1]\neta = 2\nmin_trials = 4\n"
    )
    workspace, name = tmp_path / "ws", unique_name("int8")
    common = ["--study-name", name, "--workspace", workspace]
    code, out, err = ecgsearch(capsys, monkeypatch, "worker", "--study-def", definition, *common, "--trials", "1")
    assert code == 0, err + out
    (e18,) = load(sqlite_url(workspace), name).get_trials()
    assert e18.user_attrs["thesis_experiment"] == "E18" and e18.user_attrs["trained"]
    int8_val = e18.user_attrs["result"]["int8"]["val"]
    assert set(int8_val) == {"micro_auroc", "macro_auroc", "micro_auprc", "macro_auprc"}
    assert e18.values[0] == int8_val["micro_auroc"]
    assert e18.user_attrs["int8_size_mb"] > 0  # quantized untrained first: a failure shows before training
    # Quantization moves the figure a little, never to another network's.
    assert abs(int8_val["micro_auroc"] - e18.user_attrs["val_micro_auroc"]) < 0.05
    # At the rung the int8 figure is not known: the fp32 one of that epoch stands in.
    assert e18.user_attrs["rung_1"] == [e18.user_attrs["history"][0]["micro_auroc"], e18.user_attrs["size_mb"]]

    code, out, err = ecgsearch(capsys, monkeypatch, "export", "--trial", str(e18.number), "--int8", "--out",
                               workspace / "e18", *common)  # fmt: skip
    assert code == 0, err
    exported = json.loads((workspace / "e18" / "model.json").read_text())["int8"]["int8"]["validation"]
    assert exported["micro_auroc"] == pytest.approx(int8_val["micro_auroc"], abs=1e-6)
    code, out, err = ecgsearch(capsys, monkeypatch, "pareto", *common)
    assert code == 0 and f"{int8_val['micro_auroc']:.4f}" in out, err + out
    assert "val_int8_micro_auroc   test µAUROC" in out and "…" not in out  # not a terminal: nothing cut short
    code, out, err = ecgsearch(capsys, monkeypatch, "report", *common, "--out", workspace / "report.html")
    assert code == 0 and "val_int8_micro_auroc vs size_mb" in (workspace / "report.html").read_text(), err

    # A second seed: the int8 figure is measured again and summarised over seeds like the others.
    code, out, err = ecgsearch(capsys, monkeypatch, "confirm", "--trial", str(e18.number), "--seeds", "2", *common)
    assert code == 0 and "val int8_micro_auroc mean ± sd" in out, err + out
    [row] = report_data(load(sqlite_url(workspace), name))["rows"]
    spread = row.seeds["val"]["int8_micro_auroc"]
    assert row.seeds["count"] == 2 and spread["n"] == 2 and spread["sd"] is not None
    code, out, err = ecgsearch(capsys, monkeypatch, "pareto", *common)
    assert code == 0 and f"{spread['mean']:.4f} ± {spread['sd']:.4f}" in out, err + out
    (second,) = load(sqlite_url(workspace), f"{name}.confirm").get_trials()
    other = second.user_attrs["result"]["int8"]["val"]["micro_auroc"]
    assert second.values[0] == other and spread["mean"] == pytest.approx((int8_val["micro_auroc"] + other) / 2)


def test_a_latency_limit_marks_a_slow_network_infeasible_before_training(tmp_path: Path, capsys, monkeypatch) -> None:
    """E12 is several times slower than E18 on any CPU: a limit between them (measured here) keeps E18 only."""
    definition = tmp_path / "latency.toml"
    text = edited(TINY.read_text(), ('fixed_trials = ["E18", "E16"]', 'fixed_trials = ["E18", "E12"]'))
    definition.write_text(edited(text, ("width_multiplier = [0.5,", "width_multiplier = [1.0, 0.5,"))
                          + "\n[latency]\nsamples = 1024\nruns = 30\n")  # fmt: skip
    e18_ms, e12_ms = (model_latency(ECGResNet(dataclasses.replace(thesis_config(name), num_classes=17)),
                                    samples=1024).median_ms for name in ("E18", "E12"))  # fmt: skip
    assert e12_ms > 2 * e18_ms
    limit = math.sqrt(e18_ms * e12_ms)
    workspace, name = tmp_path / "ws", unique_name("latency")
    code, out, err = ecgsearch(capsys, monkeypatch, "worker", "--study-def", definition, "--study-name", name,
                               "--workspace", workspace, "--trials", "2", "--max", f"latency_ms={limit}")  # fmt: skip
    assert code == 0, err + out
    trials = {t.user_attrs["thesis_experiment"]: t for t in load(sqlite_url(workspace), name).get_trials()}
    e12, e18 = trials["E12"], trials["E18"]
    assert e12.user_attrs["infeasible"].startswith("latency_ms ") and "over the limit" in e12.user_attrs["infeasible"]
    assert not e12.user_attrs["trained"] and "history" not in e12.user_attrs and e12.constraints["max_latency_ms"] > 0
    assert e18.user_attrs["trained"] and e18.constraints["max_latency_ms"] < 0
