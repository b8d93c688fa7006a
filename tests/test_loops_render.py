"""Loops from tiny-model renders: a seed at the render width, tiled in time, shaped circularly,
scored by the shared loop_metrics tool against the same image rebuilt the plain way."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from riffbridge.loops.seed import default_seed
from riffbridge.loops.shape import ShapeSettings, shape_image
from riffbridge.loops.tempo import loop_samples
from riffbridge.loops.types import Loop
from riffbridge.outputs.files import OutputFolder

BPM, BARS = 120.0, 2


def tool_figures(tool: Path, path: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-W", "ignore", str(tool), str(path), str(BPM),
                          str(BARS)], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (item.split("=") for item in out.split())}


@pytest.fixture(scope="module")
def renders() -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from riffbridge.render import ImageRef, Renderer, RiffuseJob

        renderer = Renderer("tiny", device="cpu")
        seed = default_seed(BPM, BARS)
        jobs = [RiffuseJob("techno beat", seed_a=s, steps=6, denoise_a=0.6, tile_time=True,
                           seed_image=ImageRef.from_image(seed.image)) for s in (0, 1)]
        images = renderer.render(jobs)
    assert all(image.width == seed.width for image in images)
    return images


def test_render_loops_written_through_the_output_folder_are_seamless(
        renders: list, shared_dir: Path, tmp_path: Path) -> None:
    tool = shared_dir / "tools" / "loop_metrics.py"
    out = OutputFolder(tmp_path)
    for i, image in enumerate(renders):
        meta = {"prompts": ["techno beat"], "seeds": [i], "model": "tiny", "steps": 6,
                "denoise": 0.6, "seed_pattern": "four-on-the-floor"}
        loop = shape_image(image, BPM, BARS, metadata=meta)
        circular = tool_figures(tool, out.write(loop))
        plain_loop = shape_image(image, BPM, BARS, settings=ShapeSettings(seam="plain"))
        plain = tool_figures(tool, out.write(plain_loop))
        assert circular["exact"] == 1 and circular["samples"] == loop_samples(BPM, BARS)
        assert circular["seam_ratio"] <= 1.0
        assert circular["seam_jump"] <= 2.0
        assert plain["seam_ratio"] > circular["seam_ratio"]
        assert plain["seam_jump"] > circular["seam_jump"]
        assert isinstance(loop, Loop) and loop.metadata["model"] == "tiny"
