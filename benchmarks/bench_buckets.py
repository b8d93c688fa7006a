"""What width buckets cost: shapes saved and columns added. `python benchmarks/bench_buckets.py`.

Part 1 (no model): the tempo sweep 60..200 BPM in quarter-BPM steps for 1, 2 and 4 bars of 4/4:
how many render widths, how many buckets, and the extra columns a bucket renders (mean, max).
Part 2 (a model, default the tiny one on the CPU): the UNet time of a loop render at its exact
width and at its bucket, for a few loops: the fastest of --runs after one warm-up, the two
widths interleaved (on a shared machine the fastest run is the least disturbed one).
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_args import model_parser

from riffbridge.loops.tempo import loop_frames, render_width
from riffbridge.render.buckets import bucket_width


def sweep() -> dict[str, float]:
    widths = [render_width(loop_frames(q / 4, bars)) for bars in (1, 2, 4)
              for q in range(240, 801)]
    extra = [bucket_width(w) / w - 1 for w in widths]
    columns = sum(widths)
    return {"loops": len(widths), "widths": len(set(widths)),
            "buckets": len({bucket_width(w) for w in widths}),
            "extra_mean": statistics.mean(extra), "extra_max": max(extra),
            "extra_columns_total": sum(bucket_width(w) for w in widths) / columns - 1}


def main() -> int:
    args = model_parser(steps=20, runs=5).parse_args()
    logging.basicConfig(level=logging.WARNING)
    s = sweep()
    print(f"sweep: {s['loops']} loops (60..200 BPM by 0.25, 1/2/4 bars): {s['widths']} widths "
          f"-> {s['buckets']} buckets; extra columns mean {s['extra_mean']:.1%}, max "
          f"{s['extra_max']:.1%}, over the sweep {s['extra_columns_total']:.1%}")
    print(json.dumps(s))

    from riffbridge.render.bench import seed_image
    from riffbridge.render.model import load_components
    from riffbridge.render.riffuse import Renderer, RiffuseJob

    comps = load_components(args.model)
    renderers = {False: Renderer(comps, device=args.device),
                 True: Renderer(comps, device=args.device, width_buckets=True)}
    rows = []
    for bpm, bars in ((120.0, 2), (97.0, 1), (140.0, 4), (93.75, 2)):
        width = render_width(loop_frames(bpm, bars))
        job = RiffuseJob("techno", seed_a=1, steps=args.steps, width=width, tile_time=True,
                         seed_image=seed_image(width))
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.runs + 1):  # interleaved, so a busy spell hits both alike
            for on, renderer in renderers.items():
                renderer.render([job])
                if i:
                    times[on].append(renderer.timings["unet_s"] * 1e3)
        ms = {on: min(t) for on, t in times.items()}  # least disturbed run: a shared box
        row = {"bpm": bpm, "bars": bars, "width": width, "bucket": bucket_width(width),
               "extra_columns": bucket_width(width) / width - 1, "unet_ms_exact": ms[False],
               "unet_ms_bucket": ms[True], "unet_cost": ms[True] / ms[False] - 1}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nmodel {args.model} on {args.device}, {args.steps} steps x denoise 0.75, fastest of "
          f"{args.runs}")
    print("loop               width  bucket  extra cols  UNet ms exact  UNet ms bucket  cost")
    for r in rows:
        print(f"{r['bars']} bar(s) @ {r['bpm']:6.2f}  {r['width']:5d}  {r['bucket']:6d}  "
              f"{r['extra_columns']:9.1%}  {r['unet_ms_exact']:13.1f}  "
              f"{r['unet_ms_bucket']:14.1f}  {r['unet_cost']:+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
