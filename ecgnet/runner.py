"""One training run from a cache to scored, exportable results: the unit a search trial runs.

Validation scores are for selection; the held-out test sources are evaluated separately and
reported beside them, never used for any choice (thresholds are tuned on validation only).

    >>> config = TrainConfig(epochs=30)
    >>> data = load_data(DataSpec(cache="work/ecg.h5", test="cpsc"), config)
    >>> outcome = train_and_evaluate(thesis_config("E12"), data, config)
    >>> outcome.result.val_metrics["micro_auroc"], outcome.test_metrics["micro_auroc"]
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
from pathlib import Path
from typing import Any

from ecgnet.arch import ArchConfig
from ecgnet.data.cache_reader import ECGCache, check_cache_fits
from ecgnet.data.dataset import RecordDataset, WindowDataset
from ecgnet.data.labels import ClassSet, class_set
from ecgnet.data.splits import make_split, read_split
from ecgnet.data_spec import DataSpec
from ecgnet.export import export_model
from ecgnet.train import ProgressCallback, StopHook, TrainConfig, TrainResult, evaluate, resolve_device, train_model

__all__ = [
    "DataSpec",
    "LoadedData",
    "RunOutcome",
    "export_outcome",
    "load_data",
    "reseeded",
    "summarize_seeds",
    "train_and_evaluate",
    "train_seeds",
]


@dataclasses.dataclass
class LoadedData:
    cache: ECGCache
    classes: ClassSet
    train: WindowDataset
    val: RecordDataset
    test: RecordDataset


@dataclasses.dataclass
class RunOutcome:
    result: TrainResult
    test_metrics: dict[str, Any]
    seed: int


def load_data(spec: DataSpec, config: TrainConfig) -> LoadedData:
    """The split of ``spec``'s cache; training windows of ``config.window`` samples, crops seeded by ``config.seed``.

    A cache of another preprocessing style than ``spec`` asks for, or without its test source,
    is an ``InputError`` before anything is loaded.
    """
    check_cache_fits(spec)
    cache = ECGCache(spec.cache)
    classes = class_set(spec.class_set)
    if spec.split_dir:
        names = read_split(spec.split_dir)
    else:
        split = make_split(
            cache,
            test=spec.test,
            folds=spec.folds,
            fold=spec.fold,
            seed=spec.split_seed,
            class_set=spec.class_set,
        )
        names = {"train": split.train, "val": split.val, "test": split.test}
    labels = cache.labels(classes)
    train_names = names["train"][: spec.max_train_records] if spec.max_train_records else names["train"]
    return LoadedData(
        cache=cache,
        classes=classes,
        train=WindowDataset(cache, train_names, labels, window=config.window, seed=config.seed),
        val=RecordDataset(cache, names["val"], labels),
        test=RecordDataset(cache, names["test"], labels),
    )


def reseeded(data: LoadedData, seed: int) -> LoadedData:
    """The same split, with the training crops ``load_data`` draws for ``seed`` (no data is read again)."""
    train = copy.copy(data.train)
    train.seed = seed
    return dataclasses.replace(data, train=train)


def train_and_evaluate(
    arch: ArchConfig,
    data: LoadedData,
    config: TrainConfig,
    *,
    progress: ProgressCallback | None = None,
    should_stop: StopHook | None = None,
) -> RunOutcome:
    """Train on the training subset, select nothing on test, and score test at the end.

    ``should_stop``: see ``train_model``; a stopped run is scored like any other.
    """
    if arch.num_classes != len(data.classes):
        arch = dataclasses.replace(arch, num_classes=len(data.classes))
    result = train_model(arch, data.train, data.val, data.classes, config, progress=progress, should_stop=should_stop)
    # On the device it trained on (a GPU's test pass is a fraction of a CPU's), then back.
    device = resolve_device(config.device)
    test_metrics = evaluate(result.model.to(device), data.test, data.classes, config, thresholds=result.thresholds)
    result.model.cpu()
    return RunOutcome(result=result, test_metrics=test_metrics, seed=config.seed)


def train_seeds(
    arch: ArchConfig, spec: DataSpec, config: TrainConfig, seeds: int, *, progress: ProgressCallback | None = None
) -> tuple[list[RunOutcome], LoadedData]:
    """Train ``arch`` with seeds ``config.seed``, ``config.seed + 1``, ...; progress events carry ``seed``.

    Each seed draws its own training crops. Returns the outcomes and the data (the same split
    and classes for every seed) that exporting one of them needs.
    """
    outcomes = []
    for k in range(seeds):
        seed_config = dataclasses.replace(config, seed=config.seed + k)
        data = load_data(spec, seed_config)

        def on_progress(event: dict[str, Any], seed: int = seed_config.seed) -> None:
            if progress is not None:
                progress({**event, "seed": seed})

        outcomes.append(train_and_evaluate(arch, data, seed_config, progress=on_progress))
    return outcomes, data


def summarize_seeds(
    outcomes: list[RunOutcome], keys: tuple[str, ...] = ("micro_auroc", "macro_auroc", "micro_auprc", "macro_auprc")
) -> dict:
    """Mean and standard deviation over seeds of validation and test figures."""
    summary: dict[str, dict[str, float]] = {}
    for subset in ("val", "test"):
        for key in keys:
            values = [(o.result.val_metrics if subset == "val" else o.test_metrics)[key] for o in outcomes]
            summary[f"{subset}_{key}"] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
    return summary


def export_outcome(
    outcome: RunOutcome,
    out_dir: Path | str,
    data: LoadedData,
    spec: DataSpec,
    config: TrainConfig,
    *,
    onnx: bool = True,
    **extra: Any,
) -> Path:
    """Export a run's model with its validation and test metrics and how it was trained (``onnx``: see export_model)."""
    return export_model(
        outcome.result.model,
        out_dir,
        classes=data.classes,
        # Prediction preprocesses new records as this cache was: model.json carries its style.
        preprocess=data.cache.preprocess_config,
        metrics={"validation": outcome.result.val_metrics, "test": outcome.test_metrics},
        thresholds=outcome.result.thresholds,
        extra={
            "training": {**config.to_dict(), "steps": outcome.result.steps,
                         "seconds": outcome.result.seconds, "device": outcome.result.device,
                         "cut_by_time_limit": outcome.result.cut_by_time_limit},
            "history": outcome.result.history,
            "data": spec.to_dict(),
            **extra,
        },
        onnx=onnx,
    )  # fmt: skip
