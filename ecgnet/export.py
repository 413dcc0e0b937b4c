"""A trained model as a self-describing directory: model.pt, model.onnx, model.json.

- ``model.pt``: the state_dict (load with ``weights_only=True``).
- ``model.onnx``: one self-contained file, dynamic batch and length; inputs ``signal``
  (batch, 12, samples; min-max scaled per lead) and ``metadata`` (batch, 3); output ``logits``.
- ``model.json``: architecture, classes (SNOMED codes, abbreviations), preprocessing,
  metrics, size, thresholds, and the versions that produced it.

    >>> export_model(model, "models/e12", classes=class_set("thesis17"), metrics=result.val_metrics)
    >>> model, info = load_model("models/e12")
"""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

import ecgnet
from ecgnet.arch import ArchConfig
from ecgnet.data.labels import ClassSet
from ecgnet.data.preprocess import DEFAULT_PREPROCESS, PreprocessConfig
from ecgnet.model import METADATA_INPUTS, ECGResNet
from ecgnet.size import describe_size

__all__ = ["MODEL_JSON", "MODEL_ONNX", "MODEL_PT", "export_model", "export_onnx", "load_model"]

MODEL_PT, MODEL_ONNX, MODEL_JSON = "model.pt", "model.onnx", "model.json"
ONNX_OPSET = 17


def export_onnx(model: ECGResNet, path: Path | str, *, samples: int = 4096) -> None:
    """Write ``model`` as one ONNX file whose batch and length axes are dynamic."""
    model = model.eval()
    signal = torch.zeros(2, model.config.in_leads, samples)
    metadata = torch.zeros(2, METADATA_INPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            model,
            (signal, metadata),
            str(path),
            input_names=["signal", "metadata"],
            output_names=["logits"],
            dynamic_axes={
                "signal": {0: "batch", 2: "samples"},
                "metadata": {0: "batch"},
                "logits": {0: "batch"},
            },
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def export_model(
    model: ECGResNet,
    out_dir: Path | str,
    *,
    classes: ClassSet,
    preprocess: PreprocessConfig = DEFAULT_PREPROCESS,
    metrics: dict[str, Any] | None = None,
    thresholds: list[float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the model directory; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    if model.config.num_classes != len(classes):
        raise ValueError(
            f"model has {model.config.num_classes} outputs but class set {classes.name} has {len(classes)}"
        )
    torch.save(model.state_dict(), out / MODEL_PT)
    export_onnx(model, out / MODEL_ONNX)
    size = describe_size(model.config, macs=True)
    info = {
        "format": "ecgnet-model/1",
        "arch": model.config.to_dict(),
        "classes": classes.to_dict(),
        "preprocess": preprocess.to_dict(),
        "input": {"leads": model.config.in_leads, "scaling": "per-lead min-max to [0, 1] over the input"},
        "metadata_vector": ["age / 100 (0 when unknown)", "female", "male"],
        "thresholds": thresholds if thresholds is not None else [0.5] * len(classes),
        "metrics": metrics or {},
        "params": size.params,
        "size_mb": size.size_mb,
        "state_dict_bytes": size.state_dict_bytes,
        "macs_12x4096": size.macs,
        "versions": {"ecgnet": ecgnet.__version__, "torch": torch.__version__,
                     "python": platform.python_version(), "onnx_opset": ONNX_OPSET},
        **(extra or {}),
    }  # fmt: skip
    (out / MODEL_JSON).write_text(json.dumps(info, indent=2, default=_json_default) + "\n")
    return out


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to model.json")


def load_model(model_dir: Path | str) -> tuple[ECGResNet, dict[str, Any]]:
    """The model (CPU, eval mode) and its model.json; weights load with ``weights_only=True``."""
    model_dir = Path(model_dir)
    info_path = model_dir / MODEL_JSON
    if not info_path.exists():
        raise FileNotFoundError(f"{model_dir}: not a model directory (no {MODEL_JSON})")
    info = json.loads(info_path.read_text())
    model = ECGResNet(ArchConfig.from_dict(info["arch"]))
    state = torch.load(model_dir / MODEL_PT, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), info
