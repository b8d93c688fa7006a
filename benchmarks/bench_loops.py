"""Loop figures: exact length, seam (circular vs plain), loudness error, shaping time.

Usage: python benchmarks/bench_loops.py [--quick]

For each clip in ../shared/audio and each (bpm, bars): the clip squeezed/stretched to the loop
and rebuilt circularly (riffbridge's path), the same spectrogram rebuilt linearly and cut (plain
rebuild), and a plain crop of the clip's first N samples; all scored by
shared/tools/loop_metrics.py. Then seed-pattern loops (synth -> seed image -> shaped loop), and
loudness after normalisation measured by our meter and by pyloudnorm.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyloudnorm
import torch

from riffbridge.audio_io import read_audio
from riffbridge.loops.loudness import integrated_loudness, true_peak
from riffbridge.loops.patterns import get_pattern
from riffbridge.loops.seam import measure_seam
from riffbridge.loops.seed import pattern_seed
from riffbridge.loops.shape import ShapeSettings, loop_from_audio, shape_image
from riffbridge.loops.tempo import loop_samples
from riffbridge.loops.types import Loop
from riffbridge.outputs.files import atomic_write
from riffbridge.outputs.wav import WavSettings, wav_bytes

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOOL = SHARED / "tools" / "loop_metrics.py"


def metrics(loop: Loop, folder: Path) -> dict[str, float]:
    path = folder / "m.wav"
    atomic_write(path, wav_bytes(loop, WavSettings("pcm24")))
    out = subprocess.run([sys.executable, "-W", "ignore", str(TOOL), str(path), str(loop.bpm),
                          str(loop.bars)], capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in (item.split("=") for item in out.split())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    grid = [(120.0, 2), (128.0, 4)] if args.quick else [(120.0, 2), (128.0, 4), (90.0, 2),
                                                          (174.0, 4), (70.0, 1)]
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    folder = Path(tempfile.mkdtemp())
    rows, lufs_err, pyln_err, peaks, times = [], [], [], [], []
    for clip in sorted((SHARED / "audio").glob("*.wav")):
        audio, rate = read_audio(clip)
        for bpm, bars in grid:
            t0 = time.perf_counter()
            circ = loop_from_audio(audio, rate, bpm, bars)
            times.append((time.perf_counter() - t0, circ.seconds))
            plain = loop_from_audio(audio, rate, bpm, bars, settings=ShapeSettings(seam="plain"))
            n = loop_samples(bpm, bars)
            crop_audio = np.tile(audio, (1, -(-n // audio.shape[1])))[:, :n]
            crop = Loop(crop_audio, rate, bpm, bars)
            c, p, k = metrics(circ, folder), metrics(plain, folder), metrics(crop, folder)
            rows.append((clip.name[:6], bpm, bars, c, p, k, circ.metadata["seam"]["method"]))
            lufs_err.append(abs(integrated_loudness(circ.audio, 44100) + 14.0))
            meter = pyloudnorm.Meter(44100)
            pyln_err.append(abs(meter.integrated_loudness(circ.audio.T.astype(np.float64))
                                + 14.0))
            peaks.append(true_peak(circ.audio))
    print("\n| clip | bpm | bars | exact | circular seam_ratio / seam_jump | plain rebuild "
          "| plain crop | method |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, bpm, bars, c, p, k, method in rows:
        print(f"| {name} | {bpm:g} | {bars} | {int(c['exact'])} | {c['seam_ratio']:.2f} / "
              f"{c['seam_jump']:.1f} | {p['seam_ratio']:.2f} / {p['seam_jump']:.1f} | "
              f"{k['seam_ratio']:.2f} / {k['seam_jump']:.1f} | {method} |")
    for label, i in (("circular", 3), ("plain rebuild", 4), ("plain crop", 5)):
        ratios = [r[i]["seam_ratio"] for r in rows]
        jumps = [r[i]["seam_jump"] for r in rows]
        print(f"{label}: seam_ratio median {statistics.median(ratios):.2f} max {max(ratios):.2f}"
              f"; seam_jump median {statistics.median(jumps):.1f} max {max(jumps):.1f}")
    print(f"\nloudness error vs -14 LUFS: ours max {max(lufs_err):.3f} LU, pyloudnorm max "
          f"{max(pyln_err):.3f} LU; true peak max {max(peaks):.2f} dBTP (ceiling -1)")
    rtf = [t / s for t, s in times]
    print(f"shaping time (spectrogram, resample, circular rebuild 'fast', seam, level): median "
          f"{statistics.median([t for t, _ in times]):.2f} s per loop, "
          f"{statistics.median(rtf):.3f} s per second of loop")
    print("\n| seed pattern | bpm | bars | width | exact | seam_ratio | seam_jump | grid_score "
          "| inside downbeat at the seam: seam_ratio / seam_jump |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("four-on-the-floor", "breakbeat", "half-time", "boom-bap"):
        for bpm, bars in grid[:3]:
            seed = pattern_seed(get_pattern(name), bpm, bars)
            loop = shape_image(seed.image, bpm, bars)
            m = metrics(loop, folder)
            # The same loop turned so that an inside downbeat (bar 2, or beat 3 of a one-bar
            # loop) sits on the seam: what the figures read for a kick that is not a seam.
            shift = loop.num_samples // 2
            ref = measure_seam(np.roll(loop.audio, -shift, axis=1), 44100)
            print(f"| {name} | {bpm:g} | {bars} | {seed.width} | {int(m['exact'])} | "
                  f"{m['seam_ratio']:.2f} | {m['seam_jump']:.1f} | {m['grid_score']:.2f} | "
                  f"{ref.seam_ratio:.2f} / {ref.seam_jump:.1f} |")
    render_figures(grid[:2], folder)


def render_figures(grid: list[tuple[float, int]], folder: Path) -> None:
    """Tiny-model renders (tile_time=True) from the default seed, shaped circularly, against
    the same images rebuilt the plain way and cut."""
    from riffbridge.loops.seed import default_seed
    from riffbridge.render import ImageRef, Renderer, RiffuseJob

    renderer = Renderer("tiny", device="cpu")
    print("\n| tiny render | bpm | bars | width | circular: seam_ratio / seam_jump | "
          "plain rebuild | method |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    circ_r, plain_r, circ_j, plain_j = [], [], [], []
    for bpm, bars in grid:
        seed = default_seed(bpm, bars)
        for s in range(4):
            job = RiffuseJob("techno beat", seed_a=s, steps=6, denoise_a=0.6, tile_time=True,
                             seed_image=ImageRef.from_image(seed.image))
            image = renderer.render([job])[0]
            loop = shape_image(image, bpm, bars)
            c = metrics(loop, folder)
            method = loop.metadata["seam"]["method"]
            p = metrics(shape_image(image, bpm, bars, settings=ShapeSettings(seam="plain")),
                        folder)
            circ_r.append(c["seam_ratio"])
            plain_r.append(p["seam_ratio"])
            circ_j.append(c["seam_jump"])
            plain_j.append(p["seam_jump"])
            print(f"| seed {s} | {bpm:g} | {bars} | {image.width} | {c['seam_ratio']:.2f} / "
                  f"{c['seam_jump']:.1f} | {p['seam_ratio']:.2f} / {p['seam_jump']:.1f} | "
                  f"{method} |")
    print(f"tiny renders: circular seam_ratio max {max(circ_r):.2f}, seam_jump max "
          f"{max(circ_j):.1f}; plain seam_ratio median {statistics.median(plain_r):.2f}, "
          f"seam_jump median {statistics.median(plain_j):.1f}")


if __name__ == "__main__":
    main()
