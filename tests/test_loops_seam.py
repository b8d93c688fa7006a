"""Seamless loops from the real clips: circular rebuild vs a plain crop, scored by the shared
tool ``loop_metrics.py``; the crossfade only as a last resort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from riffbridge.audio_io import read_audio
from riffbridge.loops.seam import crossfade_columns, measure_seam
from riffbridge.loops.shape import ShapeSettings, loop_from_audio
from riffbridge.loops.tempo import loop_samples
from riffbridge.outputs.files import atomic_write
from riffbridge.outputs.wav import WavSettings, wav_bytes

BPM, BARS = 120.0, 2


def loop_metrics(tool: Path, wav: Path, bpm: float, bars: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-W", "ignore", str(tool), str(wav), str(bpm),
                          str(bars)], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (item.split("=") for item in out.split())}


@pytest.fixture(scope="module")
def clip_figures(clips: list[Path], shared_dir: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict]]:
    tool = shared_dir / "tools" / "loop_metrics.py"
    folder = tmp_path_factory.mktemp("seam")
    n = loop_samples(BPM, BARS)
    results = []
    for clip in clips:
        audio, rate = read_audio(clip)
        figures: dict[str, dict] = {}
        circular = loop_from_audio(audio, rate, BPM, BARS, settings=ShapeSettings(seam="auto"))
        path = folder / f"{clip.stem}_circular.wav"
        atomic_write(path, wav_bytes(circular, WavSettings("pcm16")))
        figures["circular"] = {**loop_metrics(tool, path, BPM, BARS),
                               "method": circular.metadata["seam"]["method"]}
        # The plain crop of the same material: the clip's first N samples, as a looper would
        # take them.
        crop = audio[:, :n]
        from riffbridge.loops.types import Loop

        path = folder / f"{clip.stem}_crop.wav"
        atomic_write(path, wav_bytes(Loop(crop, rate, BPM, BARS), WavSettings("pcm16")))
        figures["crop"] = loop_metrics(tool, path, BPM, BARS)
        results.append(figures)
    return results


def test_circular_loops_from_the_clips_are_exact_and_seamless(clip_figures: list) -> None:
    for figures in clip_figures:
        c = figures["circular"]
        assert c["exact"] == 1 and c["samples"] == loop_samples(BPM, BARS)
        assert c["seam_ratio"] <= 1.0
        assert c["seam_jump"] <= 2.0  # a step like any other step of the waveform
        assert c["method"] == "circular"  # no crossfade was needed


def test_a_plain_crop_of_the_same_clips_clicks(clip_figures: list) -> None:
    for figures in clip_figures:
        assert figures["crop"]["seam_jump"] >= 5.0
        assert figures["crop"]["seam_jump"] >= 5 * max(figures["circular"]["seam_jump"], 0.5)
    mean_circ = np.mean([f["circular"]["seam_jump"] for f in clip_figures])
    mean_crop = np.mean([f["crop"]["seam_jump"] for f in clip_figures])
    assert mean_crop > 10 * mean_circ


def test_own_seam_measure_agrees_with_the_shared_tool(clips: list[Path], shared_dir: Path,
                                                      tmp_path: Path) -> None:
    audio, rate = read_audio(clips[2])
    crop = audio[:, : loop_samples(BPM, BARS)]
    from riffbridge.loops.types import Loop

    path = tmp_path / "crop.wav"
    atomic_write(path, wav_bytes(Loop(crop, rate, BPM, BARS), WavSettings("float32")))
    tool = loop_metrics(shared_dir / "tools" / "loop_metrics.py", path, BPM, BARS)
    own = measure_seam(crop, rate)
    assert own.seam_ratio == pytest.approx(tool["seam_ratio"], abs=0.01)
    assert own.seam_jump == pytest.approx(tool["seam_jump"], rel=0.02)


def test_the_crossfade_is_a_last_resort_and_says_so() -> None:
    # Loud noise then near-silence: rebuilt circularly, the wrap is the loop's only onset. The
    # circular rebuild already softens it to about the default limit, so a strict limit stands
    # in for material that needs more; the clips above show it is not used when not needed.
    rng = np.random.default_rng(0)
    n = loop_samples(BPM, 1)
    audio = (0.3 * rng.standard_normal((1, n))).astype(np.float32)
    audio[:, n // 2:] *= 0.01
    plain = loop_from_audio(audio, 44100, BPM, 1, settings=ShapeSettings(seam="circular",
                                                                         iters=16))
    assert plain.metadata["seam"]["method"] == "circular"
    assert plain.metadata["seam"]["seam_ratio"] > 0.5
    strict = ShapeSettings(seam="auto", seam_limit=0.5, iters=16)
    mended = loop_from_audio(audio, 44100, BPM, 1, settings=strict)
    seam = mended.metadata["seam"]
    assert seam["method"] == "circular+crossfade" and seam["crossfade_columns"] > 0
    assert seam["seam_ratio"] < plain.metadata["seam"]["seam_ratio"]
    assert mended.num_samples == n


def test_crossfade_columns_ramps_the_tail_to_the_head() -> None:
    mel = np.zeros((1, 2, 20), dtype=np.float32)
    mel[..., 0] = 1.0
    out = crossfade_columns(mel, 4)
    tail = out[0, 0, -4:]
    assert np.all(np.diff(tail) > 0) and 0 < tail[0] < tail[-1] < 1
    np.testing.assert_array_equal(out[..., :16], mel[..., :16])
