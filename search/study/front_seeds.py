"""Seeds where they decide something: more training seeds for a trial that would join the front.

A study trains each network once, so its front is partly made of lucky seeds (docs/search.md
measured the winner's curse on the demo: the front's own AUROC 0.027 above its other seeds').
Under ``[seeds] front = N``, a trial whose first run would enter the current front, or come
within ``margin`` of it in every validation objective, trains N - 1 more seeds before it is
told, and reports the mean over its N seeds; a trial far from the front stays single-seed.

The decision is pure (here); the training and the record are ``objective.TrialObjective``'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ecgsearch.metric_table import dominates

__all__ = ["FrontSeeds", "near_front"]


@dataclasses.dataclass(frozen=True)
class FrontSeeds:
    """A definition's ``[seeds]``: seeds for a trial near the front, and how near is near."""

    front: int = 1  # 1: every trial trains once
    margin: float = 0.02  # in the validation objectives' units (AUROC)

    @property
    def active(self) -> bool:
        return self.front > 1


def near_front(
    point: Sequence[float],
    others: Sequence[Sequence[float]],
    directions: Sequence[str],
    noisy: Sequence[bool],
    margin: float,
) -> bool:
    """Whether ``point`` joins the front of ``others`` once each noisy objective (a validation
    metric, which the seed moves) is made better by ``margin``: no other point dominates it then.

    Deterministic objectives (size, MACs, latency) are taken as they are.
    """
    lifted = [
        v + (margin if d == "maximize" else -margin) if n else v
        for v, d, n in zip(point, directions, noisy, strict=True)
    ]
    return not any(dominates(list(other), lifted, list(directions)) for other in others)
