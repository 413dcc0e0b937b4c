"""One ECG record as every reader returns it, and the error a bad record raises."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

__all__ = ["LEADS", "MAX_AGE", "SEXES", "Record", "RecordError", "parse_age", "parse_sex"]

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SEXES = ("female", "male")
MAX_AGE = 120  # an age beyond this is a placeholder or a typo, not a patient: read as unknown


class RecordError(Exception):
    """A record that cannot be used: names the file and the problem."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclasses.dataclass
class Record:
    """A raw 12-lead record in millivolts, with its labels and demographics.

    Attributes:
        name: record id, unique within a data set (``E07500``, ``SPH_A00001``).
        source: canonical source name (see ``ecgnet.data.sources``).
        signal: float32 array (leads, samples) in mV.
        fs: sampling rate in Hz.
        age: years, or None when unknown.
        sex: ``"female"``, ``"male"`` or None when unknown.
        codes: SNOMED CT codes as written in the source (duplicates removed, order kept).
        patient_id: records of one patient share it; a CinC record is its own patient.
        path: the file the record was read from (the header for WFDB).
    """

    name: str
    source: str
    signal: np.ndarray
    fs: float
    age: float | None
    sex: str | None
    codes: tuple[str, ...]
    patient_id: str
    path: str

    @property
    def duration_s(self) -> float:
        return self.signal.shape[-1] / self.fs


def check_signal(path: Path | str, signal: np.ndarray, leads: int, samples: int | None) -> np.ndarray:
    """Validate a raw signal against what its metadata promised; returns it as float32."""
    if signal.ndim != 2:
        raise RecordError(path, f"signal has {signal.ndim} dimensions, expected (leads, samples)")
    if signal.shape[0] != leads:
        raise RecordError(path, f"header declares {leads} leads but the signal file has {signal.shape[0]}")
    if leads != len(LEADS):
        raise RecordError(path, f"{leads} leads; only 12-lead records are supported")
    if signal.shape[1] == 0:
        raise RecordError(path, "signal has zero samples")
    if samples is not None and signal.shape[1] != samples:
        raise RecordError(path, f"header declares {samples} samples but the signal file has {signal.shape[1]}")
    signal = np.asarray(signal, dtype=np.float32)
    if not np.isfinite(signal).all():
        raise RecordError(path, "signal contains NaN or infinite values")
    if (signal.max(axis=1) == signal.min(axis=1)).all():
        raise RecordError(path, "every lead is flat (constant)")
    return signal


def unique_codes(codes: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for c in codes if c))


def parse_age(value: object) -> float | None:
    """Age in years from a header or metadata field; None when unknown, not a number or outside 0-120.

    Training and prediction both read demographics through here, so a model sees the same
    metadata vector for a record in either.
    """
    try:
        age = float(value) if value is not None else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return age if math.isfinite(age) and 0 <= age <= MAX_AGE else None


def parse_sex(value: object) -> str | None:
    """``"female"``/``"male"`` from ``Female``, ``F``, ``male``, ``M`` (any case); None otherwise."""
    text = str(value or "").strip().lower()
    if text in ("female", "f"):
        return "female"
    if text in ("male", "m"):
        return "male"
    return None
