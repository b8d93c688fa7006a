"""The riffuse pipeline: Riffusion's prompt-to-prompt interpolation, one readable loop.

For each job: interpolate the two prompts' text embeddings, guidance and denoising strength by
alpha; slerp the two seeds' noise (or, for a job of style slots, the weight-normalised mix of up
to ``MAX_STYLES`` prompts' embeddings and a spherical blend of their seeds' noises:
``blend_embeddings``, ``blend_noises``); img2img from the seed image's VAE latents; optional mask
(black keeps the seed image, white is repainted); classifier-free guidance against the negative
prompt's embedding; VAE decode. Jobs that share the shape of their schedule run as one batch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from riffbridge import cancel
from riffbridge.errors import AudioFileError, ConfigError, RenderError
from riffbridge.render.buckets import bucket_width, crop_latents, pad_latents, padding
from riffbridge.render.compiling import BackgroundCompiler, ShapeKey
from riffbridge.render.components import Components
from riffbridge.render.graphs import GraphedUNet, require_cuda
from riffbridge.render.model import load_components, resolve_dtype
from riffbridge.render.seamless import set_time_tiling
from riffbridge.render.stepcache import StepCache, check_interval
from riffbridge.torch_device import resolve_device

log = logging.getLogger(__name__)

HEIGHT = 512
LATENT_FACTOR = 8
SCHEDULERS = ("default", "dpm++2m", "ddim")
Progress = Callable[[float], None]
# The caches keep the most recently used entries only: a live session runs for hours while
# prompts are typed and swept and seed images change, and every distinct one would otherwise
# stay in (GPU) memory for good. What plays at any time needs two prompts, a negative and a
# seed or two; the bounds leave room for a live set's worth of switching back and forth.
TEXT_CACHE_SIZE = 64  # prompts: (77, 768) embeddings, about 120 KB each in fp16
LATENT_CACHE_SIZE = 16  # seed images (per tiling switch): (4, 64, width / 8) latents

MAX_STYLES = 8  # style slots a job may mix
_STEP_CACHE_FIXED_GRAPH = ("step_cache {} does not go with cuda_graphs or compile: they record "
                           "one fixed UNet call and a cached step is another; pass "
                           "--no-cuda-graphs --no-compile, or step_cache 1")

K = TypeVar("K")
V = TypeVar("V")


def _recall(cache: OrderedDict[K, V], key: K) -> V | None:
    """The cached value for ``key`` (now the most recently used), or None."""
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _remember(cache: OrderedDict[K, V], key: K, value: V, bound: int) -> None:
    """Store ``value``; past ``bound`` entries the least recently used one goes."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > bound:
        cache.popitem(last=False)


@dataclass(frozen=True)
class ImageRef:
    """An in-memory image as a hashable value (PNG bytes; equal when the pixels are equal)."""

    png: bytes
    digest: str

    @classmethod
    def from_image(cls, image: Image.Image) -> ImageRef:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        return cls(data, hashlib.sha256(data).hexdigest())

    def open(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png)).convert("RGB")

    def __repr__(self) -> str:
        return f"ImageRef({self.digest[:12]})"


ImageSource = str | Path | ImageRef


def load_image(ref: ImageSource, what: str) -> Image.Image:
    if isinstance(ref, ImageRef):
        return ref.open()
    try:
        with Image.open(ref) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise AudioFileError(f"{what} not found: {ref}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise AudioFileError(f"{what} {ref} is not an image ({exc})") from None


@dataclass(frozen=True)
class RiffuseJob:
    """One clip to render. Its hash is the render cache key."""

    prompt_a: str
    prompt_b: str | None = None
    seed_a: int = 0
    seed_b: int | None = None
    alpha: float = 0.0
    negative: str = ""
    denoise_a: float = 0.75
    denoise_b: float | None = None
    guidance_a: float = 7.0
    guidance_b: float | None = None
    steps: int = 50
    width: int | None = None
    seed_image: ImageSource | None = None
    mask: ImageSource | None = None
    scheduler: str = "default"
    tile_time: bool = False
    # Style slots: (prompt, seed, weight) each. When given they replace the A/B pair (prompt_a,
    # prompt_b, seed_a, seed_b, alpha): the text embedding is the weight-normalised mix and the
    # noise the spherical blend of the slots' noises (``blend_styles``). Two slots at weights
    # (1 - a, a) give exactly the A/B job at alpha a, to the last bit.
    styles: tuple[tuple[str, int, float], ...] = ()

    def __post_init__(self) -> None:
        def check_unit(name: str, value: float | None) -> None:
            if value is not None and not (isinstance(value, (int, float))
                                          and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} must be in [0, 1], got {value}")

        check_unit("alpha", self.alpha)
        check_unit("denoise_a", self.denoise_a)
        check_unit("denoise_b", self.denoise_b)
        for name in ("guidance_a", "guidance_b"):
            g = getattr(self, name)
            if g is not None and not (math.isfinite(g) and g >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {g}")
        if not isinstance(self.steps, int) or self.steps <= 0:
            raise ConfigError(f"steps must be a positive integer, got {self.steps}")
        if self.width is not None and (not isinstance(self.width, int) or self.width <= 0
                                       or self.width % LATENT_FACTOR):
            raise ConfigError(f"width must be a positive multiple of {LATENT_FACTOR} pixels, "
                              f"got {self.width}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}, "
                              f"got {self.scheduler!r}")
        for name in ("seed_a", "seed_b"):
            s = getattr(self, name)
            if s is not None and not (isinstance(s, int) and 0 <= s < 2**63):
                raise ConfigError(f"{name} must be an integer in [0, 2**63), got {s}")
        if self.mask is not None and self.seed_image is None:
            raise ConfigError("a mask needs a seed image (the mask keeps parts of it)")
        if self.styles:
            check_styles(self.styles)

    # Effective values at this alpha.
    @property
    def prompt_end(self) -> str:
        return self.prompt_a if self.prompt_b is None else self.prompt_b

    @property
    def seed_end(self) -> int:
        return self.seed_a if self.seed_b is None else self.seed_b

    @property
    def denoise(self) -> float:
        b = self.denoise_a if self.denoise_b is None else self.denoise_b
        return (1 - self.alpha) * self.denoise_a + self.alpha * b

    @property
    def guidance(self) -> float:
        b = self.guidance_a if self.guidance_b is None else self.guidance_b
        return (1 - self.alpha) * self.guidance_a + self.alpha * b


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995
          ) -> torch.Tensor:
    """Spherical interpolation of two noise tensors (linear when nearly parallel)."""
    a, b = v0.double().flatten(), v1.double().flatten()
    dot = float((a @ b) / (a.norm() * b.norm()))
    if abs(dot) > dot_threshold:
        out = (1 - t) * v0.double() + t * v1.double()
    else:
        theta = math.acos(dot)
        s = math.sin(theta)
        out = (math.sin((1 - t) * theta) / s) * v0.double() \
            + (math.sin(t * theta) / s) * v1.double()
    return out.to(v0.dtype)


def check_styles(styles: Sequence[tuple[str, int, float]]) -> tuple[float, ...]:
    """The styles' weights normalised to sum to 1, or ``ConfigError`` naming the bad slot."""
    if not 1 <= len(styles) <= MAX_STYLES:
        raise ConfigError(f"a job mixes 1 to {MAX_STYLES} style slots, got {len(styles)}")
    for i, style in enumerate(styles, 1):
        if len(style) != 3:
            raise ConfigError(f"style slot {i} must be (prompt, seed, weight), got {style!r}")
        prompt, seed, weight = style
        if not isinstance(prompt, str):
            raise ConfigError(f"style slot {i} prompt must be a string, got {prompt!r}")
        if isinstance(seed, bool) or not (isinstance(seed, int) and 0 <= seed < 2**63):
            raise ConfigError(f"style slot {i} seed must be an integer in [0, 2**63), got {seed}")
        if isinstance(weight, bool) or not (isinstance(weight, (int, float))
                                            and math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"style slot {i} weight must be a finite number >= 0, "
                              f"got {weight}")
    return normalise_weights([float(s[2]) for s in styles])


def normalise_weights(weights: Sequence[float]) -> tuple[float, ...]:
    """Weights scaled to sum to 1 (in double precision). Weights (1 - a, a) come back exactly
    as they are: ``(1 - a) + a`` rounds to exactly 1.0 for every double ``a`` in [0, 1]."""
    total = math.fsum(weights)
    if not total > 0 or not math.isfinite(total):
        raise ConfigError(f"style weights must not all be zero, got {list(weights)}; raise "
                          f"at least one slot's weight above 0")
    return tuple(w / total for w in weights)


def fold_shares(weights: Sequence[float]) -> list[tuple[int, float]]:
    """The blend as a fold: ``[(index, t), ...]`` for the slots with a weight above 0, in slot
    order. The first has ``t`` 1 (it starts the blend); each next one is blended into the
    running result at ``t`` = its weight over the weights so far, so every slot ends up with
    its share. For two slots at (1 - a, a) that is one step at ``t`` = a: today's A/B."""
    shares: list[tuple[int, float]] = []
    so_far = 0.0
    for i, w in enumerate(weights):
        if w <= 0.0:
            continue  # a silent slot takes no part (and cannot be the first divisor)
        so_far += w
        shares.append((i, min(1.0, w / so_far)))
    return shares


def blend_embeddings(embeddings: Sequence[torch.Tensor], weights: Sequence[float]
                     ) -> torch.Tensor:
    """The weight-normalised mix of text embeddings (the fold of ``fold_shares``: lerp steps,
    which for two slots is exactly ``torch.lerp(a, b, alpha)``)."""
    shares = fold_shares(normalise_weights(weights))
    out = embeddings[shares[0][0]]
    for i, t in shares[1:]:
        out = torch.lerp(out, embeddings[i], t)
    return out


def blend_noises(noises: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """The multi-way spherical blend of the slots' noises: a fold of ``slerp`` steps (each keeps
    a Gaussian draw's norm), exactly ``slerp(alpha, a, b)`` for two slots at (1 - a, a)."""
    shares = fold_shares(normalise_weights(weights))
    out = noises[shares[0][0]]
    for i, t in shares[1:]:
        out = slerp(t, out, noises[i])
    return out


def seed_noise(seed: int, width: int) -> torch.Tensor:
    """The Gaussian draw for one seed, on the CPU so every device gets the same numbers."""
    gen = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((4, HEIGHT // LATENT_FACTOR, width // LATENT_FACTOR), generator=gen)


class Renderer:
    """Owns one loaded model on one device and renders RiffuseJobs, batched and cached."""

    def __init__(self, model: str | Components = "tiny", *, device: str = "auto",
                 dtype: str = "auto", max_batch: int = 4, sdpa: bool = True,
                 channels_last: bool = False, compile_unet: bool = False,
                 cuda_graphs: bool = False, width_buckets: bool = False,
                 step_cache: int = 1) -> None:
        if max_batch <= 0:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        self.step_cache = check_interval(step_cache)  # 1: off; N: whole UNet every N steps
        if step_cache > 1 and (cuda_graphs or compile_unet):
            raise ConfigError(_STEP_CACHE_FIXED_GRAPH.format(step_cache))
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if cuda_graphs:
            require_cuda(self.device)  # before the slow model load
        comps = model if isinstance(model, Components) else load_components(model)
        self.components = comps.to(self.device, self.dtype)
        self.max_batch = max_batch
        # Both ways explicitly: the components may come from an earlier Renderer that set
        # the other choice (a benchmark sweep shares one model between variants).
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        for module in (comps.unet, comps.vae):
            module.set_attn_processor(AttnProcessor2_0() if sdpa else AttnProcessor())
            module.to(memory_format=torch.channels_last if channels_last
                      else torch.contiguous_format)
        self._unet_call: Any = comps.unet
        if compile_unet:
            self._unet_call = torch.compile(comps.unet)
        self.width_buckets = width_buckets  # loops (tile_time) render at bucketed widths
        self._compiler: BackgroundCompiler | None = None
        self._graphed: GraphedUNet | None = None
        self._steps: StepCache | None = None  # the batch in flight's, with step caching on
        if cuda_graphs:
            self._graphed = GraphedUNet(self._unet_call, self.device)
        self._schedulers: dict[str, Any] = {}
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._latent_cache: OrderedDict[tuple[Any, bool], torch.Tensor] = OrderedDict()
        self._tiling = False
        self.timings: dict[str, float] = {}
        log.info("renderer: model %s on %s (%s)", comps.name, self.device, self.dtype)

    # -- compiling off the critical path -------------------------------------------------------
    def compile_in_background(self, compile: Callable[[Any], Any] | None = None
                              ) -> BackgroundCompiler:
        """Compile the UNet on a thread, per input shape, while renders run uncompiled; each
        shape switches to its compiled call once that is ready (``compiling``). ``compile``:
        ``torch.compile`` by default (tests pass a slow fake). Compiles twins of the UNet that
        share its weights, one per time-tiling switch, so the compiler never sees the renderer
        switch tiling under it."""
        import contextlib
        import copy
        import itertools

        if self._compiler is not None:
            return self._compiler
        if self.step_cache > 1:
            raise ConfigError(_STEP_CACHE_FIXED_GRAPH.format(self.step_cache))
        fn: Callable[[Any], Any] = compile if compile is not None else torch.compile
        unet = self.components.unet
        twins = {}
        for tiling in (False, True):
            shared: dict[int, Any] = {id(t): t for t in itertools.chain(unet.parameters(),
                                                                          unet.buffers())}
            twin = copy.deepcopy(unet, shared)
            set_time_tiling(twin, False)
            set_time_tiling(twin, tiling)
            twins[tiling] = twin

        def warm(call: Any, key: ShapeKey) -> None:
            shapes: Any = key[1]
            sample_shape, sample_dtype, t_shape, t_dtype, ctx_shape, ctx_dtype = shapes
            # On CUDA on a stream of its own: the render thread may be recording a graph.
            stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
            with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None
                                          else contextlib.nullcontext()):
                call(torch.zeros(sample_shape, dtype=sample_dtype, device=self.device),
                     torch.full(t_shape, 500, dtype=t_dtype, device=self.device),
                     encoder_hidden_states=torch.zeros(ctx_shape, dtype=ctx_dtype,
                                                       device=self.device))
            if stream is not None:
                stream.synchronize()

        self._compiler = BackgroundCompiler(lambda tiling: fn(twins[bool(tiling)]), warm)
        return self._compiler

    @property
    def compiler(self) -> BackgroundCompiler | None:
        return self._compiler

    def close(self) -> None:
        """Stop the background compiler (idempotent)."""
        if self._compiler is not None:
            self._compiler.close()

    # -- caches ------------------------------------------------------------------------------
    def text_embedding(self, prompt: str) -> torch.Tensor:
        """(77, width) embedding of one prompt, cached. Long prompts are cut, with a warning."""
        cached = _recall(self._text_cache, prompt)
        if cached is not None:
            return cached
        tok = self.components.tokenizer
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        full = len(tok(prompt, truncation=False).input_ids)
        if full > tok.model_max_length:
            log.warning("prompt is %d tokens, the text encoder takes %d: truncated: %r",
                        full, tok.model_max_length, prompt[:60])
        with torch.inference_mode():
            emb = self.components.text_encoder(ids.to(self.device))[0][0]
        _remember(self._text_cache, prompt, emb, TEXT_CACHE_SIZE)
        return emb

    def seed_latents(self, ref: ImageSource, width: int, tile: bool) -> torch.Tensor:
        """VAE latents (mean, scaled) of a seed image, cached per image and tiling switch."""
        key = (ref if isinstance(ref, ImageRef) else str(Path(ref).resolve()), tile)
        cached = _recall(self._latent_cache, key)
        if cached is not None and cached.shape[-1] * LATENT_FACTOR == width:
            return cached
        img = load_image(ref, "seed image")
        if img.size != (width, HEIGHT):
            raise ConfigError(f"seed image is {img.size[0]}x{img.size[1]}, the job is "
                              f"{width}x{HEIGHT}: pass width={img.size[0]} or a "
                              f"{width}x{HEIGHT} seed image")
        arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
        x = arr.permute(2, 0, 1)[None].to(self.device, self.dtype)
        self._set_tiling(tile)
        vae = self.components.vae
        with torch.inference_mode():
            lat = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        _remember(self._latent_cache, key, lat[0], LATENT_CACHE_SIZE)
        return lat[0]

    def job_width(self, job: RiffuseJob) -> int:
        if job.width is not None:
            return job.width
        if job.seed_image is not None:
            w = load_image(job.seed_image, "seed image").size[0]
            if w % LATENT_FACTOR:
                raise ConfigError(f"seed image width must be a multiple of {LATENT_FACTOR}, "
                                  f"got {w}")
            return w
        return 512

    def _mask_latent(self, job: RiffuseJob, width: int) -> torch.Tensor:
        assert job.mask is not None
        img = load_image(job.mask, "mask").convert("L")
        if img.size != (width, HEIGHT):
            raise ConfigError(f"mask is {img.size[0]}x{img.size[1]} but the clip is "
                              f"{width}x{HEIGHT}: give a mask of the seed image's size")
        small = img.resize((width // LATENT_FACTOR, HEIGHT // LATENT_FACTOR),
                           Image.Resampling.NEAREST)
        keep = 1.0 - torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)
        return keep[None].to(self.device, torch.float32)  # 1 = keep the seed image

    # -- scheduling --------------------------------------------------------------------------
    def _scheduler(self, name: str) -> Any:
        if name not in self._schedulers:
            from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

            base = self.components.scheduler
            if name == "default":
                self._schedulers[name] = base
            elif name == "dpm++2m":
                self._schedulers[name] = DPMSolverMultistepScheduler.from_config(
                    base.config, algorithm_type="dpmsolver++", solver_order=2)
            else:
                self._schedulers[name] = DDIMScheduler.from_config(base.config, clip_sample=False)
        return self._schedulers[name]

    def _set_tiling(self, on: bool) -> None:
        if on != self._tiling:
            set_time_tiling(self.components.unet, on)
            set_time_tiling(self.components.vae, on)
            self._tiling = on

    @staticmethod
    def start_step(job: RiffuseJob) -> int:
        """Index of the first schedule step that runs (img2img: strength skips the rest)."""
        if job.seed_image is None:
            return 0
        return job.steps - min(int(job.steps * job.denoise), job.steps)

    # -- rendering ---------------------------------------------------------------------------
    def render(self, jobs: Sequence[RiffuseJob], progress: Progress | None = None
               ) -> list[Image.Image]:
        """Render jobs in order. Jobs with the same schedule shape share one UNet batch."""
        widths = [self.job_width(j) for j in jobs]
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, job in enumerate(jobs):
            key = (widths[i], job.steps, job.scheduler, job.tile_time, self.start_step(job),
                   job.seed_image is None)
            groups.setdefault(key, []).append(i)
        batches = [idx[k:k + self.max_batch] for idx in groups.values()
                   for k in range(0, len(idx), self.max_batch)]
        total = sum(jobs[b[0]].steps - self.start_step(jobs[b[0]]) for b in batches) or 1
        done = 0
        out: list[Image.Image | None] = [None] * len(jobs)

        def tick() -> None:  # after every diffusion step: also the cancellation point
            nonlocal done
            done += 1
            cancel.check()
            if progress is not None:
                progress(min(done / total, 1.0))

        for batch in batches:
            try:
                images = self._render_batch([jobs[i] for i in batch], widths[batch[0]], tick)
            except torch.cuda.OutOfMemoryError:
                if self._graphed is not None:
                    self._graphed.clear()  # their memory pools may be what ran out
                torch.cuda.empty_cache()
                j = jobs[batch[0]]
                raise RenderError(
                    f"GPU out of memory rendering {len(batch)} clip(s) of {widths[batch[0]]} "
                    f"columns at {j.steps} steps on {self.device}: lower the batch "
                    f"(max_batch={self.max_batch}), the width, or use --dtype fp16") from None
            for i, img in zip(batch, images, strict=True):
                out[i] = img
        return [img for img in out if img is not None]

    def _render_batch(self, jobs: list[RiffuseJob], width: int, tick: Callable[[], None]
                      ) -> list[Image.Image]:
        import time

        c = self.components
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        first = jobs[0]
        tile = first.tile_time
        self._set_tiling(tile)
        t0 = time.perf_counter()
        cond = torch.stack([self._condition(j) for j in jobs])
        uncond = torch.stack([self.text_embedding(j.negative) for j in jobs])
        embeddings = torch.cat([uncond, cond]).to(self.dtype)
        guidance = torch.tensor([j.guidance for j in jobs], device=self.device,
                                dtype=torch.float32).view(-1, 1, 1, 1)
        noise = torch.stack([self._noise(j, width) for j in jobs])
        noise = noise.to(self.device, torch.float32)
        sync()
        t1 = time.perf_counter()

        sched = self._scheduler(first.scheduler)
        sched.set_timesteps(first.steps, device=self.device)
        start = self.start_step(first) * sched.order
        timesteps = sched.timesteps[start:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        init: torch.Tensor | None = None
        keep: torch.Tensor | None = None
        if first.seed_image is None:
            latents = noise * sched.init_noise_sigma
        else:
            init = torch.stack([self.seed_latents(j.seed_image, width, tile)
                                for j in jobs if j.seed_image is not None]).float()
            if len(timesteps) == 0:
                latents = init
            else:
                latents = sched.add_noise(init, noise, timesteps[:1].repeat(len(jobs)))
            if any(j.mask is not None for j in jobs):
                keep = torch.stack([self._mask_latent(j, width) if j.mask is not None
                                    else torch.zeros(1, HEIGHT // 8, width // 8,
                                                     device=self.device) for j in jobs])
        # Width buckets (loops only): the UNet sees the bucket's width, padded with the loop's
        # own wrap-around; only the loop's columns are kept after each step.
        left, right = padding(width, bucket_width(width)) if self.width_buckets and tile \
            else (0, 0)
        sync()
        t2 = time.perf_counter()

        self._steps = StepCache(c.unet, self.step_cache) if self.step_cache > 1 else None
        with torch.inference_mode():
            for t in timesteps:
                model_in = sched.scale_model_input(torch.cat([latents, latents]), t)
                model_in = pad_latents(model_in.to(self.dtype), left, right)
                pred = crop_latents(self._unet_forward(model_in, t, embeddings), left,
                                    right).float()
                pred_uncond, pred_cond = pred.chunk(2)
                pred = pred_uncond + guidance * (pred_cond - pred_uncond)
                latents = sched.step(pred, t, latents).prev_sample
                if keep is not None and init is not None:
                    orig = sched.add_noise(init, noise, t.reshape(1).repeat(len(jobs)))
                    latents = orig * keep + latents * (1 - keep)
                tick()
            sync()
            t3 = time.perf_counter()
            decoded = c.vae.decode((latents / c.vae.config.scaling_factor).to(self.dtype)).sample
            pixels = ((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
            arrays = pixels.permute(0, 2, 3, 1).cpu().numpy()
        t4 = time.perf_counter()
        self.timings = {"text_s": t1 - t0, "prepare_s": t2 - t1, "unet_s": t3 - t2,
                        "unet_steps": float(len(timesteps)), "decode_s": t4 - t3,
                        "unet_columns": float(width + LATENT_FACTOR * (left + right))}
        if self._steps is not None:  # its kept features go with the batch
            self.timings["unet_full_steps"] = float(self._steps.full_steps)
            self._steps = None
        return [Image.fromarray(a, mode="RGB") for a in arrays]

    def _condition(self, job: RiffuseJob) -> torch.Tensor:
        """The job's text embedding: A to B at alpha, or the styles' weighted mix."""
        if job.styles:
            return blend_embeddings([self.text_embedding(p) for p, _, _ in job.styles],
                                    [w for _, _, w in job.styles])
        return torch.lerp(self.text_embedding(job.prompt_a), self.text_embedding(job.prompt_end),
                          job.alpha)

    @staticmethod
    def _noise(job: RiffuseJob, width: int) -> torch.Tensor:
        """The job's starting noise: A's and B's slerped at alpha, or the styles' blend."""
        if job.styles:
            return blend_noises([seed_noise(s, width) for _, s, _ in job.styles],
                                [w for _, _, w in job.styles])
        return slerp(job.alpha, seed_noise(job.seed_a, width), seed_noise(job.seed_end, width))

    def _unet_forward(self, sample: torch.Tensor, t: torch.Tensor, context: torch.Tensor
                      ) -> torch.Tensor:
        if self._steps is not None:  # step caching: never with graphs or compile (__init__)
            return self._steps(sample, t, context)
        compiled = None
        if self._compiler is not None:
            t = torch.as_tensor(t, device=self.device)
            key = (self._tiling, (tuple(sample.shape), sample.dtype, tuple(t.shape), t.dtype,
                                  tuple(context.shape), context.dtype))
            compiled = self._compiler.pick(key)
        if self._graphed is not None:
            return self._graphed(sample, t, context, variant=(self._tiling, compiled is not None),
                                 unet=compiled)
        call = self._unet_call if compiled is None else compiled
        out: torch.Tensor = call(sample, t, encoder_hidden_states=context).sample
        return out

    def render_audio(self, jobs: Sequence[RiffuseJob], progress: Progress | None = None, *,
                     quality: str = "fast") -> list[tuple[np.ndarray, int]]:
        """Render and convert each image to audio (circular when the job tiles in time)."""
        from riffbridge.spectrogram import image_to_audio

        images = self.render(jobs, progress)
        return [image_to_audio(img, device=self.device, quality=quality,  # type: ignore[arg-type]
                               circular=job.tile_time)
                for img, job in zip(images, jobs, strict=True)]

    def forget_prompts(self) -> None:
        """Drop the cached text embeddings (a benchmark times the text encoder every run)."""
        self._text_cache.clear()
