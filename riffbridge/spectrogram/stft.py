"""STFT, overlap-add inverse and fast Griffin-Lim on torch core ops, linear or circular.

Framing is done by hand (unfold + rfft, irfft + overlap-add) rather than with torch.stft/istft:
the same code then runs a circular transform, where frames near the end wrap around into the
start and the reconstructed audio is one period of a seamless loop. Inside Griffin-Lim the
spectra stay in (channels, frames, bins) layout, which keeps every elementwise pass contiguous.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from riffbridge import cancel
from riffbridge.errors import ConfigError


@dataclass(frozen=True)
class Framing:
    """One STFT geometry: FFT size, hop, window length, frame count, linear or circular."""

    n_fft: int
    hop: int
    win_length: int
    frames: int
    circular: bool = False

    @property
    def num_samples(self) -> int:
        """Samples the frames describe: (frames-1)*hop when linear, frames*hop when circular."""
        return self.frames * self.hop if self.circular else (self.frames - 1) * self.hop

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


@functools.lru_cache(maxsize=32)
def _window(n_fft: int, win_length: int, device: str) -> torch.Tensor:
    win = torch.hann_window(win_length, periodic=True, dtype=torch.float32)
    left = (n_fft - win_length) // 2
    return F.pad(win, (left, n_fft - win_length - left)).to(device)


def _overlap_add(frames: torch.Tensor, framing: Framing) -> torch.Tensor:
    """Sum frames (C, frames, n_fft) at their hops into (C, num_samples)."""
    c, count, n_fft = frames.shape
    hop = framing.hop
    ext = n_fft + hop * (count - 1)
    if n_fft % hop == 0:
        # The hop divides the frame: add hop-sized blocks in n_fft/hop shifted passes.
        per = n_fft // hop
        blocks = frames.reshape(c, count, per, hop)
        acc = torch.zeros(c, count + per - 1, hop, dtype=frames.dtype, device=frames.device)
        for s in range(per):
            acc[:, s:s + count] += blocks[:, :, s]
        out = acc.reshape(c, ext)
    else:
        out = F.fold(frames.transpose(1, 2), output_size=(1, ext), kernel_size=(1, n_fft),
                     stride=(1, hop)).reshape(c, ext)
    half = n_fft // 2
    if not framing.circular:
        return out[:, half:half + framing.num_samples]
    n = framing.num_samples
    index = (torch.arange(ext, device=out.device) - half) % n
    wrapped = torch.zeros(c, n, dtype=out.dtype, device=out.device)
    return wrapped.index_add_(1, index, out)


@functools.lru_cache(maxsize=32)
def _envelope(framing: Framing, device: str) -> torch.Tensor:
    """1 / (sum of squared windows) at each output sample, for the least-squares inverse."""
    win = _window(framing.n_fft, framing.win_length, device)
    frames = (win * win).expand(1, framing.frames, framing.n_fft).contiguous()
    env = _overlap_add(frames, framing)[0]
    return 1.0 / torch.clamp(env, min=1e-8)


def _pad(audio: torch.Tensor, framing: Framing) -> torch.Tensor:
    half = framing.n_fft // 2
    if not framing.circular:
        return F.pad(audio.unsqueeze(0), (half, half), mode="reflect")[0]
    # Repeat the period as often as the padding needs (a loop may be shorter than n_fft/2).
    n = audio.shape[-1]
    reps = math.ceil(half / n)
    tiled = audio.repeat(1, 2 * reps + 1)
    start = reps * n - half
    return tiled[:, start:start + n + 2 * half]


def analyse(audio: torch.Tensor, framing: Framing) -> torch.Tensor:
    """Complex spectra in (C, frames, bins) layout from (C, samples) audio, centred frames."""
    frames = _pad(audio, framing).unfold(-1, framing.n_fft, framing.hop)[:, :framing.frames]
    win = _window(framing.n_fft, framing.win_length, str(audio.device))
    return torch.fft.rfft(frames * win, dim=-1)


def synthesise(spec: torch.Tensor, framing: Framing) -> torch.Tensor:
    """Least-squares inverse of :func:`analyse`: (C, frames, bins) -> (C, num_samples)."""
    win = _window(framing.n_fft, framing.win_length, str(spec.device))
    frames = torch.fft.irfft(spec, n=framing.n_fft, dim=-1) * win
    return _overlap_add(frames, framing) * _envelope(framing, str(spec.device))


def stft(audio: torch.Tensor, framing: Framing) -> torch.Tensor:
    """Complex one-sided STFT of (C, samples) -> (C, bins, frames), like torch.stft(center=True)
    for linear framing; circular framing wraps instead of reflecting."""
    return analyse(audio, framing).transpose(1, 2)


def istft(spec: torch.Tensor, framing: Framing) -> torch.Tensor:
    """Inverse of :func:`stft`: (C, bins, frames) -> (C, num_samples)."""
    return synthesise(spec.transpose(1, 2).contiguous(), framing)


def initial_phase(magnitude: torch.Tensor, framing: Framing, kind: str, seed: int
                  ) -> torch.Tensor:
    """Unit-magnitude complex start phase for Griffin-Lim, for magnitudes (C, frames, bins).

    ``random``: uniform random phase from a seeded generator (the reference's start).
    ``locked``: the phase a sum of steady partials would have. Each bin joins the nearest
    spectral peak of its frame; the peak's frequency comes from parabolic interpolation of the
    log magnitude, and the phase advances by it from frame to frame, the same for every bin of
    the peak (phase locking). The -pi*k term is the window centred in the frame.
    """
    shape = tuple(magnitude.shape)
    if kind == "random":
        gen = torch.Generator().manual_seed(seed)
        phase = (2 * math.pi * torch.rand(shape, generator=gen)).to(magnitude.device)
    elif kind == "locked":
        phase = _locked_phase(magnitude, framing)
    else:
        raise ConfigError(f"unknown initial phase {kind!r}; use 'random' or 'locked'")
    return torch.polar(torch.ones_like(phase), phase)


def _locked_phase(magnitude: torch.Tensor, framing: Framing) -> torch.Tensor:
    bins = magnitude.shape[-1]
    log = torch.log(magnitude + 1e-6 * magnitude.amax().clamp(min=1e-30))
    k = torch.arange(bins, device=magnitude.device)
    left = torch.cat([log[..., :1], log[..., :-1]], dim=-1)
    right = torch.cat([log[..., 1:], log[..., -1:]], dim=-1)
    is_peak = (log > left) & (log >= right)
    # Parabolic interpolation of each peak's true frequency, in bins.
    denom = left - 2 * log + right
    delta = torch.where(denom.abs() > 1e-12, 0.5 * (left - right) / denom, torch.zeros_like(log))
    freq = k + delta.clamp(-0.5, 0.5)
    # Nearest peak to each bin: the last peak at or below and the first at or above.
    marks = torch.where(is_peak, k, torch.full_like(k, -1).expand_as(log))
    below = torch.cummax(marks, dim=-1).values
    big = torch.full_like(k, 2 * bins).expand_as(log)
    above_marks = torch.where(is_peak, k, big).flip(-1)
    above = torch.cummin(above_marks, dim=-1).values.flip(-1)
    use_below = (below >= 0) & ((above >= bins) | (k - below <= above - k))
    nearest = torch.where(use_below, below, above).clamp(0, bins - 1)
    bin_freq = torch.gather(freq, -1, nearest)
    advance = 2 * math.pi * bin_freq.double() * framing.hop / framing.n_fft
    phase = torch.cumsum(advance, dim=-2) - math.pi * k.double()
    return torch.remainder(phase, 2 * math.pi).float()


def _project(rebuilt: torch.Tensor, previous: torch.Tensor | None, target: torch.Tensor,
             momentum: float) -> torch.Tensor:
    """One Griffin-Lim magnitude step: accelerate the rebuilt spectrum, keep its phase and
    impose the target magnitude. Works on real and imaginary parts separately, which is several
    times faster on the CPU than complex elementwise arithmetic."""
    re, im = torch.view_as_real(rebuilt).unbind(-1)
    if momentum and previous is not None:
        p_re, p_im = torch.view_as_real(previous).unbind(-1)
        re = torch.add(re * (1.0 + momentum), p_re, alpha=-momentum)
        im = torch.add(im * (1.0 + momentum), p_im, alpha=-momentum)
    scale = target * torch.rsqrt(re * re + im * im + 1e-30)
    return torch.complex(re * scale, im * scale)


def _iterate(spec: torch.Tensor, target: torch.Tensor, framing: Framing, iters: int,
             momentum: float, check: Callable[[], None] | None = None) -> torch.Tensor:
    """``check`` is called before every iteration (the cancellation point of a long loop); a
    CUDA graph's capture passes none, since nothing may raise half-way through a recording."""
    active = target.shape[-1]
    previous: torch.Tensor | None = None
    for _ in range(iters):
        if check is not None:
            check()
        rebuilt = analyse(synthesise(spec, framing), framing)[..., :active]
        spec = _project(rebuilt, previous, target, momentum)
        previous = rebuilt
    return synthesise(spec, framing)


class _GraphedGriffinLim:
    """The whole iteration loop captured once as a CUDA graph for one geometry.

    On a GPU, Griffin-Lim on one clip is a few thousand small kernels whose launch cost
    outweighs their work; replaying a captured graph launches them all at once.
    """

    def __init__(self, framing: Framing, shape: tuple[int, ...], iters: int, momentum: float,
                 device: torch.device) -> None:
        self.target = torch.zeros(shape, dtype=torch.float32, device=device)
        self.spec = torch.zeros(shape, dtype=torch.complex64, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up: FFT plans, cached windows and envelopes
            _iterate(self.spec, self.target, framing, 2, momentum)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.audio = _iterate(self.spec, self.target, framing, iters, momentum)

    def __call__(self, spec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.spec.copy_(spec)
        self.target.copy_(target)
        self.graph.replay()
        return self.audio.clone()


@functools.lru_cache(maxsize=8)
def _graphed(framing: Framing, shape: tuple[int, ...], iters: int, momentum: float,
             device: torch.device) -> _GraphedGriffinLim:
    return _GraphedGriffinLim(framing, shape, iters, momentum, device)


def griffin_lim(magnitude: torch.Tensor, framing: Framing, iters: int, momentum: float = 0.99,
                init: str = "random", seed: int = 0) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013): magnitudes (C, bins, frames) -> audio.

    Bins whose target magnitude is zero everywhere (above the mel range's top: over half of
    them at Riffusion's 10 kHz) stay zero after every projection, so the iterations carry only
    the bins below the highest non-zero one; the inverse FFT fills the rest with zeros. On CUDA
    the loop runs as a captured CUDA graph, cached per geometry.
    """
    nonzero = torch.nonzero(magnitude.amax(dim=(0, 2)) > 0)
    active = int(nonzero.max()) + 1 if nonzero.numel() else 1
    target = magnitude[:, :active].transpose(1, 2).contiguous()
    spec = target * initial_phase(target, framing, init, seed)
    if target.device.type == "cuda" and iters > 0:
        graphed = _graphed(framing, tuple(target.shape), iters, momentum, target.device)
        return graphed(spec, target)
    return _iterate(spec, target, framing, iters, momentum, cancel.check)
