"""A small drum synthesiser: kick, snare, clap, hats and rim, placed on a loop sample-exact.

Hits are written circularly: a tail that runs past the loop's end continues at its start, so
the pattern loops without a gap or a click.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
from scipy import signal

from riffbridge.errors import ConfigError
from riffbridge.loops.patterns import INSTRUMENTS, Pattern

RATE = 44100


def _env(n: int, decay_s: float, rate: int) -> np.ndarray:
    t = np.arange(n) / rate
    attack = np.minimum(1.0, t / 0.001)  # 1 ms attack: no click at the onset
    return attack * np.exp(-t / decay_s)


@functools.lru_cache(maxsize=64)
def voice(name: str, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """One hit of ``name`` at full velocity, float64 mono."""
    rng = np.random.default_rng(zlib.crc32(f"{name}:{seed}".encode()))
    if name == "kick":
        n = int(0.45 * rate)
        t = np.arange(n) / rate
        freq = 48.0 + 110.0 * np.exp(-t / 0.035)
        phase = 2 * np.pi * np.cumsum(freq) / rate
        hit = np.sin(phase) * _env(n, 0.16, rate)
        hit += 0.3 * rng.standard_normal(n) * _env(n, 0.004, rate)
    elif name == "snare":
        n = int(0.3 * rate)
        t = np.arange(n) / rate
        noise = signal.sosfilt(signal.butter(2, [1500, 9000], "bandpass", fs=rate, output="sos"),
                               rng.standard_normal(n))
        hit = 0.8 * noise * _env(n, 0.07, rate)
        hit += 0.6 * np.sin(2 * np.pi * 185.0 * t) * _env(n, 0.05, rate)
    elif name == "clap":
        n = int(0.3 * rate)
        noise = signal.sosfilt(signal.butter(2, [900, 5000], "bandpass", fs=rate, output="sos"),
                               rng.standard_normal(n))
        env = np.zeros(n)
        for offset in (0.0, 0.011, 0.022):
            k = int(offset * rate)
            env[k:] += _env(n - k, 0.008, rate)
        env[int(0.033 * rate):] += _env(n - int(0.033 * rate), 0.09, rate)
        hit = noise * env
    elif name in ("hat", "openhat"):
        n = int((0.35 if name == "openhat" else 0.08) * rate)
        noise = signal.sosfilt(signal.butter(4, 7000, "highpass", fs=rate, output="sos"),
                               rng.standard_normal(n))
        hit = 0.5 * noise * _env(n, 0.12 if name == "openhat" else 0.018, rate)
    elif name == "rim":
        n = int(0.08 * rate)
        t = np.arange(n) / rate
        hit = (np.sin(2 * np.pi * 820 * t) + 0.5 * np.sin(2 * np.pi * 1650 * t)) \
            * _env(n, 0.012, rate) * 0.5
    else:
        raise ConfigError(f"no drum voice {name!r}; use one of {', '.join(INSTRUMENTS)}")
    peak = float(np.abs(hit).max())
    return hit / peak if peak > 0 else hit


def render_pattern(pattern: Pattern, num_samples: int, bars: int,
                   sample_rate: int = RATE) -> np.ndarray:
    """The pattern played for ``bars`` bars in exactly ``num_samples`` samples, float32 (1, n).

    Step k of bar b starts at round((b + k / steps) * num_samples / bars): sample-exact on the
    grid, whatever the tempo.
    """
    out = np.zeros(num_samples, dtype=np.float64)
    bar_len = num_samples / bars
    for name, velocities in pattern.steps.items():
        steps = len(velocities)
        hit = voice(name, sample_rate)
        for bar in range(bars):
            for k, vel in enumerate(velocities):
                if vel <= 0:
                    continue
                start = round((bar + k / steps) * bar_len) % num_samples
                _add_wrapped(out, hit * vel, start)
    peak = float(np.abs(out).max())
    if peak > 0:
        out *= 0.9 / peak
    return out.astype(np.float32)[None, :]


def _add_wrapped(out: np.ndarray, hit: np.ndarray, start: int) -> None:
    n = len(out)
    pos = 0
    while pos < len(hit):
        at = (start + pos) % n
        take = min(len(hit) - pos, n - at)
        out[at:at + take] += hit[pos:pos + take]
        pos += take
