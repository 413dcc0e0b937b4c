"""Early stopping in a multi-objective study: the rung decision by hand, a study that stops trials, samplers."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import ECGSEARCH, TINY, edited, environment, load, run, sqlite_url, unique_name

from ecgsearch.analysis.report import report_data, write_report
from ecgsearch.analysis.results import repeats_line
from ecgsearch.analysis.training_cost import budget_epochs, hypervolume_by_epochs, training_cost
from ecgsearch.study.definition import DefinitionError, load_definition
from ecgsearch.study.early_stopping import EarlyStopping, crowding_distances, nondominated_fronts, rung_decision
from ecgsearch.study.proposals import UnseenProposalSampler
from ecgsearch.study.study import create_sampler

AUROC_MB = ("maximize", "minimize")


def test_fronts_follow_dominance_in_each_objective_s_direction() -> None:
    points = [(0.9, 1.0), (0.8, 0.5), (0.7, 2.0), (0.6, 3.0), (0.9, 1.0)]
    # (0.7, 2.0) is dominated by (0.9, 1.0) only; (0.6, 3.0) also by (0.7, 2.0); equal points share a front.
    assert nondominated_fronts(points, AUROC_MB) == [0, 0, 1, 2, 0]
    # Reversed: (0.6, 3.0) dominates all, then (0.7, 2.0); (0.8, 0.5) and (0.9, 1.0) trade off.
    assert nondominated_fronts(points, ("minimize", "maximize")) == [2, 2, 1, 0, 2]


def test_crowding_keeps_the_extremes_and_prefers_the_lonely() -> None:
    points = [(0.0, 4.0), (1.0, 3.0), (1.1, 2.9), (3.0, 1.0), (4.0, 0.0)]
    distances = crowding_distances(points)
    assert distances[0] == distances[4] == math.inf
    # (1.0, 3.0) and (1.1, 2.9) crowd each other; (3.0, 1.0) has room around it.
    assert distances[3] > distances[1] and distances[3] > distances[2]
    assert distances[1] == pytest.approx(1.1 / 4 + 1.1 / 4)
    assert crowding_distances([(1.0, 2.0), (2.0, 1.0)]) == [math.inf, math.inf]


def test_a_rung_keeps_the_best_third_by_front_then_crowding() -> None:
    figures = {0: (0.90, 8.0), 1: (0.85, 0.3), 2: (0.86, 2.0), 3: (0.70, 9.0), 4: (0.60, 0.4), 5: (0.80, 5.0)}
    # Front 0: trials 0, 1, 2 (2 in the middle, crowding less than the extremes 0 and 1).
    kept = [n for n in figures if rung_decision(n, figures, AUROC_MB, eta=3, min_trials=3).proceed]
    assert kept == [0, 1]
    stopped = rung_decision(3, figures, AUROC_MB, eta=3, min_trials=3)
    assert not stopped.proceed and stopped.kept == 2 and stopped.reached == 6 and stopped.position == 5
    assert stopped.reason == "ranked 6 of 6 at the rung; the best 2 continue"
    assert rung_decision(2, figures, AUROC_MB, eta=2, min_trials=3).proceed  # eta 2 keeps three


def test_no_trial_stops_before_min_trials_reached_the_rung() -> None:
    figures = {0: (0.9, 1.0), 1: (0.5, 9.0), 2: (0.6, 8.0)}
    assert all(rung_decision(n, figures, AUROC_MB, eta=3, min_trials=4).proceed for n in figures)
    assert not rung_decision(1, figures, AUROC_MB, eta=3, min_trials=3).proceed


def test_the_rule_takes_any_number_of_objectives() -> None:
    directions = ("maximize", "minimize", "minimize")  # e.g. AUROC, MB, latency
    figures = {0: (0.9, 1.0, 5.0), 1: (0.9, 1.0, 2.0), 2: (0.8, 2.0, 9.0), 3: (0.85, 0.5, 3.0)}
    assert nondominated_fronts(list(figures.values()), directions) == [1, 0, 2, 0]
    assert [n for n in figures if rung_decision(n, figures, directions, eta=2, min_trials=1).proceed] == [1, 3]
    with pytest.raises(KeyError, match="trial 9 has no figures"):
        rung_decision(9, figures, directions, eta=2, min_trials=1)


def stopping_definition(tmp_path: Path) -> Path:
    """The tiny study, 2 epochs, compared at epoch 1, where only the best trial goes on (eta 10).

    Only the best of up to 10 going on makes the outcome certain enough for a test: E18 and E16
    (protected, trials 0 and 1) outrank a later trial unless it beats both.
    """
    text = edited(TINY.read_text(), ("epochs = 1", "epochs = 2"))
    text += "\n[early_stopping]\nrungs = [1]\neta = 10\nmin_trials = 2\n"
    path = tmp_path / "stopping.toml"
    path.write_text(text)
    return path


def test_a_study_stops_trials_at_the_rung_and_keeps_them_off_the_front(tmp_path: Path) -> None:
    workspace, name = tmp_path / "ws", unique_name("asha")
    url = sqlite_url(workspace)
    cmd = [*ECGSEARCH, "worker", "--study-def", str(stopping_definition(tmp_path)), "--study-name", name,
           "--trials", "6", "--workspace", str(workspace)]  # fmt: skip
    result = run(cmd, environment(None))
    assert result.returncode == 0, result.stderr + result.stdout
    trials = load(url, name).get_trials()
    states = {t.number: t.state for t in trials}
    assert set(states.values()) <= {TrialState.COMPLETE, TrialState.PRUNED} and len(trials) == 6
    stopped = [t for t in trials if t.state == TrialState.PRUNED]
    assert stopped, "no trial was stopped at the rung"
    for t in trials:
        if t.user_attrs.get("thesis_experiment"):  # protected: E1-E18 always run the full budget
            assert t.state == TrialState.COMPLETE and len(t.user_attrs["history"]) == 2
    for t in stopped:
        assert t.user_attrs["stopped"]["rung"] == 1 and len(t.user_attrs["history"]) == 1
        assert t.user_attrs["stopped"]["reason"].startswith("stopped at rung 1: ranked ")
        assert "artifacts" not in t.user_attrs and t.user_attrs["trained"] is False
    # One worker runs trials in order: each decision can be recomputed from the records before it.
    directions = ("maximize", "minimize")
    for t in trials:
        if "rung_1" not in t.user_attrs or t.user_attrs.get("thesis_experiment"):
            continue
        before = {o.number: tuple(o.user_attrs["rung_1"]) for o in trials
                  if o.number <= t.number and "rung_1" in o.user_attrs}  # fmt: skip
        decision = rung_decision(t.number, before, directions, eta=10, min_trials=2)
        assert decision.proceed == (t.state == TrialState.COMPLETE), (t.number, decision)
    front = run([*ECGSEARCH, "pareto", "--study-name", name, "--workspace", str(workspace), "--json"],
                environment(None))  # fmt: skip
    assert front.returncode == 0, front.stderr
    assert not {row["trial"] for row in json.loads(front.stdout)} & {t.number for t in stopped}
    assert "stopped at rung 1" in result.stdout
    assert f"{len(stopped)} trials were stopped early ({len(stopped)} at epoch 1)" in repeats_line(load(url, name))

    # A stopped network proposed again is not trained again: it is stopped as a repeat.
    load(url, name).enqueue_trial(stopped[0].params)
    again = run([*cmd[:-4], "--trials", "7", "--raise-total", *cmd[-2:]], environment(None))
    assert again.returncode == 0, again.stderr + again.stdout
    repeat = load(url, name).get_trials()[-1]
    assert repeat.state == TrialState.PRUNED and "history" not in repeat.user_attrs
    assert repeat.user_attrs["stopped"]["repeats_stopped_trial"] == stopped[0].number
    study = load(url, name)
    assert f"({len(stopped)} at epoch 1, 1 as a repeat of a stopped network)" in repeats_line(study)

    # The cost: 2 epochs per finished trial, 1 per stopped one, none for the stopped repeat; at the
    # full budget each stopped trial would have trained its second epoch too.
    spent = 2 * (len(trials) - len(stopped)) + len(stopped)
    cost = training_cost(study)
    assert (cost.epochs, cost.full_budget_epochs, cost.stopped) == (spent, spent + len(stopped), len(stopped) + 1)
    curve = hypervolume_by_epochs(study.get_trials())
    assert [e for e, _ in curve][-1] == spent and len(curve) == 7
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(curve))  # a hypervolume never shrinks
    page = write_report(study, tmp_path / "report.html").read_text()
    assert f'<b id="epochs-spent">{spent}</b>' in page and f'<b id="epochs-full">{spent + len(stopped)}</b>' in page
    assert "stopped early (figures at its rung)" in page
    assert {p["trial"] for p in report_data(study)["stopped"]} == {t.number for t in stopped}


def test_brackets_judge_a_trial_only_at_its_bracket_s_rungs_against_its_bracket(tmp_path: Path) -> None:
    """Rungs at epochs 1 and 2 of 3 in two brackets: even-numbered trials are judged at both,
    odd-numbered ones only at epoch 2, each against its own bracket's records and those of the
    protected E18 and E16 (trials 0 and 1), never against the other bracket's. min_trials 4: trial 3
    meets only E18, E16 and itself at epoch 2 in its bracket, so it must go on; counting trial 2's
    record there would rank it (checked: without the bracket filter this test fails on trial 3)."""
    text = edited(TINY.read_text(), ("epochs = 1", "epochs = 3"))
    definition = tmp_path / "brackets.toml"
    definition.write_text(text + "\n[early_stopping]\nrungs = [1, 2]\neta = 10\nmin_trials = 4\nbrackets = 2\n")
    workspace, name = tmp_path / "ws", unique_name("brackets")
    result = run([*ECGSEARCH, "worker", "--study-def", str(definition), "--study-name", name, "--trials", "9",
                  "--workspace", str(workspace)], environment(None))  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    trials = load(sqlite_url(workspace), name).get_trials()
    searched = [t for t in trials if not t.user_attrs.get("thesis_experiment")]
    assert len(trials) == 9 and [t.number for t in searched] == list(range(2, 9))
    assert all("rung_1" in t.user_attrs and "rung_2" in t.user_attrs for t in trials[:2])  # protected: every rung
    judged = 0
    for t in searched:
        rungs = (1, 2) if t.number % 2 == 0 else (2,)
        assert "rung_1" not in t.user_attrs or 1 in rungs
        stopped_at = t.user_attrs["stopped"]["rung"] if t.state == TrialState.PRUNED else None
        assert stopped_at in (None, *rungs)
        for rung in (r for r in rungs if f"rung_{r}" in t.user_attrs):
            peers = {o.number: tuple(o.user_attrs[f"rung_{rung}"]) for o in trials
                     if o.number <= t.number and f"rung_{rung}" in o.user_attrs
                     and (o.number < 2 or o.number % 2 == t.number % 2)}  # fmt: skip
            decision = rung_decision(t.number, peers, AUROC_MB, eta=10, min_trials=4)
            assert decision.proceed == (stopped_at != rung), (t.number, rung, decision)
            judged += 1
    assert judged >= len(searched) and any(t.state == TrialState.PRUNED for t in searched)
    assert EarlyStopping((1, 3), brackets=3).rungs_of(7) == (3,) and EarlyStopping((1, 3), brackets=3).rungs_of(8) == ()


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp", "random"])
def test_samplers_keep_proposing_with_stopped_trials_in_the_study(sampler: str) -> None:
    definition = load_definition(TINY)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.sampler = UnseenProposalSampler(create_sampler(definition, sampler, 0), definition.space, 0)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = definition.space.suggest(trial)
        if trial.number % 3 == 1:
            raise optuna.TrialPruned("stopped at rung 1")
        return params["width_multiplier"], float(sum(params[f"blocks_{i}"] for i in range(1, 5)))

    study.optimize(objective, n_trials=12)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.PRUNED) == 4 and states.count(TrialState.COMPLETE) == 8
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) >= 10  # still exploring


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("rungs = [3]", "early_stopping.rungs: rung 3 is not before the last epoch (training.epochs = 3)"),
        ("rungs = [2, 1]", "early_stopping.rungs: rungs must increase: 1 follows 2"),
        ("rungs = [1]\neta = 1", "early_stopping.eta: must be greater than or equal to 2"),
        ("rungs = [1]\nrung = 2", "early_stopping.rung: unknown key; allowed keys: rungs, eta, min_trials"),
        ("rungs = [1]\nbrackets = 3", "brackets: at most 2 with 1 rungs (one per starting rung, and one that stops"),
    ],
)
def test_a_bad_early_stopping_section_is_refused_naming_the_problem(section: str, message: str, tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edited(TINY.read_text(), ("epochs = 1", "epochs = 3")) + f"\n[early_stopping]\n{section}\n")
    with pytest.raises(DefinitionError) as refused:
        load_definition(path)
    assert str(path) in str(refused.value) and message in str(refused.value)


@pytest.mark.parametrize(("training", "epochs"), [({"epochs": 9}, 9), ({}, 30), ({"max_steps": 50}, None)])
def test_the_full_budget_is_the_definition_s_epochs_or_the_default(training: dict, epochs: int | None) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("definition", {"training": training})
    assert budget_epochs(study) == epochs
