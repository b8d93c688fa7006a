"""`riffbridge bench --against diffusers`: diffusers' own img2img pipeline on the same components
in the same run, both timings and the ratio. On this CPU with the tiny model and few steps, so
that the GPU run is the same command with --random-weights --device cuda."""

from __future__ import annotations

import json

import pytest

from riffbridge.cli import main


def test_bench_against_diffusers_prints_both_timings_and_the_ratio(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--model", "tiny", "--device", "cpu", "--steps", "4", "--runs", "1",
            "--warmup", "0", "--width", "64", "--no-audio", "--against", "diffusers"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["render_path"].startswith("render path: cuda graphs do not apply on cpu")
    theirs = result["against"]
    assert theirs["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert theirs["render_ms"] > 0 and theirs["ours_render_ms"] == result["render_ms"]
    assert theirs["ratio"] == pytest.approx(theirs["render_ms"] / result["render_ms"])
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].startswith("riffbridge render") and "s/clip" in lines[-3]
    assert lines[-2].startswith("diffusers ") and "img2img" in lines[-2]
    assert lines[-1].startswith("ratio: riffbridge is ") and lines[-1].endswith("x diffusers")
