"""Audio <-> mel magnitudes <-> image: the converter on the hot path of every clip.

Forward (audio -> image) follows the reference exactly: centred reflect-padded STFT with a
100 ms Hann window zero-padded to 400 ms, magnitude, HTK mel filters.

Inverse (image -> audio) estimates linear magnitudes with the cached pseudo-inverse of the mel
filterbank and recovers phase with fast Griffin-Lim. The default ("fast") runs Griffin-Lim at the
window's own length (4410 points instead of 17640: the same magnitudes on a 4x coarser grid that
the padding only interpolated), 64 iterations; "high" runs 200. See docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from riffbridge.dsp import resample, resample_periodic
from riffbridge.errors import ConfigError
from riffbridge.spectrogram.mel import filterbank, inverse_filterbank
from riffbridge.spectrogram.params import SpectrogramParams
from riffbridge.spectrogram.stft import Framing, griffin_lim, stft
from riffbridge.torch_device import resolve_device

Quality = Literal["fast", "high"]


@dataclass(frozen=True)
class InverseSettings:
    """How image -> audio recovers phase."""

    iters: int
    padded: bool  # Griffin-Lim at the zero-padded FFT size (the reference) or the window's own
    init: str = "locked"
    momentum: float = 0.99


QUALITY: dict[str, InverseSettings] = {
    "fast": InverseSettings(iters=48, padded=False),
    "high": InverseSettings(iters=200, padded=False),
}


class SpectrogramConverter:
    """Converts between audio and mel magnitudes for one parameter set on one device."""

    def __init__(self, params: SpectrogramParams | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.params = params or SpectrogramParams()
        self.device = resolve_device(device)

    def prepare_audio(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Resample to the parameters' rate and mix to the channels they ask for."""
        data = np.asarray(audio, dtype=np.float32)
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2 or data.shape[1] == 0:
            raise ConfigError(f"audio must be (channels, samples) with samples, got {data.shape}")
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
        data = resample(data, sample_rate, self.params.sample_rate)
        if not self.params.stereo:
            return data.mean(axis=0, keepdims=True)
        if data.shape[0] == 1:
            return np.repeat(data, 2, axis=0)
        # Two or more channels: even channels fold into left, odd into right.
        return np.stack([data[0::2].mean(axis=0), data[1::2].mean(axis=0)])

    def audio_to_mel(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """(channels, samples) audio -> (channels, n_mels, frames) mel magnitudes."""
        p = self.params
        data = torch.from_numpy(self.prepare_audio(audio, sample_rate)).to(self.device)
        frames = data.shape[-1] // p.hop_length + 1
        if data.shape[-1] <= p.n_fft // 2:
            # Reflect padding needs more samples than half the FFT; pad short input with silence.
            data = torch.nn.functional.pad(data, (0, p.n_fft // 2 + 1 - data.shape[-1]))
        framing = Framing(p.n_fft, p.hop_length, p.win_length, frames)
        magnitude = stft(data, framing).abs()
        return torch.einsum("cft,fm->cmt", magnitude, filterbank(p, str(self.device)))

    def mel_to_audio(self, mel: torch.Tensor | np.ndarray, *, quality: Quality = "fast",
                     iters: int | None = None, circular: bool = False,
                     num_samples: int | None = None, seed: int = 0) -> np.ndarray:
        """(channels, n_mels, frames) mel magnitudes -> float32 audio (channels, samples).

        ``circular`` treats the frames as one period of a loop; ``num_samples`` gives the exact
        output length (a loop is resampled to it as a period, otherwise cut or padded). The
        result is peak-normalised to 0.9 (the image keeps no absolute level).
        """
        if quality not in QUALITY:
            raise ConfigError(f"quality must be one of {sorted(QUALITY)}, got {quality!r}")
        settings = QUALITY[quality]
        n_iter = settings.iters if iters is None else iters
        if n_iter < 0:
            raise ConfigError(f"iterations must be >= 0, got {n_iter}")
        p = self.params
        mel_t = torch.as_tensor(mel, dtype=torch.float32, device=self.device)
        if mel_t.ndim != 3 or mel_t.shape[1] != p.num_frequencies:
            raise ConfigError(
                f"mel must be (channels, {p.num_frequencies}, frames), got {tuple(mel_t.shape)}")
        frames = mel_t.shape[-1]
        decimation = 1 if settings.padded else p.n_fft // p.win_length
        n_fft = p.n_fft if settings.padded else p.win_length
        inverse = inverse_filterbank(p, str(self.device), decimation)
        magnitude = torch.clamp(torch.einsum("fm,cmt->cft", inverse, mel_t), min=0.0)
        framing = Framing(n_fft, p.hop_length, p.win_length, frames, circular=circular)
        audio = griffin_lim(magnitude, framing, n_iter, settings.momentum, settings.init, seed)
        out = audio.cpu().numpy().astype(np.float32)
        if num_samples is not None:
            if circular:
                out = resample_periodic(out, num_samples)
            elif out.shape[-1] >= num_samples:
                out = out[:, :num_samples]
            else:
                out = np.pad(out, ((0, 0), (0, num_samples - out.shape[-1])))
        peak = float(np.abs(out).max()) if out.size else 0.0
        if peak > 0 and np.isfinite(peak):
            out = out * (0.9 / peak)
        return np.ascontiguousarray(out, dtype=np.float32)
