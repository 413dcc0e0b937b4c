"""The schema of a study definition: every section, key, type and range, as pydantic models.

Validation happens before any trial, so a definition whose networks cannot be built, or whose
training or data settings are out of range, is refused with the file, the dotted location and
the problem instead of producing failed trials. Types are strict: a TOML string or float is
never coerced into an integer (a TOML integer is accepted where a float is expected).
``describe`` turns pydantic's errors into a few ``location: problem`` lines.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ecgnet.arch import MAX_BLOCKS_PER_STAGE, MIN_BLOCKS_PER_STAGE, ArchConfig, ArchConfigError
from ecgnet.data.labels import DEFAULT_CLASS_SET
from ecgnet.data.sources import check_test_name
from ecgnet.thesis import thesis_experiments
from ecgnet.train_config import TrainConfig
from ecgsearch.metric_table import METRICS
from ecgsearch.study.defaults import DEFAULT_SAMPLER
from ecgsearch.study.early_stopping import EarlyStopping

__all__ = [
    "SAMPLER_SETTINGS",
    "DataModel",
    "DefinitionModel",
    "EarlyStoppingModel",
    "LatencyModel",
    "ObjectiveModel",
    "SamplerModel",
    "SeedsModel",
    "SpaceModel",
    "TrainingModel",
    "describe",
    "parse_stem",
]

# The settings besides ``name`` that study.create_sampler hands to each sampler's constructor.
SAMPLER_SETTINGS: dict[str, tuple[str, ...]] = {
    "tpe": ("n_startup_trials",),  # the keys: defaults.SAMPLERS (tested)
    "nsga2": (),
    "gp": ("n_startup_trials",),
    "random": (),
    "botorch": ("n_startup_trials",),  # qNEHVI: needs the botorch extra
}
# Kept equal to ecgnet.arch.CONV_TYPES and ecgnet.data.labels.CLASS_SETS by tests: a Literal
# gives a better message than a check against the tuple.
ConvType = Literal["standard", "depthwise_separable"]
ClassSetName = Literal["thesis17", "thesis17-literal", "challenge2021"]
# Kept equal to ecgnet.data.preprocess.PREPROCESS_STYLES by a test (importing it would load scipy).
PreprocessStyle = Literal["exact", "base-code"]
# Defaults of [data] absent keys (those of ecgnet.data_spec.DataSpec; a test keeps them equal).
DATA_DEFAULTS = {
    "test": "cpsc",
    "folds": 5,
    "fold": 0,
    "split_seed": 0,
    "class_set": DEFAULT_CLASS_SET,
    "preprocess": None,
}

# strict: TOML "two" or 32.5 must not become an int; allow_inf_nan: TOML has inf and nan.
_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
_STEM = re.compile(r"(0|[1-9][0-9]*)/(0|[1-9][0-9]*)")
_TRAIN = TrainConfig()
_MAX_PROBLEMS = 5
T = TypeVar("T")


def _distinct(choices: list[Any]) -> list[Any]:
    for i, choice in enumerate(choices):
        if choice in choices[:i]:
            raise ValueError(f"{choice!r} is listed twice")
    return choices


def _builds(**fields: Any) -> None:
    try:
        ArchConfig(**fields)
    except ArchConfigError as exc:
        raise ValueError(f"no network can be built with it ({exc})") from None


def _arch_choice(field: str) -> AfterValidator:
    """A choice that ArchConfig accepts for ``field`` (every other field at its default).

    ArchConfig checks each field on its own, so when every choice passes this, every point of
    the space builds; asking ArchConfig keeps the schema from drifting away from it.
    """

    def check(value: T) -> T:
        _builds(**{field: value})
        return value

    return AfterValidator(check)


def parse_stem(stem: str) -> tuple[int, int]:
    """``"15/7"`` -> ``(15, 7)``: the stem's kernel and padding."""
    match = _STEM.fullmatch(stem)
    if match is None:
        raise ValueError(f"{stem!r} is not 'kernel/padding' in whole numbers, e.g. '15/7'")
    return int(match[1]), int(match[2])


def _stem_choice(stem: str) -> str:
    kernel, padding = parse_stem(stem)
    _builds(stem_kernel=kernel, stem_padding=padding)
    return stem


# A non-empty list of distinct choices of one search parameter.
Choices = Annotated[list[T], Field(min_length=1), AfterValidator(_distinct)]
Width = Annotated[float, Field(gt=0, le=1), _arch_choice("width_multiplier")]
Stem = Annotated[str, AfterValidator(_stem_choice)]
BlockKernel = Annotated[int, Field(ge=1), _arch_choice("block_kernel")]
MetadataFeatures = Annotated[int, Field(ge=0), _arch_choice("metadata_features")]
Dropout = Annotated[float, Field(ge=0, lt=1), _arch_choice("dropout")]


class BlocksModel(BaseModel):
    """Residual blocks per stage: an integer range, the same for all four stages."""

    model_config = _CONFIG
    low: Annotated[int, Field(ge=MIN_BLOCKS_PER_STAGE, le=MAX_BLOCKS_PER_STAGE)]
    high: Annotated[int, Field(ge=MIN_BLOCKS_PER_STAGE, le=MAX_BLOCKS_PER_STAGE)]

    @field_validator("high")
    @classmethod
    def _not_below_low(cls, high: int, info: ValidationInfo) -> int:
        low = info.data.get("low")
        if low is not None and high < low:
            raise ValueError(f"{high} is below low ({low})")
        return high


class SpaceModel(BaseModel):
    """``[space]``: the choices of each architecture parameter (see ``ecgsearch.study.space``)."""

    model_config = _CONFIG
    blocks: BlocksModel
    width_multiplier: Choices[Width]
    conv_type: Choices[Annotated[ConvType, _arch_choice("conv_type")]]
    se: Choices[bool]
    bn1: Choices[bool]
    bn2: Choices[bool]
    conv2: Choices[bool]
    stem: Choices[Stem]
    block_kernel: Choices[BlockKernel]
    metadata_features: Choices[MetadataFeatures]
    dropout: Choices[Dropout]


class ObjectiveModel(BaseModel):
    """One ``[[objectives]]`` entry: a metric and whether to maximize or minimize it."""

    model_config = _CONFIG
    metric: Literal[tuple(METRICS)]  # type: ignore[valid-type]
    direction: Literal["maximize", "minimize"]


def _distinct_metrics(objectives: list[ObjectiveModel]) -> list[ObjectiveModel]:
    metrics = [o.metric for o in objectives]
    for metric in metrics:
        if metrics.count(metric) > 1:
            raise ValueError(f"metric {metric!r} is listed twice")
    return objectives


class SamplerModel(BaseModel):
    """``[sampler]``: the Optuna sampler and the settings it takes (``SAMPLER_SETTINGS``)."""

    model_config = _CONFIG
    name: Literal[tuple(SAMPLER_SETTINGS)] = DEFAULT_SAMPLER  # type: ignore[valid-type]
    n_startup_trials: Annotated[int, Field(ge=0)] | None = None

    @field_validator("n_startup_trials")
    @classmethod
    def _taken_by_sampler(cls, value: int | None, info: ValidationInfo) -> int | None:
        name = info.data.get("name")
        if name is not None and "n_startup_trials" not in SAMPLER_SETTINGS[name]:
            takes = ", ".join(SAMPLER_SETTINGS[name]) or "no settings besides name"
            raise ValueError(f"the {name} sampler does not take n_startup_trials (it takes {takes})")
        return value


class TrainingModel(BaseModel):
    """``[training]``: exactly the fields of ``ecgnet.train_config.TrainConfig``, with their ranges."""

    model_config = _CONFIG
    epochs: Annotated[int, Field(ge=1)] = _TRAIN.epochs
    max_steps: Annotated[int, Field(ge=1)] | None = _TRAIN.max_steps
    batch_size: Annotated[int, Field(ge=1)] = _TRAIN.batch_size
    learning_rate: Annotated[float, Field(gt=0)] = _TRAIN.learning_rate
    weight_decay: Annotated[float, Field(ge=0)] = _TRAIN.weight_decay
    threshold: Annotated[float, Field(gt=0, lt=1)] = _TRAIN.threshold
    window: Annotated[int, Field(ge=1)] = _TRAIN.window
    seed: Annotated[int, Field(ge=0)] = _TRAIN.seed
    amp: bool = _TRAIN.amp
    num_workers: Annotated[int, Field(ge=0)] | None = _TRAIN.num_workers
    resident_data: bool | None = _TRAIN.resident_data
    max_seconds: Annotated[float, Field(gt=0)] | None = _TRAIN.max_seconds
    eval_max_samples: Annotated[int, Field(ge=1)] = _TRAIN.eval_max_samples
    tune_thresholds: bool = _TRAIN.tune_thresholds
    device: str = _TRAIN.device


class SyntheticModel(BaseModel):
    """``[data] synthetic``: generated records instead of a prepared cache."""

    model_config = _CONFIG
    records: Annotated[int, Field(ge=1)]
    seed: Annotated[int, Field(ge=0)] = 0


class DataModel(BaseModel):
    """``[data]``: the cache (or synthetic data), its preprocessing style, the split and the class set.

    ``test`` is a test group or a source name; whether the cache holds that source, and was
    prepared in the ``preprocess`` style, is checked when the study opens the cache.
    """

    model_config = _CONFIG
    cache: str = ""
    synthetic: SyntheticModel | None = None
    split_dir: str | None = None
    test: Annotated[str, AfterValidator(check_test_name)] = DATA_DEFAULTS["test"]
    folds: Annotated[int, Field(ge=2)] = DATA_DEFAULTS["folds"]
    fold: Annotated[int, Field(ge=0)] = DATA_DEFAULTS["fold"]
    split_seed: Annotated[int, Field(ge=0)] = DATA_DEFAULTS["split_seed"]
    class_set: ClassSetName = DATA_DEFAULTS["class_set"]
    max_train_records: Annotated[int, Field(ge=1)] | None = None
    preprocess: PreprocessStyle | None = DATA_DEFAULTS["preprocess"]

    @field_validator("fold")
    @classmethod
    def _below_folds(cls, fold: int, info: ValidationInfo) -> int:
        folds = info.data.get("folds")
        if folds is not None and fold >= folds:
            raise ValueError(f"{fold} is not below folds ({folds}); folds are numbered 0..{folds - 1}")
        return fold


def _increasing(rungs: list[int]) -> list[int]:
    for before, after in itertools.pairwise(rungs):
        if after <= before:
            raise ValueError(f"rungs must increase: {after} follows {before}")
    return rungs


class LatencyModel(BaseModel):
    """``[latency]``: how ``latency_ms`` is measured (ONNX Runtime, batch 1, one thread)."""

    model_config = _CONFIG
    samples: Annotated[int, Field(ge=256, le=65536)] = 4096  # the input length every network is timed on
    runs: Annotated[int, Field(ge=30, le=1000)] = 30  # timed runs after the warm-up; the median is kept


class EarlyStoppingModel(BaseModel):
    """``[early_stopping]``: compare trials at rung epochs and stop the dominated ones (MOASHA)."""

    model_config = _CONFIG
    rungs: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1), AfterValidator(_increasing)]
    eta: Annotated[int, Field(ge=2)] = EarlyStopping.eta
    min_trials: Annotated[int, Field(ge=1)] = EarlyStopping.min_trials
    protect_thesis: bool = EarlyStopping.protect_thesis
    brackets: Annotated[int, Field(ge=1)] = EarlyStopping.brackets  # Hyperband-style: see EarlyStopping.rungs_of

    @model_validator(mode="after")
    def _a_bracket_per_starting_rung(self) -> EarlyStoppingModel:
        if self.brackets > len(self.rungs) + 1:
            raise ValueError(
                f"brackets: at most {len(self.rungs) + 1} with {len(self.rungs)} rungs "
                "(one per starting rung, and one that stops nothing)"
            )
        return self


class SeedsModel(BaseModel):
    """``[seeds]``: a trial near the front trains ``front`` seeds and reports their mean."""

    model_config = _CONFIG
    front: Annotated[int, Field(ge=1, le=10)] = 1  # 1: every trial trains once
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.02  # "near": this much behind, per validation objective


def _thesis_name(name: str) -> str:
    if name not in thesis_experiments():
        raise ValueError(f"{name!r} is not a thesis experiment (E1..E18)")
    return name


class DefinitionModel(BaseModel):
    """A whole study definition file."""

    model_config = _CONFIG
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    fixed_trials: Annotated[list[Annotated[str, AfterValidator(_thesis_name)]], AfterValidator(_distinct)] = Field(
        default_factory=list
    )
    default_trials: Annotated[int, Field(ge=1)] = 100
    objectives: Annotated[list[ObjectiveModel], Field(min_length=1), AfterValidator(_distinct_metrics)]
    sampler: SamplerModel = Field(default_factory=SamplerModel)
    space: SpaceModel
    training: TrainingModel = Field(default_factory=TrainingModel)
    data: DataModel = Field(default_factory=DataModel)
    early_stopping: EarlyStoppingModel | None = None
    latency: LatencyModel = Field(default_factory=LatencyModel)
    seeds: SeedsModel = Field(default_factory=SeedsModel)

    @model_validator(mode="after")
    def _rungs_inside_the_budget(self) -> DefinitionModel:
        if self.early_stopping is None:
            return self
        if self.training.max_steps is not None:
            raise ValueError("early_stopping.rungs are epochs: give [training] epochs, not max_steps")
        last = self.early_stopping.rungs[-1]
        if last >= self.training.epochs:
            raise ValueError(
                f"early_stopping.rungs: rung {last} is not before the last epoch "
                f"(training.epochs = {self.training.epochs})"
            )
        return self


def describe(exc: ValidationError, root: type[BaseModel], where: tuple[str | int, ...] = ()) -> str:
    """A few readable lines, one per problem: ``location: problem``.

    ``root`` is the model that was validated and ``where`` its own location (``("space",)``
    when only the space was); unknown keys are listed with the keys allowed there.
    """
    errors = exc.errors(include_url=False)
    lines = [f"{_location((*where, *e['loc']))}: {_problem(e, root)}" for e in errors[:_MAX_PROBLEMS]]
    if len(errors) > _MAX_PROBLEMS:
        lines.append(f"(and {len(errors) - _MAX_PROBLEMS} more)")
    return "\n  ".join(lines)


def _location(loc: tuple[str | int, ...]) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return text or "(top level)"


def _problem(error: Any, root: type[BaseModel]) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "extra_forbidden":
        model = _model_at(root, error["loc"][:-1])
        allowed = ", ".join(model.model_fields) if model else "?"
        return f"unknown key; allowed keys: {allowed}"
    if kind == "missing":
        return "missing (required)"
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "literal_error":
        return f"{value!r} is not one of {ctx['expected']}"
    if kind in ("model_type", "dict_type"):
        return f"must be a table, not {_shown(value)}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return f"{error['msg'].replace('Input should be', 'must be')} (got {_shown(value)})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model that validates the table at ``loc`` (list indices are skipped)."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field else None
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
