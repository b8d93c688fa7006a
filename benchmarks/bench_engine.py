"""Engine benchmarks: command -> audible switch latency, and memory over a long run.

    python benchmarks/bench_engine.py latency [--model tiny] [--device cpu] [--audio-out none]
    python benchmarks/bench_engine.py memory --minutes 10 [--cache-mb 64]
    python benchmarks/bench_engine.py xy [--trials 10] [--model tiny] [--device cpu]

Latency: the engine runs for real (render worker process, planner, player) with the stream
paced at the audio rate (or a real device with --audio-out). A "cached" trial moves alpha to a
grid point that is already rendered; an "uncached" trial changes the seed, so the loop must be
rendered first. For each trial the figures are: how far the switch landed after the first
quantum boundary at or after the command (in audio blocks; the target is at most one), and the
time from the command to the first audible frame of the new loop.

XY: sweeps across the XY surface. Each move glides the point from where it is to a random point
in eight steps over one second (as a hand on an XY pad does), then waits for the exact loop of
the final point to sound. Per move: the renders that landed until then (the lattice ahead plus
the exact points), the time from the last step to the first exact loop sounding, and of the
switches that sounded during the move how many were blends of rendered lattice neighbours.

Memory: random control changes (alpha, prompts, seeds, gain, tempo) every half second for the
given minutes, with loops written to a temporary folder; the resident memory of the engine
process and of the render worker is printed every 30 s, with the growth over the second half.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from riffbridge.control.feedback import Feedback
from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.player import Player
from riffbridge.engine.worker import RenderWorker, WorkerSettings
from riffbridge.events import Event, LoopReady, Switched
from riffbridge.outputs.audio_stream import DeviceStream, PacedStream
from riffbridge.state import EngineState, SetMany, SetParam, apply

RATE = 44100


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wait_for(check: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return False


def open_stream(args: argparse.Namespace, player: Player) -> Any:
    if args.audio_out == "none":
        return PacedStream(RATE, player.fill, blocksize=args.blocksize)
    from riffbridge.outputs.devices import find_output

    dev = find_output(None if args.audio_out == "default" else args.audio_out)
    return DeviceStream(dev.index, RATE, player.fill, blocksize=args.blocksize)


def frame_time(player: Player, frame: int) -> float:
    stamp_frame, stamp_time = player.stamp
    return float(stamp_time + (frame - stamp_frame) / RATE)


class News:
    """Drains the engine's events as serve's feedback does (requests go to the hub), and notes
    when each loop landed."""

    def __init__(self, hub: Hub, events: queue.Queue[Event]) -> None:
        self.feedback = Feedback(hub, events)
        self.events = events
        self.ready: list[tuple[float, LoopReady]] = []
        self.switched: list[tuple[float, Switched]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.events.get(timeout=0.01)
            except queue.Empty:
                continue
            if isinstance(event, LoopReady):
                self.ready.append((time.monotonic(), event))
            if isinstance(event, Switched):
                self.switched.append((time.monotonic(), event))
            self.feedback.handle(event)

    def __enter__(self) -> News:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(1)


@contextlib.contextmanager
def live_engine(args: argparse.Namespace, state: EngineState, settings: EngineSettings,
                writer: Any = None) -> Iterator[tuple[Hub, Engine, RenderWorker, News, Any]]:
    hub = Hub(state)
    player = Player()
    worker = RenderWorker(WorkerSettings(args.model, args.device, args.dtype,
                                         cuda_graphs=args.cuda_graphs, compile=args.compile,
                                         width_buckets=args.width_buckets))
    engine = Engine(state, player, RATE, settings, worker=worker, writer=writer,
                    block=args.blocksize)
    hub.add_listener(engine.post)
    with News(hub, engine.events) as news, open_stream(args, player) as stream, engine:
        yield hub, engine, worker, news, stream


def settled(engine: Engine) -> bool:
    status = engine.status()
    return status.worker == "idle" and status.queued == 0


def trial(hub: Hub, engine: Engine, news: News, command: Any, timeout: float
          ) -> tuple[float, float, float]:
    """Submit ``command`` at a random phase. Returns (blocks after the boundary, seconds from
    the command to the audible switch, seconds from the command to the loop being ready). The
    boundary is the first one at or after the moment the loop was ready (the command, when it
    was cached)."""
    player = engine.player
    time.sleep(random.uniform(0.0, 2.0))  # a random point in the bar
    before = player.applied_token
    landed = len(news.ready)
    t0 = time.monotonic()
    frame0 = int(player.stamp[0] + (t0 - player.stamp[1]) * RATE)
    hub.submit(command)
    ready_at, ready_frame = t0, frame0
    if isinstance(command, SetParam) and command.name != "alpha":  # a new sound: rendered first
        alpha = hub.state.alpha
        if not wait_for(lambda: any(e.alpha == alpha for _, e in news.ready[landed:]), timeout):
            raise RuntimeError("the loop was not rendered in time")
        ready_at = next(t for t, e in news.ready[landed:] if e.alpha == alpha)
        ready_frame = int(player.stamp[0] + (ready_at - player.stamp[1]) * RATE)
    q = 4  # quantum: a bar of 4/4
    boundary, _ = engine.grid.next_boundary(ready_frame, q)
    if not wait_for(lambda: player.applied_token > before
                    and player.applied_at >= boundary - 1, 10):
        raise RuntimeError("the switch did not sound in time")
    at = player.applied_at
    return (at - boundary) / engine.block, frame_time(player, at) - t0, ready_at - t0


def latency(args: argparse.Namespace) -> None:
    state = EngineState(steps=args.steps, bars=1, playing=True, quantum="bar", xfade=0.01)
    settings = EngineSettings(lookahead=1)
    with live_engine(args, state, settings) as (hub, engine, worker, news, stream):
        ready = worker.ready
        print(f"engine: {args.model} on {ready.device if ready else '?'}, audio {stream.name}, "
              f"block {args.blocksize} ({args.blocksize / RATE * 1e3:.1f} ms), "
              f"quantum 1 bar = 2.0 s at 120 BPM")
        wait_for(lambda: settled(engine), 300)  # alpha 0 and 0.125 rendered
        cached = []
        for i in range(args.trials):
            alpha = 0.125 if i % 2 == 0 else 0.0
            cached.append(trial(hub, engine, news, SetParam("alpha", alpha), 10))
        uncached = []
        for i in range(args.trials):
            wait_for(lambda: settled(engine), 300)
            uncached.append(trial(hub, engine, news, SetParam("seed_a", 1000 + i), 300))
            wait_for(lambda: settled(engine), 300)
        status = engine.status()
    for name, rows in (("cached", cached), ("uncached", uncached)):
        blocks = [b for b, _, _ in rows]
        secs = [s for _, s, _ in rows]
        ready_s = [r for _, _, r in rows]
        print(f"{name:9s} n={len(rows)}  blocks after the boundary: max {max(blocks):.2f}, "
              f"median {statistics.median(blocks):.2f}  |  command -> loop ready: median "
              f"{statistics.median(ready_s):.3f} s, max {max(ready_s):.3f} s  |  command -> "
              f"audible: median {statistics.median(secs):.3f} s, max {max(secs):.3f} s")
    renders = [e.seconds for _, e in news.ready]
    print(f"renders {len(renders)}, median {statistics.median(renders):.3f} s (render worker, "
          f"whole loop incl. shaping); underruns {status.underruns}, errors {status.errors}")


def xy(args: argparse.Namespace) -> None:
    rng = random.Random(11)
    state = apply(EngineState(steps=args.steps, bars=1, playing=True, quantum="bar",
                              xfade=0.01), SetMany((("x", 0.0), ("y", 0.0))))
    settings = EngineSettings(xy_grid=args.xy_grid)
    rows = []
    with live_engine(args, state, settings) as (hub, engine, worker, news, stream):
        ready = worker.ready
        print(f"engine: {args.model} on {ready.device if ready else '?'}, audio {stream.name}, "
              f"{args.steps} steps, XY lattice {args.xy_grid}x{args.xy_grid} cells, quantum "
              f"1 bar = 2.0 s at 120 BPM")
        wait_for(lambda: settled(engine), 600)  # the point and its lattice cell
        x, y = 0.0, 0.0
        for _ in range(args.trials):
            tx, ty = round(rng.random(), 3), round(rng.random(), 3)
            landed, switched = len(news.ready), len(news.switched)
            for k in range(1, 9):
                px, py = round(x + (tx - x) * k / 8, 3), round(y + (ty - y) * k / 8, 3)
                hub.submit(SetMany((("x", px), ("y", py))), source="bench")
                t_last = time.monotonic()
                time.sleep(0.125)
            x, y = tx, ty
            label = f"xy {tx:g},{ty:g}"
            def exact_sounded(label: str = label, since: int = switched) -> bool:
                return any(e.label == label for _, e in news.switched[since:])

            if not wait_for(exact_sounded, args.timeout):
                print(f"move to {label}: the exact loop did not sound in {args.timeout:g} s")
                continue
            t_exact, _ = next((t, e) for t, e in news.switched[switched:] if e.label == label)
            during = [e for t, e in news.switched[switched:] if t <= t_exact]
            renders = sum(1 for t, _ in news.ready[landed:] if t <= t_exact)
            blends = sum(1 for e in during if e.label.startswith("blend"))
            rows.append((renders, t_exact - t_last, blends, len(during)))
            print(f"move to ({tx:.3f}, {ty:.3f}): {renders} renders, first exact loop "
                  f"{t_exact - t_last:.2f} s after the last step, {blends} of {len(during)} "
                  f"switches were blends", flush=True)
        status = engine.status()
    if rows:
        renders = [r for r, _, _, _ in rows]
        exact = [t for _, t, _, _ in rows]
        blends = sum(b for _, _, b, _ in rows)
        switches = sum(n for _, _, _, n in rows)
        print(f"xy sweep n={len(rows)}: renders per move median {statistics.median(renders)}, "
              f"max {max(renders)}  |  last step -> first exact loop: median "
              f"{statistics.median(exact):.2f} s, max {max(exact):.2f} s  |  blends sounded "
              f"{blends} of {switches} switches ({blends / max(1, switches):.0%}); underruns "
              f"{status.underruns}, errors {status.errors}")
    renders_s = [e.seconds for _, e in news.ready]
    if renders_s:
        print(f"renders {len(renders_s)}, median {statistics.median(renders_s):.3f} s (render "
              f"worker, whole loop incl. shaping)")


def memory(args: argparse.Namespace) -> None:
    from riffbridge.outputs.files import OutputFolder
    from riffbridge.outputs.writer import LoopWriter

    rng = random.Random(7)
    prompts = ["funk drums", "jazz piano", "ambient pad", "techno kick", "dub bass", "choir"]
    state = EngineState(steps=args.steps, bars=1, playing=True, quantum="beat")
    settings = EngineSettings(cache_mb=args.cache_mb)
    with tempfile.TemporaryDirectory() as tmp:
        writer = LoopWriter(OutputFolder(tmp)).start()
        with live_engine(args, state, settings, writer) as (hub, engine, worker, _, _):
            started = time.monotonic()
            end = started + args.minutes * 60
            next_report = started
            rows = []
            changes = 0
            while time.monotonic() < end:
                name, value = rng.choice([
                    ("alpha", round(rng.random(), 3)), ("alpha", round(rng.random(), 3)),
                    ("prompt_a", rng.choice(prompts)), ("prompt_b", rng.choice(prompts)),
                    ("seed_a", rng.randrange(50)), ("gain_db", round(rng.uniform(-12, 0), 1)),
                    ("bpm", rng.choice([100.0, 120.0, 128.0]))])
                hub.submit(SetParam(name, value), source="bench")
                changes += 1
                now = time.monotonic()
                if now >= next_report:
                    status = engine.status()
                    row = (now - started, rss_mb(os.getpid()), rss_mb(worker.pid or 0),
                           status.cache_mb, status.cached, status.renders)
                    rows.append(row)
                    print(f"t={row[0]:6.0f} s  engine RSS {row[1]:7.1f} MB  worker RSS "
                          f"{row[2]:7.1f} MB  cache {row[3]:5.1f} MB ({row[4]} loops)  "
                          f"renders {row[5]}  changes {changes}", flush=True)
                    next_report = now + 30
                time.sleep(0.5)
            status = engine.status()
        writer.close()
    half = [r for r in rows if r[0] >= args.minutes * 30]
    if len(half) >= 2:
        print(f"second half: engine RSS {half[0][1]:.1f} -> {half[-1][1]:.1f} MB, worker "
              f"{half[0][2]:.1f} -> {half[-1][2]:.1f} MB; cache bound {args.cache_mb:g} MB, "
              f"written {writer.written}, underruns {status.underruns}, "
              f"errors {status.errors}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("latency", "memory", "xy"))
    p.add_argument("--model", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    # The serve defaults (on; they do not apply on the CPU): --no-cuda-graphs, --no-compile.
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--width-buckets", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--audio-out", default="none")
    p.add_argument("--blocksize", type=int, default=512)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--cache-mb", type=float, default=64.0)
    p.add_argument("--xy-grid", type=int, default=4)
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.mode == "latency":
        latency(args)
    elif args.mode == "xy":
        xy(args)
    else:
        memory(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
