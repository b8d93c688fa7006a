"""A small spectrogram picture of a loop that already plays, for the page. numpy and zlib only.

The cost is bounded whatever the loop: a fixed number of columns (one short FFT each, taken at
evenly spaced points of the loop; only those frames are read) and rows, so a 60 s loop costs
what a 2 s one does (about 10 ms on a busy 2-core box). Frequencies run on a mel scale up to
10 kHz, as in Riffusion's images.
"""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np

WIDTH = 384
HEIGHT = 128
FFT = 1024
BATCH = 24  # columns per step (about a millisecond)
TOP_HZ = 10000.0  # the top of Riffusion's mel bands
FLOOR_DB = -80.0

# A dark-to-warm colour ramp (black, violet, red, orange, pale yellow).
_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLOURS = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97],
                     [252, 253, 191]], dtype=np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _STOPS, _COLOURS[:, c])
                 for c in range(3)], axis=1).astype(np.uint8)


_WINDOW = np.hanning(FFT).astype(np.float32)


def _mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _bands(rate: int) -> np.ndarray:
    """For each image row (bottom first), the first FFT bin it takes the loudest of."""
    top = min(TOP_HZ, rate / 2)
    mels = np.linspace(_mel(np.array(20.0)), _mel(np.array(top)), HEIGHT + 1)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.clip(np.round(hz / rate * FFT).astype(int), 1, FFT // 2)
    return np.maximum.accumulate(np.minimum(bins, FFT // 2 - 1))


def magnitudes(audio: np.ndarray, rate: int) -> np.ndarray:
    """(HEIGHT, WIDTH) levels in dB (0 at the loudest), low frequencies in row 0."""
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.shape[0] < FFT:
        audio = np.pad(audio, ((0, FFT - audio.shape[0]), (0, 0)))
    # Only the frames the columns read are touched: the cost does not grow with the loop. The
    # columns go in small batches with a yield between them: this runs on a thread of the
    # engine's process, and no batch holds the GIL for more than about a millisecond, so the
    # audio callback (which needs it too) never waits on a picture.
    starts = np.linspace(0, audio.shape[0] - FFT, WIDTH).astype(np.int64)
    offsets = np.arange(FFT)[None, :]
    edges = _bands(rate)
    bands = np.empty((WIDTH, HEIGHT), dtype=np.float32)
    for first in range(0, WIDTH, BATCH):
        batch = starts[first:first + BATCH, None] + offsets
        frames = audio[batch].mean(axis=2, dtype=np.float32)
        frames *= _WINDOW
        spectrum = np.abs(np.fft.rfft(frames, axis=1))
        bands[first:first + BATCH] = np.maximum.reduceat(spectrum, edges, axis=1)[:, :HEIGHT]
        time.sleep(0)
    db = 20 * np.log10(np.maximum(bands, 1e-9))
    db -= db.max()
    return np.clip(db, FLOOR_DB, 0.0).T


def spectrogram_png(audio: np.ndarray, rate: int) -> bytes:
    """The loop as a WIDTH x HEIGHT PNG, time left to right, low frequencies at the bottom."""
    db = magnitudes(audio, rate)
    index = ((db - FLOOR_DB) / -FLOOR_DB * 255).astype(np.uint8)[::-1]
    return png_rgb(_LUT[index])


def png_rgb(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``pixels`` (rows, columns, 3): a header, the rows (filter 0) through
    ``zlib.compress``, which lets go of the GIL while it works, so a picture drawn on a thread
    of the engine's process holds the GIL only in short steps."""
    rows, columns, _ = pixels.shape
    raw = np.zeros((rows, 1 + 3 * columns), dtype=np.uint8)  # filter byte 0: none
    raw[:, 1:] = pixels.reshape(rows, 3 * columns)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", columns, rows, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + chunk(b"IEND", b""))
