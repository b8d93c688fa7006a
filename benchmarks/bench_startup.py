"""Start-up: `riffbridge serve` to first sound, with a cold and a warm compile cache.

`python benchmarks/bench_startup.py [--model tiny] [--device cpu] [--runs 2]`

Each run starts `riffbridge serve` as a user would (a fresh process, audio to no device, loops to
a temporary folder, autoplay on) and times, from the launch: the status block ("riffbridge is
running": the model is loaded and the worker ready) and the first loop written (the first loop
rendered, which autoplay sounds at the next bar: first sound). Cold: an empty compile cache
(``--compile-cache`` a new folder) and a new ``XDG_CACHE_HOME``; warm: the same cache folder
as a run before it. On a machine where compile does not apply (the CPU, MPS) the two differ
only by noise, and the start prints its render path, so the figures say which one ran.

With --device cuda --model sd15-random the same command measures a GPU start; the first loop
renders uncompiled (compiling runs in the background), so first sound does not wait on the
compile, cold or warm.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_args import model_parser

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_start(args: argparse.Namespace, cache: Path, out: Path) -> dict[str, float | str]:
    port = free_port()
    reply = free_port()
    cmd = [sys.executable, "-m", "riffbridge", "serve", "--model", args.model, "--device",
           args.device, "--audio-out", "none", "--out-dir", str(out), "--steps",
           str(args.steps), "--bars", "2", "--osc-port", str(port), "--reply-port", str(reply),
           "--no-web", "--compile-cache", str(cache / "inductor"), "--for-seconds",
           str(args.limit)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cache),
           "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    running: list[float] = []
    render: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "riffbridge is running" in line and not running:
                running.append(time.monotonic() - started)
            if line.startswith("  render "):
                render.append(line.split(None, 1)[1].strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    first = None
    while proc.poll() is None and time.monotonic() - started < args.limit:
        if any(p.name != "latest.wav" for p in out.rglob("*.wav")):
            first = time.monotonic() - started
            break
        time.sleep(0.05)
    proc.terminate()
    proc.wait(60)
    reader.join(5)
    return {"running_s": running[0] if running else float("nan"),
            "first_sound_s": first if first is not None else float("nan"),
            "render_path": render[0] if render else "?"}


def main() -> int:
    ap = model_parser(steps=10, runs=2)
    ap.add_argument("--limit", type=float, default=600.0, help="give up on a start after this")
    args = ap.parse_args()
    results: dict[str, list[dict[str, float | str]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        warm_cache = Path(tmp) / "warm"
        one_start(args, warm_cache, Path(tmp) / "prime")  # fills the warm cache
        for i in range(args.runs):
            for mode in ("cold", "warm"):
                cache = Path(tmp) / f"cold{i}" if mode == "cold" else warm_cache
                r = one_start(args, cache, Path(tmp) / f"out-{mode}{i}")
                results[mode].append(r)
                print(json.dumps({"mode": mode, **r}), flush=True)
    print(f"\nserve -> first sound, {args.model} on {args.device}, {args.steps} steps, 2 bars "
          f"at 120 BPM, median of {args.runs}")
    print(f"render path: {results['cold'][0]['render_path']}")
    for mode, rows in results.items():
        med = {k: statistics.median(float(r[k]) for r in rows)
               for k in ("running_s", "first_sound_s")}
        print(f"{mode:5s}: running after {med['running_s']:.1f} s, first loop after "
              f"{med['first_sound_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
