"""The audio-file boundary: read and write sound files as float32 arrays (channels, samples)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from riffbridge.dsp import resample
from riffbridge.errors import AudioFileError, ControlError, OutputError
from riffbridge.fsutil import atomic_write

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
MIN_SEED_S = 0.1  # a seed sound shorter than this holds no groove to vary
SILENT_PEAK = 10 ** (-80 / 20)  # below -80 dBFS a seed sound counts as silent


def check_seed_file(path: str | os.PathLike[str], kind: str) -> None:
    """Refuse a seed file that cannot seed a render (``ControlError`` naming the file and why):
    audio that is not audio, is shorter than ``MIN_SEED_S`` or is silent; an image that is not
    one."""
    p = Path(path)
    if kind == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as img:
                img.verify()
        except (UnidentifiedImageError, OSError) as exc:
            raise ControlError(f"seed image {p.name!r} is not an image ({exc})") from None
        return
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ControlError(f"seed sound {p.name!r} is not audio ({exc}); give a WAV, AIFF or "
                           f"FLAC file") from None
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds < MIN_SEED_S:
        raise ControlError(f"seed sound {p.name!r} is {seconds * 1000:.0f} ms long; a seed "
                           f"needs at least {MIN_SEED_S * 1000:.0f} ms")
    audio, _ = read_audio(p)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if not peak >= SILENT_PEAK:  # also NaN samples
        level = "-inf" if peak == 0 else f"{20 * np.log10(peak):.0f}" if peak > 0 else "nan"
        raise ControlError(f"seed sound {p.name!r} is silent (peak {level} dBFS); record "
                           f"something louder than -80 dBFS")


def read_audio(path: str | os.PathLike[str], sample_rate: int | None = None
               ) -> tuple[np.ndarray, int]:
    """Read a sound file as float32 (channels, samples) in [-1, 1].

    With ``sample_rate`` the audio is resampled to that rate when the file's rate differs.
    """
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"audio file not found: {p}")
    if p.is_dir():
        raise AudioFileError(f"expected an audio file, got a folder: {p}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(
            f"cannot read {p} as audio ({exc}); give a WAV, FLAC or OGG file"
        ) from None
    audio = np.ascontiguousarray(data.T)
    if audio.shape[1] == 0:
        raise AudioFileError(f"audio file {p} holds no samples")
    if sample_rate is not None and rate != sample_rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return audio, int(rate)


def write_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :mod:`riffbridge.fsutil`).

    Nothing partial is ever visible under the final name: on any error the temporary file is
    removed and an OutputError names the path and the cause.
    """
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write {final}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}; create it first")
    try:
        return atomic_write(final, data)
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None


def write_audio(path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int,
                subtype: str = "PCM_16") -> Path:
    """Write float audio (channels, samples) atomically; the format follows the file suffix."""
    p = Path(path)
    if p.suffix.lower() not in AUDIO_SUFFIXES:
        raise OutputError(f"unknown audio format {p.suffix!r} for {p}; use one of {AUDIO_SUFFIXES}")
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 1:
        data = data[None, :]
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF"}[
        p.suffix.lower()]
    if fmt == "OGG":
        subtype = "VORBIS"
    encoded = io.BytesIO()
    try:
        sf.write(encoded, data.T, sample_rate, subtype=subtype, format=fmt)
    except (sf.LibsndfileError, OSError) as exc:
        raise OutputError(f"cannot write {p}: {getattr(exc, 'strerror', None) or exc}") from None
    return write_file(p, encoded.getvalue())
