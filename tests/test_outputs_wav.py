"""The WAV writer: acid and smpl chunks read back by an independent RIFF parser; the audio read
back by soundfile and scipy."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.io import wavfile

from riffbridge.errors import OutputError
from riffbridge.loops.types import Loop
from riffbridge.outputs.files import atomic_write
from riffbridge.outputs.wav import WavSettings, wav_bytes


def parse_riff(data: bytes) -> dict[str, bytes]:
    """Minimal independent RIFF/WAVE parser: chunk id -> body."""
    riff, size, wave = struct.unpack("<4sI4s", data[:12])
    assert (riff, wave) == (b"RIFF", b"WAVE")
    assert size == len(data) - 8
    chunks: dict[str, bytes] = {}
    pos = 12
    while pos < len(data):
        cid, csize = struct.unpack("<4sI", data[pos:pos + 8])
        chunks[cid.decode("ascii")] = data[pos + 8:pos + 8 + csize]
        pos += 8 + csize + (csize % 2)
    assert pos == len(data)
    return chunks


def make_loop(bpm: float = 128.0, bars: int = 2, channels: int = 2, beats: int = 4) -> Loop:
    n = round(bars * beats * 60 / bpm * 44100)
    t = np.arange(n) / 44100
    left = 0.5 * np.sin(2 * np.pi * 441 * t)
    audio = np.stack([left, -left][:channels])
    return Loop(audio, 44100, bpm, bars, beats, {"prompt": "test"})


@pytest.mark.parametrize(("fmt", "bits", "tag"), [("pcm24", 24, 1), ("pcm16", 16, 1),
                                                  ("float32", 32, 3)])
def test_chunks_read_back_independently(tmp_path: Path, fmt: str, bits: int, tag: int) -> None:
    loop = make_loop(bpm=128.0, bars=2)
    path = atomic_write(tmp_path / "loop.wav", wav_bytes(loop, WavSettings(fmt)))
    chunks = parse_riff(path.read_bytes())
    fmt_tag, channels, rate, byte_rate, block, sample_bits = struct.unpack(
        "<HHIIHH", chunks["fmt "][:16])
    assert (fmt_tag, channels, rate, sample_bits) == (tag, 2, 44100, bits)
    assert block == 2 * bits // 8 and byte_rate == rate * block
    flags, _root, _, _, beats, denom, numer, tempo = struct.unpack("<IHHfIHHf",
                                                                    chunks["acid"])
    assert flags & 0x01 == 0  # a loop, not a one-shot
    assert flags & 0x02 == 0  # no root note given
    assert beats == 8 and (numer, denom) == (4, 4)
    assert tempo == pytest.approx(128.0)
    smpl = chunks["smpl"]
    header = struct.unpack("<9I", smpl[:36])
    assert header[2] == round(1e9 / 44100)  # sample period in ns
    assert header[7] == 1  # one loop
    _cue, kind, start, end, _frac, count = struct.unpack("<6I", smpl[36:60])
    n = loop.num_samples
    assert (kind, start, end, count) == (0, 0, n - 1, 0)  # forward, whole file, forever
    assert len(chunks["data"]) == n * block


def test_audio_reads_back_with_soundfile_and_scipy(tmp_path: Path) -> None:
    loop = make_loop()
    for fmt, tol in (("pcm24", 2 ** -22), ("pcm16", 2 ** -14), ("float32", 1e-7)):
        path = atomic_write(tmp_path / f"{fmt}.wav", wav_bytes(loop, WavSettings(fmt)))
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
        assert rate == 44100 and data.shape == (loop.num_samples, 2)
        np.testing.assert_allclose(data.T, loop.audio, atol=tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy skips the acid/smpl chunks with a warning
            srate, sdata = wavfile.read(str(path))
        assert srate == 44100 and sdata.shape == (loop.num_samples, 2)
        info = sf.info(str(path))
        assert info.frames == loop.num_samples


def test_48k_output_is_resampled_to_the_exact_length(tmp_path: Path) -> None:
    loop = make_loop(bpm=97.0, bars=3)
    path = atomic_write(tmp_path / "48k.wav",
                        wav_bytes(loop, WavSettings("pcm24", sample_rate=48000)))
    data, rate = sf.read(str(path), always_2d=True)
    assert rate == 48000 and len(data) == round(3 * 4 * 60 / 97.0 * 48000)
    chunks = parse_riff(path.read_bytes())
    assert struct.unpack("<6I", chunks["smpl"][36:60])[3] == len(data) - 1
    # The 441 Hz tone stays at 441 Hz (resampled, not sped up).
    spectrum = np.abs(np.fft.rfft(data[:, 0]))
    assert np.fft.rfftfreq(len(data), 1 / 48000)[np.argmax(spectrum)] == pytest.approx(441,
                                                                                        abs=1)


def test_mono_odd_meter_and_root_note(tmp_path: Path) -> None:
    loop = make_loop(bpm=90.5, bars=3, channels=1, beats=3)
    data = wav_bytes(loop, WavSettings("pcm24", root_note=57))
    chunks = parse_riff(data)
    flags, root, _, _, beats, denom, numer, tempo = struct.unpack("<IHHfIHHf", chunks["acid"])
    assert flags & 0x02 and root == 57
    assert (beats, numer, denom) == (9, 3, 4) and tempo == pytest.approx(90.5)
    assert struct.unpack("<HH", chunks["fmt "][:4]) == (1, 1)
    # 24-bit samples: three bytes each, little-endian two's complement.
    raw = chunks["data"][:6]
    first = int.from_bytes(raw[3:6], "little", signed=True) / 2 ** 23
    assert first == pytest.approx(loop.audio[0, 1], abs=2 ** -22)


def test_clipping_and_bad_settings() -> None:
    loud = Loop(np.full((1, 1000), 2.0), 44100, 120.0, 1)
    chunks = parse_riff(wav_bytes(loud, WavSettings("pcm16")))
    assert set(np.frombuffer(chunks["data"], "<i2")) == {32767}
    with pytest.raises(OutputError, match="sample format"):
        WavSettings("mp3")
    with pytest.raises(OutputError, match="44100 or 48000"):
        WavSettings(sample_rate=22050)
    with pytest.raises(OutputError, match="root note"):
        WavSettings(root_note=200)
