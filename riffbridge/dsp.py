"""Small signal-processing helpers shared by the spectrogram core, loops and outputs.

scipy.signal is imported inside the functions that use it: importing it costs about a second
(most of ``riffbridge convert IMAGE WAV``'s imports before this), and most callers (an image at
the spectrogram's own rate, audio read at its own rate) never resample.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from riffbridge.errors import ConfigError


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample along the last axis with a polyphase filter (Kaiser window, scipy).

    ``audio`` has shape (..., samples); the result has round(samples * to_rate / from_rate)
    samples. Same rate returns the input unchanged.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ConfigError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate:
        return audio
    from scipy import signal

    g = gcd(int(from_rate), int(to_rate))
    up, down = to_rate // g, from_rate // g
    out = signal.resample_poly(audio, up, down, axis=-1, window=("kaiser", 8.6))
    return np.ascontiguousarray(out, dtype=np.float32)


def resample_periodic(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Resample a periodic signal (a loop) to exactly ``num_samples`` along the last axis.

    Fourier resampling treats the input as one period, so the result stays seamless: the end
    still continues into the start. Used to land a loop on an exact sample count.
    """
    if num_samples <= 0:
        raise ConfigError(f"num_samples must be positive, got {num_samples}")
    if audio.shape[-1] == num_samples:
        return audio
    from scipy import signal

    out = signal.resample(audio, num_samples, axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)
