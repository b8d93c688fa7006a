"""`riffbridge render`: one riffuse clip to a WAV (and the spectrogram PNG with --image)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render one clip between two prompts to a WAV",
                       description="Riffusion interpolation: prompt -> prompt-b at --alpha.")
    p.add_argument("output", type=Path, help="WAV file to write")
    p.add_argument("--prompt", default="", help="start prompt (empty = unconditional)")
    p.add_argument("--prompt-b", default=None, help="end prompt (default: --prompt)")
    p.add_argument("--alpha", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-b", type=int, default=None)
    p.add_argument("--negative", default="")
    p.add_argument("--denoise", type=float, default=0.75)
    p.add_argument("--denoise-b", type=float, default=None)
    p.add_argument("--guidance", type=float, default=7.0)
    p.add_argument("--guidance-b", type=float, default=None)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--width", type=int, default=None, help="columns, multiple of 8 (10 ms each)")
    p.add_argument("--bpm", type=float, default=None)
    p.add_argument("--bars", type=float, default=None, help="with --bpm: 4/4 bars -> width")
    p.add_argument("--seed-image", type=Path, default=None)
    p.add_argument("--mask", type=Path, default=None)
    p.add_argument("--scheduler", default="default", choices=("default", "dpm++2m", "ddim"))
    p.add_argument("--tile-time", action="store_true", help="render a horizontally seamless clip")
    p.add_argument("--model", default="riffusion/riffusion-model-v1",
                   help="hub id, diffusers folder, .ckpt/.safetensors file, or tiny")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"))
    p.add_argument("--image", type=Path, default=None, help="also write the spectrogram PNG")
    p.set_defaults(func=run)


def width_for(bpm: float, bars: float) -> int:
    """Columns for N bars of 4/4 at a tempo: ceil(seconds * 100 / 8) * 8."""
    from riffbridge.errors import ConfigError

    if not (math.isfinite(bpm) and bpm > 0 and math.isfinite(bars) and bars > 0):
        raise ConfigError(f"--bpm and --bars must be positive, got {bpm} and {bars}")
    seconds = bars * 4 * 60.0 / bpm
    return math.ceil(seconds * 100 / 8) * 8


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from riffbridge.audio_io import write_audio
    from riffbridge.errors import ConfigError
    from riffbridge.render.riffuse import Renderer, RiffuseJob

    width = args.width
    if (args.bpm is None) != (args.bars is None):
        raise ConfigError("--bpm and --bars go together")
    if args.bpm is not None:
        if width is not None:
            raise ConfigError("give --width or --bpm/--bars, not both")
        width = width_for(args.bpm, args.bars)
    job = RiffuseJob(
        prompt_a=args.prompt, prompt_b=args.prompt_b, seed_a=args.seed, seed_b=args.seed_b,
        alpha=args.alpha, negative=args.negative, denoise_a=args.denoise,
        denoise_b=args.denoise_b, guidance_a=args.guidance, guidance_b=args.guidance_b,
        steps=args.steps, width=width, seed_image=args.seed_image, mask=args.mask,
        scheduler=args.scheduler, tile_time=args.tile_time)
    renderer = Renderer(args.model, device=args.device, dtype=args.dtype)
    with tqdm(total=100, desc="render", unit="%", leave=False) as bar:
        def progress(fraction: float) -> None:
            bar.update(round(fraction * 100) - bar.n)

        image = renderer.render([job], progress)[0]
    from riffbridge.spectrogram import image_to_audio

    audio, rate = image_to_audio(image, device=renderer.device, circular=job.tile_time)
    if args.image is not None:
        image.save(args.image, format="PNG")
        print(f"wrote {args.image}")
    write_audio(args.output, audio, rate)
    print(f"wrote {args.output} ({audio.shape[-1] / rate:.2f} s)")
    return 0
