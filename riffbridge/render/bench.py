"""Per-stage timing of the render path: text encoding, UNet steps, VAE decode, image -> audio."""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from riffbridge.render.riffuse import ImageRef, Renderer, RiffuseJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    model: str = "tiny"
    device: str = "auto"
    dtype: str = "auto"
    steps: int = 50
    denoise: float = 0.75
    guidance: float = 7.0
    scheduler: str = "default"
    batch: int = 1
    width: int = 512
    runs: int = 3
    warmup: int = 1
    sdpa: bool = True
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    width_buckets: bool = False  # render as a loop (tiled in time) at the width's bucket
    step_cache: int = 1  # the whole UNet every N steps (riffbridge.render.stepcache)
    audio: bool = True


@dataclass(frozen=True)
class BenchResult:
    config: BenchConfig
    device_name: str
    text_ms: float
    unet_ms: float
    unet_steps: int
    unet_ms_per_step: float
    decode_ms: float
    render_ms: float
    audio_ms: float
    s_per_clip: float
    clips_per_s: float
    realtime_factor: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_image(width: int) -> ImageRef:
    """A fixed striped test seed image (16 dark hits across the clip), deterministic."""
    arr = np.full((512, width, 3), 235, dtype=np.uint8)
    for k in range(16):
        x = k * width // 16
        arr[200:, x:x + 4] = 30
    return ImageRef.from_image(Image.fromarray(arr))


def _device_name(renderer: Renderer) -> str:
    import torch

    if renderer.device.type == "cuda":
        return torch.cuda.get_device_name(renderer.device)
    return f"{renderer.device.type} ({torch.get_num_threads()} threads)"


def make_renderer(cfg: BenchConfig) -> Renderer:
    model: Any = cfg.model
    if model == "sd15-random":
        from riffbridge.render.model import build_random_sd15
        from riffbridge.torch_device import resolve_device

        model = build_random_sd15(device=resolve_device(cfg.device))
    return Renderer(model, device=cfg.device, dtype=cfg.dtype, max_batch=cfg.batch,
                    sdpa=cfg.sdpa, channels_last=cfg.channels_last, compile_unet=cfg.compile,
                    cuda_graphs=cfg.cuda_graphs, width_buckets=cfg.width_buckets,
                    step_cache=cfg.step_cache)


def run_bench(cfg: BenchConfig, renderer: Renderer | None = None) -> BenchResult:
    """Time ``cfg.runs`` renders of ``cfg.batch`` alphas after ``cfg.warmup`` untimed ones."""
    import torch

    from riffbridge.spectrogram import image_to_audio

    if renderer is None:
        renderer = make_renderer(cfg)
    image = seed_image(cfg.width)
    alphas = [i / max(cfg.batch, 1) for i in range(cfg.batch)]
    jobs = [RiffuseJob("funky jazz drums", "church organ", seed_a=1, seed_b=2, alpha=a,
                       denoise_a=cfg.denoise, guidance_a=cfg.guidance, steps=cfg.steps,
                       width=cfg.width, seed_image=image, scheduler=cfg.scheduler,
                       tile_time=cfg.width_buckets)
            for a in alphas]
    sync = torch.cuda.synchronize if renderer.device.type == "cuda" else (lambda: None)
    text, unet, decode, total, audio = [], [], [], [], []
    steps = 0
    for i in range(cfg.warmup + cfg.runs):
        renderer.forget_prompts()  # time the text encoder every run
        sync()
        t0 = time.perf_counter()
        images = renderer.render(jobs)
        sync()
        t1 = time.perf_counter()
        ta = 0.0
        if cfg.audio:
            image_to_audio(images[0], device=renderer.device)
            sync()
            ta = time.perf_counter() - t1
        if i >= cfg.warmup:
            tm = renderer.timings
            text.append(tm["text_s"])
            unet.append(tm["unet_s"])
            decode.append(tm["decode_s"])
            total.append(t1 - t0)
            audio.append(ta)
            steps = int(tm["unet_steps"])
    med = statistics.median
    per_clip = (med(total) + med(audio) * cfg.batch) / cfg.batch
    seconds = cfg.width / 100.0
    return BenchResult(
        config=cfg, device_name=_device_name(renderer), text_ms=med(text) * 1e3,
        unet_ms=med(unet) * 1e3, unet_steps=steps,
        unet_ms_per_step=med(unet) * 1e3 / max(steps, 1), decode_ms=med(decode) * 1e3,
        render_ms=med(total) * 1e3, audio_ms=med(audio) * 1e3, s_per_clip=per_clip,
        clips_per_s=1.0 / per_clip, realtime_factor=seconds / per_clip,
    )


@dataclass(frozen=True)
class DiffusersResult:
    """diffusers' own StableDiffusionImg2ImgPipeline on the same components, device and jobs."""

    pipeline: str
    diffusers_version: str
    render_ms: float  # median, the whole pipeline call (text, UNet steps, VAE decode)
    s_per_clip: float  # render only (no image -> audio)
    ours_render_ms: float
    ours_s_per_clip: float  # riffbridge's render only, the same definition
    ratio: float  # diffusers' time over riffbridge's: how many times faster riffbridge is

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_diffusers(cfg: BenchConfig, renderer: Renderer, ours: BenchResult) -> DiffusersResult:
    """Time diffusers' StableDiffusionImg2ImgPipeline built from ``renderer``'s components (the
    same UNet, VAE, text encoder, tokenizer, scheduler and attention processors, on the same
    device in the same dtype) on the same seed image, prompt count, denoise, guidance and
    steps: ``cfg.runs`` calls after ``cfg.warmup``. Run after riffbridge's own timing: the
    renderer's time tiling is switched off first (diffusers' pipeline knows none)."""
    import diffusers
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    renderer._set_tiling(False)
    c = renderer.components
    pipe: Any = StableDiffusionImg2ImgPipeline(
        vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet,
        scheduler=renderer._scheduler(cfg.scheduler), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    image = seed_image(cfg.width).open()
    sync = torch.cuda.synchronize if renderer.device.type == "cuda" else (lambda: None)
    times = []
    for i in range(cfg.warmup + cfg.runs):
        generator = torch.Generator(renderer.device).manual_seed(1)
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            pipe(prompt=["funky jazz drums"] * cfg.batch, image=image, strength=cfg.denoise,
                 guidance_scale=cfg.guidance, num_inference_steps=cfg.steps,
                 generator=generator, output_type="pil")
        sync()
        if i >= cfg.warmup:
            times.append(time.perf_counter() - t0)
    render_ms = statistics.median(times) * 1e3
    ours_per_clip = ours.render_ms / 1e3 / cfg.batch
    return DiffusersResult(
        pipeline="StableDiffusionImg2ImgPipeline", diffusers_version=diffusers.__version__,
        render_ms=render_ms, s_per_clip=render_ms / 1e3 / cfg.batch,
        ours_render_ms=ours.render_ms, ours_s_per_clip=ours_per_clip,
        ratio=render_ms / ours.render_ms)


def format_against(d: DiffusersResult) -> str:
    return (f"riffbridge render          {d.ours_render_ms:9.1f} ms  {d.ours_s_per_clip:.3f} "
            f"s/clip (render only)\n"
            f"diffusers {d.diffusers_version} img2img {d.render_ms:9.1f} ms  {d.s_per_clip:.3f} "
            f"s/clip (render only, the same components)\n"
            f"ratio: riffbridge is {d.ratio:.2f}x diffusers")


def variant_name(c: BenchConfig) -> str:
    return (f"{c.model} {c.dtype} b{c.batch} {c.scheduler} {c.steps}st"
            f"{' cl' if c.channels_last else ''}{' compile' if c.compile else ''}"
            f"{' graphs' if c.cuda_graphs else ''}{' buckets' if c.width_buckets else ''}"
            f"{f' step-cache {c.step_cache}' if c.step_cache > 1 else ''}"
            f"{'' if c.sdpa else ' no-sdpa'}")


def format_table(results: list[BenchResult]) -> str:
    head = ("variant", "text ms", "unet ms (steps)", "ms/step", "decode ms", "render ms",
            "audio ms", "s/clip", "clips/s", "x real time")
    rows = [head]
    for r in results:
        name = variant_name(r.config)
        rows.append((name, f"{r.text_ms:.1f}", f"{r.unet_ms:.1f} ({r.unet_steps})",
                     f"{r.unet_ms_per_step:.2f}", f"{r.decode_ms:.1f}", f"{r.render_ms:.1f}",
                     f"{r.audio_ms:.1f}", f"{r.s_per_clip:.3f}", f"{r.clips_per_s:.2f}",
                     f"{r.realtime_factor:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     for row in rows)
