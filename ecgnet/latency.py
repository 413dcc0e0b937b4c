"""CPU latency of an exported model: ONNX Runtime, batch 1, one intra-op thread, median of timed runs.

One thread and batch 1 are how a wearable or a small edge CPU runs the model: one recording at
a time, no spare cores. The input length is fixed (4096 samples, the thesis's window, unless
told otherwise) so that networks are compared on the same work. The figure depends on the
machine; ``Latency`` records the CPU model and the onnxruntime version beside it.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from ecgnet.export import export_onnx
from ecgnet.model import METADATA_INPUTS, ECGResNet

__all__ = ["DEFAULT_LATENCY_SAMPLES", "Latency", "cpu_model", "graph_inputs", "model_latency", "onnx_latency"]

DEFAULT_LATENCY_SAMPLES = 4096
DEFAULT_RUNS = 30
DEFAULT_WARMUP = 5


@dataclasses.dataclass(frozen=True)
class Latency:
    """Median milliseconds of ``runs`` timed inferences, and where they were measured."""

    median_ms: float
    runs: int
    samples: int
    cpu: str
    onnxruntime: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def session(onnx_path: Path | str) -> onnxruntime.InferenceSession:
    """A CPU session with one intra-op and one inter-op thread."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def graph_inputs(runner: onnxruntime.InferenceSession, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs the graph declares: a network without a metadata layer has no ``metadata`` input."""
    declared = {i.name for i in runner.get_inputs()}
    return {name: value for name, value in inputs.items() if name in declared}


def onnx_latency(
    onnx_path: Path | str,
    *,
    samples: int = DEFAULT_LATENCY_SAMPLES,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    leads: int = 12,
) -> Latency:
    """Latency of one 12-lead recording of ``samples`` samples through the ONNX file at ``onnx_path``."""
    if runs < 1 or samples < 1:
        raise ValueError(f"runs ({runs}) and samples ({samples}) must be at least 1")
    runner = session(onnx_path)
    rng = np.random.default_rng(0)
    inputs = {"signal": rng.random((1, leads, samples), dtype=np.float32),
              "metadata": rng.random((1, METADATA_INPUTS), dtype=np.float32)}  # fmt: skip
    inputs = graph_inputs(runner, inputs)
    for _ in range(warmup):
        runner.run(None, inputs)
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.run(None, inputs)
        timings.append(time.perf_counter() - start)
    return Latency(median_ms=statistics.median(timings) * 1e3, runs=runs, samples=samples, cpu=cpu_model(),
                   onnxruntime=onnxruntime.__version__)  # fmt: skip


def model_latency(model: ECGResNet, *, samples: int = DEFAULT_LATENCY_SAMPLES, runs: int = DEFAULT_RUNS) -> Latency:
    """Latency of ``model`` exported to ONNX (its weights' values do not change it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, samples=samples)
        return onnx_latency(path, samples=samples, runs=runs, leads=model.config.in_leads)
