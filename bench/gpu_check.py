"""The prepared device check (issue 21), run by ``bench/gpu_check.sh``: five figures, printed and
written as JSON.

1. agreement: E1, E12, E18 (``--quick``: E18 alone) trained briefly on the device and on the CPU
   with one seed (their validation micro AUROC), beside the CPU's spread over two seeds (the
   noise to compare with);
2. AMP vs fp32: training windows per second of E1, E12, E18 with mixed precision and without;
3. K workers per GPU (``bench_gpu_share``): searched trials per minute and GPU utilization;
4. data held on the device vs streamed by the loader: E18's training windows per second;
5. the fixed cost per trial (``bench_trial_cost``): median wall time that is not training;
6. cuDNN's autotuner (``torch.backends.cudnn.benchmark``) on vs off, windows per second.

Sized for at most 8 minutes on one GPU; ``--quick --device cpu`` runs every part in a minute or
so on a CPU (a test does, so the script is known to run where no GPU is lent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from ecgnet.runner import load_data, train_and_evaluate
from ecgnet.thesis import thesis_config
from ecgnet.train import train_model
from ecgsearch.storage.optuna_logging import quiet_optuna
from ecgsearch.study.definition import load_definition, parse_definition
from ecgsearch.study.workspace import Workspace


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each part does: the full check on a GPU, or a quick run anywhere."""

    networks: tuple[str, ...]  # the thesis networks parts 1 and 2 train
    steps: int  # training steps per agreement run
    speed_steps: int  # timed steps per throughput figure (after one warm-up step)
    share_workers: tuple[int, ...]
    share_trials: int
    cost_trials: int


FULL = Sizes(networks=("E1", "E12", "E18"), steps=120, speed_steps=30, share_workers=(1, 2, 4, 8), share_trials=24,
             cost_trials=12)  # fmt: skip
QUICK = Sizes(networks=("E18",), steps=4, speed_steps=2, share_workers=(1, 2), share_trials=2, cost_trials=2)


def prepared_data(raw: dict[str, Any], folder: Path, device: str):
    """The definition's data (its synthetic set, made once in ``folder``), for training on ``device``."""
    definition = parse_definition(raw, "gpu check")
    synthetic = raw["data"]["synthetic"]
    cache = Workspace(folder).create().synthetic_cache(synthetic["records"], synthetic.get("seed", 0))
    training = dataclasses.replace(definition.training, device=device)
    data = load_data(dataclasses.replace(definition.data_spec, cache=str(cache)), training)
    return data, training, str(cache)


def arch_of(name: str, data) -> Any:
    return dataclasses.replace(thesis_config(name), num_classes=len(data.classes))


def agreement(data, training, device: str, networks: tuple[str, ...], steps: int) -> dict[str, Any]:
    out = {}
    for name in networks:
        runs = {}
        for where, seed in dict.fromkeys(((device, 0), ("cpu", 0), ("cpu", 1))):
            config = dataclasses.replace(training, device=where, seed=seed, max_steps=steps, epochs=1_000)
            outcome = train_and_evaluate(arch_of(name, data), data, config)
            runs[f"{where} seed {seed}"] = outcome.result.val_metrics["micro_auroc"]
        difference = abs(runs[f"{device} seed 0"] - runs["cpu seed 0"])
        noise = abs(runs["cpu seed 0"] - runs["cpu seed 1"])
        out[name] = {**runs, "difference": difference, "seed_noise": noise}
        print(f"1 agreement {name}: {device} {runs[f'{device} seed 0']:.4f} vs cpu {runs['cpu seed 0']:.4f} "
              f"(difference {difference:.4f}; two CPU seeds differ by {noise:.4f})", flush=True)  # fmt: skip
    return out


def windows_per_second(arch, data, training, steps: int, **changes: Any) -> float:
    """Training windows per second over ``steps`` steps, after one untimed step (warm-up)."""
    config = dataclasses.replace(training, **changes, max_steps=1, epochs=1_000)
    train_model(arch, data.train, data.val, data.classes, config)
    timed = dataclasses.replace(config, max_steps=steps + 1)
    start = time.perf_counter()
    result = train_model(arch, data.train, data.val, data.classes, timed)
    # Validation after the last step is part of a real epoch too; counted here as well.
    return result.steps * training.batch_size / (time.perf_counter() - start)


def amp_speed(data, training, networks: tuple[str, ...], steps: int) -> dict[str, Any]:
    out = {}
    for name in networks:
        arch = arch_of(name, data)
        amp, fp32 = (windows_per_second(arch, data, training, steps, amp=flag) for flag in (True, False))
        out[name] = {"amp": amp, "fp32": fp32, "ratio": amp / fp32}
        print(f"2 AMP vs fp32 {name}: {amp:.0f} vs {fp32:.0f} windows/s ({amp / fp32:.2f}x)", flush=True)
    return out


def cudnn_benchmark_speed(data, training, networks: tuple[str, ...], steps: int) -> dict[str, Any]:
    """cuDNN's autotuner on and off (a fast path kept only if it helps; a no-op on a CPU)."""
    out = {}
    for name in networks:
        arch, speeds = arch_of(name, data), {}
        for flag in (True, False):
            torch.backends.cudnn.benchmark = flag
            speeds[flag] = windows_per_second(arch, data, training, steps)
        torch.backends.cudnn.benchmark = False
        out[name] = {"on": speeds[True], "off": speeds[False], "ratio": speeds[True] / speeds[False]}
        print(f"6 cudnn.benchmark {name}: {speeds[True]:.0f} vs {speeds[False]:.0f} windows/s "
              f"({speeds[True] / speeds[False]:.2f}x)", flush=True)  # fmt: skip
    return out


def resident_speed(data, training, steps: int) -> dict[str, Any]:
    arch = arch_of("E18", data)
    held, streamed = (windows_per_second(arch, data, training, steps, resident_data=flag) for flag in (True, False))
    print(f"4 data on the device vs streamed, E18: {held:.0f} vs {streamed:.0f} windows/s "
          f"({held / streamed:.2f}x)", flush=True)  # fmt: skip
    return {"resident": held, "streamed": streamed, "ratio": held / streamed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="JSON file (default: gpu_check.json in the workspace)")
    parser.add_argument("--definition", default="demo", help="a shipped name or a .toml file (synthetic data)")
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto")
    parser.add_argument("--quick", action="store_true", help="every part, tiny: a minute on a CPU")
    args = parser.parse_args()
    quiet_optuna()
    from bench_gpu_share import share_table
    from bench_trial_cost import run_arm

    sizes = QUICK if args.quick else FULL
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu"
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the cost and share parts' workers too
    args.workspace.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = load_definition(args.definition).raw
    data, training, _ = prepared_data(raw, args.workspace / "data", device)
    started = time.perf_counter()
    figures: dict[str, Any] = {"device": device, "torch": torch.__version__, "quick": args.quick,
                               "gpu": torch.cuda.get_device_name() if device == "cuda" else None}  # fmt: skip
    figures["agreement"] = agreement(data, training, device, sizes.networks, sizes.steps)
    figures["amp"] = amp_speed(data, training, sizes.networks, sizes.speed_steps)
    figures["workers_per_gpu"] = share_table(args.definition, list(sizes.share_workers), sizes.share_trials,
                                             args.workspace / "share", device)  # fmt: skip
    figures["resident"] = resident_speed(data, training, sizes.speed_steps)
    on_device = {**raw, "training": {**raw["training"], "device": device}}
    figures["cudnn_benchmark"] = cudnn_benchmark_speed(data, training, sizes.networks, sizes.speed_steps)
    cost = run_arm(on_device, args.workspace / "cost", sizes.cost_trials + 1, resident=None)
    print(f"5 fixed cost per trial: {cost['fixed_s']:.3f} s of {cost['wall_s']:.3f} s "
          f"({cost['fixed_share']:.0%}); test evaluation {cost['test evaluation s']:.3f} s", flush=True)  # fmt: skip
    figures["fixed_cost"] = cost
    figures["seconds"] = time.perf_counter() - started
    out = args.out or args.workspace / "gpu_check.json"
    out.write_text(json.dumps(figures, indent=1, default=str))
    one = next(r for r in figures["workers_per_gpu"] if r["workers"] == 1)
    for row in figures["workers_per_gpu"][1:]:
        print(f"RESULT workers_per_gpu={row['workers']} trials_per_min_ratio="
              f"{row['trials_per_min'] / one['trials_per_min']:.2f} device={device}")  # fmt: skip
    first = sizes.networks[0]
    print(f"RESULT amp_vs_fp32_{first}={figures['amp'][first]['ratio']:.2f} resident_vs_streamed_E18="
          f"{figures['resident']['ratio']:.2f} fixed_share={cost['fixed_share']:.3f} device={device} "
          f"seconds={figures['seconds']:.0f}")  # fmt: skip
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
