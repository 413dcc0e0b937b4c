"""A trial's fixed cost (issue 21): its wall time that is not training, and where it goes.

Two studies of the same definition (default: the demo without E1-E18, ``--trials`` searched
trials, the same sampler seed, so the same networks), in SQLite, one after the other in this
process: data streamed from the cache (``resident_data = false``, the loader path) and held in
memory on the device (``resident_data = true``: windows cut there, validation batches kept).
Both give the same results (tested), so only the time differs. Per searched trial:

- wall: ``datetime_complete - datetime_start``; training: ``result.training.seconds`` (what
  ``train_model`` measures: from building the network to its last validation);
- fixed = wall - training, split into the test evaluation, the figures known before training
  (size, MACs), the model files and their upload, and the rest (storage, sampler, duplicate
  check), timed by wrapping those calls.

The first trial of each study pays the process's warm-up (thread pools, kernels) and is left
out. Ends with

    RESULT fixed_share=<median fixed / wall, resident> resident_vs_streaming=<training s ratio> device=<cpu|cuda>

Goals (issue 21, CPU): fixed_share <= 0.15; resident_vs_streaming <= 1.0.

    python bench/bench_trial_cost.py --workspace /tmp/cost              # about 3 minutes on 2 cores
    python bench/bench_trial_cost.py --workspace /tmp/cost --trials 4   # a smoke run
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

import ecgnet.runner
from ecgnet.train import resolve_device
from ecgsearch.storage.optuna_logging import quiet_optuna
from ecgsearch.study.definition import load_definition, parse_definition
from ecgsearch.study.study import SearchContext, open_study
from ecgsearch.study.workspace import Workspace
from ecgsearch.trials.objective import TrialObjective
from ecgsearch.trials.worker import run_worker

PHASES = {"test evaluation": (ecgnet.runner, "evaluate"),
          "size and MACs": (TrialObjective, "_pretraining_figures"),
          "model files and upload": (TrialObjective, "_upload")}  # fmt: skip


def timed(seconds: dict[str, list[float]]) -> Callable[[], None]:
    """Wrap each phase's function to add its time to ``seconds``; returns the undo."""
    originals = {}
    for phase, (owner, name) in PHASES.items():
        original = getattr(owner, name)
        originals[phase] = original

        def wrapper(*args: Any, __original=original, __phase=phase, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                seconds[__phase].append(time.perf_counter() - start)

        setattr(owner, name, wrapper)

    def undo() -> None:
        for phase, (owner, name) in PHASES.items():
            setattr(owner, name, originals[phase])

    return undo


def run_arm(raw: dict[str, Any], folder: Path, trials: int, resident: bool | None) -> dict[str, float]:
    """One study of ``trials`` searched trials; ``resident``: the ``resident_data`` setting (None: when it fits)."""
    raw = {**raw, "training": {**raw["training"], "resident_data": resident}, "fixed_trials": []}
    definition = parse_definition(raw, f"bench (resident_data {resident})")
    (folder / "study.db").unlink(missing_ok=True)  # a rerun measures anew, never an old study
    url = f"sqlite:///{folder / 'study.db'}"
    context = SearchContext.prepare(definition, Workspace(folder), url, study_name="cost", seed=0,
                                    requested={"total": trials, "thesis": False})  # fmt: skip
    seconds: dict[str, list[float]] = collections.defaultdict(list)
    undo = timed(seconds)
    try:
        run_worker(context, study=open_study(context))
    finally:
        undo()
    study = optuna.load_study(study_name="cost", storage=url)
    rows = []
    for trial in sorted(study.trials, key=lambda t: t.number)[1:]:  # the first pays the warm-up
        if trial.state != optuna.trial.TrialState.COMPLETE or "result" not in trial.user_attrs:
            continue
        wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
        rows.append((wall, trial.user_attrs["result"]["training"]["seconds"]))
    walls, trainings = [w for w, _ in rows], [t for _, t in rows]
    fixed = [w - t for w, t in rows]
    figures = {"trials": len(rows), "wall_s": statistics.median(walls), "training_s": statistics.median(trainings),
               "fixed_s": statistics.median(fixed), "fixed_share": statistics.median((w - t) / w for w, t in rows),
               "training_total_s": sum(trainings)}  # fmt: skip
    for phase in PHASES:
        figures[f"{phase} s"] = statistics.median(seconds[phase][1:]) if len(seconds[phase]) > 1 else float("nan")
    figures["rest s"] = figures["fixed_s"] - sum(figures[f"{phase} s"] for phase in PHASES)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--definition", default="demo", help="a shipped name or a .toml file")
    parser.add_argument("--trials", type=int, default=16, help="searched trials per study")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    quiet_optuna()
    source = args.definition
    raw = load_definition(source).raw
    device = resolve_device(raw["training"].get("device", "auto")).type
    arms = {}
    for name, resident in (("streamed", False), ("resident", True)):
        folder = args.workspace / name
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        arms[name] = run_arm(raw, folder, args.trials, resident)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in arms[name].items()), flush=True)  # fmt: skip
    ratio = arms["resident"]["training_total_s"] / arms["streamed"]["training_total_s"]
    if args.json:
        args.json.write_text(json.dumps({"device": device, "arms": arms, "resident_vs_streaming": ratio}, indent=1))
    print(f"RESULT fixed_share={arms['resident']['fixed_share']:.3f} resident_vs_streaming={ratio:.3f} "
          f"device={device}")  # fmt: skip


if __name__ == "__main__":
    main()
