"""Exact loop length: bars at a tempo -> samples, frames and render width; time resampling.

A loop of ``bars`` bars at ``bpm`` is exactly round(bars * beats_per_bar * 60 / bpm * rate)
samples. Its spectrogram has F = round(samples / hop) frames (10 ms each). The renderer works on
widths that are a multiple of 8 columns, so a render image is W = ceil(F / 8) * 8 columns wide
and *covers* one period of the loop: the loop is stretched over all W columns (never padded with
silence or repeated columns, which would break horizontal tiling). Loop shaping resamples the
W columns back to F frames on the time axis (tempo without pitch change), reconstructs F * hop
samples circularly and lands them on the exact sample count as one period.
"""

from __future__ import annotations

import math

import numpy as np

from riffbridge.errors import ConfigError
from riffbridge.params import BY_NAME

SAMPLE_RATE = 44100
HOP = 441  # 10 ms at 44.1 kHz, the Riffusion step
WIDTH_MULTIPLE = 8
# The ranges of the parameter table: a loop the engine may be asked for is a loop this makes.
BPM_RANGE = (float(BY_NAME["bpm"].minimum or 0), float(BY_NAME["bpm"].maximum or 0))
BARS_RANGE = (int(BY_NAME["bars"].minimum or 0), int(BY_NAME["bars"].maximum or 0))
BEATS_RANGE = (int(BY_NAME["beats_per_bar"].minimum or 0),
               int(BY_NAME["beats_per_bar"].maximum or 0))


def check_tempo(bpm: float, bars: int, beats_per_bar: int = 4) -> None:
    """Raise ConfigError unless bpm, bars and beats_per_bar are in the table's ranges."""
    if not (isinstance(bpm, int | float) and math.isfinite(bpm)
            and BPM_RANGE[0] <= bpm <= BPM_RANGE[1]):
        raise ConfigError(f"bpm must be in [{BPM_RANGE[0]:g}, {BPM_RANGE[1]:g}], got {bpm}")
    if not (isinstance(bars, int) and BARS_RANGE[0] <= bars <= BARS_RANGE[1]):
        raise ConfigError(f"bars must be a whole number in [{BARS_RANGE[0]}, {BARS_RANGE[1]}], "
                          f"got {bars}")
    if not (isinstance(beats_per_bar, int) and BEATS_RANGE[0] <= beats_per_bar <= BEATS_RANGE[1]):
        raise ConfigError(f"beats per bar must be a whole number in [{BEATS_RANGE[0]}, "
                          f"{BEATS_RANGE[1]}], got {beats_per_bar}")


def loop_samples(bpm: float, bars: int, beats_per_bar: int = 4,
                 sample_rate: int = SAMPLE_RATE) -> int:
    """Exact length of the loop in samples: round(bars * beats_per_bar * 60 / bpm * rate)."""
    check_tempo(bpm, bars, beats_per_bar)
    return round(bars * beats_per_bar * 60.0 / bpm * sample_rate)


def loop_frames(bpm: float, bars: int, beats_per_bar: int = 4, hop: int = HOP) -> int:
    """Spectrogram frames (10 ms columns) for one period of the loop, at least one."""
    return max(1, round(loop_samples(bpm, bars, beats_per_bar) / hop))


def render_width(frames: int, multiple: int = WIDTH_MULTIPLE) -> int:
    """The render image width: ``frames`` rounded up to a multiple of 8 columns."""
    if frames <= 0:
        raise ConfigError(f"frames must be positive, got {frames}")
    return -(-frames // multiple) * multiple


def resample_frames(mel: np.ndarray, frames: int, *, circular: bool = True) -> np.ndarray:
    """Resample (..., time) magnitudes to ``frames`` columns on the time axis.

    Pitch stays (each column keeps its spectrum); only the time grid changes. ``circular``
    treats the input as one period of a loop: column positions are t * T / frames and the
    interpolation wraps from the last column into the first. Otherwise the first and last
    columns map onto each other's ends (an open clip). When shrinking, each output column is the
    mean of the input it covers (box filter) so short hits are not skipped.
    """
    data = np.asarray(mel, dtype=np.float32)
    if frames <= 0:
        raise ConfigError(f"frames must be positive, got {frames}")
    src = data.shape[-1]
    if src == 0:
        raise ConfigError("cannot resample an empty spectrogram (0 columns)")
    if src == frames:
        return data.copy()
    ratio = src / frames
    if ratio > 1.0:
        data = _box(data, ratio, circular)
    if circular:
        pos = np.arange(frames) * ratio
        lo = np.floor(pos).astype(np.int64)
        frac = (pos - lo).astype(np.float32)
        hi = (lo + 1) % src
        lo %= src
    else:
        pos = np.linspace(0.0, src - 1.0, frames) if frames > 1 else np.zeros(1)
        lo = np.clip(np.floor(pos).astype(np.int64), 0, src - 1)
        frac = (pos - lo).astype(np.float32)
        hi = np.minimum(lo + 1, src - 1)
    out = data[..., lo] * (1.0 - frac) + data[..., hi] * frac
    return np.ascontiguousarray(out, dtype=np.float32)


def _box(data: np.ndarray, width: float, circular: bool) -> np.ndarray:
    """Moving mean over about ``width`` columns, centred (wrapping when circular)."""
    k = round(width)
    if k < 2:
        return data
    left = (k - 1) // 2
    right = k - 1 - left
    if circular:
        padded = np.concatenate([data[..., -left:] if left else data[..., :0], data,
                                 data[..., :right]], axis=-1)
    else:
        pad = [(0, 0)] * (data.ndim - 1) + [(left, right)]
        padded = np.pad(data, pad, mode="edge")
    csum = np.cumsum(padded, axis=-1, dtype=np.float64)
    csum = np.concatenate([np.zeros((*data.shape[:-1], 1)), csum], axis=-1)
    return ((csum[..., k:] - csum[..., :-k]) / k).astype(np.float32)


def cut(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Cut or zero-pad (channels, samples) audio to exactly ``num_samples``."""
    if num_samples <= 0:
        raise ConfigError(f"num_samples must be positive, got {num_samples}")
    data = np.asarray(audio, dtype=np.float32)
    if data.shape[-1] >= num_samples:
        return np.ascontiguousarray(data[..., :num_samples])
    pad = [(0, 0)] * (data.ndim - 1) + [(0, num_samples - data.shape[-1])]
    return np.pad(data, pad)
