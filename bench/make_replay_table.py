"""Make the replay table of bench/bench_early_stopping.py: real demo-long training, every epoch kept.

Runs a real study of the shipped ``demo-long`` definition with its ``[early_stopping]`` section
removed (every trial trains all 9 epochs): E1-E18, then networks its TPE sampler proposes. Then
it writes, for every trained trial, the sampler's parameters, the network's size and each epoch's
validation metrics, to a JSON file the benchmark replays. The study's first 30 trials are also
the "full budget, no replay" figure in README.

    python bench/make_replay_table.py --trials 60 --workspace /tmp/replay-work \
        --out bench/data/demo_long_replay.json     # about 40 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from ecgnet.latency import cpu_model
from ecgnet.metric_names import HEADLINE_METRICS
from ecgsearch.study import THESIS_ATTR

STUDY_NAME = "demo-long-full"


def full_budget_definition(directory: Path) -> Path:
    """demo-long without its [early_stopping] section, under its own study name."""
    text = resources.files("ecgsearch.studies").joinpath("demo-long.toml").read_text()
    text = text.split("\n[early_stopping]")[0].replace('name = "demo-long"', f'name = "{STUDY_NAME}"')
    path = directory / f"{STUDY_NAME}.toml"
    path.write_text(text + "\n")
    return path


def table_of(study: optuna.Study, command: list[str], seconds: float) -> dict:
    records = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if not trial.user_attrs.get("trained"):
            continue  # a repeat: its network is already in the table under the trial it repeats
        history = trial.user_attrs["history"]
        records.append({
            "trial": trial.number,
            "thesis": trial.user_attrs.get(THESIS_ATTR),
            "params": trial.params,
            "size_mb": trial.user_attrs["size_mb"],
            "epochs": [{name: entry[name] for name in HEADLINE_METRICS} for entry in history],
            "seconds": [entry["seconds"] for entry in history],
        })  # fmt: skip
    return {
        "made_by": " ".join(["python", *command]),
        "definition": "demo-long without [early_stopping] (every trial trains 9 epochs)",
        "validation": "per-epoch validation metrics of the demo data's validation fold",
        "machine": f"{cpu_model()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "hours": round(seconds / 3600, 2),
        "records": records,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "demo_long_replay.json")
    args = parser.parse_args()
    args.workspace.mkdir(parents=True, exist_ok=True)
    definition = full_budget_definition(args.workspace)
    started = time.perf_counter()
    run = [str(Path(sys.executable).with_name("ecgsearch")), "run", "--study-def", str(definition),
           "--trials", str(args.trials), "--workspace", str(args.workspace)]  # fmt: skip
    subprocess.run(run, check=True)
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{args.workspace / 'study.db'}")
    table = table_of(study, sys.argv, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(table['records'])} networks, every epoch, written to {args.out}")


if __name__ == "__main__":
    main()
