"""Image -> audio speed and round-trip quality: riffbridge's converter vs the reference algorithm.

The baseline is Riffusion's algorithm run the plain way, in this same process: the mel
filterbank's pseudo-inverse computed per call and 32 iterations of
torchaudio-style Griffin-Lim (momentum 0.99, random start) at the zero-padded FFT size 17640,
with torch.stft/istft. Quality is the round trip audio -> image -> audio scored by
shared/tools/spec_metrics.py (median of 3 runs with different Griffin-Lim seeds).

    python benchmarks/bench_spectrogram.py [--device cpu|cuda] [--runs 3] [--json]

``--process`` times whole processes from a cold start instead, as a user meets them:
``python -m riffbridge convert IMAGE WAV`` (imports, pseudo-inverse, Griffin-Lim, write), the
reference algorithm run as a process of its own (this script's ``--reference-convert``), and one
``riffbridge convert`` call over many images (``-o DIR --to wav``); median of ``--runs``.

    python benchmarks/bench_spectrogram.py --process [--runs 5] [--files 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
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


def reference_convert(image_path: Path, wav_path: Path) -> None:
    """The reference algorithm as one conversion: read the image, invert it, write the WAV."""
    from PIL import Image

    with Image.open(image_path) as image:
        mel, params = image_to_mel(image)
    audio = reference_mel_to_audio(torch.from_numpy(mel), params)
    write_audio(wav_path, audio.astype(np.float32), params.sample_rate)


def timed_process(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def process_benchmark(runs: int, files: int) -> dict[str, object]:
    """Whole processes, cold start each time (the OS file cache is warm after the first)."""
    clip = sorted((SHARED / "audio").glob("*.wav"))[0]
    audio, rate = read_audio(clip)
    params = SpectrogramParams()
    mel = SpectrogramConverter(params).audio_to_mel(audio, rate)[:, :, :512].numpy()
    image = mel_to_image(mel, params)
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        png = folder / "clip.png"
        image.save(png, format="PNG", exif=image.info["exif"])
        many = []
        for i in range(files):
            many.append(folder / f"clip{i}.png")
            many[-1].write_bytes(png.read_bytes())
        (folder / "out").mkdir()
        import_cmd = "import riffbridge.cli.convert, riffbridge.spectrogram, riffbridge.audio_io"
        seconds = {
            "python_startup": timed_process([py, "-c", "pass"], runs),
            "imports": timed_process([py, "-c", import_cmd], runs),
            "riffbridge_convert": timed_process(
                [py, "-m", "riffbridge", "convert", str(png), str(folder / "a.wav")], runs),
            "reference_process": timed_process(
                [py, __file__, "--reference-convert", str(png), str(folder / "r.wav")], runs),
        }
        batch = [py, "-m", "riffbridge", "convert", *map(str, many), "-o", str(folder / "out"),
                 "--to", "wav"]
        try:
            seconds[f"riffbridge_convert_{files}_files"] = timed_process(batch, runs)
        except subprocess.CalledProcessError as exc:  # a riffbridge without -o/--to
            print(f"batch convert failed, not timed: {exc.stderr.decode().strip()}",
                  file=sys.stderr)
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    ref = medians["reference_process"]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, torch {torch.__version__}",
        "image_columns": 512, "runs": runs, "files": files,
        "seconds_median": medians,
        "seconds_all": seconds,
        "x_faster_than_reference_process": {k: ref / v for k, v in medians.items()
                                            if k.startswith("riffbridge")},
    }


def print_process(result: dict[str, object]) -> None:
    print(f"machine: {result['machine']}  runs: {result['runs']}, cold start each")
    ref = result["seconds_median"]["reference_process"]  # type: ignore[index]
    print(f"{'process':32s} {'seconds (median)':>16s} {'min':>8s} {'max':>8s} {'x vs ref':>9s}")
    for name, secs in result["seconds_median"].items():  # type: ignore[attr-defined]
        every = result["seconds_all"][name]  # type: ignore[index]
        print(f"{name:32s} {secs:16.3f} {min(every):8.3f} {max(every):8.3f} "
              f"{ref / secs:9.2f}")
    batch = f"riffbridge_convert_{result['files']}_files"
    if batch in result["seconds_median"]:  # type: ignore[operator]
        one = result["seconds_median"]["riffbridge_convert"]  # type: ignore[index]
        many = result["seconds_median"][batch]  # type: ignore[index]
        print(f"one call, {result['files']} files: {many / result['files']:.3f} s per file "
              f"(one file per process: {one:.3f} s)")  # type: ignore[operator]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--process", action="store_true",
                    help="time whole convert processes from a cold start (see above)")
    ap.add_argument("--files", type=int, default=8, help="--process: images in the batch call")
    ap.add_argument("--reference-convert", nargs=2, type=Path, metavar=("IMAGE", "WAV"),
                    help="convert one image with the reference algorithm and exit")
    args = ap.parse_args()
    if args.reference_convert:
        reference_convert(*args.reference_convert)
        return 0
    if args.process:
        result = process_benchmark(args.runs, args.files)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_process(result)
        return 0
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
