"""Study definitions: search space, objectives, sampler, training budget and data, as TOML data.

A definition is a file, or the name of one shipped in ``ecgsearch.studies`` (``demo``,
``thesis``). Its fingerprint is recorded on the study; a worker with another is refused.
``ecgsearch.study.definition_schema`` says which keys, types and ranges each section takes.

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

from pydantic import ValidationError

from ecgnet.data_spec import DataSpec
from ecgnet.errors import InputError
from ecgnet.thesis import thesis_experiments
from ecgnet.train_config import TrainConfig
from ecgsearch.metric_table import METRICS
from ecgsearch.study.defaults import DEFAULT_SAMPLER
from ecgsearch.study.definition_schema import DefinitionModel, describe
from ecgsearch.study.early_stopping import EarlyStopping
from ecgsearch.study.front_seeds import FrontSeeds
from ecgsearch.study.space import SearchSpace
from ecgsearch.trial_record import HOW_NOT_WHAT

__all__ = [
    "METRICS",
    "DefinitionError",
    "Objective",
    "StudyDefinition",
    "load_definition",
    "parse_definition",
    "shipped_definitions",
]


class DefinitionError(InputError):
    """A study definition that cannot be used: names the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective of the study: a metric (a key of ``METRICS``) and its direction."""

    metric: str
    direction: str


@dataclasses.dataclass(frozen=True)
class StudyDefinition:
    """A validated study definition; ``raw`` is the TOML data it came from, as the study records it."""

    name: str
    description: str
    source: str
    objectives: tuple[Objective, ...]
    sampler: dict[str, Any]
    space: SearchSpace
    training: TrainConfig
    data: dict[str, Any]
    data_spec: DataSpec  # [data] parsed once; its cache is "" until the study's cache is known
    fixed_trials: tuple[str, ...]
    default_trials: int
    raw: dict[str, Any]
    early_stopping: EarlyStopping | None = None  # [early_stopping]; None: every trial runs its full budget
    latency_samples: int = 4096  # [latency] samples: the input length latency_ms is measured on
    latency_runs: int = 30  # [latency] runs: timed runs, median kept
    front_seeds: FrontSeeds = dataclasses.field(default_factory=FrontSeeds)  # [seeds]: a trial near the front

    def fingerprint(self) -> str:
        """Hash of everything that changes what a trial computes (not of the file's layout).

        Where the data comes from is left out: the study records the data's own fingerprint,
        so the same cache may sit at another path on another machine.
        """
        content = {k: v for k, v in self.raw.items() if k != "description"}
        content["data"] = {k: v for k, v in self.raw.get("data", {}).items() if k not in ("cache", "synthetic")}
        # How data travels to the device changes no result (trial_record.HOW_NOT_WHAT).
        if "training" in content:
            content["training"] = {k: v for k, v in content["training"].items() if k not in HOW_NOT_WHAT}
        canonical = json.dumps(content, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_data_cache(self, cache: str) -> StudyDefinition:
        """The same definition on the prepared cache ``cache`` instead of its own data."""
        data = {k: v for k, v in self.data.items() if k != "synthetic"} | {"cache": cache}
        raw = self.raw | {"data": data}
        return dataclasses.replace(self, data=data, raw=raw, data_spec=dataclasses.replace(self.data_spec, cache=cache))


def shipped_definitions() -> list[str]:
    """Names of the definitions shipped in ``ecgsearch.studies``."""
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files("ecgsearch.studies").iterdir() if p.name.endswith(".toml")
    )


def load_definition(name_or_path: str | Path) -> StudyDefinition:
    """Load and validate a definition from a file path or a shipped name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise DefinitionError(f"{path}: no such study definition file")
        source = str(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefinitionError(f"{source}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
        except OSError as exc:
            raise DefinitionError(f"{source}: unreadable ({exc.strerror or exc})") from None
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
    return parse_definition(raw, source)


def parse_definition(raw: dict[str, Any], source: str) -> StudyDefinition:
    """A definition from already-loaded TOML data (e.g. the copy a study records).

    Raises DefinitionError naming ``source``, the dotted location and the problem.
    """
    try:
        model = DefinitionModel.model_validate(raw)
    except ValidationError as exc:
        raise DefinitionError(f"{source}: {describe(exc, DefinitionModel)}") from None
    try:
        space = SearchSpace.from_model(model.space)
    except InputError as exc:
        raise DefinitionError(f"{source}: {exc}") from None
    experiments = thesis_experiments()
    for i, name in enumerate(model.fixed_trials):
        try:
            space.params_of(experiments[name].config)
        except ValueError as exc:
            raise DefinitionError(f"{source}: fixed_trials[{i}]: the space cannot express {name}: {exc}") from None
    return StudyDefinition(
        name=model.name,
        description=model.description,
        source=source,
        objectives=tuple(Objective(o.metric, o.direction) for o in model.objectives),
        sampler=dict(raw.get("sampler", {"name": DEFAULT_SAMPLER})),
        space=space,
        # Only the keys the file sets, so TrainConfig's own defaults fill the rest.
        training=TrainConfig(**model.training.model_dump(exclude_unset=True)),
        data=dict(raw.get("data", {})),
        data_spec=DataSpec(
            cache=model.data.cache,
            split_dir=model.data.split_dir,
            test=model.data.test,
            folds=model.data.folds,
            fold=model.data.fold,
            split_seed=model.data.split_seed,
            class_set=model.data.class_set,
            max_train_records=model.data.max_train_records,
            preprocess=model.data.preprocess,
        ),
        fixed_trials=tuple(model.fixed_trials),
        default_trials=model.default_trials,
        raw=raw,
        early_stopping=_early_stopping(model),
        latency_samples=model.latency.samples,
        latency_runs=model.latency.runs,
        front_seeds=FrontSeeds(model.seeds.front, model.seeds.margin),
    )


def _early_stopping(model: DefinitionModel) -> EarlyStopping | None:
    settings = model.early_stopping
    if settings is None:
        return None
    return EarlyStopping(tuple(settings.rungs), settings.eta, settings.min_trials, settings.protect_thesis,
                         settings.brackets)  # fmt: skip
