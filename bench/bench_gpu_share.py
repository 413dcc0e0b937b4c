"""K workers on one GPU (issue 21): searched trials per minute with ``ecgsearch run --workers K``.

For each K, a study of the definition without E1-E18 (``--trials`` searched trials, SQLite, the
same data for every K) is run by ``ecgsearch run --workers K``; trials per minute count from
the first trial's start to the last one's end. Where ``nvidia-smi`` exists, the GPU's
utilization is sampled twice a second meanwhile. Ends with one line per K > 1:

    RESULT workers_per_gpu=<K> trials_per_min_ratio=<K workers / 1 worker> device=<cuda|cpu>

Goal on a GPU: K = 4 gives >= 3x the trials per minute of K = 1 on demo-size trials. On a CPU
the workers share its cores, so expect about 1x: the figure there only shows the path runs.

    python bench/bench_gpu_share.py --workspace /tmp/share                  # K = 1, 2, 4, 8
    python bench/bench_gpu_share.py --workspace /tmp/share --device cpu --workers 1 2 --trials 4 \\
        --definition tests/fixtures/studies/tiny.toml                        # a smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import optuna

from ecgsearch.storage.optuna_logging import quiet_optuna

ECGSEARCH = [sys.executable, "-m", "ecgsearch.cli"]


class Utilization:
    """The GPU's utilization (percent), sampled by nvidia-smi in a thread; None without one."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True) if shutil.which("nvidia-smi") else None

    def _sample(self) -> None:
        while not self.stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, check=False)  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))

    def __enter__(self) -> Utilization:
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def device_env(device: str) -> dict[str, str]:
    """The workers' environment: ``cpu`` hides any GPU (the definitions' device is "auto")."""
    env = {k: v for k, v in os.environ.items() if k != "ECGSEARCH_STORAGE"}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def share_run(definition: str, workers: int, trials: int, folder: Path, device: str,
              data: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One study run by ``run --workers K``: trials per minute, GPU utilization, the data cache used."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / "study.db").unlink(missing_ok=True)  # a rerun measures anew, never an old study
    cmd = [*ECGSEARCH, "run", "--study-def", definition, "--study-name", "share", "--no-thesis",
           "--trials", str(trials), "--workspace", str(folder), "--workers", str(workers)]  # fmt: skip
    cmd += ["--data", data] if data else []
    with Utilization() as utilization:
        done = subprocess.run(cmd, env=device_env(device), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    study = optuna.load_study(study_name="share", storage=f"sqlite:///{folder / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    first = min(t.datetime_start for t in complete)
    last = max(t.datetime_complete for t in complete)
    minutes = (last - first).total_seconds() / 60
    return {"workers": workers, "trials": len(complete), "minutes": minutes,
            "trials_per_min": len(complete) / minutes, "gpu_utilization": utilization.mean,
            "data": study.user_attrs["data_cache"]}  # fmt: skip


def share_table(definition: str, counts: list[int], trials: int, workspace: Path, device: str) -> list[dict]:
    rows, data = [], None
    for workers in counts:
        row = share_run(definition, workers, trials, workspace / f"k{workers}", device, data)
        data = data or row["data"]  # every K trains on the data the first run prepared
        rows.append(row)
        util = f", GPU {row['gpu_utilization']:.0f}% busy" if row["gpu_utilization"] is not None else ""
        print(f"K={workers}: {row['trials']} trials in {row['minutes']:.2f} min, "
              f"{row['trials_per_min']:.1f} trials/min{util}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--definition", default="demo", help="a shipped name or a .toml file")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--trials", type=int, default=24, help="searched trials per study")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto")
    args = parser.parse_args()
    quiet_optuna()
    import torch

    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu"
    rows = share_table(args.definition, args.workers, args.trials, args.workspace, device)
    one = next(r for r in rows if r["workers"] == 1)
    for row in rows:
        if row["workers"] > 1:
            ratio = row["trials_per_min"] / one["trials_per_min"]
            print(f"RESULT workers_per_gpu={row['workers']} trials_per_min_ratio={ratio:.2f} device={device}")


if __name__ == "__main__":
    main()
