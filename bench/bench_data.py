"""Data benchmark: preprocessing throughput, loader throughput, memory bound, cache size.

Prints, on this machine:
1. preprocessing records/s (10 s, 500 Hz synthetic WFDB records) with ``prepare_cache`` on all
   cores, beside the single-core reference chain loadmat + sosfiltfilt + CubicSpline;
2. training-loader windows/s (4096 samples, scaled) from the cache, versus reading each
   record's file per sample as the thesis code did;
3. peak RSS while preprocessing 2,000 and 20,000 records (must not grow with the data);
4. cache bytes per record.

    python bench/bench_data.py                 # about 5 minutes on 2 cores
    python bench/bench_data.py --records 500 --big 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io
import torch
from scipy.interpolate import CubicSpline
from scipy.signal import butter, sosfiltfilt

from ecgnet.data.cache import prepare_cache
from ecgnet.data.cache_reader import ECGCache
from ecgnet.data.dataset import WindowDataset, minmax_scale, window_loader
from ecgnet.data.synth import SYNTH_SOURCES, synthesize_record

WINDOW = 4096


def write_records(directory: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` synthetic 10 s, 500 Hz WFDB records (G12EC-style names)."""
    directory.mkdir(parents=True, exist_ok=True)
    g12ec = next(s for s in SYNTH_SOURCES if s.name == "G12EC")
    headers = []
    for k in range(count):
        record = synthesize_record(np.random.default_rng([seed, k]), 10.0, g12ec)
        name = f"E{k + 1:05d}"
        val = np.clip(np.round(record.signal_mv * 1000), -32768, 32767).astype(np.int16)
        scipy.io.savemat(directory / f"{name}.mat", {"val": val}, format="4")
        lines = [f"{name} 12 500 5000"] + [f"{name}.mat 16+24 1000/mV 16 0 0 0 0 L{i}" for i in range(12)]
        lines += [f"#Age: {record.age}", f"#Sex: {record.sex}", "#Dx: 426783006"]
        (directory / f"{name}.hea").write_text("\n".join(lines) + "\n")
        headers.append(directory / f"{name}.hea")
    return headers


def replicate(source: list[Path], directory: Path, count: int) -> None:
    """``count`` records under new names whose signal files link to the ``source`` ones."""
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        original = source[k % len(source)]
        name = f"E{len(source) + k + 1:05d}"
        text = original.read_text().replace(original.stem, name)
        (directory / f"{name}.hea").write_text(text)
        os.symlink(original.with_suffix(".mat"), directory / f"{name}.mat")


def reference_chain(headers: list[Path]) -> float:
    """Records/s of loadmat + sosfiltfilt + cubic spline to 250 Hz on one core."""
    sos = butter(2, [0.5, 50], btype="bandpass", fs=500, output="sos")
    start = time.perf_counter()
    for header in headers:
        x = scipy.io.loadmat(header.with_suffix(".mat"))["val"] / 1000.0
        x = sosfiltfilt(sos, x, axis=-1)
        n_out = int((x.shape[1] - 1) * 250 / 500) + 1
        CubicSpline(np.arange(x.shape[1]) / 500, x, axis=-1)(np.arange(n_out) / 250)
    return len(headers) / (time.perf_counter() - start)


def thesis_style_loader(files: list[Path], seconds: float) -> float:
    """Windows/s reading one preprocessed .mat file per sample, cropping and scaling it."""
    rng = np.random.default_rng(0)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x = scipy.io.loadmat(files[done % len(files)])["val"].astype(np.float32)
        if x.shape[1] > WINDOW:
            s = int(rng.integers(0, x.shape[1] - WINDOW))
            x = x[:, s : s + WINDOW]
        else:
            x = np.pad(x, ((0, 0), (0, WINDOW - x.shape[1])))
        low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        x = np.where(high > low, (x - low) / np.maximum(high - low, 1e-12), 0)
        torch.from_numpy(x)
        done += 1
    return done / (time.perf_counter() - start)


def cache_loader(cache: ECGCache, seconds: float, workers: int, scale: bool) -> float:
    """Windows/s from the cache through the training loader; optionally scaled here on the CPU.

    In training the scaling runs batch-wise on the training device (free on a GPU).
    """
    names = list(cache.table["name"])
    data = WindowDataset(cache, names, cache.labels(), window=WINDOW)
    loader = window_loader(data, batch_size=256, num_workers=workers)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for signal, _, _ in loader:
            if scale:
                minmax_scale(signal)
            done += len(signal)
            if time.perf_counter() - start >= seconds:
                break
    return done / (time.perf_counter() - start)


def peak_rss_child(roots: list[str], cache: str) -> dict[str, float]:
    """Run prepare_cache in a fresh process; peak RSS of it and of its largest worker."""
    code = (
        "import json, resource, sys; from ecgnet.data.cache import prepare_cache;"
        f"r = prepare_cache({roots!r}, {cache!r});"
        "print(json.dumps({'records': r.records, 'seconds': r.seconds,"
        "'main_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        "'worker_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="records for throughput and the small RSS run")
    parser.add_argument("--big", type=int, default=20000, help="records for the large RSS run")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per loader measurement")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        headers = write_records(root / "small", args.records)
        print(f"wrote {args.records} synthetic records in {time.perf_counter() - t0:.0f} s")

        reference = reference_chain(headers[: min(400, len(headers))])
        report = prepare_cache([root / "small"], root / "small.h5")
        ours = report.records / report.seconds
        print("\n1. preprocessing, 10 s 500 Hz records")
        print(f"   reference chain, 1 core : {reference:8.0f} records/s")
        print(f"   prepare_cache, {os.cpu_count()} cores : {ours:8.0f} records/s (read, check, cache write)")

        cache = ECGCache(root / "small.h5")
        files = []
        for i in range(min(500, len(cache))):
            path = root / "mats" / f"{i}.mat"
            path.parent.mkdir(exist_ok=True)
            scipy.io.savemat(path, {"val": np.asarray(cache.signal(i), dtype=np.float32)})
            files.append(path)
        thesis = thesis_style_loader(files, args.seconds)
        print("\n2. training windows (12 x 4096)")
        print(f"   file per sample + crop + scale (thesis code), 1 core : {thesis:9.0f} windows/s")
        for workers in (0, 2):
            raw = cache_loader(cache, args.seconds, workers, scale=False)
            scaled = cache_loader(cache, args.seconds, workers, scale=True)
            print(
                f"   cache loader, {workers} workers: {raw:9.0f} windows/s ({raw / thesis:.0f}x); "
                f"with CPU scaling in the main process: {scaled:7.0f}/s"
            )

        replicate(headers, root / "big", args.big - args.records)
        small = peak_rss_child([str(root / "small")], str(root / "rss_small.h5"))
        big = peak_rss_child([str(root / "small"), str(root / "big")], str(root / "rss_big.h5"))
        print("\n3. peak RSS while preprocessing (main process / largest worker)")
        for label, run in ((f"{args.records:>6}", small), (f"{args.big:>6}", big)):
            print(
                f"   {label} records: {run['main_mb']:6.0f} MB / {run['worker_mb']:6.0f} MB "
                f"({run['records'] / run['seconds']:.0f} records/s)"
            )
        print(f"   ratio large/small (main): {big['main_mb'] / small['main_mb']:.2f}")

        size = (root / "rss_big.h5").stat().st_size
        print(f"\n4. cache: {size / big['records'] / 1024:.1f} KiB per 10 s record ({size / 2**20:.0f} MiB)")
    print(f"\nbenchmark process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
