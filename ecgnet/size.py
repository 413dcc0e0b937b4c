"""Model size without training: parameters, serialized bytes and MACs.

"Model size (MB)" is defined as the thesis measured it: the bytes of ``torch.save(state_dict)``
divided by 2**20. That counts BatchNorm buffers and the zip container, which is why parameters
alone (8,833,379 x 4 bytes = 33.70 MiB for E1) do not match the thesis's 33.78.

The search asks for sizes every trial, so nothing here allocates real weights: the network is
built on the meta device and serialized by torch's own writer with ``skip_data``, whose
layout is byte-for-byte that of a real save but which writes no tensor bytes::

    >>> round(describe_size(ArchConfig()).size_mb, 2)   # E1, the thesis's 33.78
    33.78
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import itertools
from collections import OrderedDict

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.serialization import skip_data

from ecgnet.arch import ArchConfig
from ecgnet.model import METADATA_INPUTS, ECGResNet

__all__ = [
    "MIB",
    "SizeReport",
    "count_macs",
    "count_params",
    "describe_size",
    "model_size_mb",
    "serialized_state_dict_bytes",
]

MIB = 2**20
MAC_INPUT_SAMPLES = 4096


@dataclasses.dataclass(frozen=True)
class SizeReport:
    """Size figures of one architecture."""

    params: int
    state_dict_bytes: int
    macs: int | None = None

    @property
    def size_mb(self) -> float:
        return self.state_dict_bytes / MIB


class _SizeCountingSink(io.RawIOBase):
    """A write-only stream that remembers how far it was written or seeked, and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self._position = 0
        self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        n = len(memoryview(data))
        self._advance_to(self._position + n)
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._advance_to(base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def _advance_to(self, position: int) -> None:
        self._position = position
        self.size = max(self.size, position)


class _SkipInitialisation(TorchFunctionMode):
    """Turns weight initialisers into no-ops: a meta tensor has no values to fill.

    Initialising ~100 meta tensors still runs torch's Python decompositions and would cost
    more than the rest of the size computation.
    """

    INITIALISERS = frozenset(
        {
            nn.init.kaiming_uniform_,
            nn.init.kaiming_normal_,
            nn.init.uniform_,
            nn.init.normal_,
            nn.init.constant_,
            nn.init.zeros_,
            nn.init.ones_,
            torch.Tensor.uniform_,
            torch.Tensor.normal_,
            torch.Tensor.zero_,
            torch.Tensor.fill_,
        }
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.INITIALISERS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def meta_model(config: ArchConfig) -> ECGResNet:
    """The network with shapes but no storage: building it costs no memory and no init time."""
    with torch.device("meta"), _SkipInitialisation():
        return ECGResNet(config)


def serialized_state_dict_bytes(model: nn.Module) -> int:
    """Exact byte count of ``torch.save(model.state_dict(), buffer)`` for a CPU copy of ``model``.

    Works on meta-device models. Tensors are replaced by uninitialised CPU tensors of the same
    shape, stride and dtype (untouched pages cost nothing) and written with ``skip_data``, which
    reserves each tensor's bytes by seeking instead of copying them.
    """
    source = model.state_dict()
    stand_in: OrderedDict[str, torch.Tensor] = OrderedDict(
        (key, torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")) for key, t in source.items()
    )
    # The per-module version metadata is pickled too and must be kept for an exact count.
    stand_in._metadata = getattr(source, "_metadata", None)  # type: ignore[attr-defined]
    sink = _SizeCountingSink()
    with skip_data():
        torch.save(stand_in, sink)
    return sink.size


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: ECGResNet, samples: int = MAC_INPUT_SAMPLES, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass: every convolution's and linear layer's, from the shapes.

    These layers are the only ones with multiplications to count (torch's FlopCounterMode counts
    the same, at 2 FLOPs a MAC). A meta-device ``model`` is counted on a zeroed CPU copy: any
    arithmetic on the meta device first loads torch's compiler stack (2 s in every process),
    while a 12 x 4096 pass through a zero network takes 0.04-0.16 s (E12 to E10).
    """
    if next(model.parameters()).device.type == "meta":
        model = copy.deepcopy(model).to_empty(device="cpu")
        with torch.no_grad():
            for tensor in itertools.chain(model.parameters(), model.buffers()):
                tensor.zero_()
    device = next(model.parameters()).device
    signal = torch.zeros(batch, model.config.in_leads, samples, device=device)
    metadata = torch.zeros(batch, METADATA_INPUTS, device=device)
    total = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv1d):
            total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
        else:
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    # Normalisation keeps shapes and has no MACs to count: stepped over.
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for norm in norms:
        norm.forward = _shape_only
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(signal, metadata)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
        for norm in norms:
            del norm.forward
    return total


def _shape_only(x: torch.Tensor) -> torch.Tensor:
    return x


def describe_size(config: ArchConfig, *, macs: bool = False) -> SizeReport:
    """Params and serialized size (and optionally MACs for a 12 x 4096 input) of ``config``.

    Results are cached by the config's canonical form, so asking again costs nothing.
    """
    return _describe_canonical(config.canonical(), macs)


@functools.lru_cache(maxsize=4096)
def _describe_canonical(config: ArchConfig, macs: bool) -> SizeReport:
    model = meta_model(config)
    return SizeReport(
        params=count_params(model),
        state_dict_bytes=serialized_state_dict_bytes(model),
        macs=count_macs(model) if macs else None,
    )


def model_size_mb(config: ArchConfig) -> float:
    """The thesis's "Model Size (MB)": serialized state_dict bytes / 2**20."""
    return describe_size(config).size_mb
