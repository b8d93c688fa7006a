"""Where batching planned loops stops paying: `python benchmarks/bench_batch.py`.

For each batch size N (``--sizes``) it renders N neighbouring alphas of one loop the way the
live worker does (``riffbridge.pipeline``: img2img from the groove's seed image, tiled in time,
CFG, on the render path ``choose_path`` picks for the device, compile left out: it would compile
each batch size for about a minute) and prints, per size:

- render s: one ``Renderer.render`` of the N loops (text, UNet steps, VAE decode), and per clip;
- UNet ms/step: one step of the whole batch (2N rows: both CFG halves of every loop);
- first loop s / whole s per clip: ``make_loops`` end to end (the render, then each loop shaped
  by Griffin-Lim and loudness in turn): when the first loop of the batch is out (what the
  performer waits on if it was wanted now) and the whole batch's time over N;
- speed-up: per-clip time at batch 1 over per-clip time at N (render only; > 1 pays);
- GPU memory: the peak allocated during the size's runs (CUDA only).

The median of ``--runs`` after ``--warmup`` untimed runs (which also record the CUDA graphs of
each size). Default: the tiny model on the CPU (plumbing figures, not representative of SD 1.5);
on a GPU: ``--model sd15-random --device cuda --steps 50``. A table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny", help="tiny, sd15-random or a model name/path")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bpm", type=float, default=93.75, help="93.75 x 2 bars = 5.12 s, 512 "
                    "columns (the clip of issue 15's targets)")
    ap.add_argument("--bars", type=int, default=2)
    ap.add_argument("--sizes", default="1,2,4,8", help="batch sizes, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-cuda-graphs", action="store_true")
    ap.add_argument("--no-shape", action="store_true", help="time the render only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from riffbridge.engine.plan import key_for
    from riffbridge.pipeline import LoopRequest, loop_job, make_loops
    from riffbridge.render.path import RenderOptions, choose_path, probe_platform
    from riffbridge.render.riffuse import Renderer
    from riffbridge.state import EngineState
    from riffbridge.torch_device import resolve_device

    sizes = [int(s) for s in args.sizes.split(",")]
    device = resolve_device(args.device)
    path = choose_path(probe_platform(device),
                       RenderOptions(cuda_graphs=not args.no_cuda_graphs, compile=False))
    model: Any = args.model
    if model == "sd15-random":
        from riffbridge.render.model import build_random_sd15

        model = build_random_sd15(device=device)
    renderer = Renderer(model, device=args.device, dtype=args.dtype, max_batch=max(sizes),
                        cuda_graphs=path.cuda_graphs, width_buckets=path.width_buckets)
    cuda = renderer.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    name = torch.cuda.get_device_name(renderer.device) if cuda else \
        f"{renderer.device.type} ({torch.get_num_threads()} threads)"
    state = EngineState(steps=args.steps, bpm=args.bpm, bars=args.bars)
    alphas = [i / 16 for i in range(16)]
    if not args.json:
        print(f"device: {name}; {path.describe()}; model {args.model}, {args.steps} steps, "
              f"{args.bars} bars at {args.bpm:g} BPM", flush=True)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        requests = [LoopRequest(key_for(state, a, 16)) for a in alphas[:n]]
        jobs = [loop_job(r) for r in requests]
        if cuda:
            torch.cuda.reset_peak_memory_stats(renderer.device)
        render, unet, first, whole = [], [], [], []
        for i in range(args.warmup + args.runs):
            renderer.forget_prompts()
            sync()
            t0 = time.perf_counter()
            renderer.render(jobs)
            sync()
            t1 = time.perf_counter()
            steps = max(1.0, renderer.timings["unet_steps"])
            step_s = renderer.timings["unet_s"] / steps  # before make_loops renders again
            if not args.no_shape:
                renderer.forget_prompts()
                t2 = time.perf_counter()
                out = make_loops(renderer, requests)
                next(out)
                t3 = time.perf_counter()
                for _ in out:
                    pass
                t4 = time.perf_counter()
            if i >= args.warmup:
                render.append(t1 - t0)
                unet.append(step_s)
                if not args.no_shape:
                    first.append(t3 - t2)
                    whole.append(t4 - t2)
        med = statistics.median
        row: dict[str, Any] = {
            "batch": n, "render_s": med(render), "render_s_per_clip": med(render) / n,
            "unet_ms_per_step": med(unet) * 1e3, "unet_steps": int(steps),
            "first_loop_s": med(first) if first else None,
            "whole_s_per_clip": med(whole) / n if whole else None,
            "gpu_peak_gib": torch.cuda.max_memory_allocated(renderer.device) / 2**30
            if cuda else None}
        row["speedup"] = (rows[0]["render_s_per_clip"] / row["render_s_per_clip"]
                          if rows else 1.0)
        rows.append(row)
        if args.json:
            print(json.dumps({"device": name, "model": args.model, "steps": args.steps,
                              "path": path.describe(), **row}), flush=True)
        else:
            print(_line(row), flush=True)
    if not args.json:
        print()
        print(_table(rows))
    return 0


def _line(r: dict[str, Any]) -> str:
    shaped = "" if r["first_loop_s"] is None else (
        f"; first loop {r['first_loop_s']:.3f} s, whole {r['whole_s_per_clip']:.3f} s/clip")
    return (f"batch {r['batch']}: render {r['render_s']:.3f} s ({r['render_s_per_clip']:.3f} "
            f"s/clip, {r['speedup']:.2f}x), UNet {r['unet_ms_per_step']:.1f} ms/step{shaped}")


def _table(rows: list[dict[str, Any]]) -> str:
    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    head = ("batch", "render s", "render s/clip", "UNet ms/step", "first loop s",
            "whole s/clip", "speed-up", "GPU peak GiB")
    out = [head] + [(str(r["batch"]), f(r["render_s"], ".3f"), f(r["render_s_per_clip"], ".3f"),
                     f(r["unet_ms_per_step"], ".1f"), f(r["first_loop_s"], ".3f"),
                     f(r["whole_s_per_clip"], ".3f"), f(r["speedup"], ".2f"),
                     f(r["gpu_peak_gib"], ".2f")) for r in rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in
                     [out[0], tuple("---" for _ in head), *out[1:]])


if __name__ == "__main__":
    sys.exit(main())
