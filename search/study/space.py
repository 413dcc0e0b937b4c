"""The search space over the thesis's ablations: a trial's parameters <-> an ArchConfig.

Parameters: ``blocks_1``..``blocks_4`` (ints), and categorical ``width_multiplier``,
``conv_type``, ``se``, ``bn1``, ``bn2``, ``conv2``, ``stem`` ("kernel/padding"),
``block_kernel``, ``metadata_features``, ``dropout``. Categorical choices keep the space finite,
so equal networks are recognised as equal (see ``ArchConfig.canonical``). The choices are
checked by ``ecgsearch.study.definition_schema.SpaceModel``: each one builds a network.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from pydantic import ValidationError

from ecgnet.arch import ArchConfig
from ecgnet.errors import InputError
from ecgsearch.study.definition_schema import SpaceModel, describe, parse_stem

__all__ = ["SearchSpace"]

# In the schema's order, which is the order a trial suggests them in.
_CATEGORICAL = tuple(name for name in SpaceModel.model_fields if name != "blocks")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Blocks per stage in ``blocks_low..blocks_high`` and a tuple of choices per categorical parameter."""

    blocks_low: int
    blocks_high: int
    choices: dict[str, tuple[Any, ...]]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """The space of a definition's ``[space]`` table; raises InputError naming each bad choice."""
        try:
            model = SpaceModel.model_validate(data)
        except ValidationError as exc:
            raise InputError(describe(exc, SpaceModel, ("space",))) from None
        return cls.from_model(model)

    @classmethod
    def from_model(cls, model: SpaceModel) -> SearchSpace:
        """The space of an already validated ``[space]``; raises InputError when no network builds."""
        space = cls(model.blocks.low, model.blocks.high, {name: tuple(getattr(model, name)) for name in _CATEGORICAL})
        # Each choice builds on its own; this makes sure they also build together, should
        # ArchConfig ever relate two fields.
        first = {f"blocks_{i}": space.blocks_low for i in range(1, 5)} | {n: c[0] for n, c in space.choices.items()}
        try:
            space.arch_of(first)
        except InputError as exc:
            raise InputError(f"space: the first choice of every parameter builds no network ({exc})") from None
        return space

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna distributions of every parameter (to enqueue or add trials by hand)."""
        dists: dict[str, optuna.distributions.BaseDistribution] = {
            f"blocks_{i}": optuna.distributions.IntDistribution(self.blocks_low, self.blocks_high) for i in range(1, 5)
        }
        dists.update({n: optuna.distributions.CategoricalDistribution(c) for n, c in self.choices.items()})
        return dists

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Parameters for ``trial``: fixed ones when it was enqueued, sampled otherwise."""
        params: dict[str, Any] = {
            f"blocks_{i}": trial.suggest_int(f"blocks_{i}", self.blocks_low, self.blocks_high) for i in range(1, 5)
        }
        for name, choices in self.choices.items():
            params[name] = trial.suggest_categorical(name, choices)
        return params

    @staticmethod
    def arch_of(params: dict[str, Any], *, num_classes: int = 17) -> ArchConfig:
        """The network a trial's parameters describe."""
        kernel, padding = parse_stem(params["stem"])
        return ArchConfig(
            blocks=tuple(int(params[f"blocks_{i}"]) for i in range(1, 5)),
            width_multiplier=float(params["width_multiplier"]),
            conv_type=params["conv_type"],
            se=bool(params["se"]),
            bn1=bool(params["bn1"]),
            bn2=bool(params["bn2"]),
            conv2=bool(params["conv2"]),
            stem_kernel=kernel,
            stem_padding=padding,
            block_kernel=int(params["block_kernel"]),
            metadata_features=int(params["metadata_features"]),
            dropout=float(params["dropout"]),
            num_classes=num_classes,
        )

    def params_of(self, arch: ArchConfig) -> dict[str, Any]:
        """The parameters that give ``arch``; raises when the space cannot express it."""
        params: dict[str, Any] = {f"blocks_{i}": b for i, b in enumerate(arch.blocks, start=1)}
        params.update(
            width_multiplier=arch.width_multiplier,
            conv_type=arch.conv_type,
            se=arch.se,
            bn1=arch.bn1,
            bn2=arch.bn2,
            conv2=arch.conv2,
            stem=f"{arch.stem_kernel}/{arch.resolved_stem_padding}",
            block_kernel=arch.block_kernel,
            metadata_features=arch.metadata_features,
            dropout=arch.dropout,
        )
        for i in range(1, 5):
            if not self.blocks_low <= params[f"blocks_{i}"] <= self.blocks_high:
                raise ValueError(f"blocks_{i}={params[f'blocks_{i}']} is outside the space's blocks range")
        for name, choices in self.choices.items():
            if params[name] not in choices:
                raise ValueError(f"{name}={params[name]!r} is not among the space's choices {list(choices)}")
        if arch.stem_channels != ArchConfig.stem_channels or arch.se_reduction != ArchConfig.se_reduction:
            raise ValueError("the space keeps stem_channels and se_reduction at their defaults")
        return params
