"""Sweep of renderer variants (levers one at a time): `python benchmarks/bench_render.py`.

--device cuda: full-size SD 1.5 with random weights (timing does not depend on weights), fp16.
--device cpu: the tiny model and the full-size random model at reduced steps.
Prints one table and one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from riffbridge.render.bench import BenchConfig, format_table, run_bench, variant_name


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--only", default="", help="run only variants whose name contains this")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from riffbridge.render.model import build_random_sd15
    from riffbridge.render.riffuse import Renderer
    from riffbridge.torch_device import resolve_device

    results = []

    def go(cfg: BenchConfig, renderer: Renderer | None = None) -> None:
        try:
            r = run_bench(cfg, renderer)
        except Exception as exc:
            print(f"FAILED {cfg}: {type(exc).__name__}: {exc}", flush=True)
            return
        results.append(r)
        print(json.dumps(r.as_dict()), flush=True)
        print(format_table([r]), flush=True)

    if args.device == "cpu":
        base = BenchConfig(model="tiny", device="cpu", steps=50, runs=args.runs)
        go(base)
        go(replace(base, batch=4))
        go(replace(base, steps=20, scheduler="dpm++2m"))
        big = BenchConfig(model="sd15-random", device="cpu", steps=4, runs=1, warmup=0,
                          audio=False)
        go(big)
        print(format_table(results))
        return 0

    device = resolve_device(args.device)
    comps = build_random_sd15(device=device)
    base = BenchConfig(model="sd15-random", device=args.device, dtype="fp16", runs=args.runs)

    def renderer(cfg: BenchConfig) -> Renderer:
        return Renderer(comps, device=args.device, dtype=cfg.dtype, max_batch=cfg.batch,
                        sdpa=cfg.sdpa, channels_last=cfg.channels_last,
                        compile_unet=cfg.compile, cuda_graphs=cfg.cuda_graphs)

    dpm = dict(steps=20, scheduler="dpm++2m")
    plan = [
        base,
        replace(base, batch=4),
        replace(base, **dpm),
        replace(base, **dpm, batch=4),
        replace(base, dtype="bf16"),
        replace(base, channels_last=True),
        replace(base, channels_last=True, batch=4),
        # CUDA graphs: the step's ~1200 kernel launches become one replay.
        replace(base, cuda_graphs=True),
        replace(base, cuda_graphs=True, batch=4),
        replace(base, cuda_graphs=True, **dpm),
        replace(base, cuda_graphs=True, **dpm, batch=4),
    ]
    if not args.quick:
        fast = dict(channels_last=True, compile=True, warmup=2)
        plan += [
            replace(base, **fast),
            replace(base, **fast, batch=4),
            replace(base, **fast, **dpm),
            replace(base, **fast, **dpm, batch=4),
            replace(base, **fast, dtype="bf16"),
            replace(base, **fast, cuda_graphs=True),
            replace(base, **fast, cuda_graphs=True, batch=4),
            replace(base, **fast, cuda_graphs=True, **dpm),
            replace(base, **fast, cuda_graphs=True, **dpm, batch=4),
        ]
    # Last: the Renderer sets the attention processor on the shared model both ways, but a
    # plain-attention variant first once left every later variant on plain attention.
    plan.append(replace(base, sdpa=False))
    for cfg in plan:
        if args.only not in variant_name(cfg):
            continue
        go(cfg, renderer(cfg))
        torch.cuda.empty_cache()
    print(f"device: {results[0].device_name if results else '?'}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
