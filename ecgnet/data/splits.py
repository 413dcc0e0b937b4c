"""Train / validation / test splits: leave-source-out test sets, patient-grouped stratified folds.

The test set is every record of the held-out sources (the thesis's split 1 holds out CPSC and
CPSC-Extra; any single source of the cache, e.g. one named by ``data prepare --source``, can be
held out by its name). Validation folds come from the remaining pool by multilabel stratification
(iterative-stratification) over *patients*: a patient's records stay together and the patient
is stratified on the union of their labels. A CinC record is its own patient; SPH records
share their Patient_ID. INCART is left out of the pool, as in the base code.

    >>> split = make_split(cache, test="cpsc", folds=5, fold=0, seed=0)
    >>> write_split(split, "work/splits/cpsc-f0")     # train.csv, val.csv, test.csv
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ecgnet.data.cache_reader import ECGCache
from ecgnet.data.labels import DEFAULT_CLASS_SET
from ecgnet.data.sources import held_out_sources
from ecgnet.errors import InputError

__all__ = ["SUBSETS", "Split", "make_split", "read_split", "write_split"]

SUBSETS = ("train", "val", "test")
UNUSED_SOURCES = ("INCART",)


@dataclasses.dataclass
class Split:
    """Record names per subset, and how they were chosen."""

    train: list[str]
    val: list[str]
    test: list[str]
    description: dict[str, object]

    def subset(self, name: str) -> list[str]:
        return getattr(self, name)


def make_split(
    cache: ECGCache,
    *,
    test: str = "cpsc",
    folds: int = 5,
    fold: int = 0,
    seed: int = 0,
    class_set: str = DEFAULT_CLASS_SET,
) -> Split:
    """Hold out the sources of ``test`` (a group or one source of the cache); fold ``fold`` of the rest validates."""
    table = cache.table
    try:
        test_sources = held_out_sources(test, table["source"])
    except ValueError as exc:
        raise InputError(f"{cache.path}: {exc}") from None
    if not 0 <= fold < folds or folds < 2:
        raise InputError(f"fold must be in 0..{folds - 1} and folds >= 2 (got fold={fold}, folds={folds})")
    is_test = table["source"].isin(test_sources).to_numpy()
    in_pool = ~is_test & ~table["source"].isin(UNUSED_SOURCES).to_numpy()
    pool = np.flatnonzero(in_pool)
    labels = cache.labels(class_set)[pool]
    patients = table["patient_id"].to_numpy()[pool]

    patient_ids, patient_of_record = np.unique(patients, return_inverse=True)
    patient_labels = np.zeros((len(patient_ids), labels.shape[1]), dtype=bool)
    np.logical_or.at(patient_labels, patient_of_record, labels)
    if len(patient_ids) < folds:
        raise InputError(f"{len(patient_ids)} patients in the training pool: too few for {folds} folds")
    # Imported here: it brings scikit-learn and SciPy (seconds), which reading a split never needs.
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, val_patients = list(splitter.split(np.zeros(len(patient_ids)), patient_labels.astype(int)))[fold]
    is_val = np.isin(patient_of_record, val_patients)

    names = table["name"].to_numpy()
    return Split(
        train=sorted(names[pool[~is_val]]),
        val=sorted(names[pool[is_val]]),
        test=sorted(names[is_test]),
        description={
            "test_sources": list(test_sources),
            "unused_sources": list(UNUSED_SOURCES),
            "folds": folds,
            "fold": fold,
            "seed": seed,
            "class_set": class_set,
        },
    )


def write_split(split: Split, directory: Path | str) -> None:
    """One CSV per subset with a ``name`` column."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for subset in SUBSETS:
        pd.DataFrame({"name": split.subset(subset)}).to_csv(directory / f"{subset}.csv", index=False)


def read_split(directory: Path | str) -> dict[str, list[str]]:
    directory = Path(directory)
    return {s: pd.read_csv(directory / f"{s}.csv", dtype=str)["name"].tolist() for s in SUBSETS}
