"""Reader for PhysioNet/CinC Challenge 2020/2021 records: WFDB header + MATLAB v4 signal.

The header is parsed here because ``wfdb.rdheader`` rejects real Challenge headers: Georgia's
record line names ``E07500.mat`` (with the extension). Everything else in the format is simple
and its quirks are handled in one place: ``/mv`` units, ``# Age:`` with a space, ``16x1+24``,
``1000.0(0)/mV``, CRLF line ends, trailing commas in ``#Dx``, ``NaN`` ages, unknown sex. The
signal is read by ``scipy.io.loadmat`` (variable ``val``, int16, leads x samples).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import scipy.io

from ecgnet.data.record import Record, RecordError, check_signal, unique_codes
from ecgnet.data.sources import source_of_cinc_record

__all__ = ["WfdbHeader", "parse_header", "read_cinc_record"]

_UNIT_SCALE_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}
_GAIN = re.compile(r"^(?P<gain>[-+0-9.eE]+)(\((?P<baseline>[-+0-9]+)\))?(/(?P<units>\S+))?$")
_DEFAULT_GAIN = 200.0  # WFDB's default when a header gives 0 or nothing


@dataclasses.dataclass
class WfdbHeader:
    name: str
    leads: int
    fs: float
    samples: int | None
    signal_file: str
    gains: list[float]
    baselines: list[int]
    unit_scales: list[float]
    lead_names: list[str]
    comments: dict[str, str]


def parse_header(path: Path) -> WfdbHeader:
    """Parse a WFDB header, tolerant of the Challenge data's quirks."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise RecordError(path, f"unreadable header ({exc.strerror or exc})") from None
    lines = [line.strip() for line in text.splitlines()]
    comments: dict[str, str] = {}
    body = []
    for line in lines:
        if line.startswith("#"):
            key, sep, value = line.lstrip("#").partition(":")
            if sep:
                comments[key.strip().lower()] = value.strip()
        elif line:
            body.append(line)
    if not body:
        raise RecordError(path, "unreadable header: no record line")
    fields = body[0].split()
    try:
        name = Path(fields[0].split("/")[0]).stem  # Georgia writes "E07500.mat"
        leads = int(fields[1])
        fs = float(fields[2].split("/")[0]) if len(fields) > 2 else 250.0
        samples = int(fields[3]) if len(fields) > 3 else None
    except (IndexError, ValueError):
        raise RecordError(path, f"unreadable header: bad record line {body[0]!r}") from None
    if leads < 1 or not math.isfinite(fs) or fs <= 0:
        raise RecordError(path, f"unreadable header: record line {body[0]!r} gives no leads or rate")
    signal_lines = body[1 : 1 + leads]
    if len(signal_lines) != leads:
        raise RecordError(path, f"header declares {leads} leads but has {len(signal_lines)} signal lines")
    gains, baselines, scales, lead_names = [], [], [], []
    for line in signal_lines:
        parts = line.split()
        gain, baseline, scale = _parse_gain(path, parts[2] if len(parts) > 2 else "")
        gains.append(gain)
        baselines.append(baseline if baseline is not None else _int_or_zero(parts, 4))
        scales.append(scale)
        lead_names.append(parts[8] if len(parts) > 8 else "")
    return WfdbHeader(
        name=name,
        leads=leads,
        fs=fs,
        samples=samples,
        signal_file=signal_lines[0].split()[0],
        gains=gains,
        baselines=baselines,
        unit_scales=scales,
        lead_names=lead_names,
        comments=comments,
    )


def _parse_gain(path: Path, field: str) -> tuple[float, int | None, float]:
    if not field:
        return _DEFAULT_GAIN, None, 1.0
    match = _GAIN.match(field)
    if match is None:
        raise RecordError(path, f"unreadable header: bad gain field {field!r}")
    gain = float(match["gain"]) or _DEFAULT_GAIN
    units = (match["units"] or "mV").lower()
    if units not in _UNIT_SCALE_TO_MV:
        raise RecordError(path, f"unsupported signal units {match['units']!r} (expected mV or uV)")
    baseline = int(match["baseline"]) if match["baseline"] is not None else None
    return gain, baseline, _UNIT_SCALE_TO_MV[units]


def _int_or_zero(parts: list[str], index: int) -> int:
    # The ADC zero stands in for the baseline when the gain field gives none.
    try:
        return int(parts[index])
    except (IndexError, ValueError):
        return 0


def _parse_age(value: str | None) -> float | None:
    try:
        age = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return age if math.isfinite(age) and 0 <= age <= 120 else None


def _parse_sex(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    if value in ("female", "f"):
        return "female"
    if value in ("male", "m"):
        return "male"
    return None


def read_cinc_record(header_path: Path | str, *, for_training: bool = True) -> Record:
    """Read one Challenge record from its ``.hea`` path; raises ``RecordError`` when unusable.

    ``for_training=False`` (prediction) also reads records without ``#Dx`` and records whose
    name follows no Challenge source (their source is then ``"unknown"``).
    """
    header_path = Path(header_path)
    header = parse_header(header_path)
    dx = header.comments.get("dx")
    if dx is None and for_training:
        raise RecordError(header_path, "no #Dx line: the record has no labels")
    codes = unique_codes([c.strip() for c in (dx or "").split(",")])
    if not codes and for_training:
        raise RecordError(header_path, "#Dx line is empty: the record has no labels")
    signal_path = header_path.with_name(Path(header.signal_file).name)
    if not signal_path.exists():
        raise RecordError(signal_path, "signal file is missing")
    try:
        raw = scipy.io.loadmat(signal_path)["val"]
    except KeyError:
        raise RecordError(signal_path, "MATLAB file has no variable 'val'") from None
    except Exception as exc:  # scipy raises many types for a damaged file
        raise RecordError(signal_path, f"unreadable .mat file ({type(exc).__name__}: {exc})") from None
    signal = check_signal(signal_path, np.asarray(raw), header.leads, header.samples)
    baseline = np.asarray(header.baselines, dtype=np.float32)[:, None]
    scale = (np.asarray(header.unit_scales) / np.asarray(header.gains)).astype(np.float32)[:, None]
    try:
        source = source_of_cinc_record(header.name)
    except ValueError as exc:
        if for_training:
            raise RecordError(header_path, str(exc)) from None
        source = "unknown"
    return Record(
        name=header.name,
        source=source,
        signal=(signal - baseline) * scale,
        fs=header.fs,
        age=_parse_age(header.comments.get("age")),
        sex=_parse_sex(header.comments.get("sex")),
        codes=codes,
        patient_id=header.name,
        path=str(header_path),
    )
