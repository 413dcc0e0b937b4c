"""ecgnet: 12-lead ECG data, the configurable ECG ResNet, training, metrics and export.

This package stands alone: it never imports the search service (``ecgsearch``) or Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ArchConfig",
    "ArchConfigError",
    "ECGResNet",
    "SizeReport",
    "count_macs",
    "describe_size",
    "model_size_mb",
    "thesis_config",
    "thesis_experiment",
    "thesis_experiments",
]

__version__ = "0.1.0"

# Importing torch takes seconds: the names below load on first use, so that reading data
# (`ecgnet.data`) or an architecture config (`ecgnet.arch`) does not pay for it.
_HOMES = {
    "ArchConfig": "ecgnet.arch",
    "ArchConfigError": "ecgnet.arch",
    "ECGResNet": "ecgnet.model",
    "SizeReport": "ecgnet.size",
    "count_macs": "ecgnet.size",
    "describe_size": "ecgnet.size",
    "model_size_mb": "ecgnet.size",
    "thesis_config": "ecgnet.thesis",
    "thesis_experiment": "ecgnet.thesis",
    "thesis_experiments": "ecgnet.thesis",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'ecgnet' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
