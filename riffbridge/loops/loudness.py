"""Loudness: ITU-R BS.1770-4 integrated loudness (K-weighting, 400 ms blocks, gating), true
peak by 4x oversampling, and normalisation to a target with a true-peak ceiling.

Loops are matched to one loudness (default -14 LUFS), not each to its own peak, so consecutive
clips do not jump in level. Where the gain would push the true peak over the ceiling, a linked
look-ahead limiter (computed offline, wrapping round the loop) takes the peaks down, and the
gain is re-solved so the loudness still lands on the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from riffbridge.errors import ConfigError

ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
BLOCK_S = 0.4
STEP_S = 0.1
SILENCE = -math.inf


def k_weighting(sample_rate: int) -> np.ndarray:
    """The two K-weighting biquads (high shelf, then RLB high-pass) as second-order sections,
    designed for any rate (at 48 kHz these are BS.1770's tabled coefficients)."""
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0,
             (vh - vb * k / q + k * k) / a0, 1.0, 2.0 * (k * k - 1.0) / a0,
             (1.0 - k / q + k * k) / a0]
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass])


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of (channels, samples) audio; -inf for silence.

    Channels weigh 1 each (mono, or left/right of stereo). Audio shorter than one 400 ms block
    is measured as one block.
    """
    data = np.asarray(audio, dtype=np.float64)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] == 0:
        raise ConfigError(f"audio must be (channels, samples) with samples, got {data.shape}")
    weighted = signal.sosfilt(k_weighting(sample_rate), data, axis=-1)
    block = round(BLOCK_S * sample_rate)
    step = round(STEP_S * sample_rate)
    n = weighted.shape[1]
    if n <= block:
        starts = np.array([0])
        block = n
    else:
        starts = np.arange(0, n - block + 1, step)
    csum = np.concatenate([np.zeros((data.shape[0], 1)), np.cumsum(weighted ** 2, axis=1)],
                          axis=1)
    z = (csum[:, starts + block] - csum[:, starts]) / block  # (channels, blocks)
    power = z.sum(axis=0)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    above = block_lufs > ABSOLUTE_GATE
    if not above.any():
        return SILENCE
    relative = -0.691 + 10.0 * np.log10(power[above].mean()) + RELATIVE_GATE
    gated = above & (block_lufs > relative)
    return float(-0.691 + 10.0 * np.log10(power[gated].mean()))


def _oversampled_abs(audio: np.ndarray, circular: bool) -> np.ndarray:
    """|x| at 4x oversampling, folded back to (channels, samples, 4) per original sample."""
    data = np.asarray(audio, dtype=np.float64)
    n = data.shape[1]
    margin = min(n, 64)
    if circular:
        ext = np.concatenate([data[:, -margin:], data, data[:, :margin]], axis=1)
    else:
        ext = np.pad(data, ((0, 0), (margin, margin)))
    up = signal.resample_poly(ext, 4, 1, axis=1, window=("kaiser", 8.6))
    up = up[:, 4 * margin:4 * (margin + n)]
    return np.abs(up).reshape(data.shape[0], n, 4)


def true_peak(audio: np.ndarray, *, circular: bool = True) -> float:
    """True peak in dBTP (4x oversampled, BS.1770-4 Annex 2); ``circular`` treats the audio as a
    loop, so the wrap from end to start is measured as it will be heard."""
    peak = float(_oversampled_abs(audio, circular).max())
    peak = max(peak, float(np.abs(audio).max()))
    return 20.0 * math.log10(peak) if peak > 0 else SILENCE


@dataclass(frozen=True)
class LevelReport:
    """What normalisation did: loudness before and after, gain, peak and limiting."""

    input_lufs: float
    output_lufs: float
    target_lufs: float
    gain_db: float
    true_peak_dbtp: float
    ceiling_dbtp: float
    limiter_max_reduction_db: float

    def as_dict(self) -> dict[str, float | None]:
        return {k: (round(v, 3) if math.isfinite(v) else None) for k, v in vars(self).items()}


def _limit(audio: np.ndarray, ceiling_db: float, sample_rate: int) -> tuple[np.ndarray, float]:
    """Linked look-ahead limiter, offline and circular: gain never exceeds what keeps every
    (oversampled) peak under the ceiling; a 5 ms minimum filter then a 5 ms mean smooth it."""
    limit = 10.0 ** (ceiling_db / 20.0) * 0.995
    peaks = _oversampled_abs(audio, True).max(axis=(0, 2))
    need = np.minimum(1.0, limit / np.maximum(peaks, 1e-12))
    if need.min() >= 1.0:
        return audio, 0.0
    width = max(3, int(0.005 * sample_rate) | 1)
    gain = ndimage.minimum_filter1d(need, width, mode="wrap")
    gain = ndimage.uniform_filter1d(gain, width, mode="wrap")
    gain = np.minimum(gain, need)
    return audio * gain[None, :], float(-20.0 * math.log10(gain.min()))


def normalise(audio: np.ndarray, sample_rate: int, target_lufs: float = -14.0,
              ceiling_dbtp: float = -1.0) -> tuple[np.ndarray, LevelReport]:
    """Bring (channels, samples) audio to ``target_lufs`` with true peaks at or below
    ``ceiling_dbtp``. Silence comes back unchanged."""
    if not -70.0 < target_lufs < 0.0:
        raise ConfigError(f"target loudness must be in (-70, 0) LUFS, got {target_lufs}")
    if not -20.0 <= ceiling_dbtp <= 0.0:
        raise ConfigError(f"true-peak ceiling must be in [-20, 0] dBTP, got {ceiling_dbtp}")
    data = np.asarray(audio, dtype=np.float64)
    measured = integrated_loudness(data, sample_rate)
    if not math.isfinite(measured):
        peak = true_peak(data)
        return data.astype(np.float32), LevelReport(measured, measured, target_lufs, 0.0, peak,
                                                    ceiling_dbtp, 0.0)
    gain_db = target_lufs - measured
    out = data
    reduction = 0.0
    for _ in range(10):
        out, reduction = _limit(data * 10.0 ** (gain_db / 20.0), ceiling_dbtp, sample_rate)
        error = target_lufs - integrated_loudness(out, sample_rate)
        if abs(error) < 0.05 or reduction == 0.0:
            break
        gain_db += error
    # A last safety scale in case the limiter could not hold the ceiling (never expected).
    peak = true_peak(out)
    if peak > ceiling_dbtp:
        out = out * 10.0 ** ((ceiling_dbtp - peak) / 20.0)
    final = integrated_loudness(out, sample_rate)
    report = LevelReport(measured, final, target_lufs, gain_db, true_peak(out), ceiling_dbtp,
                         reduction)
    return out.astype(np.float32), report
