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

from ecgnet.runner import RunOutcome
from ecgsearch.trial_record import CONFIRMS_ATTR, SEED_ATTR
from ecgsearch.trials.objective import TrialObjective

__all__ = ["ConfirmObjective"]


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
