"""Test helpers that write real-format ECG files derived from the real fixture records."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import scipy.io

FIXTURES = Path(__file__).parent / "fixtures"
CINC = FIXTURES / "cinc2021"


def copy_record(name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".hea", ".mat"):
        shutil.copy(CINC / f"{name}{suffix}", dest / f"{name}{suffix}")
    return dest / f"{name}.hea"


def real_signal(name: str = "HR06000") -> np.ndarray:
    return scipy.io.loadmat(CINC / f"{name}.mat")["val"]


def write_cinc(
    dest: Path,
    name: str,
    val: np.ndarray,
    *,
    fs: float = 500,
    header_leads: int | None = None,
    header_samples: int | None = None,
    gain: str = "1000/mV",
    comments: str = "#Age: 60\n#Sex: Female\n#Dx: 426783006\n",
    newline: str = "\n",
) -> Path:
    """A WFDB record (header + MATLAB v4 'val') with every field under the test's control."""
    dest.mkdir(parents=True, exist_ok=True)
    leads = val.shape[0] if header_leads is None else header_leads
    samples = val.shape[1] if header_samples is None else header_samples
    lines = [f"{name} {leads} {fs:g} {samples}"]
    lines += [f"{name}.mat 16+24 {gain} 16 0 0 0 0 L{i}" for i in range(leads)]
    text = newline.join(lines) + newline + comments.replace("\n", newline)
    (dest / f"{name}.hea").write_bytes(text.encode())
    scipy.io.savemat(dest / f"{name}.mat", {"val": val}, format="4")
    return dest / f"{name}.hea"


def write_sph(dest: Path, rows: list[dict[str, object]], signals: dict[str, np.ndarray]) -> Path:
    """An SPH-format folder: metadata.csv plus one <ECG_ID>.h5 (dataset 'ecg', mV) per record."""
    dest.mkdir(parents=True, exist_ok=True)
    header = "ECG_ID,AHA_Code,Patient_ID,Age,Sex,N,Date"
    lines = [header] + [
        ",".join(str(row[k]) for k in ("ECG_ID", "AHA_Code", "Patient_ID", "Age", "Sex", "N", "Date")) for row in rows
    ]
    (dest / "metadata.csv").write_text("\n".join(lines) + "\n")
    for ecg_id, signal in signals.items():
        with h5py.File(dest / f"{ecg_id}.h5", "w") as f:
            f.create_dataset("ecg", data=signal)
    return dest / "metadata.csv"


def sph_pair(dest: Path) -> Path:
    """Two SPH records of one patient (P001) and one of another (P002), from real signals."""
    mv = {name: real_signal(name).astype(np.float32) / 1000 for name in ("HR06000", "HR06001", "JS20000")}
    rows = [
        {"ECG_ID": "A00001", "AHA_Code": "22;50", "Patient_ID": "P001", "Age": 63, "Sex": "M", "N": 5000,
         "Date": "2020-01-01"},
        {"ECG_ID": "A00002", "AHA_Code": "1", "Patient_ID": "P001", "Age": 63, "Sex": "M", "N": 5000,
         "Date": "2020-02-01"},
        {"ECG_ID": "A00003", "AHA_Code": "60+310;106", "Patient_ID": "P002", "Age": 40, "Sex": "F", "N": 5000,
         "Date": "2020-03-01"},
    ]  # fmt: skip
    return write_sph(dest, rows, dict(zip(("A00001", "A00002", "A00003"), mv.values(), strict=True)))
