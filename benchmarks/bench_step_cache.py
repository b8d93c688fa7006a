"""What step caching (``step_cache``, DeepCache-style) saves and what it changes.
`python benchmarks/bench_step_cache.py [--model tiny|sd15-random|PATH] [--device cpu|cuda]`.

Renders the same job (img2img from the striped bench seed, CFG on, one seed and prompt pair)
at each interval of --intervals, sharing one loaded model, and prints per interval: how many
UNet steps ran in full; the UNet arithmetic left (FLOPs of the steps as run over FLOPs of all
steps in full, counted by torch's FlopCounterMode: the same on every machine); the UNet time
and the whole render time (the fastest of --runs, the intervals interleaved within each run,
so that a busy machine disturbs them alike) and the UNet speed-up over interval 1; how far the
output is from interval 1's (the uncached render): PSNR and the largest difference of the
spectrogram image's pixels, and, when ../shared/tools/spec_metrics.py is there, its spectral
convergence and log-spectral distance of the audio (each image through the same Griffin-Lim;
lower is closer). For scale, the same figures for the uncached image perturbed by a random +-1
step per pixel: Griffin-Lim amplifies small changes of an image, so that row is the floor of
what the audio figures resolve.

With random weights (tiny, sd15-random) the figures prove the plumbing and the compute saved,
not the musical effect: a trained UNet's deep features change smoothly from step to step, which
is what DeepCache relies on; random ones need not, so the output differences here say nothing
about what a listener would hear with the real model.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from bench_args import model_parser
from PIL import Image

from riffbridge.render.bench import seed_image
from riffbridge.render.riffuse import Renderer, RiffuseJob

SPEC_METRICS = Path(__file__).resolve().parents[2] / "shared" / "tools" / "spec_metrics.py"


def load(model: str, device: str) -> Any:
    if model == "sd15-random":
        from riffbridge.render.model import build_random_sd15
        from riffbridge.torch_device import resolve_device

        return build_random_sd15(device=resolve_device(device))
    from riffbridge.render.model import load_components

    return load_components(model)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def spec_metrics(reference: Path, other: Path) -> str:
    if not SPEC_METRICS.exists():
        return "-"
    done = subprocess.run([sys.executable, str(SPEC_METRICS), str(reference), str(other)],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or f"failed: {done.stderr.strip()[-200:]}"


def step_flops(renderer: Renderer, width: int) -> tuple[float, float]:
    """FLOPs of one full UNet step and of one cached step at the render's shape (a CFG batch
    of 2), counted by torch's FlopCounterMode (matmuls and convolutions): machine-independent."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from riffbridge.render.stepcache import full_forward, shallow_forward

    unet = renderer.components.unet
    sample = torch.zeros(2, 4, 64, width // 8, dtype=renderer.dtype, device=renderer.device)
    context = torch.zeros(2, 77, unet.config.cross_attention_dim, dtype=renderer.dtype,
                          device=renderer.device)
    t = torch.tensor(500, device=renderer.device)
    # The math attention backend: FlopCounterMode has no formula for the CPU's fused SDPA
    # kernel and would leave attention out; the math one is matmuls it counts.
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as full:
            _, deep = full_forward(unet, sample, t, context)
        with FlopCounterMode(display=False) as cached:
            shallow_forward(unet, sample, t, context, deep)
    return float(full.get_total_flops()), float(cached.get_total_flops())


def main() -> int:
    ap = model_parser(steps=20, runs=3)
    ap.add_argument("--width", type=int, default=256, help="clip width in columns")
    ap.add_argument("--denoise", type=float, default=0.75)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--intervals", default="1,2,3,4")
    ap.add_argument("--warmup", type=int, default=1, help="untimed renders per interval first")
    ap.add_argument("--no-audio", action="store_true", help="skip Griffin-Lim and spec_metrics")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch
    from scipy.io import wavfile

    from riffbridge.spectrogram import image_to_audio

    intervals = [int(n) for n in args.intervals.split(",")]
    if intervals[0] != 1:
        intervals.insert(0, 1)  # the uncached reference
    t0 = time.perf_counter()
    comps = load(args.model, args.device)
    load_s = time.perf_counter() - t0
    renderers = {n: Renderer(comps, device=args.device, dtype=args.dtype, step_cache=n)
                 for n in intervals}
    job = RiffuseJob("funky jazz drums", "church organ", seed_a=1, seed_b=2, alpha=0.3,
                     denoise_a=args.denoise, steps=args.steps, width=args.width,
                     seed_image=seed_image(args.width))
    device = renderers[1].device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):  # untimed: kernels chosen, memory pools grown, text cached
        for r in renderers.values():
            r.render([job])
    full_flops, cached_flops = step_flops(renderers[1], args.width)
    unet: dict[int, list[float]] = {n: [] for n in intervals}
    total: dict[int, list[float]] = {n: [] for n in intervals}
    images: dict[int, np.ndarray] = {}
    full: dict[int, int] = {}
    steps = 0
    for _ in range(args.runs):
        for n in intervals:
            sync()
            started = time.perf_counter()
            image = renderers[n].render([job])[0]
            sync()
            total[n].append(time.perf_counter() - started)
            tm = renderers[n].timings
            unet[n].append(tm["unet_s"])
            steps = int(tm["unet_steps"])
            full[n] = int(tm.get("unet_full_steps", steps))
            pixels = np.asarray(image).astype(np.float64)
            if n in images and not np.array_equal(images[n], pixels):
                raise SystemExit(f"interval {n} rendered two different images from the same "
                                 "inputs")
            images[n] = pixels
    rows = []
    floor_row: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        wavs: dict[int, Path] = {}
        if not args.no_audio:
            for n in intervals:
                audio, rate = image_to_audio(Image.fromarray(images[n].astype(np.uint8)),
                                             device=device)
                wavs[n] = Path(tmp) / f"interval{n}.wav"
                wavfile.write(wavs[n], rate, np.ascontiguousarray(audio.T, dtype=np.float32))
            # Griffin-Lim's own sensitivity: the uncached image with a random +-1 step on each
            # pixel (about 50 dB PSNR) through the same conversion and metrics.
            noise = np.random.default_rng(0).integers(-1, 2, images[1].shape)
            floor = np.clip(images[1] + noise, 0, 255)
            audio, rate = image_to_audio(Image.fromarray(floor.astype(np.uint8)), device=device)
            wavs[0] = Path(tmp) / "floor.wav"
            wavfile.write(wavs[0], rate, np.ascontiguousarray(audio.T, dtype=np.float32))
            floor_row = {"psnr_db": psnr(floor, images[1]),
                         "spec_metrics": spec_metrics(wavs[1], wavs[0])}
        for n in intervals:
            rows.append({
                "interval": n, "full_steps": full[n], "steps": steps,
                "unet_s": min(unet[n]), "render_s": min(total[n]),
                "unet_speedup": min(unet[1]) / min(unet[n]),
                "unet_flops_share": (full[n] * full_flops + (steps - full[n]) * cached_flops)
                / (steps * full_flops),
                "psnr_db": psnr(images[n], images[1]),
                "max_pixel_diff": float(np.abs(images[n] - images[1]).max()),
                "spec_metrics": spec_metrics(wavs[1], wavs[n]) if wavs else "-"})
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
    head = {"model": args.model, "device": name, "dtype": str(renderers[1].dtype),
            "width": args.width, "steps": args.steps, "denoise": args.denoise,
            "runs": args.runs, "warmup": args.warmup, "load_s": round(load_s, 1),
            "full_step_gflop": round(full_flops / 1e9, 2),
            "cached_step_gflop": round(cached_flops / 1e9, 2)}
    if args.json:
        print(json.dumps({**head, "rows": rows, "griffin_lim_floor": floor_row}, indent=1))
        return 0
    print(" ".join(f"{k}={v}" for k, v in head.items()))
    print(f"{'interval':>8} {'full/steps':>10} {'flops':>6} {'unet s':>8} {'render s':>9} "
          f"{'unet x':>7} {'PSNR dB':>8} {'max px':>7}  spec_metrics vs interval 1")
    for r in rows:
        db = "inf" if math.isinf(r["psnr_db"]) else f"{r['psnr_db']:.1f}"
        print(f"{r['interval']:>8} {r['full_steps']:>4}/{r['steps']:<5} "
              f"{r['unet_flops_share']:6.0%} {r['unet_s']:8.2f} "
              f"{r['render_s']:9.2f} {r['unet_speedup']:7.2f} {db:>8} "
              f"{r['max_pixel_diff']:7.0f}  {r['spec_metrics']}")
    if floor_row:
        print(f"floor: the uncached image +-1 step per pixel at random ({floor_row['psnr_db']:.1f} "
              f"dB): {floor_row['spec_metrics']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
