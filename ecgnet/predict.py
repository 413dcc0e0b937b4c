"""Prediction on raw files: the same reading and preprocessing as training, then the model.

>>> results = predict_files("models/e12", ["ecg/A0001.hea", "ecg/A00002.h5"])
>>> results[0].probabilities["AF"], results[0].labels
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import torch

from ecgnet.data.cinc import read_cinc_record
from ecgnet.data.dataset import minmax_scale
from ecgnet.data.preprocess import PreprocessConfig, preprocess
from ecgnet.data.record import RecordError, check_signal
from ecgnet.data.sph import SPH_FS, read_sph_signal, sph_demographics
from ecgnet.export import MODEL_INT8_ONNX, load_model
from ecgnet.latency import graph_inputs

__all__ = ["Prediction", "predict_files", "read_for_prediction"]


@dataclasses.dataclass
class Prediction:
    path: str
    probabilities: dict[str, float] | None = None
    labels: list[str] | None = None
    error: str | None = None


def _sph_demographics(path: Path) -> tuple[float | None, str | None]:
    """Age and sex from a metadata.csv beside an SPH file, when there is one."""
    metadata = path.with_name("metadata.csv")
    if not metadata.exists():
        return None, None
    table = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    row = table[table.get("ECG_ID", pd.Series(dtype=str)) == path.stem]
    if row.empty:
        return None, None
    return sph_demographics(row.iloc[0].to_dict())


def read_for_prediction(path: Path | str) -> tuple[np.ndarray, float, float | None, str | None]:
    """(signal in mV, rate, age, sex) of a WFDB (.hea, .mat or .dat) or SPH (.h5) file."""
    path = Path(path)
    if path.suffix == ".h5":
        signal = check_signal(path, read_sph_signal(path), 12, None)
        return (signal, SPH_FS, *_sph_demographics(path))
    header = path.with_suffix(".hea")
    if path.suffix not in (".hea", ".mat", ".dat"):
        raise RecordError(path, "unknown file type: expected a WFDB .hea/.mat/.dat or an SPH .h5 file")
    if not header.exists():
        raise RecordError(header, "header file is missing")
    record = read_cinc_record(header, for_training=False)
    return record.signal, record.fs, record.age, record.sex


def predict_files(model_dir: Path | str, paths: list[Path | str], *, int8: bool = False) -> list[Prediction]:
    """Per-file class probabilities and the labels over threshold; a bad file gets an error.

    ``int8``: run ``model.int8.onnx`` (``export --int8``) with ONNX Runtime instead of the PyTorch model.
    """
    model, info = load_model(model_dir)
    runner = None
    if int8:
        path = Path(model_dir) / MODEL_INT8_ONNX
        if not path.exists():
            raise FileNotFoundError(f"{path}: no int8 model in {model_dir} (write one with `ecgsearch export --int8`)")
        runner = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    config = PreprocessConfig(**info["preprocess"])
    abbreviations = info["classes"]["abbreviations"]
    thresholds = np.asarray(info["thresholds"])
    results = []
    for path in paths:
        try:
            signal, fs, age, sex = read_for_prediction(path)
            processed = preprocess(signal, fs, config)
        except RecordError as exc:
            results.append(Prediction(str(path), error=exc.reason))
            continue
        except ValueError as exc:
            results.append(Prediction(str(path), error=f"cannot preprocess: {exc}"))
            continue
        metadata = torch.tensor([[0.0 if age is None else age / 100, sex == "female", sex == "male"]])
        scaled = minmax_scale(torch.from_numpy(processed)[None])
        if runner is not None:
            inputs = {"signal": scaled.numpy(), "metadata": metadata.numpy().astype(np.float32)}
            logits = torch.from_numpy(runner.run(None, graph_inputs(runner, inputs))[0])
        else:
            with torch.no_grad():
                logits = model(scaled, metadata)
        probabilities = torch.sigmoid(logits)[0].numpy()
        results.append(
            Prediction(
                str(path),
                probabilities={a: float(p) for a, p in zip(abbreviations, probabilities, strict=True)},
                labels=[a for a, p, t in zip(abbreviations, probabilities, thresholds, strict=True) if p >= t],
            )
        )
    return results
