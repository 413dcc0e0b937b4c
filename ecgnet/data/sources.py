"""Canonical source names of the Challenge 2021 and SPH data, and how a record maps to one."""

from __future__ import annotations

import re

__all__ = ["SOURCES", "TEST_SOURCE_GROUPS", "source_of_cinc_record"]

SOURCES = (
    "CPSC",
    "CPSC-Extra",
    "INCART",
    "PTB",
    "PTB-XL",
    "G12EC",
    "Chapman-Shaoxing",
    "Ningbo",
    "SPH",
)

# Record-name prefixes of the Challenge 2021 training set; longest prefix first.
_PREFIXES = (("HR", "PTB-XL"), ("JS", None), ("A", "CPSC"), ("Q", "CPSC-Extra"), ("I", "INCART"),
             ("S", "PTB"), ("E", "G12EC"))  # fmt: skip
# Chapman-Shaoxing and Ningbo share the JS prefix and are told apart by record number.
_LAST_CHAPMAN_SHAOXING = 10646

# Source groups that can be held out together as a test set (split 1 is the thesis's).
TEST_SOURCE_GROUPS: dict[str, tuple[str, ...]] = {
    "cpsc": ("CPSC", "CPSC-Extra"),
    "g12ec": ("G12EC",),
    "sph": ("SPH",),
    "ptb": ("PTB", "PTB-XL"),
    "chapman-ningbo": ("Chapman-Shaoxing", "Ningbo"),
}

_NAME = re.compile(r"^([A-Z]+)(\d+)$")


def source_of_cinc_record(name: str) -> str:
    """The source of a Challenge record from its name: ``source_of_cinc_record("JS10647") == "Ningbo"``."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"record name {name!r} is not a Challenge 2021 name (letters then digits)")
    letters, number = match.groups()
    for prefix, source in _PREFIXES:
        if letters == prefix:
            if source is None:
                return "Chapman-Shaoxing" if int(number) <= _LAST_CHAPMAN_SHAOXING else "Ningbo"
            return source
    raise ValueError(f"record name {name!r} has an unknown prefix {letters!r}")
