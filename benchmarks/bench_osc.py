"""OSC message -> state applied: latency under a sustained knob flood.

A separate sender process (as Max or TouchOSC would be) sends ``/rb/alpha`` at a fixed rate
(default 1000 messages/s for 10 s) over loopback UDP to an in-process ``OscServer``; a hub
listener stamps each applied change. Both sides read ``time.monotonic()`` (one system clock).

Figures:
- applied: latency of the messages that were applied themselves (send -> state changed);
- effective: for every message sent, the time until the state held it or a newer value (what a
  user hears: a coalesced message is "done" when a later one lands);
- coalesced: messages skipped because a newer value of the same param had already arrived.

Usage: python benchmarks/bench_osc.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import socket
import statistics
import time

import numpy as np

from riffbridge.control.hub import Change, Hub
from riffbridge.control.osc_server import OscServer, encode
from riffbridge.state import SetParam

SCALE = 1 << 14  # alpha = i / SCALE is exact in float32 for i <= SCALE


def sender(address: tuple[str, int], rate: float, count: int, out: mp.Queue) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = np.zeros(count)
    start = time.monotonic() + 0.2
    for i in range(count):
        due = start + i / rate
        while (now := time.monotonic()) < due:
            if due - now > 0.002:
                time.sleep(due - now - 0.001)
        sent[i] = time.monotonic()
        sock.sendto(encode("/rb/alpha", ((i % SCALE) / SCALE,)), address)
    out.put(sent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    assert count <= SCALE, f"at most {SCALE} messages (values must stay distinct)"

    hub = Hub()
    applied: dict[int, float] = {}

    def stamp(change: Change) -> None:
        if isinstance(change.command, SetParam) and change.command.name == "alpha":
            applied[round(change.command.value * SCALE)] = time.monotonic()

    hub.add_listener(stamp)
    with OscServer(hub, port=0) as server:
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=sender,
                                               args=(server.address, args.rate, count, out))
        proc.start()
        sent = out.get(timeout=args.seconds + 60)
        proc.join()
        time.sleep(0.5)
        coalesced = server.coalesced

    applied_ms = [1000 * (applied[i] - sent[i]) for i in applied]
    # effective: message i is done at the first apply of any j >= i
    done = np.full(count, np.inf)
    for i, t in applied.items():
        done[i] = t
    done = np.minimum.accumulate(done[::-1])[::-1]
    effective_ms = 1000 * (done - sent)
    lost = int(np.isinf(effective_ms).sum())
    effective_ms = effective_ms[np.isfinite(effective_ms)]

    def pct(values: list[float] | np.ndarray, q: float) -> float:
        return float(np.percentile(values, q))

    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{mp.cpu_count()} cores, python {platform.python_version()}")
    print(f"sent {count} /rb/alpha at {args.rate:g}/s for {args.seconds:g} s")
    print(f"applied {len(applied_ms)}, coalesced {coalesced}, never reached the state {lost}")
    print(f"applied latency ms:   p50 {pct(applied_ms, 50):.3f}  p99 {pct(applied_ms, 99):.3f}  "
          f"max {max(applied_ms):.3f}  mean {statistics.fmean(applied_ms):.3f}")
    print(f"effective latency ms: p50 {pct(effective_ms, 50):.3f}  "
          f"p99 {pct(effective_ms, 99):.3f}  max {float(np.max(effective_ms)):.3f}")
    print(f"final alpha {hub.state.alpha} (last sent {((count - 1) % SCALE) / SCALE})")


if __name__ == "__main__":
    main()
