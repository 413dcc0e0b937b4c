"""Confirming results against seed noise: chosen networks trained again with other seeds.

The runs are trials of a companion study, ``NAME.confirm``, in the same storage: same
definition, data and directions, one enqueued trial per (network, seed), carrying
``confirms_trial`` and ``seed``. So they run through ordinary workers (``ecgsearch confirm``,
or ``ecgsearch worker --study-name NAME.confirm`` in as many Slurm jobs as wanted) with
everything a study has: heartbeats, retries of killed runs, outage riding. A finished trial of
the main study cannot be written to, which is the other reason the runs live apart;
``ecgsearch.analysis.seeds.seed_runs`` puts them back together.

A confirm study runs only what was enqueued: a job whose retries are used up is dropped (the
next ``ecgsearch confirm`` enqueues it again), never replaced by a sampled network.
"""

from __future__ import annotations

import dataclasses

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecgnet.runner import RunOutcome
from ecgsearch.storage.storage import database_lock, lock_target
from ecgsearch.trial_record import CONFIRMS_ATTR, SEED_ATTR, THESIS_ATTR, network_trial
from ecgsearch.trials.objective import TrialObjective

__all__ = ["ConfirmObjective", "confirm_jobs", "enqueue_jobs"]


def confirm_jobs(trials: list[FrozenTrial], chosen: list[int], seeds: int, study_seed: int) -> list[tuple[int, int]]:
    """(network trial, seed) pairs that give every chosen trial ``seeds`` seeds in all.

    The study's own run is the first seed (``study_seed``); repeats stand for the trial whose
    network they repeat, so a network is trained once per seed however often it was proposed.
    """
    by_number = {t.number: t for t in trials}
    networks = list(dict.fromkeys(network_trial(by_number[n]) for n in chosen))
    # Seeds a trial near the front trained in the study itself ([seeds] front) are not run again.
    own = {n: {int(seed) for seed in (by_number[n].user_attrs.get("result") or {}).get("seeds", {})} for n in networks}
    return [(n, study_seed + k) for n in networks for k in range(1, seeds) if study_seed + k not in own[n]]


def enqueue_jobs(
    confirm: optuna.Study, main_trials: list[FrozenTrial], jobs: list[tuple[int, int]], lock_url: str
) -> list[tuple[int, int]]:
    """Enqueue the jobs the confirm study has neither done nor queued; returns those enqueued.

    Under a database lock, so that two ``confirm`` commands enqueue each job once.
    """
    by_number = {t.number: t for t in main_trials}
    with database_lock(lock_target(confirm, lock_url), f"enqueue:{confirm.study_name}"):
        present = {
            (t.user_attrs.get(CONFIRMS_ATTR), t.user_attrs.get(SEED_ATTR))
            for t in confirm.get_trials(deepcopy=False)
            if t.state != TrialState.FAIL
        }
        added = []
        for number, seed in jobs:
            if (number, seed) in present:
                continue
            source = by_number[number]
            attrs = {CONFIRMS_ATTR: number, SEED_ATTR: seed}
            if THESIS_ATTR in source.user_attrs:
                attrs[THESIS_ATTR] = source.user_attrs[THESIS_ATTR]
            confirm.enqueue_trial(source.params, user_attrs=attrs)
            added.append((number, seed))
    return added


class ConfirmObjective(TrialObjective):
    """Trains the enqueued network with the enqueued seed and records its metrics; no duplicate reuse."""

    def _run(self, trial: optuna.Trial) -> tuple[float, ...]:
        if CONFIRMS_ATTR not in trial.user_attrs:
            raise RuntimeError(f"trial {trial.number} of a confirm study was not enqueued by `ecgsearch confirm`")
        seed, network = int(trial.user_attrs[SEED_ATTR]), trial.user_attrs[CONFIRMS_ATTR]
        arch = self._network(trial)
        # No config key: a confirmation is never reused as another trial's result.
        figures, event = self._start(trial, arch, identity={}, shown={"seed": seed, "confirms": network})
        # The full budget, and the seed's own training crops (``_train_run``).
        outcome = self._train(trial, arch, training=dataclasses.replace(self.context.definition.training, seed=seed))
        return self._finish(trial, outcome, self._scored(outcome), figures, event, f"seed {seed} of trial {network}")

    def _upload(self, trial: optuna.Trial, outcome: RunOutcome) -> None:
        pass  # a confirmation's figures are what it is for; its model is the trial it confirms
