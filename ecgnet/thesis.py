"""The thesis's experiments E1-E18 as named architectures, with its reported figures beside them.

>>> thesis_config("E12").conv_type
'depthwise_separable'
>>> thesis_experiment("E17").reference.model_size_mb
2.24
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from importlib import resources

from ecgnet.arch import ArchConfig

__all__ = ["ThesisExperiment", "ThesisReference", "thesis_config", "thesis_experiment", "thesis_experiments"]

_DATA_FILE = "thesis_experiments.toml"


@dataclasses.dataclass(frozen=True)
class ThesisReference:
    """Table 4.1 of the thesis for one experiment (its data, its training; for comparison only).

    The thesis headed ``micro_auprc`` and ``macro_auprc`` "Micro/Macro Precision": its base code
    logged scikit-learn's ``average_precision_score`` (the area under the precision-recall curve)
    under that name.
    """

    model_size_mb: float
    micro_auroc: float
    macro_auroc: float
    micro_auprc: float
    macro_auprc: float
    size_reduction_pct: float


@dataclasses.dataclass(frozen=True)
class ThesisExperiment:
    name: str
    description: str
    config: ArchConfig
    reference: ThesisReference


@functools.cache
def thesis_experiments() -> dict[str, ThesisExperiment]:
    """All named experiments in thesis order (E1..E18)."""
    text = resources.files("ecgnet").joinpath("configs", _DATA_FILE).read_text(encoding="utf-8")
    experiments = {}
    for name, entry in tomllib.loads(text).items():
        experiments[name] = ThesisExperiment(
            name=name,
            description=entry["description"],
            config=ArchConfig.from_dict(entry["arch"]),
            reference=ThesisReference(**entry["reference"]),
        )
    return experiments


def thesis_experiment(name: str) -> ThesisExperiment:
    """One experiment by name, case-insensitive (``"e12"`` finds E12)."""
    experiments = thesis_experiments()
    key = name.strip().upper()
    if key not in experiments:
        raise KeyError(f"unknown thesis experiment {name!r}; known: {', '.join(experiments)}")
    return experiments[key]


def thesis_config(name: str) -> ArchConfig:
    return thesis_experiment(name).config
