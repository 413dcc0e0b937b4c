"""Training and evaluation of one architecture, with the thesis protocol as the default.

The whole run reads top to bottom in ``train_model``: seed, build, loop over epochs of
random windows, validate on whole records after every epoch. It runs unchanged on CPU and
CUDA; on CUDA it adds mixed precision, pinned memory and loader workers. The budget is
epochs or optimizer steps (deterministic); ``max_seconds`` is only a safety cap, and a run it
cuts says so.

    >>> result = train_model(ArchConfig(), train_data, val_data, classes, TrainConfig(epochs=30))
    >>> result.val_metrics["micro_auroc"], result.history[-1]
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ecgnet.arch import ArchConfig
from ecgnet.data.dataset import RecordDataset, WindowDataset, minmax_scale, window_loader
from ecgnet.data.labels import ClassSet
from ecgnet.metrics import HEADLINE_METRICS, classification_metrics, tune_thresholds
from ecgnet.model import ECGResNet
from ecgnet.train_config import TrainConfig

__all__ = [
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "predict_probabilities",
    "resident_data",
    "resolve_device",
    "train_model",
]

ProgressCallback = Callable[[dict[str, Any]], None]
# Asked after every epoch's validation with that epoch's history entry: a reason to stop, or None.
StopHook = Callable[[dict[str, Any]], str | None]


@dataclasses.dataclass
class TrainResult:
    model: ECGResNet
    history: list[dict[str, Any]]
    val_metrics: dict[str, Any]
    thresholds: list[float]
    steps: int
    seconds: float
    cut_by_time_limit: bool
    device: str
    stopped_early: str | None = None  # the reason ``should_stop`` gave, when it ended the run


def resident_data(config: TrainConfig, device: torch.device, *datasets: RecordDataset | WindowDataset) -> bool:
    """Whether ``datasets`` are held on ``device`` (``config.resident_data``; None: when they fit).

    They fit when they take at most a quarter of the memory the device has free (on a GPU,
    of this process's share of it), leaving the rest to the network and its activations.
    """
    if config.resident_data is not None:
        return config.resident_data
    needed = sum(d.nbytes for d in datasets)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        # A process sharing the GPU is capped at its fraction (torch.cuda.set_per_process_memory_fraction).
        fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda device: 1.0)(device)
        free = min(free, fraction * total - torch.cuda.memory_reserved(device))
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # a system that does not say: stream, as before
            return False
    return needed <= free // 4


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    if not enabled or device.type != "cuda":
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def train_model(
    arch: ArchConfig,
    train_data: WindowDataset,
    val_data: RecordDataset,
    classes: ClassSet,
    config: TrainConfig = TrainConfig(),
    *,
    progress: ProgressCallback | None = None,
    should_stop: StopHook | None = None,
) -> TrainResult:
    """Train ``arch`` on ``train_data``, validating on ``val_data`` after every epoch.

    ``should_stop`` sees each epoch's history entry (validation figures included) and may end the
    run there with a reason (early stopping decided elsewhere, e.g. by a study's rungs); it is not
    asked after the last epoch, which ends the run anyway.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = ECGResNet(arch).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    use_amp = config.amp and device.type == "cuda"
    # float16 autocast needs loss scaling; bfloat16 (where the GPU has it) does not.
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and not torch.cuda.is_bf16_supported())
    order = torch.Generator().manual_seed(config.seed)  # the order of training records, epoch after epoch
    resident = resident_data(config, device, train_data, val_data)
    if resident:
        windows = train_data.on_device(device)
    else:
        workers = config.num_workers if config.num_workers is not None else (4 if device.type == "cuda" else 0)
        loader = window_loader(train_data, batch_size=config.batch_size, num_workers=workers, generator=order,
                               pin_memory=device.type == "cuda")  # fmt: skip
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    history: list[dict[str, Any]] = []
    step, cut, stopped = 0, False, None
    val_metrics: dict[str, Any] = {}
    for epoch in range(epochs):
        model.train()
        train_data.set_epoch(epoch)
        losses = []
        for signal, metadata, target in windows.batches(train_data, config.batch_size, order) if resident else loader:
            signal = minmax_scale(signal.to(device, non_blocking=True))
            metadata = metadata.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            with _autocast(device, use_amp):
                loss = loss_fn(model(signal, metadata).float(), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            losses.append(loss.item())
            if progress:
                progress(
                    {
                        "event": "step",
                        "epoch": epoch,
                        "step": step,
                        "total_steps": total_steps,
                        "loss": losses[-1],
                    }
                )
            cut = config.max_seconds is not None and time.perf_counter() - start > config.max_seconds
            if step >= total_steps or cut:
                break
        val_metrics = evaluate(model, val_data, classes, config, device=device)
        entry = {"epoch": epoch + 1, "steps": step, "train_loss": float(np.mean(losses)), "seconds": 0.0}
        entry.update({k: val_metrics[k] for k in HEADLINE_METRICS})
        entry["seconds"] = round(time.perf_counter() - start, 3)
        history.append(entry)
        if progress:
            progress({"event": "epoch", **entry})
        if step >= total_steps or cut:
            break
        stopped = should_stop(entry) if should_stop else None
        if stopped:
            break

    thresholds = [config.threshold] * len(classes)
    if config.tune_thresholds:
        labels, probabilities = _labels_and_probabilities(model, val_data, config, device)
        thresholds = tune_thresholds(labels, probabilities, default=config.threshold)
        val_metrics = classification_metrics(labels, probabilities, classes, np.asarray(thresholds))
    return TrainResult(
        model=model.cpu(),
        history=history,
        val_metrics=val_metrics,
        thresholds=thresholds,
        steps=step,
        seconds=time.perf_counter() - start,
        cut_by_time_limit=cut,
        device=str(device),
        stopped_early=stopped,
    )


@torch.no_grad()
def predict_probabilities(
    model: ECGResNet,
    data: RecordDataset,
    *,
    device: torch.device | None = None,
    max_samples: int = 4_000_000,
    resident: bool = False,
) -> np.ndarray:
    """Sigmoid outputs for every record of ``data``, in its order.

    Records of similar length are batched together, padded to the longest; the network sees
    each record's own length (``ECGResNet.forward``), so results equal a one-by-one evaluation
    (to float rounding). ``resident``: the batches are kept on the device for the next call
    (see ``RecordDataset.batches``).
    """
    device = device or next(model.parameters()).device
    model.eval()
    out = np.zeros((len(data), model.config.num_classes), dtype=np.float32)
    for batch, signal, metadata, lengths in data.batches(max_samples, device if resident else None):
        lengths = lengths.to(device)
        logits = model(minmax_scale(signal.to(device), lengths), metadata.to(device), lengths)
        out[batch] = torch.sigmoid(logits.float()).cpu().numpy()
    return out


def _labels_and_probabilities(
    model: ECGResNet, data: RecordDataset, config: TrainConfig, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    probabilities = predict_probabilities(model, data, device=device, max_samples=config.eval_max_samples,
                                          resident=resident_data(config, device, data))  # fmt: skip
    return data.targets.numpy().astype(bool), probabilities


def evaluate(
    model: ECGResNet,
    data: RecordDataset,
    classes: ClassSet,
    config: TrainConfig = TrainConfig(),
    *,
    device: torch.device | None = None,
    thresholds: list[float] | None = None,
) -> dict[str, Any]:
    """All metrics of ``model`` on whole records of ``data``."""
    device = device or next(model.parameters()).device
    labels, probabilities = _labels_and_probabilities(model, data, config, device)
    return classification_metrics(
        labels, probabilities, classes, np.asarray(thresholds if thresholds is not None else config.threshold)
    )
