"""Underruns when another thread of the engine's process holds Python's GIL: direct vs buffered.

A loop plays through PortAudio's JACK device while a thread of the same process holds the GIL
in one C call (``list.sort`` never lets go of it) for HOLD ms, once every PAUSE ms, for SECONDS.
That is what an import, a full garbage collection, a large pickle or a JSON dump of a big message
does to the engine's process. Each mode is played in turn:

- ``direct``: ``Player.fill`` in PortAudio's callback (needs the GIL every period);
- ``buffered``: rtmixer's C callback plays from a ring that a feeder thread keeps AHEAD ms full.

Printed per mode and hold: underruns the player was told of (PortAudio's flags plus the ring
running dry), the ring running dry on its own, and the holds as measured.

    jackd --no-realtime -d dummy -r 44100 -p 1024 &
    python benchmarks/bench_gil.py --holds 25 50 100 200 --seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np

from riffbridge.engine.player import Player, Segment, prepare_cue
from riffbridge.errors import DeviceError
from riffbridge.outputs.audio_stream import AHEAD_S, DeviceStream
from riffbridge.outputs.devices import find_output

RATE = 44100


def _jack_device() -> int:
    try:
        return find_output("system").index  # JACK's own output, as the JACK tests play to
    except DeviceError as exc:
        raise SystemExit(f"{exc} (start jackd first)") from None


def _items_for(seconds: float) -> list[float]:
    rng = np.random.default_rng(3)
    probe = rng.random(200_000).tolist()
    started = time.perf_counter()
    sorted(probe)
    took = time.perf_counter() - started
    return rng.random(max(1000, int(200_000 * seconds / took))).tolist()


def run(mode: str, hold_ms: float, pause_ms: float, seconds: float, block: int,
        ahead_s: float) -> dict[str, float]:
    player = Player()
    loop = (np.random.default_rng(7).standard_normal((RATE, 2)) * 0.1).astype(np.float32)
    loop.flags.writeable = False
    items = _items_for(hold_ms / 1000) if hold_ms > 0 else []
    held: list[float] = []
    with DeviceStream(_jack_device(), RATE, player.fill, blocksize=block,
                      ahead_s=ahead_s if mode == "buffered" else 0.0) as stream:
        at = player.frame + RATE // 4
        player.cue = prepare_cue(None, Segment(loop, at), at, 1, token=1)
        while player.applied_token < 1:
            time.sleep(0.01)
        time.sleep(0.5)
        before = player.underruns
        stop = threading.Event()

        def hog() -> None:
            while not stop.is_set():
                if items:
                    started = time.perf_counter()
                    sorted(items)
                    held.append(time.perf_counter() - started)
                stop.wait(pause_ms / 1000)

        thread = threading.Thread(target=hog, daemon=True)
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join()
        time.sleep(0.3)
        underruns = player.underruns - before
        dry = stream.underruns
    return {"underruns": underruns, "dry": dry, "holds": len(held),
            "held_ms": statistics.median(held) * 1000 if held else 0.0,
            "held_max_ms": max(held) * 1000 if held else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holds", type=float, nargs="+", default=[0, 25, 50, 100, 200],
                        metavar="MS", help="GIL holds to try (0: none, the baseline)")
    parser.add_argument("--pause", type=float, default=500.0, metavar="MS",
                        help="between holds (default 500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per mode and hold")
    parser.add_argument("--block", type=int, default=1024, help="frames per block (JACK's)")
    parser.add_argument("--ahead", type=float, default=AHEAD_S * 1000, metavar="MS",
                        help=f"the buffered mode's ring (default {AHEAD_S * 1000:g})")
    parser.add_argument("--modes", nargs="+", default=["direct", "buffered"],
                        choices=["direct", "buffered"])
    args = parser.parse_args()
    print(f"{'mode':<9} {'hold ms':>8} {'holds':>6} {'held (median/max) ms':>21} "
          f"{'underruns':>10} {'ring dry':>9}")
    for hold in args.holds:
        for mode in args.modes:
            r = run(mode, hold, args.pause, args.seconds, args.block, args.ahead / 1000)
            print(f"{mode:<9} {hold:>8g} {r['holds']:>6.0f} "
                  f"{r['held_ms']:>10.0f} / {r['held_max_ms']:<8.0f} "
                  f"{r['underruns']:>10.0f} {r['dry']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
