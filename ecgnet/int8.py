"""Static post-training int8 quantization of an exported model with ONNX Runtime.

QDQ format, per-channel int8 weights, uint8 activations whose ranges are calibrated on input
windows (training windows, for a trained model). The graph is pre-processed first (shape
inference, folding), as ONNX Runtime advises for static quantization.

The size of the quantized file depends on the network's structure only, not on its weights'
values, so ``int8_size_mb`` can quantize an untrained network (with made-up calibration data)
before any training, as sizes are checked before training everywhere else.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ecgnet.data.dataset import RecordDataset, WindowDataset, equal_length_batches, minmax_scale
from ecgnet.data.labels import ClassSet, class_set
from ecgnet.export import MODEL_INT8_ONNX, MODEL_JSON, MODEL_ONNX, export_onnx
from ecgnet.latency import graph_inputs, onnx_latency
from ecgnet.metric_names import INT8_METRICS
from ecgnet.metrics import classification_metrics
from ecgnet.model import METADATA_INPUTS, ECGResNet

__all__ = ["CALIBRATION_WINDOWS", "MODEL_INT8_ONNX", "add_int8", "compact_names", "int8_scores", "int8_size_mb",
           "onnx_probabilities", "quantize_int8", "random_calibration", "training_calibration"]  # fmt: skip

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
            quantized = Path(tmp) / "quantized.onnx"
            quantize_static(str(prepared), str(quantized), _Windows(calibration, declared),
                            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8)  # fmt: skip
        finally:
            logging.getLogger().setLevel(quiet)
        onnx.save(compact_names(onnx.load(str(quantized))), str(out_path))
    return out_path


def compact_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with short tensor names, no node names and no shape annotations; computes the same.

    The quantizer names every tensor after its path in the network plus a suffix per Q/DQ step
    (``/layer1/layer1.0/conv1/Conv_output_0_QuantizeLinear_Output``) and the pre-processing
    annotates every shape: in the smallest networks (E18: 63 KB of int8 weights) these strings
    made up a third of the file. Graph inputs and outputs keep their names.
    """
    graph = model.graph
    kept = {value.name for value in (*graph.input, *graph.output)}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in kept:
            return name
        return short.setdefault(name, format(len(short), "x"))

    for initializer in graph.initializer:
        initializer.name = rename(initializer.name)
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    del graph.value_info[:]
    return model


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


def training_calibration(train: WindowDataset, count: int = CALIBRATION_WINDOWS, seed: int = 0) -> Calibration:
    """``count`` training windows, scaled as the model sees them: what the activation ranges are set on."""
    rng = np.random.default_rng(seed)
    items = sorted(rng.choice(len(train), size=min(count, len(train)), replace=False).tolist())
    # The crops of epoch 0, whatever epoch training left the dataset at: the same model is then
    # calibrated alike by the objective (after training) and by export (a freshly loaded set).
    trained_epoch = train.epoch
    train.set_epoch(0)
    try:
        signal, metadata, _ = train[items]
    finally:
        train.set_epoch(trained_epoch)
    scaled = minmax_scale(signal).numpy()
    return [(scaled[i : i + 1], metadata[i : i + 1].numpy().astype(np.float32)) for i in range(len(items))]


def onnx_probabilities(onnx_path: Path | str, data: RecordDataset, *, max_samples: int = 2**18) -> np.ndarray:
    """Sigmoid outputs of an ONNX model for every whole record of ``data``, in its order.

    Records of equal length go through together, up to ``max_samples`` samples per run (as
    ``ecgnet.train.predict_probabilities`` batches them): each record is scaled on its own, and
    a static int8 graph's scales do not depend on the batch, so the outputs are those of a
    record-by-record pass, many times faster on thousands of validation records.
    """
    runner = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out: np.ndarray | None = None
    for batch in equal_length_batches(data.lengths, max_samples):
        items = [data[i] for i in batch]
        signal = minmax_scale(torch.stack([item[0] for item in items])).numpy()
        metadata = torch.stack([item[1] for item in items]).numpy().astype(np.float32)
        logits = runner.run(None, graph_inputs(runner, {"signal": signal, "metadata": metadata}))[0]
        if out is None:
            out = np.zeros((len(data), logits.shape[1]), dtype=np.float32)
        out[batch] = 1.0 / (1.0 + np.exp(-logits))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _scores(onnx_path: Path, data: RecordDataset, classes: ClassSet, thresholds: np.ndarray) -> dict[str, float]:
    metrics = classification_metrics(data.targets.numpy().astype(bool), onnx_probabilities(onnx_path, data), classes,
                                     thresholds)  # fmt: skip
    return {name: metrics[name] for name in INT8_METRICS}


def int8_scores(
    model: ECGResNet, train: WindowDataset, data: RecordDataset, classes: ClassSet, thresholds: list[float]
) -> dict[str, float]:
    """``INT8_METRICS`` of ``model`` quantized as ``add_int8`` does (calibrated on training windows), on ``data``.

    Whole records, as the fp32 validation figures are, so the two differ by quantization alone.
    """
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / MODEL_ONNX
        # A copy: exporting switches a model to eval mode, and this one stays the caller's, as it was.
        export_onnx(copy.deepcopy(model).cpu(), fp32)
        int8 = quantize_int8(fp32, Path(tmp) / MODEL_INT8_ONNX, training_calibration(train))
        return _scores(int8, data, classes, np.asarray(thresholds))


def add_int8(model_dir: Path | str, train: WindowDataset, val: RecordDataset, test: RecordDataset) -> dict[str, Any]:
    """Write ``model.int8.onnx`` beside ``model.onnx`` and its figures, beside the fp32 ones, in model.json.

    Calibrated on training windows; validation and test scored for both ONNX files the same way
    (whole records, the model's thresholds), and both timed as ``latency_ms`` is (batch 1, one thread).
    """
    model_dir = Path(model_dir)
    info = json.loads((model_dir / MODEL_JSON).read_text())
    classes, thresholds = class_set(info["classes"]["name"]), np.asarray(info["thresholds"])
    fp32 = model_dir / MODEL_ONNX
    calibration = training_calibration(train)
    int8 = quantize_int8(fp32, model_dir / MODEL_INT8_ONNX, calibration)
    leads = info["input"]["leads"]
    figures: dict[str, Any] = {"file": MODEL_INT8_ONNX, "calibration": f"{len(calibration)} training windows"}
    for name, path in (("int8", int8), ("fp32_onnx", fp32)):
        latency = onnx_latency(path, leads=leads)
        figures[name] = {
            "size_mb": path.stat().st_size / MB,
            "validation": _scores(path, val, classes, thresholds),
            "test": _scores(path, test, classes, thresholds),
            "latency_ms": latency.median_ms,
        }
    figures["latency"] = {k: v for k, v in latency.to_dict().items() if k != "median_ms"}  # where both were timed
    info["int8"] = figures
    (model_dir / MODEL_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return figures
