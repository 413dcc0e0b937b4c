"""Which data a run uses, as plain data: reading it needs no torch (study definitions build it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ecgnet.data.labels import DEFAULT_CLASS_SET

__all__ = ["DataSpec"]


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which cache, split and class set a run uses."""

    cache: str
    split_dir: str | None = None  # a folder written by `ecgsearch data split`; else computed
    test: str = "cpsc"  # a test group (ecgnet.data.sources.TEST_SOURCE_GROUPS) or a source of the cache
    folds: int = 5
    fold: int = 0
    split_seed: int = 0
    class_set: str = DEFAULT_CLASS_SET
    max_train_records: int | None = None  # small budgets (demo, tests) take the first N
    # The preprocessing style the cache must have ("exact" or "base-code"); None takes the
    # cache's own (the study's data fingerprint records it either way).
    preprocess: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
