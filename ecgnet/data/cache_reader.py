"""Reading the preprocessed cache: record table in pandas, signals memory-mapped.

>>> cache = ECGCache("work/ecg.h5")
>>> cache.table.loc[0, ["name", "source", "length"]]
>>> window = cache.signal(0, start=100, length=4096)    # (12, 4096) float16, a view
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ecgnet.data.cache import CACHE_FORMAT_VERSION
from ecgnet.data.labels import ClassSet, class_set
from ecgnet.data.preprocess import PreprocessConfig
from ecgnet.data.sources import held_out_sources
from ecgnet.data_spec import DataSpec
from ecgnet.errors import InputError

__all__ = ["ECGCache", "check_cache_fits", "open_cache_file"]

_STRING_COLUMNS = ("names", "sources", "codes", "patient_ids", "paths")
_NUMBER_COLUMNS = ("offsets", "lengths", "ages", "sexes")
_DATASETS = (*_STRING_COLUMNS, *_NUMBER_COLUMNS, "signals")
_PREPARE_AGAIN = "prepare it again with `ecgsearch data prepare`"


@contextlib.contextmanager
def open_cache_file(path: Path | str) -> Iterator[h5py.File]:
    """The cache opened with h5py once it is known to be whole: every dataset and attribute there.

    A missing file is a ``FileNotFoundError``; a truncated, empty or foreign file, or a read
    that fails inside the ``with`` block, is an ``InputError`` naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such cache; create it with `ecgsearch data prepare`")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the cache file is empty (0 bytes); {_PREPARE_AGAIN}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: {_open_failure(exc)}; {_PREPARE_AGAIN}") from None
    try:
        _check_layout(path, f)
        yield f
    except OSError as exc:  # a damaged block inside a file whose header was intact
        raise InputError(f"{path}: cache is corrupt, a read failed ({exc}); {_PREPARE_AGAIN}") from None
    finally:
        f.close()


def _open_failure(exc: OSError) -> str:
    """HDF5's reason in a user's words: a cut-off copy is the common case and says how much is there."""
    sizes = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(exc))
    if sizes:
        return f"the cache is truncated ({sizes[1]} of {sizes[2]} bytes), e.g. an interrupted copy"
    return f"not a readable HDF5 cache ({exc})"


def _check_layout(path: Path, f: h5py.File) -> None:
    if not len(f):
        raise InputError(f"{path}: an HDF5 file with no datasets, not a cache; {_PREPARE_AGAIN}")
    if "format_version" not in f.attrs:
        raise InputError(f"{path}: HDF5 file without a cache format attribute, not a cache; {_PREPARE_AGAIN}")
    version = f.attrs["format_version"]
    if not isinstance(version, np.integer | int) or version != CACHE_FORMAT_VERSION:
        raise InputError(f"{path}: cache format {version}, expected {CACHE_FORMAT_VERSION}; {_PREPARE_AGAIN}")
    missing = [k for k in _DATASETS if not isinstance(f.get(k), h5py.Dataset)]
    missing += [f"attribute {k}" for k in ("fs", "preprocess") if k not in f.attrs]
    if missing:
        raise InputError(f"{path}: incomplete cache, missing {', '.join(missing)}; {_PREPARE_AGAIN}")
    records = {k: f[k].shape[0] for k in (*_STRING_COLUMNS, *_NUMBER_COLUMNS)}
    if len(set(records.values())) != 1:
        raise InputError(f"{path}: cache columns disagree on the record count {records}; {_PREPARE_AGAIN}")
    if not records["names"]:
        # prepare refuses to write one, so an empty cache is a leftover that would fail training later.
        raise InputError(f"{path}: the cache holds 0 records; {_PREPARE_AGAIN} from folders with readable records")


def _preprocess_config(path: Path, attribute: object) -> PreprocessConfig:
    """The cache's preprocessing; a cache written before styles existed has none and is ``exact``."""
    try:
        return PreprocessConfig(**json.loads(attribute))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: cache attribute preprocess is malformed ({exc}); {_PREPARE_AGAIN}") from None


def check_cache_fits(spec: DataSpec) -> None:
    """Refuse, before any work, a cache that ``spec`` cannot use; an ``InputError`` names the cache and the fix.

    The cache must have been prepared in the preprocessing style ``spec`` asks for (when it asks
    for one), and hold the test source ``spec.test`` names (unless a split folder is given).
    """
    path = Path(spec.cache)
    with open_cache_file(path) as f:
        style = _preprocess_config(path, f.attrs["preprocess"]).style
        sources = f["sources"].asstr()[()] if spec.split_dir is None else []
    if spec.preprocess is not None and style != spec.preprocess:
        raise InputError(
            f"{path}: the cache was prepared with preprocess style {style!r}, but the data settings ask for "
            f"{spec.preprocess!r}; prepare it with `ecgsearch data prepare DATA_DIRS --out {path} --preprocess "
            f"{spec.preprocess}`, or ask for preprocess = {style!r}"
        )
    if spec.split_dir is None:
        try:
            held_out_sources(spec.test, sources)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None


class ECGCache:
    """A prepared cache file. Signals are a read-only memory map: no copy is made at open."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with open_cache_file(self.path) as f:
            try:
                self.fs = float(f.attrs["fs"])
                self.preprocess = json.loads(f.attrs["preprocess"])
                self.preprocess_config = _preprocess_config(self.path, f.attrs["preprocess"])
                columns = {k: f[k].asstr()[()] for k in _STRING_COLUMNS}
            except (TypeError, ValueError) as exc:  # a number where text belongs, bad JSON or UTF-8
                raise InputError(f"{self.path}: cache attributes or columns are malformed ({exc})") from None
            columns.update({k: f[k][()] for k in _NUMBER_COLUMNS})
            signals = f["signals"]
            offset, shape, dtype = signals.id.get_offset(), signals.shape, signals.dtype
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
        self._check_signals(offset, shape, dtype)
        self.signals = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape)

    def _check_signals(self, offset: int | None, shape: tuple[int, ...], dtype: np.dtype) -> None:
        """The memory map reads raw bytes past h5py's checks: a damaged layout must be caught here."""
        if len(shape) != 2 or shape[0] != 12:
            raise InputError(f"{self.path}: cache signals have shape {shape}, expected (12, samples); {_PREPARE_AGAIN}")
        if offset is None:  # chunked, compressed or never written: not one contiguous block
            raise InputError(f"{self.path}: cache signals are not stored contiguously; {_PREPARE_AGAIN}")
        end = offset + int(np.prod(shape)) * dtype.itemsize
        size = self.path.stat().st_size
        if end > size:
            raise InputError(
                f"{self.path}: cache is truncated ({size} bytes, signals end at byte {end}); {_PREPARE_AGAIN}"
            )
        ends = self.table["offset"].to_numpy() + self.table["length"].to_numpy()
        if (self.table["offset"] < 0).any() or int(ends.max()) > shape[1]:
            raise InputError(f"{self.path}: cache record offsets point past its {shape[1]} samples; {_PREPARE_AGAIN}")

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
            "preprocess": self.preprocess_config.style,
            "per_source": self.table["source"].value_counts().sort_index().to_dict(),
            "per_class": {k: int(v) for k, v in zip(classes.abbreviations, labels.sum(0), strict=True)},
            "per_source_class": per_class.astype(int).to_dict(orient="index"),
            "unlabeled": int((~labels.any(axis=1)).sum()),
        }
