"""Make a replay table of bench/bench_early_stopping.py: real training, every epoch kept.

Runs a real study of a definition with its ``[early_stopping]`` section removed (every trial
trains every epoch): E1-E18, then networks its TPE sampler proposes. Then it writes, for every
trained trial, the sampler's parameters, the network's size and each epoch's validation metrics,
to a JSON file the benchmark replays, and prints how well each epoch ranks the networks (Spearman
correlation of each epoch's validation AUROC with the last epoch's).

The study lives in SQLite in the workspace, so a killed run goes on where it stopped when the
same command is given again (the killed trial is failed once its heartbeat is stale and retried;
the study's total stays ``--trials``).

    python bench/make_replay_table.py --trials 60 --workspace /tmp/replay-work \
        --out bench/data/demo_long_replay.json     # demo-long: about 40 minutes on 2 cores
    python bench/make_replay_table.py --definition bench/bench-long.toml --trials 78 \
        --workspace /work/bench-long-work --out bench/data/bench_long_replay.json
    python bench/make_replay_table.py --definition bench/bench-long.toml --trials 78 \
        --workspace /work/bench-long-work --so-far   # the rank correlations so far, beside the run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from scipy.stats import spearmanr

from ecgnet.latency import cpu_model
from ecgnet.metric_names import HEADLINE_METRICS
from ecgsearch.trial_record import THESIS_ATTR

DEFAULT_DEFINITION = "demo-long"


def definition_text(source: str) -> str:
    """The TOML of a shipped definition's name or of a .toml file."""
    if source.endswith(".toml"):
        return Path(source).read_text()
    return resources.files("ecgsearch.studies").joinpath(f"{source}.toml").read_text()


def full_budget_name(text: str) -> str:
    """The study name of a definition's full-budget run: ``<name>-full``."""
    return f"{tomllib.loads(text)['name']}-full"


def full_budget_definition(source: str, directory: Path) -> tuple[Path, str]:
    """The definition (a shipped name or a file) without its [early_stopping] section, under its
    own study name ``<name>-full``; returns the file written and that name."""
    text = definition_text(source)
    name = tomllib.loads(text)["name"]
    study_name = full_budget_name(text)
    text = text.split("\n[early_stopping]")[0].replace(f'name = "{name}"', f'name = "{study_name}"', 1)
    path = directory / f"{study_name}.toml"
    path.write_text(text + "\n")
    return path, study_name


def rank_correlations(records: list[dict]) -> list[float]:
    """Spearman correlation of each epoch's validation micro AUROC with the last epoch's."""
    finals = [r["epochs"][-1]["micro_auroc"] for r in records]
    epochs = len(records[0]["epochs"])
    return [float(spearmanr([r["epochs"][e]["micro_auroc"] for r in records], finals).statistic)
            for e in range(epochs)]  # fmt: skip


def table_of(study: optuna.Study, description: str, command: list[str]) -> dict:
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
        "definition": description,
        "validation": "per-epoch validation metrics of the definition's validation fold",
        "machine": f"{cpu_model()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        # Summed over trials' training, so a run that spanned several sessions counts once.
        "hours": round(sum(record["seconds"][-1] for record in records) / 3600, 2),
        "records": records,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--definition", default=DEFAULT_DEFINITION, help="a shipped name or a .toml file")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "demo_long_replay.json")
    parser.add_argument("--so-far", action="store_true",
                        help="train nothing and write nothing: the rank correlations of the networks finished so far "
                             "(a run may go on beside it), to see early whether the epochs rank at all")  # fmt: skip
    args = parser.parse_args()
    if args.so_far:
        study_name = full_budget_name(definition_text(args.definition))
        database = args.workspace / "study.db"
        try:
            if not database.is_file():  # opening a missing SQLite file would create it
                raise KeyError(study_name)
            study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{database}")
        except KeyError:
            raise SystemExit(f"error: {database} holds no study {study_name!r} yet") from None
        records = table_of(study, "", sys.argv)["records"]
        if len(records) < 3:
            raise SystemExit(f"error: {len(records)} networks finished so far: too few to rank")
        print(f"{len(records)} of {args.trials} networks finished so far; Spearman with the last epoch's "
              "validation micro AUROC, by epoch: "
              + " ".join(f"{e + 1}:{c:.2f}" for e, c in enumerate(rank_correlations(records))))  # fmt: skip
        return
    args.workspace.mkdir(parents=True, exist_ok=True)
    definition, study_name = full_budget_definition(args.definition, args.workspace)
    run = [str(Path(sys.executable).with_name("ecgsearch")), "run", "--study-def", str(definition),
           "--trials", str(args.trials), "--workspace", str(args.workspace)]  # fmt: skip
    subprocess.run(run, check=True)
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{args.workspace / 'study.db'}")
    description = f"{args.definition} without [early_stopping] (every trial trains every epoch)"
    table = table_of(study, description, sys.argv)
    correlations = rank_correlations(table["records"])
    table["rank_correlations"] = [round(c, 3) for c in correlations]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(table['records'])} networks, every epoch, written to {args.out}")
    print("Spearman with the last epoch's validation micro AUROC, by epoch: "
          + " ".join(f"{e + 1}:{c:.2f}" for e, c in enumerate(correlations)))  # fmt: skip


if __name__ == "__main__":
    main()
