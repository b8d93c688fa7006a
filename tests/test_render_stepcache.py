"""Step caching (DeepCache-style): the whole UNet every N steps, the shallow branch between.

On the tiny random-weight model: interval 1 is the plain render to the bit; a cached step fed
the deep features of the same input is the UNet's own output to the bit (so the shallow branch
is the UNet's forward, cut, not an imitation); interval N runs the deep blocks on every Nth step
only (counted with forward hooks on the real blocks), changes the output by a bounded amount,
and is deterministic and free of leaks between jobs. What the change does to music needs the
real weights: see docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from riffbridge.cli import main
from riffbridge.config import build
from riffbridge.errors import ConfigError
from riffbridge.render.bench import seed_image
from riffbridge.render.components import Components
from riffbridge.render.riffuse import Renderer, RiffuseJob
from riffbridge.render.stepcache import StepCache, full_forward, shallow_forward
from riffbridge.render.tiny import build_tiny

WIDTH = 128


@pytest.fixture(scope="module")
def comps() -> Components:
    return build_tiny()


def job(steps: int = 10, **kw: object) -> RiffuseJob:
    """img2img from the striped seed: 10 steps at denoise 0.75 run 8 UNet steps (PNDM
    repeats one timestep)."""
    args: dict[str, object] = dict(prompt_a="funky jazz drums", prompt_b="church organ",
                                   seed_a=1, seed_b=2, alpha=0.3, steps=steps, width=WIDTH,
                                   seed_image=seed_image(WIDTH))
    args.update(kw)
    return RiffuseJob(**args)  # type: ignore[arg-type]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.float64)


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(np.mean((pixels(a) - pixels(b)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@contextmanager
def counting(modules: dict[str, torch.nn.Module]) -> Iterator[dict[str, int]]:
    """Real calls into each module, counted by forward hooks."""
    counts = dict.fromkeys(modules, 0)

    def counter(name: str):  # type: ignore[no-untyped-def]
        def hook(*_: object) -> None:
            counts[name] += 1
        return hook

    handles = [m.register_forward_hook(counter(name)) for name, m in modules.items()]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("latent_width", [16, 17])  # 17: the UNet's odd-size upsampling path
def test_a_cached_step_on_fresh_deep_features_is_the_unets_own_output(
        comps: Components, latent_width: int) -> None:
    gen = torch.Generator().manual_seed(7)
    sample = torch.randn(2, 4, 64, latent_width, generator=gen)
    context = torch.randn(2, 77, 32, generator=gen)
    t = torch.tensor(601)
    with torch.inference_mode():
        reference = comps.unet(sample, t, encoder_hidden_states=context).sample
        full, deep = full_forward(comps.unet, sample, t, context)
        shallow = shallow_forward(comps.unet, sample, t, context, deep)
    assert torch.equal(full, reference)
    assert torch.equal(shallow, reference)
    assert not comps.unet.up_blocks[-1]._forward_pre_hooks  # the hook held only for the call


def test_interval_1_is_the_uncached_render_exactly(comps: Components) -> None:
    plain = Renderer(comps, device="cpu").render([job()])[0]
    one = Renderer(comps, device="cpu", step_cache=1)
    with counting({"mid": comps.unet.mid_block}) as calls:
        assert np.array_equal(pixels(one.render([job()])[0]), pixels(plain))
    assert calls["mid"] == 8
    # A StepCache at interval 1 runs every step in full: the UNet's output, step after step.
    steps = StepCache(comps.unet, 1)
    sample, context = torch.randn(2, 4, 64, 16), torch.randn(2, 77, 32)
    with torch.inference_mode():
        for t in (900, 700, 500):
            expected = comps.unet(sample, torch.tensor(t), encoder_hidden_states=context).sample
            assert torch.equal(steps(sample, torch.tensor(t), context), expected)
    assert (steps.full_steps, steps.cached_steps) == (3, 0)


@pytest.mark.parametrize(("interval", "full"), [(2, 4), (3, 3), (4, 2)])
def test_interval_n_runs_the_deep_blocks_on_every_nth_step_only(
        comps: Components, interval: int, full: int) -> None:
    renderer = Renderer(comps, device="cpu", step_cache=interval)
    unet = comps.unet
    deep = {"down_2": unet.down_blocks[1], "mid": unet.mid_block, "up_1": unet.up_blocks[0]}
    shallow = {"down_1": unet.down_blocks[0], "up_last": unet.up_blocks[-1]}
    with counting({**deep, **shallow}) as calls:
        renderer.render([job()])  # 8 UNet steps: full at steps 0, N, 2N, ...
    assert calls == {"down_2": full, "mid": full, "up_1": full, "down_1": 8, "up_last": 8}
    assert renderer.timings["unet_full_steps"] == full and renderer.timings["unet_steps"] == 8


def test_a_cached_render_differs_from_the_uncached_one_but_stays_close(
        comps: Components) -> None:
    plain = Renderer(comps, device="cpu").render([job()])[0]
    figures = {n: psnr(Renderer(comps, device="cpu", step_cache=n).render([job()])[0], plain)
               for n in (2, 3, 4)}
    # Measured on this model: 50.5, 45.4 and 43.5 dB. Random weights make no claim about
    # music; the bound says the cached path stays the same computation, only approximated.
    assert all(math.isfinite(db) for db in figures.values()), figures
    assert figures[2] > 45 and figures[3] > 38 and figures[4] > 35, figures
    assert figures[2] >= figures[4], figures  # reusing features longer costs more


def test_cached_renders_are_deterministic_and_never_leak_between_jobs(
        comps: Components) -> None:
    renderer = Renderer(comps, device="cpu", step_cache=3)
    first = pixels(renderer.render([job()])[0])
    assert np.array_equal(pixels(renderer.render([job()])[0]), first)
    # A job that starts at another schedule step and another width, after a different one:
    # it must render as it does alone (the DeepCache helper kept one job's features for the
    # next one's first step).
    other = job(denoise_a=0.6, width=64, seed_image=seed_image(64))
    alone = pixels(Renderer(comps, device="cpu", step_cache=3).render([other])[0])
    assert np.array_equal(pixels(renderer.render([other])[0]), alone)
    # Jobs batched together render as they do alone (the CFG halves and the batch share a call).
    pair = renderer.render([job(), job(alpha=0.8)])
    assert np.abs(pixels(pair[0]) - first).max() <= 1  # another batch size, other kernels


def test_bad_intervals_and_fixed_graph_levers_are_refused(comps: Components) -> None:
    for bad in (0, 6, 2.0, True):
        with pytest.raises(ConfigError, match=r"step_cache must be an integer in \[1, 5\]"):
            Renderer(comps, device="cpu", step_cache=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"step_cache 2 does not go with cuda_graphs or "
                                          r"compile.*--no-cuda-graphs --no-compile"):
        Renderer(comps, device="cpu", step_cache=2, cuda_graphs=True)
    with pytest.raises(ConfigError, match="step_cache 3 does not go with cuda_graphs"):
        Renderer(comps, device="cpu", step_cache=3).compile_in_background()


def test_the_setting_travels_through_config_and_the_clis(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert build(flags={"step_cache": 3}).step_cache == 3
    assert build().step_cache == 1
    assert main(["bench", "--device", "cpu", "--step-cache", "2", "--runs", "1", "--warmup",
                 "0", "--steps", "4", "--width", "64", "--no-audio"]) == 0
    out = capsys.readouterr().out
    assert "step cache on: the whole UNet every 2 steps" in out
    assert "tiny auto b1 default 4st step-cache 2" in out
    render = ["render", "--model", "tiny", "--device", "cpu", "--steps", "4", "--width", "64"]
    assert main([*render, str(tmp_path / "cached.wav"), "--step-cache", "2"]) == 0
    assert (tmp_path / "cached.wav").stat().st_size > 44
    assert main([*render, str(tmp_path / "bad.wav"), "--step-cache", "9"]) != 0
    err = capsys.readouterr().err
    assert "step_cache must be an integer in [1, 5]" in err and "got 9" in err
    assert not (tmp_path / "bad.wav").exists()
    # A loop made with step caching says so in its sidecar (it changes the sound).
    assert main([*render[:-2], str(tmp_path / "loops"), "--bpm", "120", "--bars", "1",
                 "--step-cache", "2"]) == 0
    sidecars = list((tmp_path / "loops").rglob("0001_*.json"))
    assert len(sidecars) == 1 and json.loads(sidecars[0].read_text())["step_cache"] == 2
