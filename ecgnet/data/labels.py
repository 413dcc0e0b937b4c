"""Class sets: which SNOMED CT codes a model predicts, and which raw codes count as each.

The cache keeps every record's raw codes; a class set maps them at load time, so one cache
serves every class set. Three sets ship:

- ``thesis17`` (default): the thesis's 17 classes, PR prolongation (164947007) merged into
  IAVB, and the Challenge's equivalent codes merged (713427006 -> 59118001 RBBB,
  733534002 -> 164909002 LBBB, 63593006 -> 284470004 PAC, 17338001 -> 427172004).
- ``thesis17-literal``: the base code's literal behaviour, without the Challenge merges. The
  difference matters: PTB-XL marks complete RBBB only as 713427006, so under the literal set
  PTB-XL has no RBBB positives at all.
- ``challenge2021``: the Challenge 2021's 26 scored classes with its own equivalences.

    >>> cs = class_set("thesis17")
    >>> cs.encode([["713427006"], ["426783006", "164947007"]]).nonzero()
    (array([0, 1, 1]), array([6, 0, 14]))
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from collections.abc import Iterable, Sequence
from importlib import resources

import numpy as np

__all__ = ["CLASS_SETS", "DEFAULT_CLASS_SET", "THESIS17", "ClassSet", "class_set"]

DEFAULT_CLASS_SET = "thesis17"

# (SNOMED CT code, abbreviation) of the thesis's 17 classes in its output order; the one copy
# (synth.py writes its records' labels from it too).
THESIS17 = (
    ("426783006", "SR"), ("426177001", "SB"), ("164934002", "TAb"), ("427393009", "SA"),
    ("713426002", "IRBBB"), ("427084000", "STach"), ("59118001", "RBBB"), ("164889003", "AF"),
    ("59931005", "TInv"), ("47665007", "RAD"), ("445118002", "LAnFB"), ("39732003", "LAD"),
    ("164890007", "AFL"), ("164909002", "LBBB"), ("270492004", "IAVB"), ("251146004", "LQRSV"),
    ("284470004", "PAC"),
)  # fmt: skip
PR_PROLONGATION_INTO_IAVB = {"164947007": "270492004"}
CHALLENGE_EQUIVALENCES = {
    "713427006": "59118001",
    "733534002": "164909002",
    "63593006": "284470004",
    "17338001": "427172004",
}


@dataclasses.dataclass(frozen=True)
class ClassSet:
    """An ordered list of classes (SNOMED codes) and the aliases that count as each."""

    name: str
    codes: tuple[str, ...]
    abbreviations: tuple[str, ...]
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""

    def __len__(self) -> int:
        return len(self.codes)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        index = {code: i for i, code in enumerate(self.codes)}
        index.update({alias: index[target] for alias, target in self.aliases.items() if target in index})
        return index

    def encode(self, records_codes: Iterable[Sequence[str]]) -> np.ndarray:
        """Multi-hot labels (records x classes, bool) from each record's raw codes."""
        rows = [[self._index[c] for c in codes if c in self._index] for codes in records_codes]
        labels = np.zeros((len(rows), len(self.codes)), dtype=bool)
        for i, columns in enumerate(rows):
            labels[i, columns] = True
        return labels

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "codes": list(self.codes), "abbreviations": list(self.abbreviations)}


@functools.cache
def _challenge_abbreviations() -> dict[str, str]:
    text = resources.files("ecgnet").joinpath("configs", "challenge2021_dx_mapping_scored.csv").read_text()
    return {row["SNOMEDCTCode"]: row["Abbreviation"] for row in csv.DictReader(text.splitlines())}


@functools.cache
def challenge_weight_classes() -> tuple[tuple[str, ...], ...]:
    """The 26 scored classes of weights.csv, each a group of equivalent codes."""
    text = resources.files("ecgnet").joinpath("configs", "challenge2021_weights.csv").read_text()
    header = next(csv.reader(text.splitlines()))
    return tuple(tuple(group.split("|")) for group in header[1:])


def _challenge2021() -> ClassSet:
    groups = challenge_weight_classes()
    abbreviations = _challenge_abbreviations()
    # Within a group, the code that dx_mapping lists first (e.g. 164909002 for LBBB) names it.
    canonical = [next((c for c in abbreviations if c in group), group[0]) for group in groups]
    aliases = {alias: canon for group, canon in zip(groups, canonical, strict=True) for alias in group}
    aliases = {a: c for a, c in aliases.items() if a != c}
    return ClassSet(
        name="challenge2021",
        codes=tuple(canonical),
        abbreviations=tuple(abbreviations.get(c, c) for c in canonical),
        aliases=aliases,
        description="the Challenge 2021's 26 scored classes with its equivalences",
    )


CLASS_SETS = ("thesis17", "thesis17-literal", "challenge2021")


@functools.cache
def class_set(name: str = DEFAULT_CLASS_SET) -> ClassSet:
    """A class set by name (one of ``CLASS_SETS``)."""
    codes, abbreviations = zip(*THESIS17, strict=True)
    if name == "thesis17":
        return ClassSet(
            name, codes, abbreviations, {**PR_PROLONGATION_INTO_IAVB, **CHALLENGE_EQUIVALENCES},
            "the thesis's 17 classes; PR prolongation -> IAVB; Challenge equivalences merged",
        )  # fmt: skip
    if name == "thesis17-literal":
        return ClassSet(
            name, codes, abbreviations, dict(PR_PROLONGATION_INTO_IAVB),
            "the thesis's 17 classes as the base code maps them (no Challenge equivalences)",
        )  # fmt: skip
    if name == "challenge2021":
        return _challenge2021()
    raise ValueError(f"unknown class set {name!r}; known: {', '.join(CLASS_SETS)}")
