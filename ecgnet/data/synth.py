"""Synthetic 12-lead ECGs in the real file formats, with class-dependent waveforms.

Each record is a sum of Gaussian waves (P, septal q, R, S, T, and the extra waves of a
condition) whose 3-D dipole directions are projected onto the 12 lead vectors, so an axis
deviation or a bundle-branch block shows in the right leads. Rhythms set the beat times:
sinus rates for SR/SB/STach, respiratory modulation for SA, irregular RR without P waves
(and fibrillatory waves) for AF, sawtooth flutter waves with 2:1 or 4:1 conduction for AFL,
early beats with another P axis for PAC. Patients differ in rate, axis, amplitudes and QRS
width; records carry baseline wander, muscle and powerline noise, and some label noise, so
a classifier learns something real but not trivially.

Records are written as the real sources write them: WFDB header + MATLAB v4 ``val`` (int16,
1000/mV) named like CPSC, G12EC, PTB-XL, Chapman-Shaoxing and Ningbo records, and SPH's
``.h5`` files with ``metadata.csv`` (AHA codes). Everything is a function of the seed.

    >>> write_synthetic_dataset("work/synth", records=1200, seed=0)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io

from ecgnet.data.labels import THESIS17
from ecgnet.data.sph import aha_to_snomed

__all__ = ["SYNTH_SOURCES", "SyntheticRecord", "synthesize_record", "write_synthetic_dataset"]

FS = 500
# Lead vectors in body coordinates (x: patient's left, y: feet, z: anterior).
_LEAD_VECTORS = np.array(
    [
        [1.0, 0.0, 0.0],  # I
        [0.5, 0.866, 0.0],  # II
        [-0.5, 0.866, 0.0],  # III
        [-0.866, -0.5, 0.0],  # aVR
        [0.866, -0.5, 0.0],  # aVL
        [0.0, 1.0, 0.0],  # aVF
        [-0.35, 0.2, 0.9],  # V1
        [0.0, 0.2, 1.0],  # V2
        [0.4, 0.2, 0.9],  # V3
        [0.7, 0.2, 0.7],  # V4
        [0.9, 0.2, 0.4],  # V5
        [1.0, 0.2, 0.1],  # V6
    ]
)
_LEAD_VECTORS /= np.linalg.norm(_LEAD_VECTORS, axis=1, keepdims=True)

# Abbreviation -> SNOMED code of the thesis's 17 classes, from the one table in labels.py.
CODES = {abbreviation: code for code, abbreviation in THESIS17}
# Rhythm shares and condition prevalences after the Challenge 2021 totals (dx_mapping_scored),
# with rare conditions raised to 4% so that small synthetic sets still have positives.
RHYTHMS = {"SR": 0.38, "SB": 0.25, "STach": 0.13, "AF": 0.07, "AFL": 0.11, "SA": 0.06}
CONDITIONS = {
    "TAb": 0.13, "TInv": 0.05, "IRBBB": 0.04, "RBBB": 0.055, "LBBB": 0.04, "LAnFB": 0.04, "LAD": 0.08,
    "RAD": 0.04, "IAVB": 0.045, "LQRSV": 0.04, "PAC": 0.05,
}  # fmt: skip
MISSED_LABEL_RATE = 0.04
SPURIOUS_LABEL_RATE = 0.004


@dataclasses.dataclass(frozen=True)
class SynthSource:
    name: str
    prefix: str
    first_number: int
    share: float
    seconds: tuple[float, float]
    noise: float  # muscle noise, mV
    mains_hz: float


SYNTH_SOURCES = (
    SynthSource("CPSC", "A", 1, 0.15, (8, 30), 0.02, 50),
    SynthSource("G12EC", "E", 1, 0.15, (10, 10), 0.03, 60),
    SynthSource("PTB-XL", "HR", 1, 0.2, (10, 10), 0.015, 50),
    SynthSource("Chapman-Shaoxing", "JS", 1, 0.15, (10, 10), 0.02, 50),
    SynthSource("Ningbo", "JS", 10647, 0.15, (10, 10), 0.025, 50),
    SynthSource("SPH", "A", 1, 0.2, (10, 20), 0.02, 50),
)


@dataclasses.dataclass
class SyntheticRecord:
    signal_mv: np.ndarray  # (12, samples) float32
    labels: tuple[str, ...]  # written labels (with label noise), abbreviations
    true_labels: tuple[str, ...]
    age: int
    sex: str


def _sample_labels(rng: np.random.Generator) -> list[str]:
    rhythm = str(rng.choice(list(RHYTHMS), p=np.array(list(RHYTHMS.values())) / sum(RHYTHMS.values())))
    labels = {rhythm}
    for condition, p in CONDITIONS.items():
        if rng.random() < p:
            labels.add(condition)
    # Co-occurrence as in the real data, and exclusions that physiology imposes.
    if "LAnFB" in labels and rng.random() < 0.7:
        labels.add("LAD")
    if "TInv" in labels and rng.random() < 0.4:
        labels.add("TAb")
    if "RBBB" in labels and rng.random() < 0.3:
        labels.add("LAnFB")
        labels.add("LAD")
    for a, b in (("RBBB", "LBBB"), ("RBBB", "IRBBB"), ("LBBB", "IRBBB"), ("LAD", "RAD")):
        if a in labels and b in labels:
            labels.discard(b)
    if rhythm in ("AF", "AFL"):
        labels -= {"IAVB", "PAC"}
    return sorted(labels)


def _beat_times(rng: np.random.Generator, rhythm: str, seconds: float) -> tuple[np.ndarray, float]:
    """R-peak times and the mean RR interval."""
    rate = {"SR": (60, 99), "SB": (40, 58), "STach": (101, 150), "SA": (55, 95), "AF": (60, 130),
            "AFL": (70, 150)}[rhythm]  # fmt: skip
    rr = 60.0 / rng.uniform(*rate)
    times, t = [], rng.uniform(0.1, rr)
    phase = rng.uniform(0, 2 * math.pi)
    while t < seconds - 0.3:
        times.append(t)
        if rhythm == "AF":
            step = rr * rng.uniform(0.6, 1.45)
        elif rhythm == "SA":
            step = rr * (1 + 0.18 * math.sin(2 * math.pi * 0.25 * t + phase))
        else:
            step = rr * rng.normal(1, 0.015)
        t += step
    return np.asarray(times), rr


def _gaussians(t: np.ndarray, centers: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((t[None, :] - centers[:, None]) / width) ** 2).sum(axis=0)


def _sinusoids(
    rng: np.random.Generator,
    t: np.ndarray,
    *,
    count: int,
    amplitude: tuple[float, float],
    hz: tuple[float, float],
) -> np.ndarray:
    """A sum of ``count`` sinusoids of random amplitude, frequency and phase."""
    waves = np.zeros_like(t)
    for _ in range(count):
        waves += rng.uniform(*amplitude) * np.sin(2 * math.pi * rng.uniform(*hz) * t + rng.uniform(0, 2 * math.pi))
    return waves


def _direction(frontal_deg: float, z: float) -> np.ndarray:
    a = math.radians(frontal_deg)
    v = np.array([math.cos(a), math.sin(a), z])
    return v / np.linalg.norm(v)


def synthesize_record(rng: np.random.Generator, seconds: float, source: SynthSource) -> SyntheticRecord:
    """One synthetic record: labels first, then a waveform that shows them."""
    true_labels = _sample_labels(rng)
    has = set(true_labels).__contains__
    rhythm = next(label for label in true_labels if label in RHYTHMS)
    n = round(seconds * FS)
    t = np.arange(n) / FS
    beats, rr = _beat_times(rng, rhythm, seconds)

    if has("LAD"):
        axis = rng.uniform(-75, -35)
    elif has("RAD"):
        axis = rng.uniform(100, 150)
    else:
        axis = rng.uniform(0, 80)
    scale = rng.uniform(0.6, 1.4) * (0.3 if has("LQRSV") else 1.0)
    qrs = rng.uniform(0.035, 0.05)  # Gaussian width of R, s
    if has("LBBB") or has("RBBB"):
        qrs *= 1.8
    pr = rng.uniform(0.22, 0.34) if has("IAVB") else rng.uniform(0.12, 0.19)
    qt = 0.4 * math.sqrt(rr) * rng.uniform(0.92, 1.08)

    vector = np.zeros((3, n))

    def add(direction: np.ndarray, amplitude: float, centers: np.ndarray, width: float) -> None:
        vector[:] += amplitude * direction[:, None] * _gaussians(t, centers, width)[None, :]

    premature = np.zeros(len(beats), dtype=bool)
    if has("PAC") and len(beats) > 3:
        count = min(len(beats) - 2, int(rng.integers(1, 4)))
        chosen = rng.choice(np.arange(2, len(beats)), size=count, replace=False)
        premature[chosen] = True
        beats = beats.copy()
        beats[chosen] -= 0.35 * rr
    r_dir = _direction(axis, -0.5)
    if has("LBBB"):
        r_dir = _direction(axis, -1.2)
    add(r_dir, 1.2 * scale, beats, qrs / 2.2)
    if not has("LBBB"):
        add(_direction(axis + 170, 1.6), 0.15 * scale, beats - 0.03, 0.008)  # septal q / r in V1
    add(_direction(axis + 180, -0.3), 0.35 * scale, beats + 1.1 * qrs, qrs / 2.5)  # S wave
    if has("RBBB") or has("IRBBB"):
        add(np.array([-0.6, 0.0, 0.8]), (0.55 if has("RBBB") else 0.25) * scale, beats + 1.6 * qrs, qrs / 2.5)
    t_dir = _direction(axis - 10, -0.2)
    t_amp = 0.3 * scale
    if has("LBBB"):
        t_dir = -t_dir  # discordant repolarisation
    if has("TInv"):
        t_dir = -t_dir
    if has("TAb"):
        t_amp *= rng.uniform(-0.15, 0.2)
    add(t_dir, t_amp, beats + qt - 0.08, rng.uniform(0.045, 0.065))

    if rhythm in ("AF", "AFL"):
        if rhythm == "AF":
            waves = _sinusoids(rng, t, count=3, amplitude=(0.02, 0.05), hz=(5, 8))
        else:
            flutter_hz = rng.uniform(4.5, 5.5)
            waves = 0.15 * (2 * ((t * flutter_hz) % 1.0) - 1)  # sawtooth
        vector += np.array([0.2, 0.9, 0.4])[:, None] * waves[None, :]
    else:
        p_dir = _direction(rng.uniform(40, 70), 0.2)
        p_times = beats - pr
        add(p_dir, 0.15 * scale, p_times[~premature], 0.022)
        if premature.any():
            add(_direction(rng.uniform(-90, -30), 0.4), 0.12 * scale, p_times[premature], 0.022)

    gains = rng.uniform(0.85, 1.15, size=(12, 1))
    signal = gains * (_LEAD_VECTORS @ vector)
    wander = _sinusoids(rng, t, count=2, amplitude=(0.05, 0.25), hz=(0.1, 0.5))
    signal += wander[None, :] * rng.uniform(0.5, 1.0, size=(12, 1))
    muscle = rng.normal(0, source.noise * rng.uniform(0.5, 2.0), size=(12, n))
    signal += np.apply_along_axis(lambda x: np.convolve(x, np.ones(3) / 3, mode="same"), 1, muscle)
    signal += rng.uniform(0, 0.03) * np.sin(2 * math.pi * source.mains_hz * t + rng.uniform(0, 6))[None, :]

    written = [label for label in true_labels if rng.random() >= MISSED_LABEL_RATE or label in RHYTHMS]
    written += [c for c in CONDITIONS if c not in true_labels and rng.random() < SPURIOUS_LABEL_RATE]
    return SyntheticRecord(
        signal_mv=signal.astype(np.float32),
        labels=tuple(sorted(set(written))),
        true_labels=tuple(true_labels),
        age=int(rng.integers(18, 95)),
        sex=str(rng.choice(["Female", "Male"])),
    )


def _write_wfdb(directory: Path, name: str, record: SyntheticRecord) -> None:
    val = np.clip(np.round(record.signal_mv * 1000), -32768, 32767).astype(np.int16)
    scipy.io.savemat(directory / f"{name}.mat", {"val": val}, format="4")
    lines = [f"{name} 12 {FS} {val.shape[1]}"]
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    lines += [f"{name}.mat 16+24 1000/mV 16 0 {val[i, 0]} 0 0 {lead}" for i, lead in enumerate(leads)]
    dx = ",".join(CODES[label] for label in record.labels)
    lines += [f"#Age: {record.age}", f"#Sex: {record.sex}", f"#Dx: {dx}"]
    lines += ["#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (directory / f"{name}.hea").write_text("\n".join(lines) + "\n")


def write_synthetic_dataset(out: Path | str, *, records: int = 1200, seed: int = 0) -> dict[str, int]:
    """Write ``records`` synthetic records under ``out``, one folder per source; returns counts."""
    out = Path(out)
    snomed_to_aha = {snomed: aha for aha, snomed in aha_to_snomed().items()}
    shares = np.array([s.share for s in SYNTH_SOURCES])
    counts = np.floor(shares / shares.sum() * records).astype(int)
    counts[0] += records - counts.sum()
    written: dict[str, int] = {}
    index = 0
    for source, count in zip(SYNTH_SOURCES, counts, strict=True):
        directory = out / source.name
        directory.mkdir(parents=True, exist_ok=True)
        sph_rows = []
        for k in range(count):
            rng = np.random.default_rng([seed, index])
            index += 1
            record = synthesize_record(rng, float(rng.uniform(*source.seconds)), source)
            if source.name == "SPH":
                ecg_id = f"A{k + 1:05d}"
                # About one patient in ten has two records, as in the real database.
                patient = f"P{(k if k % 10 else max(k - 1, 0)) + 1:05d}"
                codes = [CODES[label] for label in record.labels]
                aha = [snomed_to_aha[code] for code in codes if code in snomed_to_aha]
                with h5py.File(directory / f"{ecg_id}.h5", "w") as f:
                    f.create_dataset("ecg", data=record.signal_mv)
                sph_rows.append(
                    {"ECG_ID": ecg_id, "AHA_Code": ";".join(aha) or "1", "Patient_ID": patient,
                     "Age": record.age, "Sex": record.sex[0], "N": record.signal_mv.shape[1],
                     "Date": "2020-01-01"}
                )  # fmt: skip
            else:
                digits = 4 if source.prefix == "A" else 5  # as the real CPSC (A0001) and others (E00001)
                _write_wfdb(directory, f"{source.prefix}{source.first_number + k:0{digits}d}", record)
        if sph_rows:
            pd.DataFrame(sph_rows).to_csv(directory / "metadata.csv", index=False)
        written[source.name] = int(count)
    return written
