"""Torch datasets over the cache: random training windows and whole records for evaluation.

The loader's job is only slicing and batching: a training item is a raw float16 window sliced
from the memory-mapped cache. Per-lead min-max scaling runs batch-wise on the training device
(``minmax_scale``), where it is nearly free on a GPU and vectorised on a CPU.

    >>> data = WindowDataset(cache, names, labels, window=4096, seed=0)
    >>> signal, metadata, target = data[0]          # (12, 4096) f16, (3,) f32, (classes,) f32
    >>> for signal, metadata, target in window_loader(data, batch_size=256):
    ...     batch = minmax_scale(signal.to(device))  # per record and lead, to [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ecgnet.data.cache_reader import ECGCache

__all__ = [
    "RecordDataset",
    "ResidentWindows",
    "WindowDataset",
    "equal_length_batches",
    "minmax_scale",
    "padded_batches",
    "window_loader",
]

DEFAULT_WINDOW = 4096
COPY_CHUNK_SAMPLES = 1 << 22  # samples per lead copied to a device at a time (96 MiB of float16)
# Record indices, their signals (zero-padded to the longest), their metadata, their lengths.
RecordBatch = tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]


def minmax_scale(signal: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Scale each lead of each record to [0, 1]; a flat lead becomes all zeros.

    ``signal`` has shape (batch, leads, samples); the result is float32 on the same device.
    ``lengths``: records padded to one length: each is scaled on its own samples, and zero past them.
    """
    scaled = signal.to(torch.float32, copy=True)  # never scale the caller's tensor in place
    if lengths is None:
        low, high = torch.aminmax(scaled, dim=-1, keepdim=True)
    else:
        inside = (torch.arange(scaled.shape[-1], device=scaled.device)[None, :] < lengths[:, None])[:, None, :]
        low = torch.where(inside, scaled, torch.inf).amin(dim=-1, keepdim=True)
        high = torch.where(inside, scaled, -torch.inf).amax(dim=-1, keepdim=True)
    span = high - low
    inverse = torch.where(span > 0, 1.0 / span, torch.zeros_like(span))
    scaled = scaled.sub_(low).mul_(inverse)
    return scaled if lengths is None else scaled.mul_(inside)


def padded_batches(lengths: np.ndarray, max_samples: int, spread: float = 1.25) -> list[list[int]]:
    """Indices of records of similar length, at most ``max_samples`` samples a group once padded
    to its longest (one record at least), the longest at most ``spread`` times the shortest.

    ``ECGResNet(..., lengths=)`` makes a padded record's output its own, so grouping by similar
    rather than equal length costs only the padding: records of many lengths (CPSC's 6-60 s)
    no longer go one at a time.
    """
    batches: list[list[int]] = []
    for i in np.argsort(lengths, kind="stable").tolist():
        batch = batches[-1] if batches else None
        # Sorted by length: record i is the longest of the group it joins.
        if batch and lengths[i] <= spread * lengths[batch[0]] and (len(batch) + 1) * lengths[i] <= max_samples:
            batch.append(i)
        else:
            batches.append([i])
    return batches


def equal_length_batches(lengths: np.ndarray, max_samples: int) -> list[list[int]]:
    """Indices of records grouped by equal length, at most ``max_samples`` samples a group (one record at least).

    Whole records batched without padding, so a batched evaluation equals a one-by-one one.
    """
    batches: list[list[int]] = []
    for i in np.argsort(lengths, kind="stable").tolist():
        batch = batches[-1] if batches else None
        if batch and lengths[batch[0]] == lengths[i] and (len(batch) + 1) * lengths[i] <= max_samples:
            batch.append(i)
        else:
            batches.append([i])
    return batches


class _CacheSubset(Dataset):
    def __init__(self, cache: ECGCache, names: Sequence[str], labels: np.ndarray) -> None:
        index_of = {name: i for i, name in enumerate(cache.table["name"])}
        missing = [n for n in names if n not in index_of]
        if missing:
            raise KeyError(f"{len(missing)} record(s) not in {cache.path}, e.g. {missing[:3]}")
        self.cache = cache
        self.indices = np.asarray([index_of[n] for n in names], dtype=np.int64)
        self.lengths = cache.table["length"].to_numpy()[self.indices]
        self.offsets = cache.table["offset"].to_numpy()[self.indices]
        self.targets = torch.from_numpy(labels[self.indices].astype(np.float32))
        self.metadata = torch.from_numpy(cache.metadata()[self.indices])
        # Copies on a device, made once per device (``on_device``); a shallow copy shares them.
        self._resident: dict[Any, Any] = {}

    @property
    def nbytes(self) -> int:
        """Bytes of this subset's signals (what holding it on a device takes)."""
        return int(self.lengths.sum()) * self.cache.signals.shape[0] * self.cache.signals.dtype.itemsize

    def __len__(self) -> int:
        return len(self.indices)


class WindowDataset(_CacheSubset):
    """Random fixed-length training windows; short records are zero-padded at a random split.

    ``data[i]`` is one item; ``data[[i, j, ...]]`` is a whole batch, sliced straight into one
    array (see ``window_loader``), which is what makes the loader fast. Crops are a pure
    function of (seed, epoch, item), so any number of loader workers gives the same batches;
    call ``set_epoch`` to draw new crops each epoch.
    """

    def __init__(
        self,
        cache: ECGCache,
        names: Sequence[str],
        labels: np.ndarray,
        *,
        window: int = DEFAULT_WINDOW,
        seed: int = 0,
    ) -> None:
        super().__init__(cache, names, labels)
        self.window = window
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, item: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if isinstance(item, int | np.integer):
            signal, metadata, target = self[[int(item)]]
            return signal[0], metadata[0], target[0]
        items = np.asarray(item, dtype=np.int64)
        lengths, offsets = self.lengths[items], self.offsets[items]
        starts, pads = self.crops(items)
        out = np.zeros((len(items), self.cache.signals.shape[0], self.window), dtype=self.cache.signals.dtype)
        signals = self.cache.signals
        for row, (offset, length, start, pad) in enumerate(zip(offsets, lengths, starts, pads, strict=True)):
            n = min(int(length), self.window)
            out[row, :, pad : pad + n] = signals[:, offset + start : offset + start + n]
        return torch.from_numpy(out), self.metadata[items], self.targets[items]

    def crops(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each item's window starts in its record, and where the record starts in its window."""
        lengths = self.lengths[items]
        draws = _uniform(self.seed, self.epoch, items)
        crop = lengths >= self.window
        # A long record is cropped at a random start; a short one lands at a random offset.
        starts = np.where(crop, (draws * (lengths - self.window + 1)).astype(np.int64), 0)
        pads = np.where(crop, 0, (draws * (self.window - lengths + 1)).astype(np.int64))
        return starts, pads

    def on_device(self, device: torch.device) -> ResidentWindows:
        """This subset's records held on ``device`` (made once, then kept: ``reseeded`` copies share it)."""
        key = ("windows", str(device), self.window)
        if key not in self._resident:
            self._resident[key] = ResidentWindows(self, device)
        return self._resident[key]


class ResidentWindows:
    """A ``WindowDataset``'s records in one tensor on ``device``, its training windows cut there.

    ``batches`` gives, for the same seed and epoch, exactly the batches ``window_loader`` gives
    (the same sampler order, the same crops), without loader processes or a copy to the device
    per batch: for a small network on a GPU the loader, not the network, sets the pace.
    """

    def __init__(self, data: WindowDataset, device: torch.device) -> None:
        signals = data.cache.signals
        self.device = device
        # A window's margin of zeros on either side: a window padded or cropped anywhere stays inside.
        self.margin = data.window
        self.starts = self.margin + np.concatenate([[0], np.cumsum(data.lengths)[:-1]]).astype(np.int64)
        total = self.margin + int(data.lengths.sum()) + self.margin
        dtype = torch.from_numpy(np.zeros(0, dtype=signals.dtype)).dtype
        self.signals = torch.zeros((signals.shape[0], total), dtype=dtype, device=device)
        # Copied in chunks: K workers of a node each holding a whole host copy of the set at once
        # could exceed the task's memory.
        chunk: list[np.ndarray] = []
        at = first = self.margin
        for offset, length in zip(data.offsets, data.lengths, strict=True):
            chunk.append(signals[:, offset : offset + length])
            at += int(length)
            if at - first >= COPY_CHUNK_SAMPLES:
                self.signals[:, first:at] = torch.from_numpy(np.concatenate(chunk, axis=1))
                chunk, first = [], at
        if chunk:
            self.signals[:, first:at] = torch.from_numpy(np.concatenate(chunk, axis=1))
        self.metadata = data.metadata.to(device)
        self.targets = data.targets.to(device)

    def batches(
        self, data: WindowDataset, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One epoch of (signal, metadata, target) batches on the device, in ``window_loader``'s order."""
        # A DataLoader draws its workers' base seed from the global generator at every epoch
        # (``window_loader``'s workers are not persistent); the same draw here keeps everything
        # else that uses that generator (dropout on a CPU) in step.
        torch.empty((), dtype=torch.int64).random_()
        leads, total = self.signals.shape
        # Every window of the joined records, as a view: windows[i] = signals[:, i : i + window].
        windows = self.signals.as_strided((total - data.window + 1, leads, data.window), (1, total, 1))
        positions = torch.arange(data.window, device=self.device)
        for batch in BatchSampler(RandomSampler(data, generator=generator), batch_size, False):
            items = np.asarray(batch, dtype=np.int64)
            starts, pads = data.crops(items)
            first = torch.from_numpy(self.starts[items] + starts - pads).to(self.device)
            # A short record's window holds its neighbours' samples around it: zero them.
            pads_here = torch.from_numpy(pads).to(self.device)
            ends = pads_here + torch.from_numpy(np.minimum(data.lengths[items], data.window)).to(self.device)
            outside = (positions < pads_here[:, None]) | (positions >= ends[:, None])
            signal = windows.index_select(0, first).masked_fill_(outside[:, None, :], 0)
            rows = torch.from_numpy(items).to(self.device)
            yield signal, self.metadata[rows], self.targets[rows]


def _uniform(seed: int, epoch: int, items: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) draws, a pure function of (seed, epoch, item): splitmix64, vectorised."""
    with np.errstate(over="ignore"):
        x = items.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x += np.uint64(epoch) * np.uint64(0xBF58476D1CE4E5B9)
        for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(multiplier)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def window_loader(
    data: WindowDataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = False,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader that asks the dataset for whole batches (one array slice per batch)."""
    sampler = RandomSampler(data, generator=generator) if shuffle else SequentialSampler(data)
    return DataLoader(
        data,
        batch_size=None,
        sampler=BatchSampler(sampler, batch_size, drop_last),
        num_workers=num_workers,
        pin_memory=pin_memory,
        # Not persistent: each epoch's workers get the dataset as it is then (its ``set_epoch``),
        # and the loader draws its seed every epoch, with workers or without.
        persistent_workers=False,
    )


class RecordDataset(_CacheSubset):
    """Whole records for evaluation, as (12, length) float16."""

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        length, offset = int(self.lengths[item]), int(self.offsets[item])
        signal = np.array(self.cache.signals[:, offset : offset + length])
        return torch.from_numpy(signal), self.metadata[item], self.targets[item]

    def batches(self, max_samples: int, device: torch.device | None = None) -> Iterator[RecordBatch]:
        """Records of similar length (``padded_batches``), zero-padded to the longest:
        (indices, signals, metadata, lengths).

        With ``device``: batches made once and kept there (an evaluation every epoch then copies
        nothing); else read from the cache at each call.
        """
        if device is None:
            for batch in padded_batches(self.lengths, max_samples):
                yield batch, *self._stacked(batch)
            return
        key = (str(device), max_samples)
        if key not in self._resident:
            self._resident[key] = [(batch, *(t.to(device) for t in self._stacked(batch)))
                                   for batch in padded_batches(self.lengths, max_samples)]  # fmt: skip
        yield from self._resident[key]

    def _stacked(self, batch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lengths = self.lengths[batch]
        signal = np.zeros((len(batch), self.cache.signals.shape[0], int(lengths.max())), self.cache.signals.dtype)
        for row, (offset, length) in enumerate(zip(self.offsets[batch], lengths, strict=True)):
            signal[row, :, :length] = self.cache.signals[:, offset : offset + length]
        return torch.from_numpy(signal), self.metadata[batch], torch.from_numpy(lengths.astype(np.int64))
