"""The configurable ECG ResNet: the thesis baseline (SE-ResNet-18, 1-D) and all its ablations.

Layout follows torchvision's ``models/resnet.py``: a block class, a network class whose
``_make_stage`` builds the stages, initialisation in one place. A layer that a config removes
becomes ``nn.Identity`` so that the forward pass reads the same for every variant::

    >>> model = ECGResNet(ArchConfig(se=False))
    >>> logits = model(torch.zeros(2, 12, 4096), torch.zeros(2, 3))
    >>> logits.shape
    torch.Size([2, 17])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ecgnet.arch import ArchConfig

__all__ = ["METADATA_INPUTS", "BasicBlock", "DepthwiseSeparableConv1d", "ECGResNet", "SELayer"]

# The metadata vector is [age / 100, female, male].
METADATA_INPUTS = 3


def output_lengths(layer: nn.Module, lengths: Tensor) -> Tensor:
    """The lengths a strided convolution or pool (or a depthwise-separable pair) makes of ``lengths``."""
    if isinstance(layer, nn.Sequential):  # depthwise then pointwise: the first sets the length
        layer = layer[0]
    kernel, stride, padding = (v[0] if isinstance(v, tuple) else v for v in
                               (layer.kernel_size, layer.stride, layer.padding))  # fmt: skip
    dilation = layer.dilation[0] if isinstance(layer.dilation, tuple) else layer.dilation
    return torch.div(lengths + 2 * padding - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1


def _stepped(layer: nn.Module, lengths: Tensor | None) -> Tensor | None:
    return None if lengths is None else output_lengths(layer, lengths)


def zero_past(x: Tensor, lengths: Tensor | None) -> Tensor:
    """``x`` (batch, channels, samples) with every sample past its record's length set to zero."""
    if lengths is None:
        return x
    inside = torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]
    return x * inside[:, None, :].to(x.dtype)


class SELayer(nn.Module):
    """Squeeze-and-excitation: rescale channels by a gate computed from their means."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        # Zeros past a record's end (see ``ECGResNet.forward``) add nothing to the sum.
        mean = x.mean(dim=-1) if lengths is None else x.sum(dim=-1) / lengths[:, None]
        gate = self.fc(mean)
        return x * gate.unsqueeze(-1)


class DepthwiseSeparableConv1d(nn.Sequential):
    """Depthwise conv (groups = input channels) then pointwise 1x1, no norm between (Listing 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(
            in_channels,
            in_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=False)


def block_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int, conv_type: str) -> nn.Module:
    """The convolution a residual block uses, of the config's type."""
    if conv_type == "depthwise_separable":
        return DepthwiseSeparableConv1d(in_channels, out_channels, kernel_size, stride)
    return nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


class BasicBlock(nn.Module):
    """conv1 -> bn1 -> ReLU -> dropout -> conv2 -> bn2 -> SE -> + identity -> ReLU."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        config: ArchConfig,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        k, conv_type = config.block_kernel, config.conv_type
        self.conv1 = block_conv(in_channels, channels, k, stride, conv_type)
        self.bn1 = nn.BatchNorm1d(channels) if config.bn1 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = block_conv(channels, channels, k, 1, conv_type) if config.conv2 else nn.Identity()
        self.bn2 = nn.BatchNorm1d(channels) if config.bn2 else nn.Identity()
        self.se = SELayer(channels, config.se_reduction) if config.se else nn.Identity()
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``lengths``: each record's length at this block's output (``output_lengths`` of its
        ``conv1``; see ``ECGResNet.forward``); ``x`` is zero past its own, and so is the result."""
        identity = self.downsample(x)
        out = zero_past(self.dropout(self.relu(self.bn1(self.conv1(x)))), lengths)
        out = zero_past(self.bn2(self.conv2(out)), lengths)
        out = self.se(out, lengths) if isinstance(self.se, SELayer) else out
        return zero_past(self.relu(out + identity), lengths)


class ECGResNet(nn.Module):
    """A 1-D ResNet for 12-lead ECGs with an age/sex side input, built from an ``ArchConfig``.

    ``forward(signal, metadata)`` takes signals of shape (batch, leads, samples), any length,
    and metadata of shape (batch, 3); it returns logits (no sigmoid).
    """

    def __init__(self, config: ArchConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ArchConfig()
        self.conv1 = nn.Conv1d(
            config.in_leads,
            config.stem_channels,
            config.stem_kernel,
            stride=2,
            padding=config.resolved_stem_padding,
            bias=False,
        )
        self.bn1 = nn.BatchNorm1d(config.stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)

        self._in_channels = config.stem_channels
        strides = (1, 2, 2, 2)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            self._make_stage(width, count, stride)
            for width, count, stride in zip(config.stage_widths, config.blocks, strides, strict=True)
        )
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        features = config.stage_widths[-1]
        if config.metadata_features:
            self.fc1: nn.Module | None = nn.Linear(METADATA_INPUTS, config.metadata_features)
            features += config.metadata_features
        else:
            self.fc1 = None
        self.fc = nn.Linear(features, config.num_classes)
        self._init_weights()

    def _make_stage(self, channels: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_channels != channels:
            downsample = nn.Sequential(
                nn.Conv1d(self._in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm1d(channels),
            )
        layers = [BasicBlock(self._in_channels, channels, stride, self.config, downsample)]
        self._in_channels = channels
        layers += [BasicBlock(channels, channels, 1, self.config) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm1d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    @property
    def uses_metadata(self) -> bool:
        return self.fc1 is not None

    def forward(self, signal: Tensor, metadata: Tensor | None = None, lengths: Tensor | None = None) -> Tensor:
        """Logits of ``signal`` (batch, leads, samples).

        ``lengths``: records of different lengths padded with zeros to one: each record's own
        length. Every layer then zeroes what lies past the record's end at its resolution, so a
        record's logits equal those of the record alone (to float rounding): a convolution
        reads zeros there as its own padding would, the max pool follows a ReLU (values >= 0),
        and the means divide by the record's own length.
        """
        x = zero_past(self.relu(self.bn1(self.conv1(signal))), lengths := _stepped(self.conv1, lengths))
        x = zero_past(self.maxpool(x), lengths := _stepped(self.maxpool, lengths))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                lengths = _stepped(block.conv1, lengths)
                x = block(x, lengths)
        x = self.avgpool(x).flatten(1) if lengths is None else x.sum(dim=-1) / lengths[:, None]
        if self.fc1 is not None:
            if metadata is None:
                raise ValueError(
                    "this model has a metadata branch (metadata_features="
                    f"{self.config.metadata_features}): pass metadata of shape (batch, 3)"
                )
            x = torch.cat([self.fc1(metadata), x], dim=1)
        return self.fc(x)
