"""Finding records in data directories (searched recursively, as the real downloads are nested)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ecgnet.data.cinc import read_cinc_record
from ecgnet.data.record import Record, RecordError
from ecgnet.data.sph import iter_sph_entries, read_sph_record

__all__ = ["RecordSource", "discover_records", "read_record"]


@dataclasses.dataclass(frozen=True)
class RecordSource:
    """Where one record lives: a WFDB header, or an SPH .h5 file with its metadata row."""

    kind: str  # "cinc" (any WFDB header) or "sph"
    path: str
    sph_entry: tuple[tuple[str, str], ...] = ()
    own_source: str | None = None  # the source of a WFDB record whose name is not a Challenge name


def discover_records(
    roots: list[Path | str], *, own_source: str | None = None
) -> tuple[list[RecordSource], list[RecordError]]:
    """Every record under ``roots`` in a stable order, and the problems found while looking.

    A root may be a directory (searched recursively for ``*.hea`` files and SPH
    ``metadata.csv`` files) or a single ``.hea`` file. ``own_source`` is the source of every
    WFDB record found whose name is not a Challenge name (Challenge names keep their own).
    """
    found: list[RecordSource] = []
    problems: list[RecordError] = []
    for root in map(Path, roots):
        if not root.exists():
            problems.append(RecordError(root, "data path does not exist"))
            continue
        headers = [root] if root.is_file() and root.suffix == ".hea" else sorted(root.rglob("*.hea"))
        found += [RecordSource("cinc", str(p), own_source=own_source) for p in headers]
        for metadata in sorted(root.rglob("metadata.csv")) if root.is_dir() else []:
            try:
                for path, entry in iter_sph_entries(metadata):
                    # A missing file is reported here, not read in vain: a table may name thousands.
                    if path.is_file():
                        found.append(RecordSource("sph", str(path), tuple(entry.items())))
                    else:
                        problems.append(RecordError(path, "signal file is missing"))
            except RecordError as exc:
                problems.append(exc)
    return found, problems


def read_record(source: RecordSource) -> Record:
    if source.kind == "cinc":
        return read_cinc_record(source.path, own_source=source.own_source)
    return read_sph_record(source.path, dict(source.sph_entry))
