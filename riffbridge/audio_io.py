"""The audio-file boundary: read and write sound files as float32 arrays (channels, samples)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from riffbridge.dsp import resample
from riffbridge.errors import AudioFileError, OutputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

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
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write in {folder}: {exc.strerror}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    with atomic_path(p) as tmp:
        try:
            sf.write(str(tmp), data.T, sample_rate, subtype=subtype, format=fmt)
        except sf.LibsndfileError as exc:
            raise OSError(str(exc)) from None
    return p
