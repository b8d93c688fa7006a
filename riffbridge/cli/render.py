"""`riffbridge render`: one riffuse clip to a WAV, or with --bpm/--bars a finished loop.

Without a tempo the image is converted straight to audio (a clip of --width columns). With
--bpm and --bars the clip goes through the same path as the live engine: a seed (a drum groove,
a sound file or a ready image) covering one period of the loop, a render tiled in time, then
loop shaping to exactly N bars (seamless, level-matched) and a WAV with tempo chunks.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riffbridge.errors import ConfigError
from riffbridge.params import BY_NAME, DEFAULT_MODEL

if TYPE_CHECKING:
    from PIL import Image

    from riffbridge.loops.types import Loop
    from riffbridge.pipeline import LoopRequest
    from riffbridge.render.riffuse import Renderer, RiffuseJob

LOOP_ONLY = ("beats_per_bar", "pattern", "seed_audio", "quality")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render", help="render one clip, or with --bpm/--bars a finished loop, to a WAV",
        description="Riffusion interpolation: prompt -> prompt-b at --alpha. With --bpm and "
        "--bars the result is a seamless loop of exactly that many bars with tempo chunks "
        "(acid, smpl), made the way the live engine makes its loops.",
        epilog="OUTPUT: a .wav file, or with --bpm/--bars also a folder (no suffix) that gets a "
        "run folder with the WAV, a JSON sidecar and index.jsonl, like `riffbridge serve`.")
    p.add_argument("output", type=Path, help="WAV file to write, or a folder for a loop")
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
    p.add_argument("--width", type=int, default=None,
                   help="without --bpm: columns, multiple of 8 (10 ms each)")
    p.add_argument("--bpm", type=float, default=None, help="make a loop at this tempo, 40-240")
    p.add_argument("--bars", type=int, default=None, help="with --bpm: loop length, 1-16 bars")
    p.add_argument("--beats-per-bar", type=int, default=None,
                   help="with --bpm: beats per bar, 1-16 (default 4)")
    p.add_argument("--pattern", default=None,
                   help=f"with --bpm: the seed groove (default {BY_NAME['pattern'].default}; "
                   "`riffbridge seed --list` shows them)")
    p.add_argument("--seed-audio", type=Path, default=None, metavar="FILE",
                   help="with --bpm: seed from this sound file stretched to the loop")
    p.add_argument("--seed-image", type=Path, default=None, help="a ready seed image")
    p.add_argument("--mask", type=Path, default=None)
    p.add_argument("--quality", default=None, choices=BY_NAME["quality"].choices,
                   help="with --bpm: spectrogram-to-audio quality (default fast)")
    p.add_argument("--scheduler", default="default", choices=("default", "dpm++2m", "ddim"))
    p.add_argument("--tile-time", action="store_true",
                   help="render a horizontally seamless clip (always on with --bpm)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="hub id, diffusers folder, .ckpt/.safetensors file, or tiny")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"))
    p.add_argument("--step-cache", type=int, default=BY_NAME["step_cache"].default,
                   metavar="N", help=BY_NAME["step_cache"].help)
    p.add_argument("--image", type=Path, default=None, help="also write the spectrogram PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.bpm is None:
        if args.bars is not None:
            raise ConfigError(f"--bars {args.bars} needs --bpm (the loop's tempo, 40-240)")
        given = [name for name in LOOP_ONLY if getattr(args, name) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ConfigError(f"{flag} shapes a loop and needs --bpm and --bars")
        return _render_clip(args)
    return _render_loop(args)


def _job(args: argparse.Namespace, **kw: Any) -> RiffuseJob:
    from riffbridge.render.riffuse import RiffuseJob

    return RiffuseJob(
        prompt_a=args.prompt, prompt_b=args.prompt_b, seed_a=args.seed, seed_b=args.seed_b,
        alpha=args.alpha, negative=args.negative, denoise_a=args.denoise,
        denoise_b=args.denoise_b, guidance_a=args.guidance, guidance_b=args.guidance_b,
        steps=args.steps, mask=args.mask, scheduler=args.scheduler, **kw)


@contextmanager
def _stage(desc: str) -> Iterator[None]:
    """A one-step progress bar for a stage that may take a few seconds."""
    from tqdm import tqdm

    with tqdm(total=1, desc=desc, disable=None, leave=False) as bar:
        yield
        bar.update()


def _render(args: argparse.Namespace, job: RiffuseJob
            ) -> tuple[Renderer, Image.Image, float]:
    """Load the model, render ``job``; the renderer, the image and the render seconds."""
    import time

    from tqdm import tqdm

    from riffbridge.render.riffuse import Renderer

    renderer = Renderer(args.model, device=args.device, dtype=args.dtype,
                        step_cache=args.step_cache)
    with tqdm(total=100, desc="render", unit="%", disable=None, leave=False) as bar:
        def progress(fraction: float) -> None:
            bar.update(round(fraction * 100) - bar.n)

        started = time.perf_counter()
        image = renderer.render([job], progress)[0]
        seconds = time.perf_counter() - started
    _save_image(args, image)
    return renderer, image, seconds


def _save_image(args: argparse.Namespace, image: Image.Image) -> None:
    if args.image is not None:
        image.save(args.image, format="PNG")
        print(f"wrote {args.image}")


def _render_clip(args: argparse.Namespace) -> int:
    """A plain clip: the image straight to audio, --width columns (or the seed image's)."""
    from riffbridge.audio_io import write_audio
    from riffbridge.spectrogram import image_to_audio

    job = _job(args, width=args.width, seed_image=args.seed_image, tile_time=args.tile_time)
    renderer, image, _ = _render(args, job)
    with _stage("audio"):
        audio, rate = image_to_audio(image, device=renderer.device, circular=job.tile_time)
    write_audio(args.output, audio, rate)
    print(f"wrote {args.output} ({audio.shape[-1] / rate:.2f} s)")
    return 0


def _check_loop_args(args: argparse.Namespace) -> None:
    """Every loop flag checked before the model loads: one clear line for a bad value."""
    from riffbridge.loops.patterns import get_pattern
    from riffbridge.loops.tempo import check_tempo

    if args.bars is None:
        raise ConfigError(f"--bpm {args.bpm:g} needs --bars (the loop length, 1-16 bars)")
    if args.width is not None:
        raise ConfigError(f"--width {args.width} and --bpm/--bars both set the length; the loop "
                          "is as wide as its seed, so drop --width")
    sources = [flag for flag, value in (("--pattern", args.pattern),
                                        ("--seed-audio", args.seed_audio),
                                        ("--seed-image", args.seed_image)) if value is not None]
    if len(sources) > 1:
        raise ConfigError(f"give one seed, not {' and '.join(sources)}")
    check_tempo(args.bpm, args.bars, 4 if args.beats_per_bar is None else args.beats_per_bar)
    if args.pattern is not None:
        get_pattern(args.pattern)
    suffix = args.output.suffix.lower()
    if suffix not in ("", ".wav"):
        raise ConfigError(f"a loop is written to a .wav file or a folder (no suffix), got "
                          f"{str(args.output)!r}")
    if suffix == ".wav" and not args.output.parent.is_dir():
        raise ConfigError(f"the folder of {args.output} does not exist; create it first")


def _loop_request(args: argparse.Namespace) -> LoopRequest:
    """The loop the flags name, as the engine would name it: one key, one pipeline."""
    from riffbridge.engine.plan import LoopKey
    from riffbridge.loops.seed import DEFAULT_PATTERN
    from riffbridge.pipeline import LoopRequest

    source = args.seed_audio or args.seed_image
    key = LoopKey(prompt_a=args.prompt,
                  prompt_b=args.prompt if args.prompt_b is None else args.prompt_b,
                  seed_a=args.seed, seed_b=args.seed if args.seed_b is None else args.seed_b,
                  negative=args.negative, alpha=args.alpha, denoise=args.denoise,
                  guidance=args.guidance, steps=args.steps, bpm=args.bpm, bars=args.bars,
                  beats_per_bar=4 if args.beats_per_bar is None else args.beats_per_bar,
                  pattern=str(source) if source is not None else args.pattern or DEFAULT_PATTERN)
    return LoopRequest(key, quality=args.quality or "fast", seed_dir=None,
                       scheduler=args.scheduler, denoise_b=args.denoise_b,
                       guidance_b=args.guidance_b,
                       mask=None if args.mask is None else str(args.mask))


def _render_loop(args: argparse.Namespace) -> int:
    """A finished loop through the engine's own pipeline (seed -> render tiled in time -> loop
    shaping), written as a WAV with tempo chunks and its JSON sidecar."""
    import time

    from tqdm import tqdm

    from riffbridge.pipeline import make_loop
    from riffbridge.render.riffuse import Renderer

    _check_loop_args(args)
    request = _loop_request(args)
    renderer = Renderer(args.model, device=args.device, dtype=args.dtype,
                        step_cache=args.step_cache)
    with tqdm(total=100, desc="render", unit="%", disable=None, leave=False) as bar:
        def progress(fraction: float) -> None:
            bar.update(round(fraction * 100) - bar.n)

        started = time.perf_counter()
        loop = make_loop(renderer, request, progress, on_image=lambda image: _save_image(
            args, image))
        seconds = time.perf_counter() - started
    path = _write_loop(loop, args.output)
    print(f"wrote {path} ({loop.bars} bars at {loop.bpm:g} bpm, {loop.num_samples} samples, "
          f"{loop.seconds:.2f} s; made in {seconds:.1f} s)")
    return 0


def _write_loop(loop: Loop, output: Path) -> Path:
    """One .wav file with its .json sidecar, or a run folder (WAVs, sidecars, index) under the
    ``output`` folder, as `riffbridge serve` writes them."""
    from riffbridge.outputs.files import OutputFolder, write_loop_file
    from riffbridge.outputs.wav import WavSettings

    settings = WavSettings("pcm24", loop.sample_rate)
    if output.suffix.lower() == ".wav":
        return write_loop_file(output, loop, settings)
    return OutputFolder(output, settings).write(loop)
