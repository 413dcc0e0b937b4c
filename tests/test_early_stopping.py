"""The rung decision of multi-objective successive halving, worked by hand (issue 11 groundwork)."""

from __future__ import annotations

import math

import pytest

from ecgsearch.early_stopping import crowding_distances, nondominated_fronts, rung_decision

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
