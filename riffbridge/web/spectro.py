"""A small spectrogram picture of a loop that already plays, for the page. numpy and Pillow only.

The cost is bounded whatever the loop: a fixed number of columns (one short FFT each, taken at
evenly spaced points of the loop; only those frames are read) and rows, so a 60 s loop costs
what a 2 s one does (about 20 ms on a busy 2-core box, most of it the PNG encoder). Frequencies
run on a mel scale up to 10 kHz, as in Riffusion's images.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

WIDTH = 384
HEIGHT = 128
FFT = 1024
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
    # Only the frames the columns read are touched: the cost does not grow with the loop.
    starts = np.linspace(0, audio.shape[0] - FFT, WIDTH).astype(np.int64)
    frames = audio[starts[:, None] + np.arange(FFT)[None, :]].mean(axis=2, dtype=np.float32)
    frames *= _WINDOW
    spectrum = np.abs(np.fft.rfft(frames, axis=1))  # (WIDTH, FFT/2 + 1)
    bands = np.maximum.reduceat(spectrum, _bands(rate), axis=1)[:, :HEIGHT]
    db = 20 * np.log10(np.maximum(bands, 1e-9))
    db -= db.max()
    return np.clip(db, FLOOR_DB, 0.0).T


def spectrogram_png(audio: np.ndarray, rate: int) -> bytes:
    """The loop as a WIDTH x HEIGHT PNG, time left to right, low frequencies at the bottom."""
    db = magnitudes(audio, rate)
    index = ((db - FLOOR_DB) / -FLOOR_DB * 255).astype(np.uint8)[::-1]
    image = Image.fromarray(_LUT[index], "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # fast: a picture for a screen
    return out.getvalue()
