"""The search space over the thesis's ablations: a trial's parameters <-> an ArchConfig.

Parameters: ``blocks_1``..``blocks_4`` (ints), and categorical ``width_multiplier``,
``conv_type``, ``se``, ``bn1``, ``bn2``, ``conv2``, ``stem`` ("kernel/padding"),
``block_kernel``, ``metadata_features``, ``dropout``. Categorical choices keep the space finite,
so equal networks are recognised as equal (see ``ArchConfig.canonical``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from ecgnet.arch import ArchConfig

__all__ = ["SearchSpace"]

_CATEGORICAL = ("width_multiplier", "conv_type", "se", "bn1", "bn2", "conv2", "stem", "block_kernel",
                "metadata_features", "dropout")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    blocks_low: int
    blocks_high: int
    choices: dict[str, tuple[Any, ...]]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        missing = [k for k in ("blocks", *_CATEGORICAL) if k not in data]
        if missing:
            raise ValueError(f"[space] lacks {', '.join(missing)}")
        unknown = set(data) - {"blocks", *_CATEGORICAL}
        if unknown:
            raise ValueError(f"[space] has unknown parameter(s) {sorted(unknown)}")
        for name in _CATEGORICAL:
            if not isinstance(data[name], list) or not data[name]:
                raise ValueError(f"[space] {name} must be a non-empty list of choices")
        for stem in data["stem"]:
            _parse_stem(stem)
        return cls(int(data["blocks"]["low"]), int(data["blocks"]["high"]),
                   {name: tuple(data[name]) for name in _CATEGORICAL})  # fmt: skip

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
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
        kernel, padding = _parse_stem(params["stem"])
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
            width_multiplier=arch.width_multiplier, conv_type=arch.conv_type, se=arch.se, bn1=arch.bn1,
            bn2=arch.bn2, conv2=arch.conv2, stem=f"{arch.stem_kernel}/{arch.resolved_stem_padding}",
            block_kernel=arch.block_kernel, metadata_features=arch.metadata_features, dropout=arch.dropout,
        )  # fmt: skip
        for i in range(1, 5):
            if not self.blocks_low <= params[f"blocks_{i}"] <= self.blocks_high:
                raise ValueError(f"blocks_{i}={params[f'blocks_{i}']} is outside the space's blocks range")
        for name, choices in self.choices.items():
            if params[name] not in choices:
                raise ValueError(f"{name}={params[name]!r} is not among the space's choices {list(choices)}")
        if arch.stem_channels != ArchConfig.stem_channels or arch.se_reduction != ArchConfig.se_reduction:
            raise ValueError("the space keeps stem_channels and se_reduction at their defaults")
        return params


def _parse_stem(stem: str) -> tuple[int, int]:
    try:
        kernel, padding = (int(part) for part in str(stem).split("/"))
    except ValueError:
        raise ValueError(f"stem choice {stem!r} must be 'kernel/padding', e.g. '15/7'") from None
    return kernel, padding
