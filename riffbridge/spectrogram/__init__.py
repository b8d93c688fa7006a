"""The spectrogram core: audio <-> Riffusion spectrogram images, on torch core ops."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from riffbridge.spectrogram.converter import QUALITY, Quality, SpectrogramConverter
from riffbridge.spectrogram.image import image_to_mel, mel_to_image, read_params
from riffbridge.spectrogram.params import EXIF_TAGS, SpectrogramParams

__all__ = [
    "EXIF_TAGS",
    "QUALITY",
    "Quality",
    "SpectrogramConverter",
    "SpectrogramParams",
    "audio_to_image",
    "image_to_audio",
    "image_to_mel",
    "mel_to_image",
    "read_params",
]


def audio_to_image(audio: np.ndarray, sample_rate: int,
                   params: SpectrogramParams | None = None, *,
                   device: str | torch.device = "cpu") -> Image.Image:
    """Audio (channels, samples) at any rate -> spectrogram image (width = frames)."""
    converter = SpectrogramConverter(params, device)
    mel = converter.audio_to_mel(audio, sample_rate)
    return mel_to_image(mel.cpu().numpy(), converter.params)


def image_to_audio(image: Image.Image, *, device: str | torch.device = "cpu",
                   quality: Quality = "fast", iters: int | None = None, circular: bool = False,
                   num_samples: int | None = None,
                   params: SpectrogramParams | None = None) -> tuple[np.ndarray, int]:
    """Spectrogram image -> (audio float32 (channels, samples), sample_rate).

    The image's EXIF parameters are honoured unless ``params`` is given.
    """
    mel, used = image_to_mel(image, params)
    converter = SpectrogramConverter(used, device)
    audio = converter.mel_to_audio(mel, quality=quality, iters=iters, circular=circular,
                                   num_samples=num_samples)
    return audio, used.sample_rate
