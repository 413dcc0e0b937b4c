"""Reader for the Shandong Provincial Hospital (SPH) database: one HDF5 file per record.

Layout: ``metadata.csv`` (``ECG_ID,AHA_Code,Patient_ID,Age,Sex,N,Date``) beside the record
files ``<ECG_ID>.h5``, each with a dataset ``ecg`` of shape (12, N) in mV at 500 Hz.
AHA statements are mapped to SNOMED CT by the data file ``configs/sph_aha_to_snomed.csv``;
statements it does not list are kept as ``AHA:<code>`` so no information is lost.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ecgnet.data.record import Record, RecordError, check_signal, parse_age, parse_sex, unique_codes

__all__ = [
    "SPH_FS",
    "SPH_PREFIX",
    "SphEntry",
    "aha_to_snomed",
    "iter_sph_entries",
    "read_sph_record",
    "read_sph_signal",
    "sph_demographics",
]

SPH_FS = 500.0
# SPH ids (A00001) would collide in spirit with CPSC's (A0001): prefix them in the cache.
SPH_PREFIX = "SPH_"
METADATA_COLUMNS = ("ECG_ID", "AHA_Code", "Patient_ID", "Age", "Sex", "N")


@functools.cache
def aha_to_snomed() -> dict[str, str]:
    """AHA primary statement code -> SNOMED CT code."""
    text = resources.files("ecgnet").joinpath("configs", "sph_aha_to_snomed.csv").read_text("utf-8")
    return {row["aha_code"]: row["snomed_code"] for row in csv.DictReader(text.splitlines())}


def map_aha_codes(aha: str) -> tuple[str, ...]:
    """``"60+310;22"`` -> SNOMED codes of the primary statements (modifiers after ``+`` dropped)."""
    mapping = aha_to_snomed()
    codes = []
    for statement in str(aha).split(";"):
        primary = statement.split("+")[0].strip()
        if primary:
            codes.append(mapping.get(primary, f"AHA:{primary}"))
    return unique_codes(codes)


SphEntry = dict[str, str]  # one metadata.csv row, every value a string


def iter_sph_entries(metadata_csv: Path) -> Iterator[tuple[Path, SphEntry]]:
    """(record file, metadata row) for every row of an SPH metadata.csv."""
    try:
        table = pd.read_csv(metadata_csv, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise RecordError(metadata_csv, f"unreadable metadata.csv ({exc})") from None
    missing = [c for c in METADATA_COLUMNS if c not in table.columns]
    if missing:
        raise RecordError(metadata_csv, f"metadata.csv lacks column(s) {', '.join(missing)}")
    for row in table.to_dict("records"):
        yield metadata_csv.with_name(f"{row['ECG_ID']}.h5"), row


def sph_demographics(entry: SphEntry) -> tuple[float | None, str | None]:
    """Age (None unless 0-120) and sex (``F``/``M``) of a metadata row, for training and prediction alike."""
    return parse_age(entry.get("Age")), parse_sex(entry.get("Sex"))


def read_sph_signal(path: Path) -> np.ndarray:
    """The raw ``ecg`` dataset of one SPH file, (12, N) in mV."""
    if not path.exists():
        raise RecordError(path, "signal file is missing")
    try:
        with h5py.File(path, "r") as f:
            return f["ecg"][()]
    except KeyError:
        raise RecordError(path, "HDF5 file has no dataset 'ecg'") from None
    except Exception as exc:
        raise RecordError(path, f"unreadable .h5 file ({type(exc).__name__}: {exc})") from None


def read_sph_record(path: Path | str, entry: SphEntry) -> Record:
    """Read one SPH record given its metadata row; raises ``RecordError`` when unusable."""
    path = Path(path)
    raw = read_sph_signal(path)
    try:
        samples = int(entry["N"]) if entry.get("N", "") != "" else None
    except ValueError:
        raise RecordError(path, f"metadata N={entry['N']!r} is not a sample count") from None
    signal = check_signal(path, np.asarray(raw), 12, samples)
    codes = map_aha_codes(entry["AHA_Code"])
    if not codes:
        raise RecordError(path, "AHA_Code is empty: the record has no labels")
    age, sex = sph_demographics(entry)
    return Record(
        name=SPH_PREFIX + entry["ECG_ID"],
        source="SPH",
        signal=signal,
        fs=SPH_FS,
        age=age,
        sex=sex,
        codes=codes,
        patient_id=SPH_PREFIX + str(entry["Patient_ID"]),
        path=str(path),
    )
