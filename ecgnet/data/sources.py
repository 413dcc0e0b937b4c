"""Canonical source names of the Challenge 2021 and SPH data, and how a record maps to one.

Records of other databases get a source name from the user (``data prepare --source NAME``);
any source in a cache can be held out as a test set by its name, besides the groups here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "SOURCES",
    "TEST_SOURCE_GROUPS",
    "check_source_name",
    "check_test_name",
    "held_out_sources",
    "source_of_cinc_record",
]

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
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SOURCE_NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 64 characters"


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


def check_source_name(name: str) -> str:
    """A source name that ``data prepare --source`` may give; raises ``ValueError`` naming the rule.

    It is a simple token (it lands in CSV files and on command lines) and not a test group's
    name, so that ``--test NAME`` selects exactly these records. A canonical name (``PTB-XL``)
    is allowed: a standalone download of that database then joins its source.
    """
    if not _SOURCE_NAME.fullmatch(name):
        raise ValueError(f"source name {name!r} is not a simple name ({_SOURCE_NAME_RULE})")
    if name in TEST_SOURCE_GROUPS:
        held_out = " + ".join(TEST_SOURCE_GROUPS[name])
        raise ValueError(f"source name {name!r} is the name of the test group {held_out}; choose another")
    return name


def check_test_name(name: str) -> str:
    """A test group or a possible source name; whether the cache holds that source is checked when it is loaded."""
    if name not in TEST_SOURCE_GROUPS and not _SOURCE_NAME.fullmatch(name):
        groups = ", ".join(TEST_SOURCE_GROUPS)
        raise ValueError(f"{name!r} is neither a test group ({groups}) nor a source name ({_SOURCE_NAME_RULE})")
    return name


def held_out_sources(test: str, available: Iterable[str]) -> tuple[str, ...]:
    """The sources that ``test`` holds out: a group's, or the one source of that name in the data.

    A group may name sources the data lacks (its test set is then smaller, or empty); a single
    name must be one of ``available``, else ``ValueError`` lists what there is.
    """
    if test in TEST_SOURCE_GROUPS:
        return TEST_SOURCE_GROUPS[test]
    present = sorted(set(available))
    if test in present:
        return (test,)
    raise ValueError(
        f"unknown test split {test!r}; known: {', '.join(TEST_SOURCE_GROUPS)} (test groups) and "
        f"{', '.join(present)} (sources of the data)"
    )
