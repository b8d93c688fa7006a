"""Loop shaping: a rendered spectrogram image (or any audio) -> a finished :class:`Loop`.

The steps, in order: the image's columns are taken as one period of the loop and resampled on
the time axis to the loop's frames (tempo without pitch change); the audio is rebuilt circularly
(the end's phase continues into the start) at exactly round(bars * beats * 60 / bpm * 44100)
samples; the seam is measured, and only if it is still more abrupt than the loop's own strongest
transient is the spectrogram's tail crossfaded toward its head (recorded in the metadata); the
level is normalised to the target loudness under a true-peak ceiling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from riffbridge.dsp import resample_periodic
from riffbridge.errors import ConfigError
from riffbridge.loops.loudness import normalise
from riffbridge.loops.seam import SeamFigures, crossfade_columns, measure_seam
from riffbridge.loops.tempo import check_tempo, cut, loop_frames, loop_samples, resample_frames
from riffbridge.loops.types import Loop
from riffbridge.spectrogram import SpectrogramConverter, SpectrogramParams, image_to_mel
from riffbridge.spectrogram.converter import Quality

logger = logging.getLogger(__name__)

# The seam counts as a discontinuity only above this seam_ratio. A hit on the downbeat sits on
# the seam of any loop that starts on the beat; an exactly periodic synthesised drum loop scores
# 1.00-1.24 there (the flux frames fall differently on that hit than on the same hit inside), so
# values up to 1.25 are the metric's own spread, not a click. See docs/benchmarks.md.
SEAM_LIMIT = 1.25
RETRY_ITERS = 200  # first remedy: more Griffin-Lim iterations make the phase consistent
CROSSFADE_STEPS = (8, 16, 32)  # columns (10 ms each) tried in turn, last resort only


@dataclass(frozen=True)
class ShapeSettings:
    """How a loop is shaped. ``seam``: 'auto' (crossfade only if the circular seam is abrupt),
    'circular' (never crossfade), 'plain' (linear rebuild and a plain cut, for comparison)."""

    quality: Quality = "fast"
    iters: int | None = None  # Griffin-Lim iterations; None: the quality's own count
    target_lufs: float = -14.0
    ceiling_dbtp: float = -1.0
    seam: str = "auto"
    seam_limit: float = SEAM_LIMIT
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.seam not in ("auto", "circular", "plain"):
            raise ConfigError(f"seam must be 'auto', 'circular' or 'plain', got {self.seam!r}")


def mel_to_loop_audio(mel: np.ndarray, params: SpectrogramParams, num_samples: int, *,
                      quality: Quality = "fast", iters: int | None = None,
                      circular: bool = True, device: str = "cpu") -> np.ndarray:
    """Mel magnitudes of one period -> audio of exactly ``num_samples`` samples."""
    converter = SpectrogramConverter(params, device)
    if circular:
        # Griffin-Lim's phase-locked start accumulates phase from column 0, so it cannot meet
        # itself where the period wraps, and what is left of that mismatch after the iterations
        # sits at the start. Rebuild from the quietest column instead and turn the audio back:
        # the leftover lands where there is least to hear, and the loop still starts on beat.
        data = np.asarray(mel, dtype=np.float32)
        quiet = int(np.argmin(data.sum(axis=(0, 1))))
        audio = converter.mel_to_audio(np.roll(data, -quiet, axis=-1), quality=quality,
                                       iters=iters, circular=True)
        audio = np.roll(audio, quiet * params.hop_length, axis=-1)
        return resample_periodic(audio, num_samples)
    audio = converter.mel_to_audio(mel, quality=quality, iters=iters, circular=False)
    return cut(audio, num_samples)


def shape_mel(mel: np.ndarray, params: SpectrogramParams, bpm: float, bars: int,
              beats_per_bar: int = 4, settings: ShapeSettings | None = None,
              metadata: Mapping[str, Any] | None = None) -> Loop:
    """Mel magnitudes whose columns span one period -> a finished loop."""
    settings = settings or ShapeSettings()
    check_tempo(bpm, bars, beats_per_bar)
    started = time.perf_counter()
    samples = loop_samples(bpm, bars, beats_per_bar, params.sample_rate)
    frames = loop_frames(bpm, bars, beats_per_bar, params.hop_length)
    circular = settings.seam != "plain"
    period = resample_frames(mel, frames, circular=circular)
    audio = mel_to_loop_audio(period, params, samples, quality=settings.quality,
                              iters=settings.iters, circular=circular, device=settings.device)
    seam = measure_seam(audio, params.sample_rate)
    crossfade, retried = 0, False
    if settings.seam == "auto" and seam.seam_ratio > settings.seam_limit:
        seam, crossfade, retried, audio = _mend_seam(period, params, samples, settings,
                                                     (seam, audio))
    audio, level = normalise(audio, params.sample_rate, settings.target_lufs,
                             settings.ceiling_dbtp)
    seam = measure_seam(audio, params.sample_rate)  # the figures of the audio handed over
    meta: dict[str, Any] = dict(metadata or {})
    meta.update({
        "bpm": bpm, "bars": bars, "beats_per_bar": beats_per_bar,
        "samples": samples, "frames": frames, "source_columns": int(mel.shape[-1]),
        "sample_rate": params.sample_rate, "quality": settings.quality,
        "seam": {"method": ("plain" if not circular else
                            "circular+crossfade" if crossfade else
                            "circular+retry" if retried else "circular"),
                 "crossfade_columns": crossfade, **seam.as_dict()},
        "level": level.as_dict(),
        "shape_seconds": round(time.perf_counter() - started, 3),
    })
    return Loop(audio, params.sample_rate, bpm, bars, beats_per_bar, meta)


def _mend_seam(period: np.ndarray, params: SpectrogramParams, samples: int,
               settings: ShapeSettings, first: tuple[SeamFigures, np.ndarray]
               ) -> tuple[SeamFigures, int, bool, np.ndarray]:
    """An abrupt circular seam: retry with more iterations, then (last resort) crossfade the
    spectrogram's tail toward its head. Returns the best (figures, columns, retried, audio)."""
    frames = period.shape[-1]
    best_seam, best_audio = first
    columns, retried = 0, False
    limit = settings.seam_limit
    if (settings.iters or 0) < RETRY_ITERS:
        audio = mel_to_loop_audio(period, params, samples, quality=settings.quality,
                                  iters=RETRY_ITERS, device=settings.device)
        figures = measure_seam(audio, params.sample_rate)
        if figures.seam_ratio < best_seam.seam_ratio:
            best_seam, best_audio, retried = figures, audio, True
    for cols in CROSSFADE_STEPS:
        if best_seam.seam_ratio <= limit or cols >= frames // 4:
            break
        audio = mel_to_loop_audio(crossfade_columns(period, cols), params, samples,
                                  quality=settings.quality, iters=settings.iters,
                                  device=settings.device)
        figures = measure_seam(audio, params.sample_rate)
        if figures.seam_ratio < best_seam.seam_ratio:
            best_seam, best_audio, columns = figures, audio, cols
    if columns:
        logger.info("seam crossfade of %d columns used (last resort): seam_ratio %.2f",
                    columns, best_seam.seam_ratio)
    return best_seam, columns, retried, best_audio


def shape_image(image: Image.Image, bpm: float, bars: int, beats_per_bar: int = 4,
                settings: ShapeSettings | None = None,
                metadata: Mapping[str, Any] | None = None) -> Loop:
    """A rendered spectrogram image (its width covering one period) -> a finished loop."""
    mel, params = image_to_mel(image)
    return shape_mel(mel, params, bpm, bars, beats_per_bar, settings, metadata)


def loop_from_audio(audio: np.ndarray, sample_rate: int, bpm: float, bars: int,
                    beats_per_bar: int = 4, settings: ShapeSettings | None = None,
                    metadata: Mapping[str, Any] | None = None,
                    params: SpectrogramParams | None = None) -> Loop:
    """Any audio (a whole clip) squeezed or stretched to ``bars`` bars at ``bpm`` as a loop:
    audio -> spectrogram -> time-resampled to the loop -> circular rebuild -> level."""
    params = params or SpectrogramParams()
    mel = SpectrogramConverter(params, "cpu").audio_to_mel(audio, sample_rate).numpy()
    return shape_mel(mel, params, bpm, bars, beats_per_bar, settings, metadata)
