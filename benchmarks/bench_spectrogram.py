"""Image -> audio speed and round-trip quality: riffbridge's converter vs the reference algorithm.

The baseline is Riffusion's algorithm run the plain way, in this same process: the mel
filterbank's pseudo-inverse computed per call and 32 iterations of
torchaudio-style Griffin-Lim (momentum 0.99, random start) at the zero-padded FFT size 17640,
with torch.stft/istft. Quality is the round trip audio -> image -> audio scored by
shared/tools/spec_metrics.py (median of 3 runs with different Griffin-Lim seeds).

    python benchmarks/bench_spectrogram.py [--device cpu|cuda] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from riffbridge.audio_io import read_audio, write_audio
from riffbridge.spectrogram import (
    SpectrogramConverter,
    SpectrogramParams,
    image_to_mel,
    mel_to_image,
)
from riffbridge.spectrogram.mel import filterbank

SHARED = Path(__file__).resolve().parents[2] / "shared"


def reference_mel_to_audio(mel: torch.Tensor, params: SpectrogramParams, iters: int = 32,
                           seed: int = 0) -> np.ndarray:
    """Riffusion's inverse, the plain way: pseudo-inverse mel + Griffin-Lim at n_fft 17640."""
    fb = filterbank(params, str(mel.device))  # (freqs, mels)
    magnitude = torch.clamp(torch.linalg.pinv(fb.T) @ mel, min=0.0)
    window = torch.hann_window(params.win_length, device=mel.device)
    gen = torch.Generator().manual_seed(seed)
    angles = torch.polar(torch.ones_like(magnitude.cpu()),
                         2 * np.pi * torch.rand(magnitude.shape, generator=gen)).to(mel.device)
    kw = dict(n_fft=params.n_fft, hop_length=params.hop_length, win_length=params.win_length,
              window=window)
    tprev = torch.zeros_like(angles)
    for _ in range(iters):
        inverse = torch.istft(magnitude * angles, **kw)  # type: ignore[arg-type]
        rebuilt = torch.stft(inverse, return_complex=True, **kw)  # type: ignore[arg-type]
        angles = rebuilt - tprev * (0.99 / 1.99)
        angles = angles / (angles.abs() + 1e-16)
        tprev = rebuilt
    audio = torch.istft(magnitude * angles, **kw)  # type: ignore[arg-type]
    out = audio.cpu().numpy()
    return out / max(float(np.abs(out).max()), 1e-12) * 0.9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    fn()  # warm-up: plans, caches
    out = []
    for _ in range(runs):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
    return out


def spec_metrics(original: Path, rebuilt: Path) -> tuple[float, float]:
    line = subprocess.run([sys.executable, str(SHARED / "tools" / "spec_metrics.py"),
                           str(original), str(rebuilt)], capture_output=True, text=True,
                          check=True).stdout
    fields = dict(kv.split("=") for kv in line.split())
    return float(fields["sc"]), float(fields["lsd_db"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    clips = sorted((SHARED / "audio").glob("*.wav"))
    if not clips:
        print(f"no clips in {SHARED / 'audio'}", file=sys.stderr)
        return 1
    params = SpectrogramParams()
    conv = SpectrogramConverter(params, device)
    audio, rate = read_audio(clips[0])
    mel_full = conv.audio_to_mel(audio, rate)
    image = mel_to_image(mel_full[:, :, :512].cpu().numpy(), params)
    mel, _ = image_to_mel(image)
    mel_t = torch.from_numpy(mel).to(device)

    result: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "image_columns": 512,
    }
    speed: dict[str, list[float]] = {
        "reference_32it_fft17640": timed(lambda: reference_mel_to_audio(mel_t, params), device,
                                         args.runs),
    }
    for quality in ("fast", "high"):
        speed[quality] = timed(lambda q=quality: conv.mel_to_audio(mel_t, quality=q), device,
                               args.runs)
    result["seconds_median"] = {k: statistics.median(v) for k, v in speed.items()}
    base = statistics.median(speed["reference_32it_fft17640"])
    result["speedup_vs_reference"] = {k: base / statistics.median(v) for k, v in speed.items()}

    if not args.skip_quality:
        scores: dict[str, dict[str, list[float]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for clip in clips:
                audio, rate = read_audio(clip)
                original = Path(tmp) / "original.wav"
                write_audio(original, audio.mean(axis=0, keepdims=True), rate)
                clip_mel_t = conv.audio_to_mel(audio, rate)
                clip_mel, _ = image_to_mel(mel_to_image(clip_mel_t.cpu().numpy(), params))
                clip_mel_dev = torch.from_numpy(clip_mel).to(device)
                per: dict[str, list[float]] = {}
                for seed in range(3):
                    outs = {
                        "reference_32it_fft17640": reference_mel_to_audio(clip_mel_dev, params,
                                                                          seed=seed),
                        "fast": conv.mel_to_audio(clip_mel_dev, quality="fast", seed=seed),
                        "high": conv.mel_to_audio(clip_mel_dev, quality="high", seed=seed),
                    }
                    for name, out in outs.items():
                        rebuilt = Path(tmp) / f"{name}.wav"
                        write_audio(rebuilt, out, rate)
                        sc, lsd = spec_metrics(original, rebuilt)
                        per.setdefault(f"{name}_sc", []).append(sc)
                        per.setdefault(f"{name}_lsd", []).append(lsd)
                scores[clip.name[:6]] = {k: statistics.median(v) for k, v in per.items()}
        result["quality_median_of_3"] = scores

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"device: {result['device']}  torch {torch.__version__}")
    print(f"{'variant':28s} {'seconds (median)':>16s} {'x faster than reference':>24s}")
    for name, secs in result["seconds_median"].items():  # type: ignore[attr-defined]
        print(f"{name:28s} {secs:16.3f} {result['speedup_vs_reference'][name]:24.1f}")  # type: ignore[index]
    if not args.skip_quality:
        print(f"\n{'clip':8s} " + " ".join(f"{n + ' sc':>14s} {n + ' lsd':>10s}"
                                          for n in ("reference", "fast", "high")))
        for clip_name, s in scores.items():
            cells = [f"{s[f'{k}_sc']:14.4f} {s[f'{k}_lsd']:10.2f}"
                     for k in ("reference_32it_fft17640", "fast", "high")]
            print(f"{clip_name:8s} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
