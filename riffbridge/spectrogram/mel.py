"""The HTK mel filterbank and its cached pseudo-inverse, on torch."""

from __future__ import annotations

import functools
import math

import torch

from riffbridge.spectrogram.params import SpectrogramParams


def _hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, sample_rate: int, f_min: float, f_max: float,
                   n_mels: int) -> torch.Tensor:
    """Triangular HTK mel filters without area normalisation, shape (n_freqs, n_mels), float64.

    Same construction as torchaudio's ``melscale_fbanks(norm=None, mel_scale="htk")``, which the
    Riffusion weights were trained with.
    """
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    f_pts = _mel_to_hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


@functools.lru_cache(maxsize=16)
def _filterbank_cpu(params: SpectrogramParams) -> torch.Tensor:
    return mel_filterbank(params.n_fft // 2 + 1, params.sample_rate, params.min_frequency,
                          params.max_frequency, params.num_frequencies)


@functools.lru_cache(maxsize=16)
def filterbank(params: SpectrogramParams, device: str) -> torch.Tensor:
    """(n_freqs, n_mels) float32 filterbank on ``device``, cached per parameters and device."""
    return _filterbank_cpu(params).to(device=device, dtype=torch.float32)


# How far G @ G^-1 may stray from the identity for the closed form to be used; beyond it (a
# filterbank near singular) the SVD pseudo-inverse decides which directions to drop.
_GRAM_TOLERANCE = 1e-9


@functools.lru_cache(maxsize=16)
def _gram_inverse(params: SpectrogramParams) -> torch.Tensor | None:
    """(fb^T fb)^-1 (n_mels, n_mels) float64, or None when the filters are not independent.

    When every mel filter covers some FFT bin and no filter is a mix of the others, fb^T has
    full row rank and its pseudo-inverse has the closed form fb (fb^T fb)^-1. The Gram matrix is
    n_mels square and banded (each filter overlaps only its neighbours), so this takes tens of
    milliseconds where the SVD of the whole (n_mels, n_freqs) filterbank took a second.
    """
    fb = _filterbank_cpu(params)
    rows = fb[fb.any(dim=1)]  # bins above max_frequency have no filter: no part in fb^T fb
    gram = rows.T @ rows
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) != 0:  # a filter covers no bin (an FFT too short for the lowest bands)
        return None
    inverse = torch.cholesky_inverse(factor)
    identity = torch.eye(gram.shape[0], dtype=gram.dtype)
    if float((gram @ inverse - identity).abs().max()) > _GRAM_TOLERANCE:
        return None
    return inverse


@functools.lru_cache(maxsize=16)
def _inverse_cpu(params: SpectrogramParams, decimation: int) -> torch.Tensor:
    """Rows ``::decimation`` of pinv(fb^T) (n_freqs, n_mels), float64: the least-squares,
    minimum-norm inverse of the filterbank, by the closed form when it holds, else by SVD."""
    fb = _filterbank_cpu(params)  # (n_freqs, n_mels)
    gram_inverse = _gram_inverse(params)
    if gram_inverse is None:
        return torch.linalg.pinv(fb.T)[::decimation].contiguous()
    return fb[::decimation] @ gram_inverse


@functools.lru_cache(maxsize=16)
def inverse_filterbank(params: SpectrogramParams, device: str, decimation: int = 1
                       ) -> torch.Tensor:
    """Pseudo-inverse mapping mel magnitudes back to linear-frequency magnitudes.

    Shape (n_freqs // decimation rounded up, n_mels), float32 on ``device``, computed once per
    parameters, decimation and device. ``decimation=k`` keeps every k-th frequency bin: with the
    window zero-padded k times, bin k*j of the padded FFT has exactly the magnitude of bin j of
    the unpadded FFT, so Griffin-Lim can run at the window's own length.
    """
    return _inverse_cpu(params, decimation).to(device=device, dtype=torch.float32)
