"""Width buckets: a tempo sweep renders at a few widths, and every loop keeps its exact length
and still loops (scored by the shared loop_metrics tool, as tests/test_loops_render.py does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from riffbridge.errors import ConfigError
from riffbridge.loops.tempo import loop_frames, loop_samples, render_width
from riffbridge.render.buckets import (
    BUCKETS,
    bucket_width,
    crop_latents,
    extra_fraction,
    pad_latents,
    padding,
    wrap_index,
)


def sweep_widths(bars: tuple[int, ...] = (1, 2, 4)) -> set[int]:
    return {render_width(loop_frames(bpm / 4, n)) for n in bars for bpm in range(240, 801)}


def test_a_tempo_sweep_maps_onto_a_small_bounded_set_of_widths() -> None:
    widths = sweep_widths()  # 60 to 200 BPM in quarter-BPM steps, 1, 2 and 4 bars of 4/4
    buckets = {bucket_width(w) for w in widths}
    assert len(widths) > 150
    assert sorted(buckets) == [128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280,
                               1536, 1792]
    assert all(b % 64 == 0 for b in buckets)  # 8 latent columns: the UNet halves 3 times
    # One loop length at a drifting tempo (a DJ nudging 118..122 BPM) stays on one or two.
    assert len({bucket_width(render_width(loop_frames(b / 10, 2))) for b in range(1180, 1221)}
               ) <= 2
    worst = max(extra_fraction(w) for w in widths if w > 256)
    assert worst <= 0.25


def test_bucket_edges_and_errors() -> None:
    assert bucket_width(8) == 64 and bucket_width(64) == 64 and bucket_width(72) == 128
    assert bucket_width(512) == 512 and bucket_width(520) == 640
    assert list(BUCKETS) == sorted(set(BUCKETS)) and BUCKETS[-1] >= 6000  # a 60 s loop
    with pytest.raises(ConfigError, match="width must be a positive multiple of 8, got 100"):
        bucket_width(100)
    with pytest.raises(ConfigError, match="wider than the widest bucket"):
        bucket_width(BUCKETS[-1] + 8)


def test_padding_is_the_loops_own_wrap_around_and_the_crop_gives_it_back() -> None:
    assert padding(400, 448) == (3, 3) and padding(408, 448) == (2, 3)
    assert wrap_index(4, 2, 3) == [2, 3, 0, 1, 2, 3, 0, 1, 2]
    assert wrap_index(2, 3, 4) == [1, 0, 1, 0, 1, 0, 1, 0, 1]  # wider than the loop: repeats
    x = torch.arange(2 * 4 * 3 * 50, dtype=torch.float32).reshape(2, 4, 3, 50)
    left, right = padding(400, 448)
    padded = pad_latents(x, left, right)
    assert padded.shape[-1] == 56
    assert torch.equal(padded[..., :3], x[..., -3:]) and torch.equal(padded[..., -3:], x[..., :3])
    assert torch.equal(crop_latents(padded, left, right), x)
    assert pad_latents(x, 0, 0) is x and crop_latents(x, 0, 0) is x


@pytest.fixture(scope="module")
def renderers() -> tuple:
    from riffbridge.render.riffuse import Renderer
    from riffbridge.render.tiny import build_tiny

    comps = build_tiny()
    return Renderer(comps, device="cpu"), Renderer(comps, device="cpu", width_buckets=True)


def test_a_width_that_is_a_bucket_renders_bit_for_bit_as_before(renderers: tuple) -> None:
    from riffbridge.render.riffuse import RiffuseJob

    plain, bucketed = renderers
    job = RiffuseJob("techno", seed_a=3, steps=3, width=128, tile_time=True)
    a, b = (np.asarray(r.render([job])[0]) for r in (plain, bucketed))
    np.testing.assert_array_equal(a, b)
    assert bucketed.timings["unet_columns"] == 128
    odd = RiffuseJob("techno", seed_a=3, steps=3, width=120, tile_time=True)
    image = bucketed.render([odd])[0]
    assert image.width == 120 and bucketed.timings["unet_columns"] == 128
    open_clip = RiffuseJob("techno", seed_a=3, steps=3, width=120)  # not a loop: no bucket
    bucketed.render([open_clip])
    assert bucketed.timings["unet_columns"] == 120


def tool_figures(tool: Path, path: Path, bpm: float, bars: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-W", "ignore", str(tool), str(path), str(bpm),
                          str(bars)], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (item.split("=") for item in out.split())}


@pytest.mark.parametrize(("bpm", "bars"), [(120.0, 2), (97.0, 1)])
def test_a_bucketed_loop_has_the_exact_length_and_still_loops(
        renderers: tuple, shared_dir: Path, tmp_path: Path, bpm: float, bars: int) -> None:
    from riffbridge.engine.plan import LoopKey
    from riffbridge.outputs.files import OutputFolder
    from riffbridge.pipeline import LoopRequest, make_loop

    _, bucketed = renderers
    key = LoopKey(prompt_a="techno beat", seed_a=1, steps=6, denoise=0.6, bpm=bpm, bars=bars)
    width = render_width(loop_frames(bpm, bars))
    assert bucket_width(width) > width  # the render is padded
    loop = make_loop(bucketed, LoopRequest(key))
    assert bucketed.timings["unet_columns"] == bucket_width(width)
    assert loop.metadata["source_columns"] == width  # the image is the loop's own columns
    assert loop.audio.shape[-1] == loop_samples(bpm, bars)
    figures = tool_figures(shared_dir / "tools" / "loop_metrics.py",
                           OutputFolder(tmp_path).write(loop), bpm, bars)
    assert figures["exact"] == 1 and figures["samples"] == loop_samples(bpm, bars)
    assert figures["seam_ratio"] <= 1.25  # SEAM_LIMIT: the metric's own spread on a loop
    assert figures["seam_jump"] <= 2.0
