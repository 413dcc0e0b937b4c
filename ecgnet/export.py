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
import pickle
import platform
import re
import warnings
from pathlib import Path
from typing import Any

import torch

import ecgnet
from ecgnet.arch import ArchConfig
from ecgnet.data.labels import ClassSet
from ecgnet.data.preprocess import DEFAULT_PREPROCESS, PreprocessConfig
from ecgnet.errors import InputError
from ecgnet.model import METADATA_INPUTS, ECGResNet
from ecgnet.size import describe_size

__all__ = ["MODEL_INT8_ONNX", "MODEL_JSON", "MODEL_ONNX", "MODEL_PT", "export_model", "export_onnx", "load_model"]

MODEL_PT, MODEL_ONNX, MODEL_JSON = "model.pt", "model.onnx", "model.json"
MODEL_INT8_ONNX = "model.int8.onnx"  # written by ecgnet.int8.add_int8 (``export --int8``)
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
    onnx: bool = True,
) -> Path:
    """Write the model directory; returns its path. ``onnx=False``: model.pt and model.json only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    if model.config.num_classes != len(classes):
        raise ValueError(
            f"model has {model.config.num_classes} outputs but class set {classes.name} has {len(classes)}"
        )
    torch.save(model.state_dict(), out / MODEL_PT)
    if onnx:
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
    """The model (CPU, eval mode) and its model.json; weights load with ``weights_only=True``.

    A missing model.json or model.pt is a ``FileNotFoundError``; a damaged one, or weights that
    do not fit the architecture model.json describes, an ``InputError`` naming the file.
    """
    model_dir = Path(model_dir)
    info_path = model_dir / MODEL_JSON
    if not info_path.exists():
        raise FileNotFoundError(f"{model_dir}: not a model directory (no {MODEL_JSON})")
    info = _read_info(info_path)
    try:
        model = ECGResNet(ArchConfig.from_dict(info["arch"]))
    except (InputError, TypeError) as exc:
        raise InputError(f"{info_path}: its arch cannot be built ({exc}); export the model again") from None
    if model.config.num_classes != len(info["classes"]["abbreviations"]):
        raise InputError(
            f"{info_path}: arch has {model.config.num_classes} outputs but classes name "
            f"{len(info['classes']['abbreviations'])}; export the model again"
        )
    weights_path = model_dir / MODEL_PT
    if not weights_path.exists():
        raise FileNotFoundError(f"{model_dir}: no {MODEL_PT} beside {MODEL_JSON}; export the model again")
    model.load_state_dict(_read_state_dict(weights_path, model))
    return model.eval(), info


_REQUIRED_INFO: dict[str, type] = {"arch": dict, "classes": dict, "preprocess": dict, "thresholds": list}


def _read_info(path: Path) -> dict[str, Any]:
    """model.json, checked for what loading and prediction read from it."""
    try:
        info = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; export the model again") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); export the model again") from None
    if not isinstance(info, dict):
        raise InputError(f"{path}: holds a JSON {type(info).__name__}, expected an object; export the model again")
    missing = [key for key in _REQUIRED_INFO if not isinstance(info.get(key), _REQUIRED_INFO[key])]
    if missing:
        raise InputError(f"{path}: missing or malformed {', '.join(missing)}; export the model again")
    abbreviations = info["classes"].get("abbreviations")
    if not isinstance(abbreviations, list) or len(abbreviations) != len(info["thresholds"]):
        raise InputError(f"{path}: classes.abbreviations and thresholds disagree; export the model again")
    try:
        PreprocessConfig(**info["preprocess"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed preprocess ({exc}); export the model again") from None
    return info


def _read_state_dict(path: Path, model: ECGResNet) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, checked against ``model`` so a mismatch is one readable line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only=True allows tensors and plain containers only: any other object could run
        # code while unpickling, so it stays refused rather than retried with weights_only=False.
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            raise InputError(
                f"{path}: not a plain state_dict (it holds {refused[1]}); refused for safety, since weights "
                "load with weights_only=True; export the model again"
            ) from None
        reason = _unpickler_reason(exc)
        raise InputError(f"{path}: not a readable PyTorch weights file ({reason}); export the model again") from None
    except Exception as exc:  # a cut-off or damaged archive: the unpickler raises almost anything (fuzzed)
        raise InputError(
            f"{path}: not a readable PyTorch weights file, truncated or corrupt ({_first_line(exc)}); "
            "export the model again"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: holds a {type(state).__name__}, not a state_dict of tensors; export the model again")
    expected = model.state_dict()
    problems = [
        f"{k} is {tuple(state[k].shape)}, the architecture needs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems += [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise InputError(
            f"{path}: the weights do not fit the architecture in {MODEL_JSON} ({len(problems)} problem(s): {shown})"
        )
    return state


def _unpickler_reason(exc: BaseException) -> str:
    """The unpickler's own words from torch's several-paragraph message."""
    _, _, reason = str(exc).partition("WeightsUnpickler error:")
    return next((line.strip() for line in reason.splitlines() if line.strip()), _first_line(exc))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
