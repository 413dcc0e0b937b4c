"""Figures a trial knows before training: size, params, MACs, CPU latency, int8 size.

None of them depends on the weights' values, so each is measured on the untrained network,
and a limit on any of them (``--max latency_ms=5``) marks a trial infeasible before it trains.
MACs cost one pass through a zeroed CPU copy (about 0.1 s) and are always counted; the costly
ones (latency: an ONNX export and timed runs; int8 size: an export and a quantization) are
measured only when an objective or a limit names them.

**Latency across machines.** Workers on different CPUs measure different milliseconds. Each
worker measures a reference network (the thesis baseline E1) once, in its own process, and
scales its measurements by (the study's reference latency) / (its own): the study's reference
is the first measurement recorded in the study (``latency_reference``), so every trial's
``latency_ms`` is in milliseconds of the CPU that measured first. The raw figure, the CPU and
the scale are recorded beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from ecgnet.arch import ArchConfig
from ecgnet.latency import DEFAULT_LATENCY_SAMPLES, DEFAULT_RUNS, Latency, model_latency
from ecgnet.model import ECGResNet
from ecgnet.size import describe_size
from ecgnet.thesis import thesis_config

__all__ = [
    "LATENCY_REFERENCE_ATTR",
    "LatencyCalibration",
    "calibrate_latency",
    "pretraining_figures",
]

LATENCY_REFERENCE_ATTR = "latency_reference"
REFERENCE_NETWORK = "E1"


@dataclasses.dataclass(frozen=True)
class LatencyCalibration:
    """This process's latency scale: the study's reference latency over the one measured here."""

    study_ms: float
    here: Latency

    @property
    def scale(self) -> float:
        return self.study_ms / self.here.median_ms


def calibrate_latency(
    study: optuna.Study, num_classes: int, samples: int = DEFAULT_LATENCY_SAMPLES, runs: int = DEFAULT_RUNS
) -> LatencyCalibration:
    """Measure E1 here; the study keeps the first such measurement as its reference.

    Call it under the study's lock: two workers starting together then agree on one reference.
    """
    network = ECGResNet(dataclasses.replace(thesis_config(REFERENCE_NETWORK), num_classes=num_classes))
    here = model_latency(network, samples=samples, runs=runs)
    recorded = study.user_attrs.get(LATENCY_REFERENCE_ATTR)
    if recorded is None:
        recorded = {"network": REFERENCE_NETWORK, **here.to_dict()}
        study.set_user_attr(LATENCY_REFERENCE_ATTR, recorded)
    return LatencyCalibration(study_ms=float(recorded["median_ms"]), here=here)


def pretraining_figures(
    arch: ArchConfig,
    wanted: set[str],
    *,
    calibration: LatencyCalibration | None = None,
    samples: int = DEFAULT_LATENCY_SAMPLES,
    runs: int = DEFAULT_RUNS,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The figures in ``wanted`` (size_mb and params always), and what to record about how they were measured."""
    size = describe_size(arch, macs="macs" in wanted)
    figures = {"size_mb": size.size_mb, "params": float(size.params), "macs": float(size.macs or 0)}
    notes: dict[str, Any] = {}
    if "latency_ms" in wanted:
        if calibration is None:
            raise ValueError("latency_ms needs a latency calibration (calibrate_latency)")
        latency = model_latency(ECGResNet(arch), samples=samples, runs=runs)
        figures["latency_ms"] = latency.median_ms * calibration.scale
        notes["latency"] = {**latency.to_dict(), "scale": calibration.scale}
    if "int8_size_mb" in wanted:
        # onnx takes over a second to import: a worker without int8 figures never loads it.
        from ecgnet.int8 import int8_size_mb

        figures["int8_size_mb"] = int8_size_mb(ECGResNet(arch))
    return figures, notes
