"""The seam: how a loop sounds where its end runs into its start, and a last-resort fix.

:func:`measure_seam` computes the same two figures as ``shared/tools/loop_metrics.py``:
``seam_ratio``, the spectral flux across the wrap point divided by the largest flux inside the
loop (<= 1: the seam is no more abrupt than the loop's own strongest transient), and
``seam_jump``, |first - last sample| over the median sample-to-sample step.

:func:`crossfade_columns` is the last resort when a circular reconstruction still has an abrupt
seam (material whose end and start differ, such as a clip squeezed into N bars): it blends the
spectrogram's last columns toward its first, so the spectrum glides across the wrap; the
circular reconstruction then keeps the waveform continuous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from riffbridge.errors import ConfigError

FRAME = 1024
HOP = 256
BANDS = 24


@dataclass(frozen=True)
class SeamFigures:
    seam_ratio: float
    seam_jump: float

    def as_dict(self) -> dict[str, float]:
        return {"seam_ratio": round(self.seam_ratio, 3), "seam_jump": round(self.seam_jump, 2)}


def measure_seam(audio: np.ndarray, sample_rate: int) -> SeamFigures:
    """Seam figures of (channels, samples) loop audio, mixed to mono and peak-normalised."""
    data = np.asarray(audio, dtype=np.float64)
    x = data.mean(axis=0) if data.ndim == 2 else data
    n = len(x)
    if n < 4 * FRAME:
        raise ConfigError(f"a loop needs at least {4 * FRAME} samples to measure, got {n}")
    x = x / (np.abs(x).max() or 1.0)
    looped = np.concatenate([x, x])
    starts = np.arange(0, len(looped) - FRAME, HOP)
    frames = np.lib.stride_tricks.sliding_window_view(looped, FRAME)[starts]
    mags = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1))
    freqs = np.fft.rfftfreq(FRAME, 1.0 / sample_rate)
    edges = np.geomspace(30.0, min(16000.0, sample_rate / 2), BANDS + 1)
    band = np.digitize(freqs, edges) - 1
    power = mags ** 2
    energy = np.stack([power[:, band == b].sum(axis=1) for b in range(BANDS)], axis=1)
    flux = np.maximum(0.0, np.diff(np.log10(energy + 1e-10), axis=0)).sum(axis=1)
    centers = starts[1:] + FRAME // 2
    near = np.abs(centers - n) < FRAME
    inside = (centers > FRAME) & (centers < n - FRAME)
    ratio = float(flux[near].max() / max(flux[inside].max(), 1e-12))
    steps = np.abs(np.diff(x))
    jump = float(abs(x[0] - x[-1]) / max(float(np.median(steps)), 1e-12))
    return SeamFigures(ratio, jump)


def crossfade_columns(mel: np.ndarray, columns: int) -> np.ndarray:
    """Blend the last ``columns`` time columns of (..., time) magnitudes toward the first
    column with a raised-cosine ramp, so the end's spectrum arrives at the start's."""
    data = np.array(mel, dtype=np.float32, copy=True)
    frames = data.shape[-1]
    if not 0 < columns < frames:
        raise ConfigError(f"crossfade columns must be in [1, {frames - 1}], got {columns}")
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, columns + 1) / (columns + 1))
    target = data[..., :1]
    tail = data[..., frames - columns:]
    data[..., frames - columns:] = tail * (1.0 - ramp) + target * ramp
    return data
