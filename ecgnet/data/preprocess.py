"""The thesis's preprocessing: zero-phase Butterworth band-pass, cubic-spline resampling.

>>> out = preprocess(signal_mv, fs=500.0)    # (12, n) mV at 500 Hz -> (12, n/2) at 250 Hz

Two styles of the same steps (``PreprocessConfig.style``):

- ``exact``: ``sosfiltfilt`` with scipy's default odd padding, and new samples taken exactly
  at ``k / target_fs`` seconds.
- ``base-code``: what the thesis's base code computes, kept to reproduce its inputs:
  ``filtfilt`` on the (b, a) form with ``padtype="even", padlen=250``, and a cubic spline that
  maps ``linspace(0, n/fs, n)`` onto ``linspace(0, n/fs, int(n * target_fs / fs))``. Both grids
  end at ``n/fs`` although the last sample lies at ``(n-1)/fs``, so the record is stretched by up
  to one input sample. The two styles differ by up to a few mV near record ends.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

__all__ = [
    "BASE_CODE_PADLEN",
    "DEFAULT_PREPROCESS",
    "PREPROCESS_STYLES",
    "PreprocessConfig",
    "bandpass",
    "preprocess",
    "resample_base_code",
    "resample_cubic",
]

PREPROCESS_STYLES = ("exact", "base-code")
BASE_CODE_PADLEN = 250  # the base code's filtfilt padding, in samples whatever the rate


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing parameters; stored in the cache and in every exported model.json.

    A dict written before ``style`` existed (no such key) reads as the ``exact`` style, which
    is what that code computed.
    """

    target_fs: float = 250.0
    low_hz: float = 0.5
    high_hz: float = 50.0
    filter_order: int = 2
    style: str = "exact"

    def __post_init__(self) -> None:
        if self.style not in PREPROCESS_STYLES:
            raise ValueError(f"unknown preprocess style {self.style!r}; known: {', '.join(PREPROCESS_STYLES)}")

    def to_dict(self) -> dict[str, float | str]:
        return dataclasses.asdict(self)


DEFAULT_PREPROCESS = PreprocessConfig()


@functools.lru_cache(maxsize=32)
def _butter_sos(order: int, low: float, high: float, fs: float) -> np.ndarray:
    from scipy.signal import butter  # scipy.signal: half a second that a reader of caches never needs

    return butter(order, [low, high], btype="bandpass", fs=fs, output="sos")


@functools.lru_cache(maxsize=32)
def _butter_ba(order: int, low: float, high: float, fs: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import butter

    return butter(order, [low, high], btype="bandpass", fs=fs, output="ba")


def bandpass(signal: np.ndarray, fs: float, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """Zero-phase (forward-backward) Butterworth band-pass along the last axis."""
    from scipy.signal import filtfilt, sosfiltfilt

    if config.high_hz >= fs / 2:
        raise ValueError(f"sampling rate {fs} Hz is too low for a {config.high_hz} Hz band edge")
    if config.style == "base-code":
        samples = signal.shape[-1]
        if samples <= BASE_CODE_PADLEN:
            raise ValueError(
                f"{samples} samples; the base-code filter pads {BASE_CODE_PADLEN} samples and needs at least "
                f"{BASE_CODE_PADLEN + 1}"
            )
        b, a = _butter_ba(config.filter_order, config.low_hz, config.high_hz, fs)
        return filtfilt(b, a, signal, axis=-1, padtype="even", padlen=BASE_CODE_PADLEN)
    sos = _butter_sos(config.filter_order, config.low_hz, config.high_hz, fs)
    # sosfiltfilt pads by 3 x (2 x sections) samples; shorter records cannot be filtered.
    return sosfiltfilt(sos, signal, axis=-1)


def resample_cubic(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Cubic-spline resampling along the last axis, at times k / target_fs within the record.

    When ``fs`` is an integer multiple of ``target_fs`` every new sample time is a knot of the
    spline, where a cubic interpolant returns the data itself: the result is then taken by
    slicing, which is exactly equal and far cheaper.
    """
    from scipy.interpolate import CubicSpline

    n = signal.shape[-1]
    if fs == target_fs:
        return signal
    ratio = fs / target_fs
    if ratio == int(ratio):
        return signal[..., :: int(ratio)]
    n_out = int(np.floor((n - 1) * target_fs / fs)) + 1
    times = np.arange(n) / fs
    return CubicSpline(times, signal, axis=-1)(np.arange(n_out) / target_fs)


def resample_base_code(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """The base code's cubic-spline resampling along the last axis (see the module docstring).

    No slicing shortcut: at a rate that is a multiple of ``target_fs`` the stretched grid falls
    between the knots, so the spline is needed there too.
    """
    from scipy.interpolate import CubicSpline

    n = signal.shape[-1]
    duration = n / fs
    spline = CubicSpline(np.linspace(0, duration, n), signal, axis=-1)
    return spline(np.linspace(0, duration, int(n * target_fs / fs)))


def preprocess(signal: np.ndarray, fs: float, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """Band-pass then resample a (leads, samples) signal; returns float32 at ``config.target_fs``."""
    filtered = bandpass(np.asarray(signal, dtype=np.float64), fs, config)
    resample = resample_base_code if config.style == "base-code" else resample_cubic
    return resample(filtered, fs, config.target_fs).astype(np.float32)
