"""Which confirmation runs a choice of trials needs, and enqueueing each exactly once.

Planning only (no training, no torch): ``ecgsearch confirm --no-run`` and Slurm users enqueue
here; the runs are trained by workers through ``ecgsearch.trials.confirm.ConfirmObjective``.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecgsearch.storage.storage import database_lock, lock_target
from ecgsearch.trial_record import CONFIRMS_ATTR, SEED_ATTR, THESIS_ATTR, network_trial

__all__ = ["confirm_jobs", "enqueue_jobs"]


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
