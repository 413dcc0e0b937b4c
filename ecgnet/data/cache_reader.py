"""Reading the preprocessed cache: record table in pandas, signals memory-mapped.

>>> cache = ECGCache("work/ecg.h5")
>>> cache.table.loc[0, ["name", "source", "length"]]
>>> window = cache.signal(0, start=100, length=4096)    # (12, 4096) float16, a view
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ecgnet.data.cache import CACHE_FORMAT_VERSION
from ecgnet.data.labels import ClassSet, class_set

__all__ = ["ECGCache"]

_STRING_COLUMNS = ("names", "sources", "codes", "patient_ids", "paths")
_NUMBER_COLUMNS = ("offsets", "lengths", "ages", "sexes")


class ECGCache:
    """A prepared cache file. Signals are a read-only memory map: no copy is made at open."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such cache; create it with `ecgsearch data prepare`")
        try:
            with h5py.File(self.path, "r") as f:
                version = int(f.attrs.get("format_version", -1))
                if version != CACHE_FORMAT_VERSION:
                    raise ValueError(
                        f"{self.path}: cache format {version}, expected {CACHE_FORMAT_VERSION}; prepare it again"
                    )
                self.fs = float(f.attrs["fs"])
                self.preprocess = json.loads(f.attrs["preprocess"])
                columns = {k: f[k].asstr()[()] for k in _STRING_COLUMNS}
                columns.update({k: f[k][()] for k in _NUMBER_COLUMNS})
                signals = f["signals"]
                offset, shape, dtype = signals.id.get_offset(), signals.shape, signals.dtype
        except OSError as exc:
            raise ValueError(f"{self.path}: not a readable cache ({exc})") from None
        self.table = pd.DataFrame(
            {
                "name": columns["names"],
                "source": columns["sources"],
                "codes": columns["codes"],
                "patient_id": columns["patient_ids"],
                "path": columns["paths"],
                "offset": columns["offsets"],
                "length": columns["lengths"],
                "age": columns["ages"],
                "sex": columns["sexes"],
            }
        )
        if shape[0] == 0:
            self.signals = np.zeros(shape, dtype=dtype)
        else:
            self.signals = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape)

    def __len__(self) -> int:
        return len(self.table)

    def record_codes(self) -> list[list[str]]:
        return [c.split(",") if c else [] for c in self.table["codes"]]

    def labels(self, classes: ClassSet | str = "thesis17") -> np.ndarray:
        """Multi-hot labels (records x classes) under a class set."""
        classes = class_set(classes) if isinstance(classes, str) else classes
        return classes.encode(self.record_codes())

    def signal(self, index: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """Samples ``start:start+length`` of record ``index`` as (12, n), a view into the map."""
        row_offset, row_length = int(self.table.at[index, "offset"]), int(self.table.at[index, "length"])
        length = row_length - start if length is None else min(length, row_length - start)
        return self.signals[:, row_offset + start : row_offset + start + length]

    def metadata(self) -> np.ndarray:
        """(records, 3) float32: [age / 100 (0 when unknown), female, male]."""
        ages = np.nan_to_num(self.table["age"].to_numpy(np.float32) / 100.0, nan=0.0)
        sex = self.table["sex"].to_numpy()
        return np.stack([ages, sex == 1, sex == 2], axis=1).astype(np.float32)

    def info(self, classes: ClassSet | str = "thesis17") -> dict[str, object]:
        """Counts per source and per class, and records with no class of the set."""
        classes = class_set(classes) if isinstance(classes, str) else classes
        labels = self.labels(classes)
        per_class = pd.DataFrame(labels, columns=list(classes.abbreviations)).groupby(self.table["source"]).sum()
        return {
            "records": len(self),
            "hours": float(self.table["length"].sum() / self.fs / 3600),
            "class_set": classes.name,
            "per_source": self.table["source"].value_counts().sort_index().to_dict(),
            "per_class": {k: int(v) for k, v in zip(classes.abbreviations, labels.sum(0), strict=True)},
            "per_source_class": per_class.astype(int).to_dict(orient="index"),
            "unlabeled": int((~labels.any(axis=1)).sum()),
        }
