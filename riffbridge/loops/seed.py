"""Seed images: a drum pattern, or a user's WAV stretched to N bars, as a spectrogram image of
the render width that covers exactly one period of the loop (see :mod:`riffbridge.loops.tempo`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from riffbridge.audio_io import read_audio
from riffbridge.dsp import resample_periodic
from riffbridge.loops.drums import render_pattern
from riffbridge.loops.patterns import Pattern
from riffbridge.loops.tempo import (
    SAMPLE_RATE,
    loop_frames,
    loop_samples,
    render_width,
    resample_frames,
)
from riffbridge.params import BY_NAME
from riffbridge.spectrogram import SpectrogramConverter, SpectrogramParams, mel_to_image
from riffbridge.spectrogram.mel import filterbank

CHUNK_FRAMES = 1024


@dataclass(frozen=True, eq=False)
class Seed:
    """A seed: the image for the renderer plus the audio and grid it came from."""

    image: Image.Image
    audio: np.ndarray  # (channels, loop samples) at sample_rate, one period
    sample_rate: int
    bpm: float
    bars: int
    beats_per_bar: int
    frames: int  # loop frames F (10 ms columns) of one period
    source: str  # pattern name or file name
    steps: dict[str, str] | None = None

    @property
    def width(self) -> int:
        return self.image.width

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "steps": self.steps, "bpm": self.bpm, "bars": self.bars,
                "beats_per_bar": self.beats_per_bar, "frames": self.frames,
                "width": self.width, "samples": int(self.audio.shape[-1])}


def periodic_mel(audio: np.ndarray, sample_rate: int, frames: int,
                 params: SpectrogramParams | None = None) -> np.ndarray:
    """Mel magnitudes (channels, n_mels, frames) of one period of a loop.

    The period is first resampled (Fourier, as a period) to ``frames`` hops, then analysed with
    circular framing: the frames round the wrap see the end continuing into the start. The
    resampling changes the pitch by at most half a frame over the loop (under 0.5 %, undone when
    the loop is rebuilt at the exact sample count).
    """
    params = params or SpectrogramParams()
    converter = SpectrogramConverter(params, "cpu")
    data = converter.prepare_audio(audio, sample_rate)
    hop, n_fft = params.hop_length, params.n_fft
    data = resample_periodic(data, frames * hop).astype(np.float32)
    half = n_fft // 2
    reps = -(-half // data.shape[1])
    tiled = np.tile(data, (1, 2 * reps + 1))
    start = reps * data.shape[1] - half
    padded = torch.from_numpy(np.ascontiguousarray(tiled[:, start:start + frames * hop + n_fft]))
    win = torch.hann_window(params.win_length, periodic=True)
    left = (n_fft - params.win_length) // 2
    win = torch.nn.functional.pad(win, (left, n_fft - params.win_length - left))
    fb = filterbank(params, "cpu")
    out = []
    for a in range(0, frames, CHUNK_FRAMES):
        b = min(frames, a + CHUNK_FRAMES)
        seg = padded[:, a * hop:(b - 1) * hop + n_fft].unfold(-1, n_fft, hop)
        mag = torch.fft.rfft(seg * win, dim=-1).abs()
        out.append(torch.einsum("ctf,fm->cmt", mag, fb))
    return torch.cat(out, dim=-1).numpy().astype(np.float32)


def _image(mel_period: np.ndarray, params: SpectrogramParams) -> Image.Image:
    width = render_width(mel_period.shape[-1])
    return mel_to_image(resample_frames(mel_period, width, circular=True), params)


def pattern_seed(pattern: Pattern, bpm: float, bars: int, beats_per_bar: int = 4,
                 params: SpectrogramParams | None = None) -> Seed:
    """Synthesise ``pattern`` for ``bars`` bars at ``bpm`` and make its seed image."""
    params = params or SpectrogramParams()
    samples = loop_samples(bpm, bars, beats_per_bar, SAMPLE_RATE)
    frames = loop_frames(bpm, bars, beats_per_bar, params.hop_length)
    audio = render_pattern(pattern, samples, bars, SAMPLE_RATE)
    mel = periodic_mel(audio, SAMPLE_RATE, frames, params)
    return Seed(_image(mel, params), audio, SAMPLE_RATE, bpm, bars, beats_per_bar, frames,
                pattern.name, pattern.describe())


DEFAULT_PATTERN: str = BY_NAME["pattern"].default


def default_seed(bpm: float, bars: int, beats_per_bar: int = 4,
                 pattern: str = DEFAULT_PATTERN) -> Seed:
    """The seed the engine uses unless told otherwise: a named groove at the tempo."""
    from riffbridge.loops.patterns import get_pattern

    return pattern_seed(get_pattern(pattern), bpm, bars, beats_per_bar)


def audio_seed(audio: np.ndarray, sample_rate: int, bpm: float, bars: int,
               beats_per_bar: int = 4, *, source: str = "audio",
               params: SpectrogramParams | None = None) -> Seed:
    """Stretch any audio (a whole clip) to ``bars`` bars at ``bpm`` as a seed.

    The clip's spectrogram is resampled on its time axis (tempo changes, pitch does not) to the
    loop's frames; the seed audio is that spectrogram rebuilt circularly at the exact length.
    """
    from riffbridge.loops.shape import mel_to_loop_audio

    params = params or SpectrogramParams()
    frames = loop_frames(bpm, bars, beats_per_bar, params.hop_length)
    samples = loop_samples(bpm, bars, beats_per_bar, params.sample_rate)
    converter = SpectrogramConverter(params, "cpu")
    mel = converter.audio_to_mel(audio, sample_rate).numpy()
    mel_period = resample_frames(mel, frames, circular=True)
    loop_audio = mel_to_loop_audio(mel_period, params, samples)
    return Seed(_image(mel_period, params), loop_audio, params.sample_rate, bpm, bars,
                beats_per_bar, frames, source)


def wav_seed(path: str | os.PathLike[str], bpm: float, bars: int, beats_per_bar: int = 4,
             params: SpectrogramParams | None = None) -> Seed:
    """A user's sound file stretched to ``bars`` bars at ``bpm`` as a seed."""
    audio, rate = read_audio(path)
    return audio_seed(audio, rate, bpm, bars, beats_per_bar, source=os.path.basename(path),
                      params=params)
