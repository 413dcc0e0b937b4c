"""Training settings as plain data, apart from the training code so that reading them needs no torch."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["TrainConfig"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the thesis's protocol (Table 3.1)."""

    epochs: int = 30
    max_steps: int | None = None  # when set, the budget is this many optimizer steps
    batch_size: int = 256
    learning_rate: float = 0.003
    weight_decay: float = 1e-5
    threshold: float = 0.5
    window: int = 4096
    seed: int = 0
    amp: bool = True  # mixed precision on CUDA; ignored on CPU
    num_workers: int | None = None  # loader workers; None = 0 on CPU, 4 on CUDA
    # Training and evaluation data held on the device, windows cut there; None = when they fit
    # (ecgnet.train.resident_data). How data travels, not what is computed: same batches either way.
    resident_data: bool | None = None
    max_seconds: float | None = None  # safety cap on wall-clock time
    eval_max_samples: int = 4_000_000  # records x samples per evaluation batch
    tune_thresholds: bool = False  # per-class thresholds maximising F1 on validation
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
