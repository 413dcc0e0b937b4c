"""The rung decision of multi-objective successive halving (MOASHA): continue or stop a trial.

When a trial reaches a rung (an epoch at which trials are compared), every trial's figures at
that rung are ranked: first by non-dominated sorting (front 0 is dominated by none, front 1 only
by front 0, ...), then inside a front by crowding distance, largest first (the extremes of a
front have infinite distance, so the front's ends are kept and its crowded middle thinned), then
by trial number (stable across workers). A trial continues when it is among the best
``ceil(n / eta)`` of the ``n`` trials at the rung; until ``min_trials`` have reached the rung, no
trial is stopped there. With ``brackets`` B > 1 (Hyperband-style), trial n is judged only at
the rungs of its bracket, n mod B, and only against that bracket's trials (and protected E1-E18,
which record every rung).

Crowding distance, not hypervolume contribution: it needs no reference point and works the same
for any number of objectives. Only this decision lives here; the study records rung figures
and the trainer asks through its stop hook (``ecgnet.train.train_model(should_stop=...)``).
"""

from __future__ import annotations

import dataclasses
import math

from ecgsearch.metric_table import dominates

__all__ = [
    "EarlyStopping",
    "RungDecision",
    "crowding_distances",
    "nondominated_fronts",
    "rung_decision",
]


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """A definition's ``[early_stopping]``: the rung epochs, eta, min_trials, and whether E1-E18 are spared."""

    rungs: tuple[int, ...]
    eta: int = 3
    min_trials: int = 4
    protect_thesis: bool = True
    brackets: int = 1

    def bracket(self, trial_number: int) -> int:
        """The trial's bracket (Hyperband's, run asynchronously as in ASHA): its number mod ``brackets``."""
        return trial_number % self.brackets

    def rungs_of(self, trial_number: int) -> tuple[int, ...]:
        """The rungs where the trial is judged: bracket b starts at the b-th rung, so a first
        rung that misleads judges only a share of the trials (bracket ``len(rungs)``: none)."""
        return self.rungs[self.bracket(trial_number) :]


@dataclasses.dataclass(frozen=True)
class RungDecision:
    """Whether a trial continues past a rung, and where it ranked among the ``reached`` trials."""

    proceed: bool
    position: int  # 0 = best
    kept: int  # how many of the ``reached`` trials continue
    reached: int

    @property
    def reason(self) -> str:
        return f"ranked {self.position + 1} of {self.reached} at the rung; the best {self.kept} continue"


def _gains(point: tuple[float, ...], directions: tuple[str, ...]) -> tuple[float, ...]:
    """The point with every objective turned into one to maximise."""
    return tuple(v if d == "maximize" else -v for v, d in zip(point, directions, strict=True))


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Dominance of gains (every objective already turned into one to maximise)."""
    return dominates(list(a), list(b), ["maximize"] * len(a))


def nondominated_fronts(points: list[tuple[float, ...]], directions: tuple[str, ...]) -> list[int]:
    """The front index of each point (0: dominated by no other point)."""
    gains = [_gains(p, directions) for p in points]
    dominated_by = [sum(_dominates(other, mine) for other in gains) for mine in gains]
    fronts = [-1] * len(points)
    remaining = set(range(len(points)))
    level = 0
    while remaining:
        current = [i for i in remaining if dominated_by[i] == 0]
        for i in current:
            fronts[i] = level
            remaining.discard(i)
        for i in current:
            for j in remaining:
                if _dominates(gains[i], gains[j]):
                    dominated_by[j] -= 1
        level += 1
    return fronts


def crowding_distances(points: list[tuple[float, ...]]) -> list[float]:
    """NSGA-II crowding distance of each point within one front (infinite at every extreme)."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    distances = [0.0] * n
    for axis in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][axis])
        low, high = points[order[0]][axis], points[order[-1]][axis]
        distances[order[0]] = distances[order[-1]] = math.inf
        if high == low:
            continue
        for before, here, after in zip(order, order[1:], order[2:], strict=False):
            distances[here] += (points[after][axis] - points[before][axis]) / (high - low)
    return distances


def rung_decision(
    trial: int, figures: dict[int, tuple[float, ...]], directions: tuple[str, ...], *, eta: int, min_trials: int
) -> RungDecision:
    """Does ``trial`` continue past the rung where ``figures`` (trial number -> objectives) were recorded?"""
    if trial not in figures:
        raise KeyError(f"trial {trial} has no figures at this rung")
    numbers = sorted(figures)
    points = [figures[n] for n in numbers]
    fronts = nondominated_fronts(points, directions)
    crowding = [0.0] * len(numbers)
    for level in set(fronts):
        members = [i for i, f in enumerate(fronts) if f == level]
        for i, distance in zip(members, crowding_distances([points[i] for i in members]), strict=True):
            crowding[i] = distance
    ranking = sorted(range(len(numbers)), key=lambda i: (fronts[i], -crowding[i], numbers[i]))
    position = [numbers[i] for i in ranking].index(trial)
    reached = len(numbers)
    kept = reached if reached < min_trials else math.ceil(reached / eta)
    return RungDecision(proceed=position < kept, position=position, kept=kept, reached=reached)
