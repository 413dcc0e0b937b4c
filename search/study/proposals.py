"""Proposals that add information: a sampler wrapper that turns a repeat into an unseen network.

On the thesis's mostly categorical space, TPE keeps proposing the point it believes best: in a
200-trial demo study 89 trials repeated an evaluated network. ``UnseenProposalSampler`` asks
the study's sampler for a proposal as usual (so the sampler's model still decides where to
look, and learns from every result), and when that network (canonical form) is already in the
study, changes one parameter of it at random, then two, ..., until the network is new. The
result is a neighbour of the sampler's favourite: local search where the sampler is most
confident, instead of a wasted trial. Sampling happens while the worker holds the study's
lock, so two workers never turn a proposal into the same new network.

Enqueued trials (E1-E18, retries) keep their parameters. When no unseen network is found near
the proposal (a nearly exhausted space), the repeat stands and the objective reuses the
evaluated result, as before.

In a large study the wrapped model-based sampler (TPE, GP) sees a window of the study: its best
``HISTORY_BEST`` finished trials by non-domination rank and its ``HISTORY_RECENT`` latest. TPE's
cost per ask grows with every trial it reads (0.5 s per parameter at 10,000 trials), while its
default weights already fade old trials out; the best stay in view, so the region it exploits
does not change. A study smaller than the window is seen whole.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from ecgsearch.storage.optuna_internals import non_domination_ranks, set_trial_user_attr, trials_just_read
from ecgsearch.study.space import SearchSpace

__all__ = ["PROPOSAL_ATTR", "UnseenProposalSampler", "network_key"]

# Which parameters were changed to make a repeated proposal new (a trial's user attribute).
PROPOSAL_ATTR = "proposal_changed"
MAX_ATTEMPTS = 400
# What a model-based sampler sees of a large study: the best finished trials and the latest ones.
HISTORY_BEST = 100
HISTORY_RECENT = 1000


def network_key(space: SearchSpace, params: dict[str, Any]) -> str:
    """Identity of the network ``params`` describe (after canonicalisation)."""
    return json.dumps(space.arch_of(params).canonical().to_dict(), sort_keys=True)


class UnseenProposalSampler(optuna.samplers.BaseSampler):
    """Wraps a sampler: every proposal it makes for a new trial is a network the study has not seen."""

    def __init__(self, base: optuna.samplers.BaseSampler, space: SearchSpace, seed: int | None = None) -> None:
        self.base = base
        self.space = space
        self.distributions = space.distributions()
        self.seed = seed
        self._choices = {name: _choices(distribution) for name, distribution in self.distributions.items()}
        self._keys: dict[int, str | None] = {}  # trial number -> network key (None: incomplete params)
        self._windowed = isinstance(base, (optuna.samplers.TPESampler, optuna.samplers.GPSampler))

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued trial: the thesis configurations and retries keep their parameters
        view = _HistoryWindow(study) if self._windowed else study
        base_space = self.base.infer_relative_search_space(view, trial)
        params = dict(self.base.sample_relative(view, trial, base_space)) if base_space else {}
        for name, distribution in self.distributions.items():
            if name not in params:
                params[name] = self.base.sample_independent(view, trial, name, distribution)
        seen = self._seen(study, trial)
        if network_key(self.space, params) not in seen:
            return params
        digest = hashlib.sha256(f"{self.seed}:{trial.number}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        names = [name for name in self.distributions if len(self._choices[name]) > 1]
        if not names:
            return params
        for attempt in range(MAX_ATTEMPTS):
            # One parameter changed for the first 40 tries, then two, ...: the nearest new networks first.
            changed = rng.sample(names, min(len(names), 1 + attempt // 40))
            candidate = dict(params)
            for name in changed:
                candidate[name] = rng.choice([c for c in self._choices[name] if c != params[name]])
            if network_key(self.space, candidate) not in seen:
                set_trial_user_attr(
                    study, trial, PROPOSAL_ATTR, sorted(n for n in changed if candidate[n] != params[n])
                )
                return candidate
        return params

    def remember(self, trials: list[FrozenTrial]) -> None:
        """Learn the networks of finished ``trials`` ahead of an ask (a worker does it before taking the lock)."""
        for t in trials:
            if t.number not in self._keys and t.state.is_finished():
                self._keys[t.number] = self._key_of(t)

    def _seen(self, study: optuna.Study, current: FrozenTrial) -> set[str]:
        """Networks of every other trial with all its parameters (running, waiting, failed ones too)."""
        seen = set()
        # The trials the wrapped sampler read in this same ask: no second read of the study.
        for t in trials_just_read(study, fresh=False):
            if t.number == current.number:
                continue
            if t.number not in self._keys or t.state in (TrialState.RUNNING, TrialState.WAITING):
                self._keys[t.number] = self._key_of(t)
            if self._keys[t.number] is not None:
                seen.add(self._keys[t.number])
        return seen

    def _key_of(self, trial: FrozenTrial) -> str | None:
        params = trial.params if trial.params else trial.system_attrs.get("fixed_params", {})
        complete = all(name in params for name in self.distributions)
        return network_key(self.space, params) if complete else None

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


class _HistoryWindow:
    """A study as a model-based sampler sees it: reads return at most the best and the latest trials.

    Everything else (directions, the storage, writes) is the study's own.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._window: list[FrozenTrial] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[FrozenTrial]:
        if self._window is None:  # one read per ask: the view lives for one proposal
            self._window = history_window(
                self._study._get_trials(deepcopy=False, use_cache=True), self._study.directions
            )
        trials = [t for t in self._window if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states, use_cache=False)


def history_window(
    trials: list[FrozenTrial],
    directions: list[optuna.study.StudyDirection],
    best: int = HISTORY_BEST,
    recent: int = HISTORY_RECENT,
) -> list[FrozenTrial]:
    """``trials`` (in order) less the finished ones that are neither among the ``best`` nor the ``recent``.

    Unfinished trials always stay (a sampler may count running ones). Best: by non-domination
    rank of the values, ties included; recent: the latest by number.
    """
    finished = [t for t in trials if t.state.is_finished()]
    if len(finished) <= best + recent:
        return trials
    scored = [t for t in finished if t.state == TrialState.COMPLETE and t.values is not None]
    keep = {t.number for t in finished[-recent:]}
    if scored:
        ranks = non_domination_ranks([t.values for t in scored], directions, best)
        cutoff = sorted(ranks)[min(best, len(scored)) - 1]
        keep.update(t.number for t, rank in zip(scored, ranks, strict=True) if rank <= cutoff)
    return [t for t in trials if not t.state.is_finished() or t.number in keep]


def _choices(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, IntDistribution)
    return list(range(distribution.low, distribution.high + 1, distribution.step))
