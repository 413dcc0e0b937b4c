"""Static post-training int8 quantization of an exported model with ONNX Runtime.

QDQ format, per-channel int8 weights, uint8 activations whose ranges are calibrated on input
windows (training windows, for a trained model). The graph is pre-processed first (shape
inference, folding), as ONNX Runtime advises for static quantization.

The size of the quantized file depends on the network's structure only, not on its weights'
values, so ``int8_size_mb`` can quantize an untrained network (with made-up calibration data)
before any training, as sizes are checked before training everywhere else.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ecgnet.export import export_onnx
from ecgnet.model import METADATA_INPUTS, ECGResNet

__all__ = ["CALIBRATION_WINDOWS", "int8_size_mb", "quantize_int8", "random_calibration"]

CALIBRATION_WINDOWS = 32
MB = 2**20

Calibration = Iterable[tuple[np.ndarray, np.ndarray]]  # (signal (1, leads, samples), metadata (1, 3)) float32


class _Windows(CalibrationDataReader):
    def __init__(self, windows: Calibration, declared: set[str]) -> None:
        self.windows: Iterator[tuple[np.ndarray, np.ndarray]] = iter(windows)
        self.declared = declared  # a network without a metadata layer has no "metadata" input

    def get_next(self) -> dict[str, np.ndarray] | None:
        window = next(self.windows, None)
        if window is None:
            return None
        signal, metadata = window
        inputs = {"signal": np.asarray(signal, dtype=np.float32), "metadata": np.asarray(metadata, dtype=np.float32)}
        return {name: value for name, value in inputs.items() if name in self.declared}


def quantize_int8(onnx_path: Path | str, out_path: Path | str, calibration: Calibration) -> Path:
    """Write the int8 (QDQ, per-channel weights) version of the fp32 ONNX file ``onnx_path``."""
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX Runtime's quantization tools log each step at INFO/WARNING; a worker's log keeps ours.
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            quant_pre_process(str(onnx_path), str(prepared))
            declared = {i.name for i in onnx.load(str(prepared)).graph.input}
            quantize_static(str(prepared), str(out_path), _Windows(calibration, declared), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8)  # fmt: skip
        finally:
            logging.getLogger().setLevel(quiet)
    return out_path


def random_calibration(leads: int = 12, samples: int = 4096, count: int = 4, seed: int = 0) -> list:
    """Made-up calibration windows, for measuring the quantized size of an untrained network."""
    rng = np.random.default_rng(seed)
    return [(rng.random((1, leads, samples), dtype=np.float32), rng.random((1, METADATA_INPUTS), dtype=np.float32))
            for _ in range(count)]  # fmt: skip


def int8_size_mb(model: ECGResNet, *, samples: int = 1024) -> float:
    """MB (2**20 bytes) of ``model``'s int8 ONNX file; structure only, so untrained networks give the same."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        export_onnx(model, fp32, samples=samples)
        int8 = quantize_int8(fp32, Path(tmp) / "model.int8.onnx", random_calibration(model.config.in_leads, samples))
        return int8.stat().st_size / MB
