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
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from ecgsearch.optuna_internals import set_trial_user_attr, trials_just_read
from ecgsearch.space import SearchSpace

__all__ = ["PROPOSAL_ATTR", "UnseenProposalSampler", "network_key"]

# Which parameters were changed to make a repeated proposal new (a trial's user attribute).
PROPOSAL_ATTR = "proposal_changed"
MAX_ATTEMPTS = 400


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

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial.system_attrs.get("fixed_params"):
            return {}  # an enqueued trial: the thesis configurations and retries keep their parameters
        base_space = self.base.infer_relative_search_space(study, trial)
        params = dict(self.base.sample_relative(study, trial, base_space)) if base_space else {}
        for name, distribution in self.distributions.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, distribution)
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

    def _seen(self, study: optuna.Study, current: FrozenTrial) -> set[str]:
        """Networks of every other trial with all its parameters (running, waiting, failed ones too)."""
        seen = set()
        # The trials the wrapped sampler read in this same ask: no second read of the study.
        for t in trials_just_read(study, fresh=False):
            if t.number == current.number:
                continue
            if t.number not in self._keys or t.state in (TrialState.RUNNING, TrialState.WAITING):
                params = t.params if t.params else t.system_attrs.get("fixed_params", {})
                complete = all(name in params for name in self.distributions)
                self._keys[t.number] = network_key(self.space, params) if complete else None
            if self._keys[t.number] is not None:
                seen.add(self._keys[t.number])
        return seen

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


def _choices(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    assert isinstance(distribution, IntDistribution)
    return list(range(distribution.low, distribution.high + 1, distribution.step))
