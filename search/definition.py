"""Study definitions: search space, objectives, sampler, training budget and data, as TOML data.

A definition is a file, or the name of one shipped in ``ecgsearch.studies`` (``demo``,
``thesis``). Its fingerprint is recorded on the study; a worker with another is refused.

    >>> definition = load_definition("demo")
    >>> definition.training.epochs, [o.metric for o in definition.objectives]
    (2, ['val_micro_auroc', 'size_mb'])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ecgnet.thesis import thesis_experiments
from ecgnet.train_config import TrainConfig
from ecgsearch.space import SearchSpace

__all__ = ["METRICS", "Objective", "StudyDefinition", "load_definition", "parse_definition", "shipped_definitions"]

# Figures a trial can optimise: validation metrics of training, and size figures.
METRICS = {
    "val_micro_auroc": "maximize",
    "val_macro_auroc": "maximize",
    "val_challenge_score": "maximize",
    "val_macro_f1": "maximize",
    "size_mb": "minimize",
    "params": "minimize",
    "macs": "minimize",
}
SAMPLERS = ("tpe", "nsga2", "gp", "random")


class DefinitionError(ValueError):
    """A study definition that cannot be used: names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclasses.dataclass(frozen=True)
class StudyDefinition:
    name: str
    description: str
    source: str
    objectives: tuple[Objective, ...]
    sampler: dict[str, Any]
    space: SearchSpace
    training: TrainConfig
    data: dict[str, Any]
    fixed_trials: tuple[str, ...]
    default_trials: int
    raw: dict[str, Any]

    def fingerprint(self) -> str:
        """Hash of everything that changes what a trial computes (not of the file's layout).

        Where the data comes from is left out: the study records the data's own fingerprint,
        so the same cache may sit at another path on another machine.
        """
        content = {k: v for k, v in self.raw.items() if k != "description"}
        content["data"] = {k: v for k, v in self.raw.get("data", {}).items() if k not in ("cache", "synthetic")}
        canonical = json.dumps(content, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_data_cache(self, cache: str) -> StudyDefinition:
        data = {k: v for k, v in self.data.items() if k != "synthetic"} | {"cache": cache}
        raw = self.raw | {"data": data}
        return dataclasses.replace(self, data=data, raw=raw)


def shipped_definitions() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("ecgsearch.studies").iterdir()
                  if p.name.endswith(".toml"))  # fmt: skip


def load_definition(name_or_path: str | Path) -> StudyDefinition:
    """Load and validate a definition from a file path or a shipped name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise DefinitionError(f"{path}: no such study definition file")
        text, source = path.read_text(), str(path)
    else:
        shipped = resources.files("ecgsearch.studies").joinpath(f"{name_or_path}.toml")
        if not shipped.is_file():
            raise DefinitionError(
                f"no study definition {str(name_or_path)!r}: give a .toml file or one of {shipped_definitions()}"
            )
        text, source = shipped.read_text(), f"ecgsearch.studies/{name_or_path}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionError(f"{source}: not valid TOML ({exc})") from None
    try:
        return parse_definition(raw, source)
    except (KeyError, TypeError, ValueError) as exc:
        message = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DefinitionError(f"{source}: {message}") from None


def parse_definition(raw: dict[str, Any], source: str) -> StudyDefinition:
    """A definition from already-loaded TOML data (e.g. the copy a study records)."""
    objectives = tuple(Objective(o["metric"], o["direction"]) for o in raw["objectives"])
    for objective in objectives:
        if objective.metric not in METRICS:
            raise ValueError(f"unknown objective metric {objective.metric!r}; known: {', '.join(METRICS)}")
        if objective.direction not in ("maximize", "minimize"):
            raise ValueError(f"objective {objective.metric}: direction must be maximize or minimize")
    sampler = dict(raw.get("sampler", {"name": "tpe"}))
    if sampler.get("name", "tpe") not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler['name']!r}; known: {', '.join(SAMPLERS)}")
    training_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(raw.get("training", {})) - training_fields
    if unknown:
        raise ValueError(f"unknown training setting(s) {sorted(unknown)}; known: {sorted(training_fields)}")
    space = SearchSpace.from_dict(raw["space"])
    fixed = tuple(raw.get("fixed_trials", ()))
    experiments = thesis_experiments()
    for name in fixed:
        if name not in experiments:
            raise ValueError(f"fixed trial {name!r} is not a thesis experiment (E1..E18)")
        space.params_of(experiments[name].config)  # raises when the space cannot express it
    data = dict(raw.get("data", {}))
    return StudyDefinition(
        name=raw["name"],
        description=raw.get("description", ""),
        source=source,
        objectives=objectives,
        sampler=sampler,
        space=space,
        training=TrainConfig(**raw.get("training", {})),
        data=data,
        fixed_trials=fixed,
        default_trials=int(raw.get("default_trials", 100)),
        raw=raw,
    )
