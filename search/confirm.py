"""Confirming results against seed noise: chosen networks trained again with other seeds.

The runs are trials of a companion study, ``NAME.confirm``, in the same storage: same
definition, data and directions, one enqueued trial per (network, seed), carrying
``confirms_trial`` and ``seed``. So they run through ordinary workers (``ecgsearch confirm``,
or ``ecgsearch worker --study-name NAME.confirm`` in as many Slurm jobs as wanted) with
everything a study has: heartbeats, retries of killed runs, outage riding. A finished trial of
the main study cannot be written to, which is the other reason the runs live apart;
``ecgsearch.seeds.seed_runs`` puts them back together.

A confirm study runs only what was enqueued: a job whose retries are used up is dropped (the
next ``ecgsearch confirm`` enqueues it again), never replaced by a sampled network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecgnet.runner import RunOutcome, reseeded, train_and_evaluate
from ecgnet.train import StopHook
from ecgnet.train_config import TrainConfig
from ecgsearch.objective import TrialObjective, result_record, trained_figures
from ecgsearch.storage import database_lock, lock_target
from ecgsearch.study import WORKER_ID
from ecgsearch.trial_record import CONFIRMS_ATTR, SEED_ATTR, THESIS_ATTR, network_trial

__all__ = ["ConfirmObjective", "confirm_jobs", "enqueue_jobs"]


def confirm_jobs(trials: list[FrozenTrial], chosen: list[int], seeds: int, study_seed: int) -> list[tuple[int, int]]:
    """(network trial, seed) pairs that give every chosen trial ``seeds`` seeds in all.

    The study's own run is the first seed (``study_seed``); repeats stand for the trial whose
    network they repeat, so a network is trained once per seed however often it was proposed.
    """
    by_number = {t.number: t for t in trials}
    networks = list(dict.fromkeys(network_trial(by_number[n]) for n in chosen))
    return [(n, study_seed + k) for n in networks for k in range(1, seeds)]


def enqueue_jobs(confirm: optuna.Study, main_trials: list[FrozenTrial], jobs: list[tuple[int, int]], lock_url: str
                 ) -> list[tuple[int, int]]:  # fmt: skip
    """Enqueue the jobs the confirm study has neither done nor queued; returns those enqueued.

    Under a database lock, so that two ``confirm`` commands enqueue each job once.
    """
    by_number = {t.number: t for t in main_trials}
    with database_lock(lock_target(confirm, lock_url), f"enqueue:{confirm.study_name}"):
        present = {
            (t.user_attrs.get(CONFIRMS_ATTR), t.user_attrs.get(SEED_ATTR))
            for t in confirm.get_trials(deepcopy=False) if t.state != TrialState.FAIL
        }  # fmt: skip
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
        definition = self.context.definition
        seed = int(trial.user_attrs[SEED_ATTR])
        params = definition.space.suggest(trial)
        arch = definition.space.arch_of(params, num_classes=len(self.data.classes)).canonical()
        figures = self._pretraining_figures(trial, arch)
        trial.set_user_attr("identity", {"worker": WORKER_ID, "params": int(figures["params"])})
        event = {"trial": trial.number, "thesis": trial.user_attrs.get(THESIS_ATTR), "size_mb": figures["size_mb"]}
        self.on_event({"event": "trial_start", **event, "arch": arch.to_dict(), "seed": seed,
                       "confirms": trial.user_attrs[CONFIRMS_ATTR]})  # fmt: skip
        training = dataclasses.replace(definition.training, seed=seed)
        outcome = self._train(trial, arch, training=training)
        int8_val = self._int8_scores(outcome)
        trial.set_user_attr("result", result_record(outcome, int8_val))
        trial.set_user_attr("trained", True)
        values = self._values({**figures, **trained_figures(outcome, int8_val)})
        self.on_event({"event": "trial_end", **event, "outcome": f"seed {seed} of trial "
                       f"{trial.user_attrs[CONFIRMS_ATTR]}", "values": values})  # fmt: skip
        return values

    def _train_run(
        self, arch, training: TrainConfig, progress: Callable[[dict[str, Any]], None], should_stop: StopHook | None
    ) -> RunOutcome:
        # The study's data, with the training crops this seed draws (as `train --seeds` does);
        # a confirmation always runs the full budget.
        return train_and_evaluate(arch, reseeded(self.data, training.seed), training, progress=progress)
