"""The architecture config: every knob the thesis turned, as one frozen dataclass.

A config is plain data (it round-trips through ``to_dict``/``from_dict``), so a search trial,
a model.json and a TOML file can all carry it. Validation happens at construction, so an
invalid config never reaches the model builder::

    >>> cfg = ArchConfig(blocks=(1, 1, 2, 2), width_multiplier=0.25)
    >>> cfg.stage_widths
    (16, 32, 64, 128)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ecgnet.errors import InputError

__all__ = [
    "BASE_STAGE_WIDTHS",
    "CONV_TYPES",
    "ArchConfig",
    "ArchConfigError",
]

BASE_STAGE_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)
CONV_TYPES: tuple[str, ...] = ("standard", "depthwise_separable")
MIN_BLOCKS_PER_STAGE = 1
MAX_BLOCKS_PER_STAGE = 4


class ArchConfigError(InputError):
    """An architecture config field holds a value the network cannot be built from."""


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """Architecture of one ECG ResNet; the defaults are the thesis baseline (E1).

    Attributes:
        blocks: residual blocks in each of the four stages, each 1..4.
        stem_channels: output channels of the stem convolution.
        width_multiplier: scales the stage widths 64/128/256/512 (0.5 halves them, as in E13).
        conv_type: ``"standard"`` or ``"depthwise_separable"`` (depthwise(k, groups=in) followed
            by a pointwise 1x1 convolution, as in the thesis's Appendix A, Listing 2).
        se: squeeze-and-excitation gate at the end of each block.
        se_reduction: the SE bottleneck is ``max(1, channels // se_reduction)``.
        bn1: BatchNorm after the first block convolution.
        bn2: BatchNorm after the second block convolution (kept even without conv2, as in E5).
        conv2: the second block convolution.
        block_kernel: kernel size of the block convolutions (odd, so lengths are preserved).
        stem_kernel: kernel size of the stem convolution.
        stem_padding: padding of the stem convolution; ``None`` means ``stem_kernel // 2``.
        metadata_features: width of the age/sex branch; 0 drops the branch.
        dropout: dropout probability after the first block activation.
        num_classes: outputs of the classifier.
        in_leads: input channels (ECG leads).
    """

    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    stem_channels: int = 64
    width_multiplier: float = 1.0
    conv_type: str = "standard"
    se: bool = True
    se_reduction: int = 16
    bn1: bool = True
    bn2: bool = True
    conv2: bool = True
    block_kernel: int = 7
    stem_kernel: int = 15
    stem_padding: int | None = None
    metadata_features: int = 10
    dropout: float = 0.2
    num_classes: int = 17
    in_leads: int = 12

    def __post_init__(self) -> None:
        # Lists from TOML/JSON become tuples so configs stay hashable and comparable.
        object.__setattr__(self, "blocks", tuple(self.blocks))
        self._validate()

    def _validate(self) -> None:
        if len(self.blocks) != 4 or not all(
            _is_int(b) and MIN_BLOCKS_PER_STAGE <= b <= MAX_BLOCKS_PER_STAGE for b in self.blocks
        ):
            _fail(
                "blocks",
                self.blocks,
                f"four integers, each {MIN_BLOCKS_PER_STAGE}..{MAX_BLOCKS_PER_STAGE}",
            )
        for name in ("stem_channels", "se_reduction", "stem_kernel", "num_classes", "in_leads"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                _fail(name, value, "an integer >= 1")
        if not _is_int(self.block_kernel) or self.block_kernel < 1 or self.block_kernel % 2 == 0:
            _fail("block_kernel", self.block_kernel, "an odd integer >= 1")
        if self.stem_padding is not None and (not _is_int(self.stem_padding) or self.stem_padding < 0):
            _fail("stem_padding", self.stem_padding, "None or an integer >= 0")
        if not isinstance(self.width_multiplier, int | float) or not (
            math.isfinite(self.width_multiplier) and self.width_multiplier > 0
        ):
            _fail("width_multiplier", self.width_multiplier, "a number > 0")
        if min(_scaled(w, self.width_multiplier) for w in BASE_STAGE_WIDTHS) < 1:
            _fail(
                "width_multiplier",
                self.width_multiplier,
                f"a number >= {1 / BASE_STAGE_WIDTHS[0]} (every stage needs >= 1 channel)",
            )
        if self.conv_type not in CONV_TYPES:
            _fail("conv_type", self.conv_type, " or ".join(repr(c) for c in CONV_TYPES))
        for name in ("se", "bn1", "bn2", "conv2"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, getattr(self, name), "true or false")
        if not _is_int(self.metadata_features) or self.metadata_features < 0:
            _fail("metadata_features", self.metadata_features, "an integer >= 0 (0 = no branch)")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            _fail("dropout", self.dropout, "a number in [0, 1)")

    @property
    def stage_widths(self) -> tuple[int, int, int, int]:
        """Output channels of the four stages."""
        return tuple(_scaled(w, self.width_multiplier) for w in BASE_STAGE_WIDTHS)  # type: ignore[return-value]

    @property
    def resolved_stem_padding(self) -> int:
        return self.stem_kernel // 2 if self.stem_padding is None else self.stem_padding

    def canonical(self) -> ArchConfig:
        """The same network with settings that do not change it reset to their defaults.

        Two configs build identical networks exactly when their canonical forms are equal;
        the search uses this to avoid training one network twice.
        """
        changes: dict[str, Any] = {"stem_padding": self.resolved_stem_padding}
        if not self.se:
            changes["se_reduction"] = ArchConfig.se_reduction
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly data; ``ArchConfig.from_dict`` inverts it."""
        data = dataclasses.asdict(self)
        data["blocks"] = list(self.blocks)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        """Build a config from plain data; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArchConfigError(
                f"unknown architecture field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))


def _scaled(width: int, multiplier: float) -> int:
    return round(width * multiplier)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail(field: str, value: object, allowed: str) -> None:
    raise ArchConfigError(f"ArchConfig.{field} = {value!r} is invalid; allowed: {allowed}")
