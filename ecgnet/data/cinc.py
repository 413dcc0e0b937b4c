"""Reader for WFDB records: PhysioNet/CinC Challenge 2020/2021 (``.mat``) and other databases (``.dat``).

The header is parsed here because ``wfdb.rdheader`` rejects real Challenge headers: Georgia's
record line names ``E07500.mat`` (with the extension). Everything else in the format is simple
and its quirks are handled in one place: ``/mv`` units, ``# Age:`` with a space, ``16x1+24``,
``1000.0(0)/mV``, CRLF line ends, trailing commas in ``#Dx``, ``NaN`` ages, unknown sex. A
``.mat`` signal is read by ``scipy.io.loadmat`` (variable ``val``, int16, leads x samples);
any other signal file (``.dat`` in formats 16, 212, ...) by ``wfdb`` (``ecgnet.data.wfdb_signal``).

Labels come from the ``#Dx:`` comment (SNOMED CT codes, comma-separated) for every record, of
the Challenge or not, and age and sex from ``#Age:`` and ``#Sex:``. A record's source follows
from its Challenge name; records of other databases take the source the caller names
(``data prepare --source NAME``).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from pathlib import Path

import numpy as np
import scipy.io

from ecgnet.data.record import Record, RecordError, check_signal, parse_age, parse_sex, unique_codes
from ecgnet.data.sources import source_of_cinc_record
from ecgnet.data.wfdb_signal import read_wfdb_signal

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
    if "\x00" in text:  # no text of a header holds one, and HDF5 strings cannot
        raise RecordError(path, "unreadable header: it holds a NUL byte")
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
    if len(body) > 1 + leads:
        # In WFDB only comments follow the signal lines; wfdb's parser spends seconds on a
        # header padded with thousands of lines (found by fuzzing).
        raise RecordError(path, f"unreadable header: {len(body) - 1 - leads} line(s) after its {leads} signal "
                                "lines are not comments")  # fmt: skip
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
    try:  # the pattern lets through "+" and "16+24" (found by fuzzing)
        gain = float(match["gain"]) or _DEFAULT_GAIN
        baseline = int(match["baseline"]) if match["baseline"] is not None else None
    except ValueError:
        raise RecordError(path, f"unreadable header: bad gain field {field!r}") from None
    units = (match["units"] or "mV").lower()
    if units not in _UNIT_SCALE_TO_MV:
        raise RecordError(path, f"unsupported signal units {match['units']!r} (expected mV or uV)")
    return gain, baseline, _UNIT_SCALE_TO_MV[units]


def _int_or_zero(parts: list[str], index: int) -> int:
    # The ADC zero stands in for the baseline when the gain field gives none.
    try:
        return int(parts[index])
    except (IndexError, ValueError):
        return 0


def read_cinc_record(header_path: Path | str, *, for_training: bool = True, own_source: str | None = None) -> Record:
    """Read one WFDB record from its ``.hea`` path; raises ``RecordError`` when unusable.

    ``own_source`` is the source of a record whose name is not a Challenge name (without it
    such a record is refused for training). ``for_training=False`` (prediction) also reads
    records without ``#Dx`` and records of unknown source (their source is then ``"unknown"``).
    """
    header_path = Path(header_path)
    header = parse_header(header_path)
    if for_training and header.name != header_path.stem:
        # The cache knows a record by its name: two files must not claim one, unseen.
        names = f"record {header.name!r}, not {header_path.stem!r}"
        raise RecordError(header_path, f"the header's record line names {names}")
    dx = header.comments.get("dx")
    if dx is None and for_training:
        raise RecordError(header_path, "no #Dx line: the record has no labels")
    codes = unique_codes([c.strip() for c in (dx or "").split(",")])
    if not codes and for_training:
        raise RecordError(header_path, "#Dx line is empty: the record has no labels")
    source = _source(header_path, header.name, own_source, for_training)  # before reading a signal in vain
    signal_path = header_path.with_name(Path(header.signal_file).name)
    if not signal_path.exists():
        raise RecordError(signal_path, "signal file is missing")
    if signal_path.suffix.lower() == ".mat":
        signal = _read_mat_signal(signal_path, header)
    else:
        scale = np.asarray(header.unit_scales, dtype=np.float32)[:, None]
        signal = check_signal(signal_path, read_wfdb_signal(header_path), header.leads, header.samples) * scale
    return Record(
        name=header.name,
        source=source,
        signal=signal,
        fs=header.fs,
        age=parse_age(header.comments.get("age")),
        sex=parse_sex(header.comments.get("sex")),
        codes=codes,
        patient_id=header.name,
        path=str(header_path),
    )


def _read_mat_signal(signal_path: Path, header: WfdbHeader) -> np.ndarray:
    """A Challenge ``.mat`` signal in mV."""
    try:
        # From memory, not the file: scipy reads as many bytes as a (damaged) header declares,
        # and a file object allocates them all first (gigabytes, seen by fuzzing); from bytes
        # in memory a read is never longer than the file. Only 'val' is read: bytes appended
        # after it would be taken for more variables.
        raw = scipy.io.loadmat(io.BytesIO(signal_path.read_bytes()), variable_names=["val"])["val"]
    except KeyError:
        raise RecordError(signal_path, "MATLAB file has no variable 'val'") from None
    except Exception as exc:  # scipy raises many types for a damaged file
        raise RecordError(signal_path, f"unreadable .mat file ({type(exc).__name__}: {exc})") from None
    signal = check_signal(signal_path, np.asarray(raw), header.leads, header.samples)
    baseline = np.asarray(header.baselines, dtype=np.float32)[:, None]
    scale = (np.asarray(header.unit_scales) / np.asarray(header.gains)).astype(np.float32)[:, None]
    return (signal - baseline) * scale


def _source(header_path: Path, name: str, own_source: str | None, for_training: bool) -> str:
    """A Challenge name's own source, else ``own_source``; a training record needs one of them."""
    try:
        return source_of_cinc_record(name)
    except ValueError as exc:
        if own_source is not None:
            return own_source
        if for_training:
            raise RecordError(
                header_path, f"{exc}; give the records of another database a source with `data prepare --source NAME`"
            ) from None
        return "unknown"
