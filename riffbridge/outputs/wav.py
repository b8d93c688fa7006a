"""WAV writer with the loop metadata DAWs read: an ``acid`` chunk (tempo, beats, meter, loop)
and a ``smpl`` chunk (one forward loop over the whole file).

soundfile cannot write these chunks, so the RIFF is assembled here: ``fmt `` (PCM 24-bit by
default, 16-bit, or IEEE float 32-bit), ``fact`` for float, ``acid``, ``smpl``, then ``data``.
Other rates than the loop's (44.1 kHz -> 48 kHz) are reached by periodic resampling
(:func:`riffbridge.dsp.resample_periodic`, a band-limited Fourier resampler that treats the loop
as one period), so the loop stays seamless and lands on round(beats * 60 / bpm * rate) samples.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from riffbridge.dsp import resample_periodic
from riffbridge.errors import OutputError
from riffbridge.loops.types import Loop

FORMATS = {"pcm16": (1, 16), "pcm24": (1, 24), "float32": (3, 32)}
RATES = (44100, 48000)

ACID_ONE_SHOT = 0x01
ACID_ROOT_SET = 0x02
ACID_STRETCH = 0x04
ACID_DISK_BASED = 0x08


@dataclass(frozen=True)
class WavSettings:
    """How loops are encoded: ``sample_format`` pcm24 (default), pcm16 or float32; rate 44100
    or 48000; ``root_note`` a MIDI note for the acid chunk, or None for no key."""

    sample_format: str = "pcm24"
    sample_rate: int = 44100
    root_note: int | None = None

    def __post_init__(self) -> None:
        if self.sample_format not in FORMATS:
            raise OutputError(
                f"sample format must be one of {', '.join(FORMATS)}, got {self.sample_format!r}")
        if self.sample_rate not in RATES:
            raise OutputError(f"output sample rate must be 44100 or 48000, got {self.sample_rate}")
        if self.root_note is not None and not 0 <= self.root_note <= 127:
            raise OutputError(f"root note must be a MIDI note 0-127, got {self.root_note}")


def _chunk(tag: bytes, body: bytes) -> bytes:
    pad = b"\x00" if len(body) % 2 else b""
    return tag + struct.pack("<I", len(body)) + body + pad


def encode_samples(audio: np.ndarray, sample_format: str) -> bytes:
    """Interleaved little-endian sample bytes for (channels, samples) float audio."""
    data = np.clip(np.asarray(audio, dtype=np.float64).T, -1.0, 1.0)  # (samples, channels)
    if sample_format == "float32":
        return np.ascontiguousarray(data, dtype="<f4").tobytes()
    bits = FORMATS[sample_format][1]
    scale = float(2 ** (bits - 1))
    ints = np.clip(np.round(data * scale), -scale, scale - 1).astype("<i4")
    if bits == 16:
        return ints.astype("<i2").tobytes()
    # 24-bit: the low three bytes of each little-endian int32.
    return np.ascontiguousarray(ints).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def acid_chunk(bpm: float, beats: int, beats_per_bar: int, root_note: int | None) -> bytes:
    flags = ACID_STRETCH | (ACID_ROOT_SET if root_note is not None else 0)  # loop: no one-shot
    root = 60 if root_note is None else root_note
    body = struct.pack("<IHHfIHHf", flags, root, 0x8000, 0.0, beats, 4, beats_per_bar,
                       float(bpm))
    return _chunk(b"acid", body)


def smpl_chunk(sample_rate: int, num_samples: int, root_note: int | None) -> bytes:
    period_ns = round(1e9 / sample_rate)
    unity = 60 if root_note is None else root_note
    header = struct.pack("<9I", 0, 0, period_ns, unity, 0, 0, 0, 1, 0)
    loop = struct.pack("<6I", 0, 0, 0, num_samples - 1, 0, 0)  # id, forward, start, end, ...
    return _chunk(b"smpl", header + loop)


def loop_audio_at(loop: Loop, sample_rate: int) -> np.ndarray:
    """The loop's audio at ``sample_rate``: exact length round(beats * 60 / bpm * rate)."""
    if sample_rate == loop.sample_rate:
        return np.asarray(loop.audio)
    samples = round(loop.beats * 60.0 / loop.bpm * sample_rate)
    return resample_periodic(np.asarray(loop.audio, dtype=np.float32), samples)


def wav_bytes(loop: Loop, settings: WavSettings | None = None) -> bytes:
    """The whole WAV file for ``loop`` as bytes."""
    settings = settings or WavSettings()
    audio = loop_audio_at(loop, settings.sample_rate)
    channels, samples = audio.shape
    fmt_tag, bits = FORMATS[settings.sample_format]
    block = channels * bits // 8
    fmt = _chunk(b"fmt ", struct.pack("<HHIIHH", fmt_tag, channels, settings.sample_rate,
                                      settings.sample_rate * block, block, bits))
    fact = _chunk(b"fact", struct.pack("<I", samples)) if fmt_tag == 3 else b""
    body = (b"WAVE" + fmt + fact
            + acid_chunk(loop.bpm, loop.beats, loop.beats_per_bar, settings.root_note)
            + smpl_chunk(settings.sample_rate, samples, settings.root_note)
            + _chunk(b"data", encode_samples(audio, settings.sample_format)))
    if len(body) + 8 > 0xFFFFFFFF:
        raise OutputError(f"loop too long for a WAV file ({samples} samples, {channels} ch)")
    return b"RIFF" + struct.pack("<I", len(body)) + body
