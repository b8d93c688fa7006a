"""The loop pipeline: a loop key in, a finished loop out. The one path every loop takes.

    seed (a groove, a sound file or a spectrogram image, one period of the loop at its tempo)
    -> riffuse render, tiled in time -> loop shaping (tempo-exact, seamless, level-matched)

`riffbridge render --bpm` and the live engine's render worker both call ``make_loop``, so their
loops, and the sidecars written from their metadata, cannot drift apart. The loop comes out at
the spectrogram's own rate (``loop.sample_rate``); resampling to a device is the caller's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riffbridge.engine.plan import LoopKey
from riffbridge.errors import AudioFileError
from riffbridge.params import SEED_IMAGE_SUFFIXES, is_seed_file

if TYPE_CHECKING:
    from PIL import Image

    from riffbridge.loops.types import Loop
    from riffbridge.render.riffuse import Renderer, RiffuseJob


@dataclass(frozen=True)
class LoopRequest:
    """One loop to make: its key plus how to make it (none of which changes the key)."""

    key: LoopKey
    quality: str = "fast"  # spectrogram-to-audio quality
    seed_dir: str | None = None  # where a file pattern is found; None: the pattern is a path
    scheduler: str = "default"
    denoise_b: float | None = None  # `render` only: per-side values at alpha 1
    guidance_b: float | None = None
    mask: str | None = None


def seed_path(pattern: str, seed_dir: str | None) -> Path:
    return Path(pattern) if seed_dir is None else Path(seed_dir) / pattern


def seed_image(key: LoopKey, seed_dir: str | None) -> Image.Image:
    """The img2img seed for ``key``: one period of the loop at its tempo, whatever the source."""
    from riffbridge.loops.patterns import get_pattern
    from riffbridge.loops.seed import pattern_seed, wav_seed

    if not is_seed_file(key.pattern):
        return pattern_seed(get_pattern(key.pattern), key.bpm, key.bars, key.beats_per_bar).image
    path = seed_path(key.pattern, seed_dir)
    if key.pattern.lower().endswith(SEED_IMAGE_SUFFIXES):
        return _image_seed(path, key)
    return wav_seed(path, key.bpm, key.bars, key.beats_per_bar).image


def _image_seed(path: Path, key: LoopKey) -> Image.Image:
    """A spectrogram image, resampled in time to one period of the loop (it is circular)."""
    from PIL import Image, UnidentifiedImageError

    from riffbridge.loops.tempo import loop_frames, render_width, resample_frames
    from riffbridge.spectrogram import image_to_mel, mel_to_image

    try:
        with Image.open(path) as img:
            mel, params = image_to_mel(img)
    except FileNotFoundError:
        raise AudioFileError(f"seed image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise AudioFileError(f"seed image {path} is not an image ({exc})") from None
    width = render_width(loop_frames(key.bpm, key.bars, key.beats_per_bar))
    return mel_to_image(resample_frames(mel, width, circular=True), params)


def make_loop(renderer: Renderer, request: LoopRequest,
              progress: Callable[[float], None] | None = None,
              on_image: Callable[[Image.Image], None] | None = None) -> Loop:
    """Render and shape the loop ``request`` names. Its metadata is the key's sidecar values
    plus how it was made (model, device, scheduler, seconds). ``on_image`` gets the rendered
    spectrogram (`render --image`)."""
    return next(make_loops(renderer, (request,), progress, on_image))


def make_loops(renderer: Renderer, requests: Sequence[LoopRequest],
               progress: Callable[[float], None] | None = None,
               on_image: Callable[[Image.Image], None] | None = None) -> Iterator[Loop]:
    """``make_loop`` for several loops at once: one renderer call, so loops that share a
    schedule shape (``plan.schedule_shape``) go through the UNet as one batch; then each is
    shaped and yielded in turn, in the order of ``requests``, so the first is out before the
    others are shaped. A loop's ``render_seconds`` is the time from the start to its own end.
    A batched render equals the loops rendered one by one up to the float rounding of batched
    kernels (tests/test_render_batch.py)."""
    from riffbridge.loops.shape import ShapeSettings, shape_image

    started = time.perf_counter()
    jobs = [loop_job(request) for request in requests]
    images = renderer.render(jobs, progress)
    for request, image in zip(requests, images, strict=True):
        if on_image is not None:
            on_image(image)
        key = request.key
        metadata: dict[str, Any] = {
            **key.sidecar(), "model": renderer.components.name, "device": str(renderer.device),
            "scheduler": request.scheduler}
        if getattr(renderer, "step_cache", 1) > 1:  # it changes the sound: the file says so
            metadata["step_cache"] = renderer.step_cache
        if request.denoise_b is not None:
            metadata["denoise_b"] = request.denoise_b
        if request.guidance_b is not None:
            metadata["guidance_b"] = request.guidance_b
        settings = ShapeSettings(quality=request.quality,  # type: ignore[arg-type]
                                 device=str(renderer.device))
        loop = shape_image(image, key.bpm, key.bars, key.beats_per_bar, settings, metadata)
        yield loop.with_metadata(render_seconds=round(time.perf_counter() - started, 3))


def loop_job(request: LoopRequest) -> RiffuseJob:
    """The riffuse job of one loop: its seed image, tiled in time."""
    from riffbridge.render.riffuse import ImageRef, RiffuseJob

    key = request.key
    seed = ImageRef.from_image(seed_image(key, request.seed_dir))
    return RiffuseJob(prompt_a=key.prompt_a, prompt_b=key.prompt_b, seed_a=key.seed_a,
                      seed_b=key.seed_b, alpha=key.alpha, negative=key.negative,
                      denoise_a=key.denoise, denoise_b=request.denoise_b,
                      guidance_a=key.guidance, guidance_b=request.guidance_b, steps=key.steps,
                      seed_image=seed, mask=request.mask, scheduler=request.scheduler,
                      tile_time=True,
                      # off the A/B path (the XY surface, a weights mix) the key's style mix
                      styles=key.styles if key.mix != "ab" else ())
