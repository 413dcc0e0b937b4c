"""ecgnet: 12-lead ECG data, the configurable ECG ResNet, training, metrics and export.

This package stands alone: it never imports the search service (``ecgsearch``) or Optuna.
"""

from ecgnet.arch import ArchConfig, ArchConfigError
from ecgnet.model import ECGResNet
from ecgnet.size import SizeReport, count_macs, describe_size, model_size_mb
from ecgnet.thesis import thesis_config, thesis_experiment, thesis_experiments

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
