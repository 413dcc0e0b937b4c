"""Preprocess whole data directories once into a single HDF5 cache, crash-safely.

HDF5 files are not crash-safe, so the cache is built in two phases:

1. Records are split into fixed chunks (by position in the sorted record list). Worker
   processes each read and preprocess one chunk and write it as ``chunk-NNNNNN.npz`` into
   ``CACHE.parts/``, atomically (temporary name, then rename). A rerun after a crash skips
   the chunks already there; ``manifest.json`` guards against resuming with other inputs.
2. When every chunk exists, they are streamed in order into ``CACHE.tmp`` (HDF5), which is
   renamed to ``CACHE`` only when complete; then the parts are removed. A crash here only
   costs a rerun of this cheap phase.

Memory stays bounded: a worker holds one chunk, the assembler one chunk at a time. The result
is the same whatever the number of workers and however often the run was interrupted.

Layout of the cache (HDF5): ``signals`` (12, total_samples) float16, contiguous so it can be
memory-mapped (a window of a record is then 12 runs of consecutive samples); per record
``offsets``, ``lengths``, ``names``, ``sources``, ``codes`` (comma-joined raw SNOMED codes),
``patient_ids``, ``paths``, ``ages`` (NaN = unknown), ``sexes`` (0 unknown, 1 female,
2 male); attributes ``fs`` and ``preprocess`` (JSON of ``PreprocessConfig``, whose ``style`` a
cache written before styles existed lacks: it reads as ``exact``).
Rejected records are listed, file and reason, in ``CACHE.rejects.csv``. No cache is written
when every record was rejected (or none was found).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from ecgnet.data.discover import RecordSource, discover_records, read_record
from ecgnet.data.preprocess import DEFAULT_PREPROCESS, PreprocessConfig, preprocess
from ecgnet.data.record import SEXES, RecordError
from ecgnet.data.sources import check_source_name
from ecgnet.errors import InputError

__all__ = ["CACHE_FORMAT_VERSION", "PrepareReport", "prepare_cache"]

CACHE_FORMAT_VERSION = 2
DEFAULT_CHUNK_RECORDS = 64
SIGNAL_DTYPE = np.float16
ProgressCallback = Callable[[int, int], None]


@dataclasses.dataclass
class PrepareReport:
    """What ``prepare_cache`` did."""

    cache: Path
    records: int
    rejected: list[tuple[str, str]]
    per_source: dict[str, int]
    resumed_chunks: int
    seconds: float

    @property
    def rejects_file(self) -> Path:
        return rejects_path(self.cache)


def rejects_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".rejects.csv")


def parts_dir(cache: Path) -> Path:
    return cache.with_name(cache.name + ".parts")


def prepare_cache(
    roots: list[Path | str],
    cache: Path | str,
    *,
    workers: int | None = None,
    config: PreprocessConfig = DEFAULT_PREPROCESS,
    own_source: str | None = None,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
    progress: ProgressCallback | None = None,
) -> PrepareReport:
    """Read, check and preprocess every record under ``roots`` into the HDF5 file ``cache``.

    Bad records are reported in ``CACHE.rejects.csv`` and skipped; when no record is left, nothing
    is written and an ``InputError`` gives the counts. ``own_source`` names the source of WFDB
    records whose names are not Challenge names (without it they are rejected). Interrupted
    runs resume::

        report = prepare_cache(["data/cinc2021", "data/sph"], "work/ecg.h5", workers=8)
        report = prepare_cache(["data/mydb"], "work/mydb.h5", own_source="MYDB")
    """
    start = time.perf_counter()
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    if own_source is not None:
        check_source_name(own_source)
    sources, discovery_problems = discover_records(roots, own_source=own_source)
    chunks = [sources[i : i + chunk_records] for i in range(0, len(sources), chunk_records)]
    parts = _open_parts(cache, sources, config, chunk_records)

    pending = [i for i in range(len(chunks)) if not _chunk_path(parts, i).exists()]
    resumed = len(chunks) - len(pending)
    done = len(sources) - sum(len(chunks[i]) for i in pending)
    if progress:
        progress(done, len(sources))
    workers = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    jobs = [(chunks[i], _chunk_path(parts, i), config) for i in pending]
    if workers == 1:
        for job in jobs:
            done += _preprocess_chunk(job)
            if progress:
                progress(done, len(sources))
    else:
        # fork: workers inherit the imported modules instead of re-importing torch and scipy.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            for count in pool.map(_preprocess_chunk, jobs):
                done += count
                if progress:
                    progress(done, len(sources))

    records, rejected, per_source = _assemble(cache, parts, len(chunks), config)
    rejected = [(e.path, e.reason) for e in discovery_problems] + rejected
    _write_rejects(cache, rejected)
    shutil.rmtree(parts)
    if not records:
        where = ", ".join(str(root) for root in roots)
        looked_for = "" if sources else " (no .hea files or SPH metadata.csv there)"
        raise InputError(
            f"{cache}: not written, no usable records under {where}: {len(sources)} record(s) found{looked_for}, "
            f"0 kept, {len(rejected)} rejected (reasons in {rejects_path(cache)})"
        )
    return PrepareReport(cache, records, rejected, per_source, resumed, time.perf_counter() - start)


def _open_parts(cache: Path, sources: list[RecordSource], config: PreprocessConfig, chunk_records: int) -> Path:
    """The parts folder for these inputs, emptied first if it holds parts of other inputs."""
    parts = parts_dir(cache)
    digest = hashlib.sha256()
    digest.update(json.dumps([config.to_dict(), chunk_records, CACHE_FORMAT_VERSION]).encode())
    # The fields in order, as dataclasses.astuple gives them without its deep copies (half a
    # millisecond a record: 50 s for the Challenge's 88,000).
    fields = [field.name for field in dataclasses.fields(RecordSource)]
    for source in sources:
        digest.update(json.dumps([getattr(source, name) for name in fields]).encode())
    manifest = {"inputs_sha256": digest.hexdigest(), "records": len(sources)}
    manifest_file = parts / "manifest.json"
    if manifest_file.exists() and json.loads(manifest_file.read_text()) != manifest:
        shutil.rmtree(parts)
    if not manifest_file.exists():
        parts.mkdir(parents=True, exist_ok=True)
        for stale in parts.iterdir():
            stale.unlink()
        _atomic_write_bytes(manifest_file, json.dumps(manifest).encode())
    return parts


def _chunk_path(parts: Path, index: int) -> Path:
    return parts / f"chunk-{index:06d}.npz"


def _preprocess_chunk(job: tuple[list[RecordSource], Path, PreprocessConfig]) -> int:
    """Read and preprocess one chunk of records; write it atomically. Returns records handled."""
    sources, out, config = job
    signals, lengths, meta, rejects = [], [], [], []
    for source in sources:
        try:
            record = read_record(source)
            try:
                processed = preprocess(record.signal, record.fs, config)
            except ValueError as exc:  # e.g. too short to filter (both styles), or a rate below 100 Hz
                raise RecordError(source.path, f"cannot preprocess: {exc}") from None
        except RecordError as exc:
            rejects.append([exc.path, exc.reason])
            continue
        signals.append(processed.astype(SIGNAL_DTYPE))
        lengths.append(processed.shape[1])
        meta.append(
            {
                "name": record.name,
                "source": record.source,
                "codes": ",".join(record.codes),
                "patient_id": record.patient_id,
                "path": record.path,
                "age": record.age,
                "sex": record.sex,
            }
        )
    payload = {
        "signals": np.concatenate(signals, axis=1) if signals else np.zeros((12, 0), SIGNAL_DTYPE),
        "lengths": np.asarray(lengths, dtype=np.int64),
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "rejects": np.frombuffer(json.dumps(rejects).encode(), dtype=np.uint8),
    }
    tmp = out.with_suffix(".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return len(sources)


def _load_chunk(path: Path) -> tuple[np.lib.npyio.NpzFile, list[dict], list[list[str]]]:
    data = np.load(path)
    return data, json.loads(data["meta"].tobytes()), json.loads(data["rejects"].tobytes())


def _assemble(
    cache: Path, parts: Path, n_chunks: int, config: PreprocessConfig
) -> tuple[int, list[tuple[str, str]], dict[str, int]]:
    """Stream the chunks, in order, into a new HDF5 file and rename it over ``cache``."""
    metas: list[dict] = []
    keep: list[list[bool]] = []
    rejected: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    total = 0
    for i in range(n_chunks):
        data, meta, rejects = _load_chunk(_chunk_path(parts, i))
        rejected += [(p, r) for p, r in rejects]
        lengths = data["lengths"]
        flags = []
        for m, length in zip(meta, lengths, strict=True):
            if m["name"] in seen:
                rejected.append((m["path"], f"duplicate record name {m['name']} (first read from {seen[m['name']]})"))
                flags.append(False)
                continue
            seen[m["name"]] = m["path"]
            m["length"] = int(length)
            m["offset"] = total
            total += int(length)
            metas.append(m)
            flags.append(True)
        keep.append(flags)
    if not metas:  # a cache of nothing would open fine and fail only when training starts
        return 0, rejected, {}

    tmp = cache.with_name(cache.name + ".tmp")
    with h5py.File(tmp, "w", track_order=False) as f:
        f.attrs["format_version"] = CACHE_FORMAT_VERSION
        f.attrs["fs"] = config.target_fs
        f.attrs["preprocess"] = json.dumps(config.to_dict())
        signals = f.create_dataset("signals", shape=(12, total), dtype=SIGNAL_DTYPE, track_times=False)
        position = 0
        for i in range(n_chunks):
            data, _, _ = _load_chunk(_chunk_path(parts, i))
            chunk_signals, lengths = data["signals"], data["lengths"]
            if all(keep[i]):
                signals[:, position : position + chunk_signals.shape[1]] = chunk_signals
                position += chunk_signals.shape[1]
                continue
            start = 0
            for length, wanted in zip(lengths, keep[i], strict=True):
                if wanted:
                    signals[:, position : position + length] = chunk_signals[:, start : start + length]
                    position += int(length)
                start += int(length)
        string = h5py.string_dtype()
        columns = {
            "offsets": (np.asarray([m["offset"] for m in metas], dtype=np.int64), None),
            "lengths": (np.asarray([m["length"] for m in metas], dtype=np.int64), None),
            "ages": (np.asarray([np.nan if m["age"] is None else m["age"] for m in metas], np.float32), None),
            "sexes": (
                np.asarray([0 if m["sex"] is None else 1 + SEXES.index(m["sex"]) for m in metas], np.int8),
                None,
            ),
        }
        for key, name in (("names", "name"), ("sources", "source"), ("codes", "codes"),
                          ("patient_ids", "patient_id"), ("paths", "path")):  # fmt: skip
            columns[key] = (np.asarray([m[name] for m in metas], dtype=object), string)
        for key, (values, dtype) in columns.items():
            f.create_dataset(key, data=values, dtype=dtype, track_times=False)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, cache)
    return len(metas), rejected, dict(sorted(Counter(m["source"] for m in metas).items()))


def _write_rejects(cache: Path, rejected: list[tuple[str, str]]) -> None:
    tmp = rejects_path(cache).with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "reason"])
        writer.writerows(rejected)
    os.replace(tmp, rejects_path(cache))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
