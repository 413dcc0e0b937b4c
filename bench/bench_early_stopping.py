"""Early stopping benchmark: hypervolume against training epochs, full budget vs MOASHA, by replay.

Training hundreds of studies is too slow on a laptop, so the studies replay real training:
``bench/data/demo_long_replay.json`` holds every epoch's validation metrics of networks that
``bench/make_replay_table.py`` trained to demo-long's full budget (9 epochs; E1-E18 and networks
its sampler proposed). Each study here is the real study code (``open_study`` and
``run_worker``: the definition's TPE sampler with its unseen-proposal wrapper, E1-E18 enqueued
and protected, the duplicate check, the rung records and the early-stopping decision), on a
SQLite file in a temporary directory, with the trainer replaced by a reader of that table:

- a proposed network's size is its own (``describe_size``, as in any study);
- its per-epoch validation figures are those of the table's nearest network (the same
  parameters where the table has them, as E1-E18; otherwise the fewest, smallest differences).

Rules (``--rules``), each an ``[early_stopping]`` given to the table's definition
(``--definition``, demo-long by default; E the definition's epochs):

- ``tenth-third``: rungs at a tenth and a third of E, rounded up (1 and 3 for demo-long's 9 epochs,
  1 and 4 for bench-long's 10; the thesis definition's 3 and 9 of 30 follow eta's ladder instead), eta 3;
- ``brackets``: the same rungs in Hyperband-style brackets, one per starting rung and one that
  stops nothing (trial n in bracket n mod 3), so a misleading first rung judges a third of them;
- ``third-only``: one rung, at a third of E;
- ``definition``: the definition's own ``[early_stopping]``.

ASHA's promotion variant (a trial paused at a rung and resumed when it ranks well later) is not
among them: a trial here trains in one go and keeps no checkpoint to resume from.

Per seed: a full-budget study of ``--trials`` configurations, then per rule an early-stopping
study with the same sampler seed that runs until it has spent as many epochs. Printed per seed
and rule: both studies' epochs and hypervolumes, then hypervolume against cumulative epochs
(median over seeds), and last, per rule,

    RESULT rule=<name> epochs_ratio=<x> hv_ratio_at_equal_epochs=<y> seeds=<n>

x: median over seeds of (epochs the early-stopping study needed to reach the full-budget
study's final hypervolume) / (the full-budget study's epochs), ``inf`` for a seed that never
reached it; y: median of (early-stopping hypervolume) / (full-budget hypervolume) at the epochs
the early-stopping study used. Goals: x <= 0.4, y >= 1.0.

    python bench/bench_early_stopping.py                      # 10 seeds, 100 configurations, 3 rules
    python bench/bench_early_stopping.py --seeds 3 --trials 60 --rules definition brackets
    python bench/bench_early_stopping.py --definition bench/bench-long.toml --table bench/data/bench_long_replay.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import optuna
from scipy.stats import spearmanr

from ecgnet.runner import RunOutcome
from ecgnet.train import TrainResult
from ecgsearch.analysis.training_cost import hypervolume_by_epochs
from ecgsearch.study.definition import StudyDefinition, load_definition
from ecgsearch.study.early_stopping import EarlyStopping
from ecgsearch.study.proposals import UnseenProposalSampler
from ecgsearch.study.study import SearchContext, create_sampler, open_study
from ecgsearch.study.workspace import Workspace
from ecgsearch.trials.objective import TrialObjective
from ecgsearch.trials.worker import run_worker

TABLE = Path(__file__).parent / "data" / "demo_long_replay.json"
# How far apart two values of a parameter are, as a share of its range (others: 0 same, 1 not).
SCALES = {"blocks_1": 3, "blocks_2": 3, "blocks_3": 3, "blocks_4": 3, "block_kernel": 6, "metadata_features": 10,
          "dropout": 0.3}  # fmt: skip


def parameter_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    distance = 0.0
    for name, value in a.items():
        other = b.get(name)
        if name == "width_multiplier":
            distance += abs(math.log2(value) - math.log2(other)) / 3
        elif name in SCALES:
            distance += abs(value - other) / SCALES[name]
        else:
            distance += value != other
    return distance


class ReplayObjective(TrialObjective):
    """The real objective whose training reads the table's nearest network, epoch by epoch."""

    records: ClassVar[list[dict[str, Any]]] = []

    def _train_run(self, arch, training, progress, should_stop) -> RunOutcome:
        params = self.current_trial.params
        record = min(self.records, key=lambda r: (parameter_distance(params, r["params"]), r["trial"]))
        history: list[dict[str, Any]] = []
        stopped = None
        for epoch, metrics in enumerate(record["epochs"], start=1):
            entry = {"epoch": epoch, "steps": 0, "seconds": 0.0, **metrics}
            history.append(entry)
            progress({"event": "epoch", **entry})
            if epoch == len(record["epochs"]):
                break
            stopped = should_stop(entry) if should_stop else None
            if stopped:
                break
        result = TrainResult(model=None, history=history, val_metrics=dict(history[-1]), thresholds=[], steps=0,
                             seconds=0.0, cut_by_time_limit=False, device="replay", stopped_early=stopped)  # fmt: skip
        return RunOutcome(result=result, test_metrics=dict(history[-1]), seed=0)

    def _upload(self, trial, outcome) -> None:
        pass  # nothing is exported from a replay


def replay_study(definition: StudyDefinition, workspace: Path, name: str, total: int, seed: int,
                 epoch_budget: int | None = None) -> list[tuple[int, float]]:  # fmt: skip
    """Run one study through the real study code; its hypervolume against cumulative epochs."""
    url = f"sqlite:///{workspace / f'{name}.db'}"
    context = SearchContext.prepare(definition, Workspace(workspace), url, study_name=name, seed=seed,
                                    requested={"total": total, "thesis": True})  # fmt: skip
    sampler = UnseenProposalSampler(create_sampler(definition, None, seed), definition.space, seed)
    study = open_study(context, sampler=sampler)

    def spent_enough() -> bool:
        curve = hypervolume_by_epochs(study.get_trials(deepcopy=False))
        return epoch_budget is not None and bool(curve) and curve[-1][0] >= epoch_budget

    run_worker(context, study=study, objective_class=ReplayObjective, should_stop=spent_enough)
    return hypervolume_by_epochs(study.get_trials(deepcopy=False))


def value_at(curve: list[tuple[int, float]], epochs: int) -> float:
    """The curve's hypervolume once ``epochs`` were spent (its last point at or before them)."""
    return max((hv for e, hv in curve if e <= epochs), default=0.0)


def rung_correlations(records: list[dict[str, Any]]) -> dict[int, float]:
    """Spearman correlation, over the table's networks, of each epoch's val micro AUROC with the last epoch's."""
    last = [r["epochs"][-1]["micro_auroc"] for r in records]
    epochs = min(len(r["epochs"]) for r in records)
    return {epoch: float(spearmanr([r["epochs"][epoch - 1]["micro_auroc"] for r in records], last).statistic)
            for epoch in range(1, epochs)}  # fmt: skip


def thesis_proportions(definition: StudyDefinition) -> EarlyStopping:
    """Rungs at a tenth and a third of the budget, rounded up (the thesis's proportions, roughly: 3 and 9 of 30)."""
    epochs = definition.training.epochs
    rungs = tuple(sorted({max(1, math.ceil(epochs / 10)), math.ceil(epochs / 3)} - {epochs}))
    own = definition.early_stopping
    return EarlyStopping(rungs, eta=3, min_trials=own.min_trials if own else 6)


def in_brackets(settings: EarlyStopping) -> EarlyStopping:
    """Hyperband-style: one bracket per starting rung and one that stops nothing, so a first rung
    that misleads judges only a share of the trials."""
    return dataclasses.replace(settings, brackets=len(settings.rungs) + 1)


def last_rung_only(settings: EarlyStopping) -> EarlyStopping:
    return dataclasses.replace(settings, rungs=settings.rungs[-1:])


# Each rule: the [early_stopping] a definition gets for it.
RULES = {
    "definition": lambda d: d.early_stopping,
    "tenth-third": thesis_proportions,
    "brackets": lambda d: in_brackets(thesis_proportions(d)),
    "third-only": lambda d: last_rung_only(thesis_proportions(d)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100, help="configurations in the full-budget study")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--definition", default="demo-long", help="the table's definition (a shipped name or a .toml)")
    parser.add_argument("--rules", nargs="+", choices=tuple(RULES), default=["tenth-third", "brackets", "third-only"])
    parser.add_argument("--unprotected", action="store_true", help="let early stopping stop E1-E18 too")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = json.loads(args.table.read_text())
    ReplayObjective.records = table["records"]
    definition = load_definition(args.definition)
    full_budget = dataclasses.replace(definition, early_stopping=None)
    rules = {}
    for rule in args.rules:
        settings = RULES[rule](definition)
        if settings is None:
            raise SystemExit(f"error: {args.definition} has no [early_stopping] for rule 'definition'")
        rules[rule] = dataclasses.replace(definition, early_stopping=dataclasses.replace(
            settings, protect_thesis=settings.protect_thesis and not args.unprotected))  # fmt: skip
    print(f"replaying {len(table['records'])} networks ({table['made_by']}); {definition.name}: "
          f"{definition.training.epochs} epochs; {args.trials} configurations at the full budget, {args.seeds} seeds, "
          f"E1-E18 {'not protected' if args.unprotected else 'protected'}")  # fmt: skip
    for rule, ruled in rules.items():
        settings = ruled.early_stopping
        print(f"rule {rule}: rungs {list(settings.rungs)}, eta {settings.eta}, min_trials {settings.min_trials}, "
              f"brackets {settings.brackets}")  # fmt: skip
    correlations = rung_correlations(table["records"])
    print("Spearman correlation of val micro AUROC at each epoch with the last epoch's, over the table's networks: "
          + ", ".join(f"epoch {e} {rho:.2f}" for e, rho in correlations.items()))  # fmt: skip
    print(f"{'seed':>4} {'rule':>12} {'full epochs':>11} {'full HV':>8} {'ES trials':>9} {'ES epochs':>9} "
          f"{'ES HV':>8} {'ES epochs to full HV':>20}")  # fmt: skip
    ratios: dict[str, list[float]] = {rule: [] for rule in rules}
    hv_ratios: dict[str, list[float]] = {rule: [] for rule in rules}
    curves: dict[str, list] = {"full": [], **{rule: [] for rule in rules}}
    started = time.perf_counter()
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            workspace = Path(tmp)
            full = replay_study(full_budget, workspace, f"full-{seed}", args.trials, seed)
            budget, target = full[-1]
            curves["full"].append(full)
            for rule, ruled in rules.items():
                early = replay_study(ruled, workspace, f"{rule}-{seed}", 10 * args.trials, seed, epoch_budget=budget)
                reached = next((e for e, hv in early if hv >= target - 1e-12), None)
                ratios[rule].append(reached / budget if reached is not None else math.inf)
                used = early[-1][0]
                hv_ratios[rule].append(early[-1][1] / value_at(full, used))
                curves[rule].append(early)
                shown = reached if reached is not None else "never"
                print(f"{seed:>4} {rule:>12} {budget:>11} {target:>8.4f} {len(early):>9} {used:>9} "
                      f"{early[-1][1]:>8.4f} {shown:>20}", flush=True)  # fmt: skip
    print("\nhypervolume against cumulative epochs, median over seeds:")
    marks = [round(f * max(c[-1][0] for c in curves["full"])) for f in (0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)]
    print(f"{'epochs':>15} " + " ".join(f"{m:>7}" for m in marks))
    for name, runs in curves.items():
        print(f"{name:>15} " + " ".join(f"{statistics.median(value_at(c, m) for c in runs):7.4f}" for m in marks))
    print(f"({time.perf_counter() - started:.0f} s)")
    for rule in rules:
        print(f"RESULT rule={rule} epochs_ratio={statistics.median(ratios[rule]):.3f} "
              f"hv_ratio_at_equal_epochs={statistics.median(hv_ratios[rule]):.3f} seeds={args.seeds}")  # fmt: skip


if __name__ == "__main__":
    main()
