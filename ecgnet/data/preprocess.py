"""The thesis's preprocessing: zero-phase Butterworth band-pass, cubic-spline resampling.

>>> out = preprocess(signal_mv, fs=500.0)    # (12, n) mV at 500 Hz -> (12, n/2) at 250 Hz
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import butter, sosfiltfilt

__all__ = ["DEFAULT_PREPROCESS", "PreprocessConfig", "bandpass", "preprocess", "resample_cubic"]


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing parameters; stored in the cache and in every exported model.json."""

    target_fs: float = 250.0
    low_hz: float = 0.5
    high_hz: float = 50.0
    filter_order: int = 2

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


DEFAULT_PREPROCESS = PreprocessConfig()


@functools.lru_cache(maxsize=32)
def _butter_sos(order: int, low: float, high: float, fs: float) -> np.ndarray:
    return butter(order, [low, high], btype="bandpass", fs=fs, output="sos")


def bandpass(signal: np.ndarray, fs: float, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """Zero-phase (forward-backward) Butterworth band-pass along the last axis."""
    if config.high_hz >= fs / 2:
        raise ValueError(f"sampling rate {fs} Hz is too low for a {config.high_hz} Hz band edge")
    sos = _butter_sos(config.filter_order, config.low_hz, config.high_hz, fs)
    # sosfiltfilt pads by 3 x (2 x sections) samples; shorter records cannot be filtered.
    return sosfiltfilt(sos, signal, axis=-1)


def resample_cubic(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Cubic-spline resampling along the last axis, at times k / target_fs within the record.

    When ``fs`` is an integer multiple of ``target_fs`` every new sample time is a knot of the
    spline, where a cubic interpolant returns the data itself: the result is then taken by
    slicing, which is exactly equal and far cheaper.
    """
    n = signal.shape[-1]
    if fs == target_fs:
        return signal
    ratio = fs / target_fs
    if ratio == int(ratio):
        return signal[..., :: int(ratio)]
    n_out = int(np.floor((n - 1) * target_fs / fs)) + 1
    times = np.arange(n) / fs
    return CubicSpline(times, signal, axis=-1)(np.arange(n_out) / target_fs)


def preprocess(signal: np.ndarray, fs: float, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """Band-pass then resample a (leads, samples) signal; returns float32 at ``config.target_fs``."""
    filtered = bandpass(np.asarray(signal, dtype=np.float64), fs, config)
    return resample_cubic(filtered, fs, config.target_fs).astype(np.float32)
