"""Mel magnitudes <-> spectrogram image, exactly as the Riffusion weights expect.

value = 255 - 255 * (mel / max) ** power, truncated to uint8 (loud is dark), flipped so low
frequencies sit on the bottom row. Mono is grey stored as RGB; stereo is R=0, G=left, B=right.
The parameters travel inside the image as EXIF tags numbered as the reference numbers them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from riffbridge.errors import AudioFileError, ConfigError
from riffbridge.spectrogram.params import SpectrogramParams


def mel_to_image(mel: np.ndarray, params: SpectrogramParams) -> Image.Image:
    """(channels, n_mels, frames) non-negative mel magnitudes -> RGB image with EXIF."""
    data = np.asarray(mel, dtype=np.float64)
    if data.ndim != 3 or data.shape[0] != params.channels:
        raise ConfigError(
            f"mel must be ({params.channels}, n_mels, frames) for stereo={params.stereo}, "
            f"got shape {data.shape}")
    peak = float(data.max())
    scaled = data / peak if peak > 0 else np.zeros_like(data)
    values = (255.0 - 255.0 * np.power(np.clip(scaled, 0.0, 1.0), params.power_for_image))
    pixels = values.astype(np.uint8)[:, ::-1, :]  # low frequencies on the bottom row
    if params.stereo:
        rgb = np.stack([np.zeros_like(pixels[0]), pixels[0], pixels[1]], axis=-1)
    else:
        rgb = np.repeat(pixels[0][:, :, None], 3, axis=-1)
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    exif = image.getexif()
    for tag, value in params.to_exif().items():
        exif[tag] = value
    image.info["exif"] = exif.tobytes()
    return image


def read_params(image: Image.Image) -> SpectrogramParams:
    """The parameters an image carries in EXIF (defaults for tags it lacks)."""
    return SpectrogramParams.from_exif(dict(image.getexif()))


def image_to_mel(image: Image.Image, params: SpectrogramParams | None = None
                 ) -> tuple[np.ndarray, SpectrogramParams]:
    """Image -> (channels, n_mels, frames) mel magnitudes scaled to ``params.max_value``.

    Parameters come from the image's EXIF unless given explicitly.
    """
    params = params if params is not None else read_params(image)
    if image.height != params.num_frequencies:
        raise AudioFileError(
            f"spectrogram image must be {params.num_frequencies} pixels high (one row per mel "
            f"band), got {image.height}; resize it or give matching parameters")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)[::-1]  # bottom row = lowest band
    channels = rgb[:, :, 1:3] if params.stereo else rgb[:, :, 0:1]
    data = (255.0 - channels.transpose(2, 0, 1)) / 255.0
    mel = np.power(data, 1.0 / params.power_for_image) * params.max_value
    return np.ascontiguousarray(mel, dtype=np.float32), params
