"""Step caching in the spirit of DeepCache (Ma et al., 2023): reuse the UNet's deep features
across neighbouring denoising steps.

A UNet's deep, low-resolution features change slowly from one denoising step to the next, while
its shallow, full-resolution branch carries the detail. With an interval N, step 0, N, 2N, ...
of a render run the whole UNet ("full" steps) and keep the deep part's output: the hidden state
that enters the last up block (everything below the shallowest skip connection: down blocks
2.., the mid block, up blocks ..-2). The N-1 steps after each ("cached" steps) run only the
shallow branch (time embedding, ``conv_in``, the first down block, the last up block, the output
convolution) on the fresh input and feed it the kept deep features. For SD 1.5 the shallow
branch is a small part of the UNet's arithmetic, so a cached step costs a fraction of a full one
(docs/benchmarks.md has the measured figures). Interval 1 is the plain UNet.

Why not the ``DeepCache`` package (``DeepCacheSDHelper``, 0.1.1, Dec 2023): it monkey-patches
``forward`` on every block of the shared UNet and keeps its step count per ``enable()``, not per
render, so a renderer that serves many jobs (img2img jobs start at different schedule steps,
with different shapes) reuses one job's cached deep features on another's first step; it finds
the step by ``t.item()`` and a search of the scheduler's timesteps (a host sync per step, and
ambiguous on PNDM's repeated timestep). Here the cache lives for one batch's loop only
(``StepCache``, made per batch), the step is counted by the loop, nothing is patched: full steps
call the UNet itself (a forward pre-hook on the last up block, held only during that call,
reads its input) and cached steps call its blocks, as ``UNet2DConditionModel.forward`` does.

Not with CUDA graphs or ``torch.compile``: both record one fixed UNet call, and a cached step is
a different call (``riffbridge.render.path.choose_path`` turns them off when step caching is
asked for, and the ``Renderer`` refuses the pair).
"""

from __future__ import annotations

from typing import Any

import torch

from riffbridge.errors import ConfigError
from riffbridge.params import BY_NAME

MAX_INTERVAL = int(BY_NAME["step_cache"].maximum or 1)


def check_interval(interval: Any) -> int:
    """``interval`` as an int in [1, MAX_INTERVAL], or ``ConfigError`` naming it."""
    if isinstance(interval, bool) or not isinstance(interval, int) \
            or not 1 <= interval <= MAX_INTERVAL:
        raise ConfigError(f"step_cache must be an integer in [1, {MAX_INTERVAL}] (1: off, N: the "
                          f"whole UNet every N steps), got {interval!r}")
    return interval


def check_unet(unet: Any) -> None:
    """Refuse UNets whose forward has parts the shallow branch does not reproduce."""
    config = unet.config
    unsupported = [name for name in ("class_embed_type", "addition_embed_type",
                                     "encoder_hid_dim_type", "time_cond_proj_dim")
                   if getattr(config, name, None) is not None]
    if getattr(config, "center_input_sample", False):
        unsupported.append("center_input_sample")
    if len(unet.down_blocks) < 2 or len(unet.up_blocks) < 2:
        unsupported.append(f"{len(unet.down_blocks)} down blocks (no deep part to cache)")
    elif len(unet.up_blocks[-1].resnets) != 1 + len(unet.down_blocks[0].resnets):
        unsupported.append("the last up block does not take exactly the first down block's "
                           "skips")
    if unsupported:
        raise ConfigError(f"step_cache supports SD-1.5-shaped UNets only, this one has "
                          f"{', '.join(unsupported)}: use step_cache 1")


class StepCache:
    """One batch's UNet calls with deep features reused: call it once per denoising step, in
    order, like ``unet(sample, t, encoder_hidden_states=context).sample``. Make a new one for
    every batch (it holds that batch's features).

    ``full_steps`` and ``cached_steps`` count what ran. A step whose input shape differs from
    the kept features' runs in full (the cache never feeds one shape's features to another).
    """

    def __init__(self, unet: Any, interval: int) -> None:
        self.unet = unet
        self.interval = check_interval(interval)
        check_unet(unet)
        self.step = 0
        self.full_steps = 0
        self.cached_steps = 0
        self._deep: torch.Tensor | None = None
        self._shape: tuple[Any, ...] = ()

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor
                 ) -> torch.Tensor:
        shape = (tuple(sample.shape), sample.dtype, tuple(context.shape))
        cached = (self.step % self.interval != 0 and self._deep is not None
                  and shape == self._shape)
        self.step += 1
        if cached:
            self.cached_steps += 1
            assert self._deep is not None
            return shallow_forward(self.unet, sample, timestep, context, self._deep)
        self.full_steps += 1
        out, self._deep = full_forward(self.unet, sample, timestep, context)
        self._shape = shape
        return out


def full_forward(unet: Any, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole UNet (its own forward) and the hidden state that entered its last up block."""
    kept: list[torch.Tensor] = []

    def keep(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        kept.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    hook = unet.up_blocks[-1].register_forward_pre_hook(keep, with_kwargs=True)
    try:
        out: torch.Tensor = unet(sample, timestep, encoder_hidden_states=context).sample
    finally:
        hook.remove()
    return out, kept[0]


def shallow_forward(unet: Any, sample: torch.Tensor, timestep: torch.Tensor,
                    context: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
    """The UNet's output with the deep part replaced by ``deep`` (kept from a full step): the
    stages of ``UNet2DConditionModel.forward`` that touch the shallow branch, in its order."""
    # 1. time embedding
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    context = unet.process_encoder_hidden_states(encoder_hidden_states=context,
                                                 added_cond_kwargs=None)
    # 2. the first down block (its downsampled output feeds only the deep part)
    hidden = unet.conv_in(sample)
    first = unet.down_blocks[0]
    if getattr(first, "has_cross_attention", False):
        _, skips = first(hidden_states=hidden, temb=emb, encoder_hidden_states=context)
    else:
        _, skips = first(hidden_states=hidden, temb=emb)
    skips = (hidden, *skips)
    last = unet.up_blocks[-1]
    skips = skips[:len(last.resnets)]  # conv_in and the first block's resnets, not its downsample
    # 3. the last up block on the kept deep features
    if getattr(last, "has_cross_attention", False):
        out = last(hidden_states=deep, temb=emb, res_hidden_states_tuple=skips,
                   encoder_hidden_states=context)
    else:
        out = last(hidden_states=deep, temb=emb, res_hidden_states_tuple=skips)
    # 4. output
    if unet.conv_norm_out is not None:
        out = unet.conv_act(unet.conv_norm_out(out))
    result: torch.Tensor = unet.conv_out(out)
    return result
