"""Noise-aware search benchmark (issue 24): plain TPE vs seeds on the front vs qNEHVI, at equal epochs.

Per method and study seed, a real study of the definition (default: the demo) in SQLite:

- ``tpe``: the definition as it is, ``--trials`` trials;
- ``front``: the same with ``[seeds] front = 3`` (a trial near the front trains 3 seeds and
  reports their mean), run until it has spent the epochs the ``tpe`` study of that seed spent
  (every extra seed counts);
- ``front-1.5x``: the same, to 1.5x those epochs (the most the goal allows; a study stops once it
  has spent at least its budget, so it may overshoot by one trial's epochs). A ``front-N`` folder
  copied to ``front-1.5x-N`` (its study renamed to ``<definition>-front-1.5x-N`` and its
  ``data_cache`` and ``artifact_dir`` attributes pointed at the copy) is continued instead of
  started again: a study does not know its budget, so the two are the same experiment;
- ``qnehvi``: ``[sampler] name = "botorch"`` (the botorch extra), run to the same epochs.

E1-E18 are trained once per kind of study (single-seed: ``tpe`` and ``qnehvi``; ``front``) and
copied into that kind's other studies: the same seed on the same data gives the same figures
(with ``--study-seeds``, once per process).

Then every method's final front (its searched trials; E1-E18 are shared) is trained again with
``--held-out`` seeds the studies never used, and E1-E18 once with the same seeds for all runs.
Printed per method, over study seeds: robust dominance of E1-E18 on the held-out seeds (a front
trial's held-out mean validation AUROC better by more than 2 SE, and no larger), the
hypervolume of the front's held-out means on (AUROC, log10 MB), the winner's curse (the
front's reported AUROC minus its held-out mean) and the epochs spent; last, per method,

    RESULT method=<name> robust=<k>/18 curse=<x> hv_means=<y> epochs=<e>

Goal: a method with curse <= 0.01 and robust >= 12/18 within 1.5x the epochs of plain TPE.

    python bench/bench_noise.py --workspace /tmp/noise                      # the demo: hours on 2 cores
    python bench/bench_noise.py --workspace /tmp/noise --definition tests/fixtures/studies/tiny.toml \\
        --trials 6 --seeds 1 --held-out 2 --methods tpe front               # a smoke run, minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ecgnet.runner import load_data, reseeded, train_and_evaluate
from ecgnet.size import describe_size
from ecgnet.thesis import thesis_config
from ecgsearch.analysis.hypervolume import hypervolume
from ecgsearch.analysis.results import pareto_rows, study_classes
from ecgsearch.analysis.seeds import SeedSummary, robustly_dominates, summarize
from ecgsearch.analysis.training_cost import training_cost
from ecgsearch.storage.optuna_internals import trial_by_number
from ecgsearch.storage.optuna_logging import quiet_optuna
from ecgsearch.study.definition import StudyDefinition, load_definition, parse_definition
from ecgsearch.study.study import SearchContext, open_study
from ecgsearch.study.workspace import Workspace
from ecgsearch.trial_record import THESIS_ATTR
from ecgsearch.trials.worker import run_worker

FRONT_SEEDS = {"seeds": {"front": 3, "margin": 0.02}}
METHODS = {"tpe": {}, "front": FRONT_SEEDS, "front-1.5x": FRONT_SEEDS, "qnehvi": {"sampler": {"name": "botorch"}}}
# Epochs a method may spend, as a multiple of what plain TPE spent with the same study seed
# (the goal allows 1.5x); 1 for the others.
EPOCHS_FACTOR = {"front-1.5x": 1.5}
OBJECTIVES = (["val_micro_auroc", "size_mb"], ["maximize", "minimize"])
HELD_OUT_BASE = 1000  # held-out seeds: 1000, 1001, ...; the studies train with 0, 1, 2


def definition_for(raw: dict[str, Any], method: str, source: str) -> StudyDefinition:
    changed = dict(raw)
    for section, values in METHODS[method].items():
        changed[section] = {**changed.get(section, {}), **values}
    if method == "qnehvi":
        changed["sampler"] = {k: v for k, v in changed["sampler"].items() if k in ("name", "n_startup_trials")}
    return parse_definition(changed, f"{source} ({method})")


def run_study(definition: StudyDefinition, folder: Path, seed: int, trials: int, epochs: int | None,
              thesis_from: optuna.Study | None = None) -> optuna.Study:  # fmt: skip
    """One study: ``trials`` trials, or (``epochs``) until it has spent that many epochs.

    ``thesis_from``: a study whose finished E1-E18 this one takes instead of training them again
    (``copy_thesis_trials``).
    """
    url = f"sqlite:///{folder / 'study.db'}"
    name = f"{definition.name}-{folder.name}"
    total = trials if epochs is None else 10 * trials
    # A study that exists follows its own settings (a resumed one, or one begun as a copy).
    fresh = thesis_from is not None and not (folder / "study.db").exists()
    requested = {"total": total} | ({"thesis": False} if fresh else {})
    context = SearchContext.prepare(definition, Workspace(folder), url, study_name=name, seed=seed,
                                    requested=requested)  # fmt: skip
    study = open_study(context)
    if thesis_from is not None and not any(THESIS_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False)):
        copy_thesis_trials(thesis_from, study)

    def spent_enough() -> bool:
        return epochs is not None and training_cost(study).epochs >= epochs

    run_worker(context, study=study, should_stop=spent_enough)
    return optuna.load_study(study_name=name, storage=url)


def copy_thesis_trials(source: optuna.Study, target: optuna.Study) -> None:
    """E1-E18 as ``source`` finished them, added to ``target`` (their epochs count there too).

    They train with the definition's seed on the same data in every study, and come first, so
    every study of a method would train them to the same figures (CPU runs are deterministic):
    training them once per method saves 18 networks, E1 the largest, per study.
    """
    for trial in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if THESIS_ATTR in trial.user_attrs:
            constraints = {k: v for k, v in trial.system_attrs.items() if k == "constraints"}
            target.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                       values=trial.values, user_attrs=trial.user_attrs,
                                                       system_attrs=constraints))  # fmt: skip


def held_out_auroc(definition: StudyDefinition, cache: str, arch, seeds: list[int], memo: Path) -> SeedSummary:
    """The network's validation micro AUROC with each held-out seed; kept in ``memo`` (a JSON
    file), so that a run resumed after a stop trains no held-out seed twice."""
    known = json.loads(memo.read_text()) if memo.exists() else {}
    # Every study's folder makes the same synthetic set (only its record paths differ): the
    # cache's name, not its path, says which data a figure came from. (Sound for the synthetic
    # sets, whose names carry their size and seed; a real cache would need its fingerprint.)
    key = json.dumps([arch.canonical().to_dict(), seeds, Path(cache).name, definition.training.to_dict(),
                      definition.data_spec.to_dict()], sort_keys=True)  # fmt: skip
    if key not in known:
        spec = dataclasses.replace(definition.data_spec, cache=cache)
        data = load_data(spec, definition.training)
        values = []
        for seed in seeds:
            training = dataclasses.replace(definition.training, seed=seed)
            values.append(train_and_evaluate(arch, reseeded(data, seed), training).result.val_metrics["micro_auroc"])
        known = json.loads(memo.read_text()) if memo.exists() else {}  # runs beside this one may have added
        known[key] = values
        partial = memo.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(known))
        partial.replace(memo)
    return summarize(known[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--definition", default="demo", help="a shipped name or a .toml file")
    parser.add_argument("--trials", type=int, default=40, help="trials of the plain TPE study")
    parser.add_argument("--seeds", type=int, default=3, help="study seeds per method")
    parser.add_argument("--study-seeds", type=int, nargs="+",
                        help="only these study seeds (default: 0 .. --seeds - 1); runs of other seeds may go on "
                             "beside this one in the same workspace; a last run without it prints all")  # fmt: skip
    parser.add_argument("--held-out", type=int, default=3, help="held-out training seeds per front network")
    parser.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(METHODS))
    args = parser.parse_args()
    quiet_optuna()
    source = args.definition
    raw = load_definition(source).raw
    held_out = [HELD_OUT_BASE + k for k in range(args.held_out)]
    memo = args.workspace / "held_out.json"
    budgets: dict[int, int] = {}
    first_studies: dict[str, optuna.Study] = {}
    per_method: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
    thesis_held_out: dict[str, tuple[SeedSummary, float]] = {}
    for method in ["tpe", *[m for m in args.methods if m != "tpe"]]:
        definition = definition_for(raw, method, source)
        for seed in args.study_seeds or range(args.seeds):
            folder = args.workspace / f"{method}-{seed}"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # a workspace is private
            # E1-E18 train alike in every study of one kind: single-seed (tpe, qnehvi) or front seeds.
            family = "front" if method.startswith("front") else "single"
            budget = None if method == "tpe" else math.floor(budgets[seed] * EPOCHS_FACTOR.get(method, 1))
            study = run_study(definition, folder, seed, args.trials, budget, first_studies.get(family))
            first_studies.setdefault(family, study)
            spent = training_cost(study).epochs
            budgets.setdefault(seed, spent)
            cache = study.user_attrs["data_cache"]
            classes = study_classes(study)
            if not thesis_held_out:  # E1-E18's held-out seeds: trained once, shared by every run
                for name in definition.fixed_trials:
                    arch = dataclasses.replace(thesis_config(name), num_classes=classes)
                    thesis_held_out[name] = (held_out_auroc(definition, cache, arch, held_out, memo),
                                             describe_size(arch).size_mb)  # fmt: skip
            checked = []
            for row in (r for r in pareto_rows(study, macs=False) if r.thesis is None):
                arch = definition.space.arch_of(trial_by_number(study, row.trial).params, num_classes=classes)
                checked.append((row, held_out_auroc(definition, cache, arch, held_out, memo)))
            curse = statistics.fmean(r.val_micro_auroc - s.mean for r, s in checked) if checked else float("nan")
            robust = sum(
                any(robustly_dominates({"val_micro_auroc": s, "size_mb": r.size_mb},
                                       {"val_micro_auroc": summary, "size_mb": size}, *OBJECTIVES) for r, s in checked)
                for summary, size in thesis_held_out.values()
            )  # fmt: skip
            hv = hypervolume([(s.mean, r.size_mb) for r, s in checked])
            figures = {"robust": robust, "curse": curse, "hv_means": hv, "epochs": spent, "front": len(checked)}
            per_method.setdefault(method, []).append(figures)
            print(f"{method} seed {seed}: {figures}", flush=True)
    for method, runs in per_method.items():
        if not runs:
            continue
        robust = statistics.median(r["robust"] for r in runs)
        curse = statistics.fmean(r["curse"] for r in runs)
        hv = statistics.fmean(r["hv_means"] for r in runs)
        epochs = statistics.fmean(r["epochs"] for r in runs)
        print(
            f"RESULT method={method} robust={robust:g}/{len(thesis_held_out)} curse={curse:.4f} hv_means={hv:.4f} "
            f"epochs={epochs:.0f}"
        )


if __name__ == "__main__":
    main()
