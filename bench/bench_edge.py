"""Edge benchmark: E1-E18 in fp32 and int8: size, CPU latency (ONNX Runtime and PyTorch eager), AUROC.

Takes E1-E18 as a finished study trained them (any study with the thesis trials, e.g. the demo
or demo-long), exports each with ``export --int8``'s code (``ecgnet.int8.add_int8``: static QDQ
quantization calibrated on training windows, both ONNX files scored on the study's validation
and test sets), and times each on one thread, batch 1, one 4096-sample recording:

- ONNX Runtime fp32 and int8 (median of 30 runs after 5 warm-up runs, as ``latency_ms``);
- PyTorch eager fp32 (``torch.set_num_threads(1)``, the same input, median of 30).

Then the latency noise: the coefficient of variation of 5 repeated ONNX Runtime fp32
measurements of E1, E12, E17 and E18. Goals (issue 12): int8 size <= 0.3x fp32 and validation
AUROC drop <= 0.01 for E1, E12, E17, E18; int8 latency no worse than fp32.

    ecgsearch run --workspace W --trials 18          # E1-E18 at the demo budget, if no study has them
    python bench/bench_edge.py --workspace W --study-name demo
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import torch

from ecgnet.export import load_model
from ecgnet.int8 import add_int8
from ecgnet.latency import onnx_latency
from ecgnet.model import METADATA_INPUTS
from ecgnet.runner import load_data
from ecgsearch.analysis.results import export_trial
from ecgsearch.commands.results import definition_of, load_existing_study
from ecgsearch.trial_record import THESIS_ATTR

GOAL_CONFIGS = ("E1", "E12", "E17", "E18")
SAMPLES = 4096


def eager_latency_ms(model: torch.nn.Module, runs: int = 30, warmup: int = 5) -> float:
    """Median ms of PyTorch eager inference on one thread, batch 1, one 4096-sample recording."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        signal = torch.rand(1, model.config.in_leads, SAMPLES)
        metadata = torch.rand(1, METADATA_INPUTS)
        timings = []
        with torch.inference_mode():
            for i in range(warmup + runs):
                start = time.perf_counter()
                model(signal, metadata)
                if i >= warmup:
                    timings.append(time.perf_counter() - start)
        return statistics.median(timings) * 1e3
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--study-name", default="demo")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--repeats", type=int, default=5, help="repeated latency measurements for the noise")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, _ = load_existing_study(args.workspace, args.storage, args.study_name)
    definition = definition_of(study)
    spec = dataclasses.replace(definition.data_spec, cache=study.user_attrs["data_cache"])
    data = load_data(spec, definition.training)
    thesis = {t.user_attrs[THESIS_ATTR]: t for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get(THESIS_ATTR) and t.user_attrs.get("artifacts")}  # fmt: skip
    names = sorted(thesis, key=lambda n: int(n[1:]))
    print(f"study {args.study_name} ({definition.source}): {len(names)} thesis trials with models; "
          f"latency: batch 1, one thread, {SAMPLES} samples, median of 30")  # fmt: skip
    print(f"{'exp':>4} {'fp32 MB':>8} {'int8 MB':>8} {'ratio':>6} {'val µAUROC fp32':>15} {'int8':>7} {'drop':>7} "
          f"{'ORT fp32 ms':>11} {'ORT int8 ms':>11} {'eager ms':>9}")  # fmt: skip
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model_dir = export_trial(study, thesis[name], Path(tmp) / name, Path(study.user_attrs["artifact_dir"]))
            figures = add_int8(model_dir, data.train, data.val, data.test)
            model, _ = load_model(model_dir)
            fp32, int8 = figures["fp32_onnx"], figures["int8"]
            row = {
                "ratio": int8["size_mb"] / fp32["size_mb"],
                "drop": fp32["validation"]["micro_auroc"] - int8["validation"]["micro_auroc"],
                "faster": int8["latency_ms"] <= fp32["latency_ms"],
            }
            rows[name] = row
            print(f"{name:>4} {fp32['size_mb']:8.3f} {int8['size_mb']:8.3f} {row['ratio']:6.3f} "
                  f"{fp32['validation']['micro_auroc']:15.4f} {int8['validation']['micro_auroc']:7.4f} "
                  f"{row['drop']:7.4f} {fp32['latency_ms']:11.2f} {int8['latency_ms']:11.2f} "
                  f"{eager_latency_ms(model.eval()):9.2f}")  # fmt: skip
            if name in GOAL_CONFIGS:
                repeated = [onnx_latency(model_dir / "model.onnx").median_ms for _ in range(args.repeats)]
                row["cv"] = statistics.stdev(repeated) / statistics.fmean(repeated)
    print(f"\nlatency noise: coefficient of variation of {args.repeats} repeated ONNX Runtime fp32 medians: "
          + ", ".join(f"{n} {rows[n]['cv']:.1%}" for n in GOAL_CONFIGS if "cv" in rows.get(n, {})))  # fmt: skip
    goals = [n for n in GOAL_CONFIGS if n in rows]
    slower = [n for n in rows if not rows[n]["faster"]]
    print("goals for " + ", ".join(goals) + ": int8 size <= 0.3x: "
          + ", ".join(f"{n} {'yes' if rows[n]['ratio'] <= 0.3 else 'no'}" for n in goals)
          + "; AUROC drop <= 0.01: " + ", ".join(f"{n} {'yes' if rows[n]['drop'] <= 0.01 else 'no'}" for n in goals)
          + "; int8 slower than fp32: " + (", ".join(slower) if slower else "none"))  # fmt: skip


if __name__ == "__main__":
    main()
