"""OSC message -> state applied: latency under a sustained knob flood.

A separate sender process (as Max or TouchOSC would be) sends ``/rb/alpha`` at a fixed rate
(default 1000 messages/s for 10 s) over loopback UDP to an in-process ``OscServer``; a hub
listener stamps each applied change. Both sides read ``time.monotonic()`` (one system clock).

Figures:
- applied: latency of the messages that were applied themselves (send -> state changed);
- effective: for every message sent, the time until the state held it or a newer value (what a
  user hears: a coalesced message is "done" when a later one lands);
- coalesced: messages skipped because a newer value of the same param had already arrived.

With ``--fuzz`` the sender sends hostile datagrams instead (random bytes, corrupted messages,
bundles with bad element sizes, truncated arguments; the packets of issue 17) while this process
sends /rb/ping every 20 ms from 127.0.0.1 (the fuzzer sends from 127.0.0.2): the figures are how
many pings were answered and their latency, how many datagrams the server refused, and the CPU
time its process used.

With ``--fuzz --engine`` the target is a whole running engine instead: ``riffbridge serve`` with
the tiny model, rendering and playing (``--audio-out`` names the device: ``system`` is JACK's
through PortAudio, ``none`` a paced stream with no device), and the figures are its audio
underruns before and after the fuzz (from ``/rb/status``), the pings answered, and the loops it
rendered meanwhile. ``--elsewhere`` is its control: the same datagrams go to a stand-in OSC
server in another process, so the machine carries the same load while the engine reads nothing.

With ``--amplification`` it measures, for each kind of request a sender on the allow-list can
make, the bytes riffbridge sends (to every destination: replies, subscribers) per byte received,
with the most subscribers allowed (``max_subscribers``) subscribed, and prints the worst case.

Usage: python benchmarks/bench_osc.py [--rate 1000] [--seconds 10]
       python benchmarks/bench_osc.py --amplification
       python benchmarks/bench_osc.py --fuzz [--rate 20000] [--seconds 10]
       python benchmarks/bench_osc.py --fuzz --engine [--audio-out system] [--seconds 20]
                                      [--elsewhere]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import platform
import random
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from riffbridge.control.hub import Change, Hub
from riffbridge.control.osc_server import OscServer, encode
from riffbridge.state import EngineState, SetParam

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


def hostile(rng: random.Random) -> bytes:
    """One malformed or hostile datagram."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 200))
    if kind == 1:  # a bundle element of negative size (hung python-osc's parser)
        return b"#bundle\0" + bytes(7) + b"\1" + struct.pack(">i", -rng.randrange(1, 64))
    if kind == 2:  # a truncated float
        return b"/rb/alpha\0\0\0,f\0\0"
    if kind == 3:  # a valid message, corrupted and cut
        good = bytearray(encode("/rb/prompt/a", ("x" * rng.randrange(1, 300),)))
        for _ in range(3):
            good[rng.randrange(len(good))] = rng.randrange(256)
        return bytes(good[: rng.randrange(1, len(good) + 1)])
    if kind == 4:  # a bundle of many tiny messages (over the element bound)
        return b"#bundle\0" + bytes(8) + (struct.pack(">i", 4) + b"/x\0\0") * 200
    return encode("/rb/nope", (rng.random(),))  # well formed, unknown address


def fuzzer(address: tuple[str, int], rate: float, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))  # its /rb/error answers go there, not to the pinger's port
    rng = random.Random(17)
    packets = [hostile(rng) for _ in range(4096)]
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) < start + seconds:
        due = start + sent / rate
        if due > now:
            time.sleep(min(due - now, 0.01))
            continue
        with contextlib.suppress(OSError):  # a full send buffer: lost, as on a network
            sock.sendto(packets[sent % len(packets)], address)
        sent += 1


def fuzz(rate: float, seconds: float) -> None:
    hub = Hub()
    pinger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pongs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pongs.bind(("127.0.0.1", 0))
    pongs.settimeout(0.02)
    latencies: list[float] = []
    pings = 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    with OscServer(hub, port=0, reply_port=pongs.getsockname()[1],
                   allow="127.0.0.0/8") as server:
        proc = mp.get_context("spawn").Process(target=fuzzer,
                                               args=(server.address, rate, seconds))
        proc.start()
        deadline = time.monotonic() + seconds + 1.0
        while time.monotonic() < deadline:
            sent = time.monotonic()
            pinger.sendto(encode("/rb/ping"), server.address)
            pings += 1
            while time.monotonic() - sent < 1.0:  # the pong, past the /rb/error answers
                try:
                    data = pongs.recv(65536)
                except TimeoutError:
                    continue
                if data.startswith(b"/rb/pong"):
                    latencies.append(1000 * (time.monotonic() - sent))
                    break
            time.sleep(max(0.0, 0.02 - (time.monotonic() - sent)))
        proc.join()
        refused, denied = server.refused, server.denied
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{mp.cpu_count()} cores, python {platform.python_version()}")
    print(f"fuzz: hostile datagrams at {rate:g}/s for {seconds:g} s; server refused {refused}, "
          f"dropped {denied} from outside the allow-list")
    print(f"pings answered {len(latencies)}/{pings}; latency ms: "
          f"p50 {np.percentile(latencies, 50):.3f}  p99 {np.percentile(latencies, 99):.3f}  "
          f"max {max(latencies):.3f}" if latencies else f"pings answered 0/{pings}")
    print(f"CPU of this process (server, pinger): {cpu:.2f} s in {seconds + 1:g} s wall")
    changed = hub.state.changed(EngineState())  # a corrupted message may still be a valid one
    print(f"params changed by well-formed survivors: {', '.join(changed) or 'none'}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ask(sock: socket.socket, port: int, address: str, timeout: float,
         reply: str | None = None) -> list | None:
    """Send ``address`` (no arguments) to the engine; the arguments of its ``reply`` (by default
    at the same address), or None."""
    from riffbridge.control.osc_codec import decode

    sock.sendto(encode(address), ("127.0.0.1", port))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if data.startswith((reply or address).encode() + b"\0"):
            return list(decode(data)[0][0].args)
    return None


def stand_in(port: int, seconds: float) -> None:
    """An OSC server of its own (a hub, no engine) on ``port`` for ``seconds``: the target of
    ``--elsewhere``, which puts the same parsing load on the machine outside the engine."""
    with OscServer(Hub(), port=port, allow="127.0.0.0/8"):
        time.sleep(seconds)


def fuzz_engine(rate: float, seconds: float, audio_out: str, elsewhere: bool = False) -> None:
    """Fuzz a running ``serve`` while it renders and plays; its underruns before and after.
    ``elsewhere``: the datagrams go to a stand-in OSC server in another process instead, so the
    machine carries the same load while the engine's process reads nothing (a control)."""
    osc_port = _free_port()
    replies = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    replies.bind(("127.0.0.1", 0))
    replies.settimeout(0.05)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "riffbridge", "serve", "--model", "tiny", "--device", "cpu",
               "--steps", "4", "--bars", "1", "--audio-out", audio_out, "--out-dir", tmp,
               "--osc-port", str(osc_port), "--reply-port", str(replies.getsockname()[1]),
               "--no-web"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while _ask(replies, osc_port, "/rb/ping", 0.5, "/rb/pong") is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve did not start ({' '.join(cmd)})")
            # playing, and a few loops in: the figures are for an engine at work
            replies.sendto(encode("/rb/play"), ("127.0.0.1", osc_port))
            time.sleep(10.0)
            before = _ask(replies, osc_port, "/rb/status", 2.0)
            loops_before = len(list(Path(tmp).rglob("0*.wav")))
            target_port = osc_port
            if elsewhere:
                target_port = _free_port()
                stand_in_proc = mp.get_context("spawn").Process(
                    target=stand_in, args=(target_port, seconds + 3.0))
                stand_in_proc.start()
                time.sleep(2.0)  # its imports
            fuzzer_proc = mp.get_context("spawn").Process(
                target=fuzzer, args=(("127.0.0.1", target_port), rate, seconds))
            fuzzer_proc.start()
            pings, answered, latencies = 0, 0, []
            end = time.monotonic() + seconds
            alpha = 0.0
            while time.monotonic() < end:  # a performer keeps turning the knob meanwhile
                alpha = round((alpha + 0.125) % 1.0, 3)
                replies.sendto(encode("/rb/alpha", (alpha,)), ("127.0.0.1", osc_port))
                sent = time.monotonic()
                pings += 1
                if _ask(replies, osc_port, "/rb/ping", 1.0, "/rb/pong") is not None:
                    answered += 1
                    latencies.append(1000 * (time.monotonic() - sent))
                time.sleep(0.25)
            fuzzer_proc.join()
            time.sleep(2.0)
            after = _ask(replies, osc_port, "/rb/status", 5.0)
            loops = len(list(Path(tmp).rglob("0*.wav"))) - loops_before
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{mp.cpu_count()} cores, python {platform.python_version()}")
    print(f"engine: serve --model tiny --steps 4 --bars 1 --audio-out {audio_out}, playing, "
          f"the knob moved every 0.25 s")
    print(f"fuzz: hostile datagrams at {rate:g}/s for {seconds:g} s"
          + (" to a stand-in OSC server in another process" if elsewhere else ""))
    if before is None or after is None:
        print(f"status not answered (before {before}, after {after})")
    else:
        print(f"underruns: {before[-1]} before the fuzz, {after[-1]} after "
              f"(+{after[-1] - before[-1]})")
    print(f"pings answered {answered}/{pings}"
          + (f"; latency ms p50 {np.percentile(latencies, 50):.2f} max {max(latencies):.2f}"
             if latencies else ""))
    print(f"loops rendered and written during the fuzz: {loops}")


def _bundle(*elements: bytes) -> bytes:
    return b"#bundle\0" + bytes(8) + b"".join(struct.pack(">i", len(e)) + e for e in elements)


def amplification() -> None:
    """Bytes out per byte in for each kind of request, ``max_subscribers`` subscribed."""
    from riffbridge.control.osc_codec import MAX_ELEMENTS
    from riffbridge.control.osc_server import SNAPSHOT_BURST
    from riffbridge.params import BY_NAME

    subscribers = int(BY_NAME["max_subscribers"].default)
    sinks = []
    for _ in range(subscribers + 1):  # the subscribers and the reply port
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sinks.append(sock)
    replies, subs = sinks[0], sinks[1:]
    names = [f"pattern-{i:03d}-" + "x" * 40 for i in range(200)]  # a long list to name
    hub = Hub(pattern_names=names)

    def drain() -> int:
        total = 0
        for sock in sinks:
            while True:
                try:
                    total += len(sock.recv(65536))
                except BlockingIOError:
                    break
        return total

    many = [encode("/rb/alpha", (i / 64,)) for i in range(MAX_ELEMENTS - 1)]  # + the bundle
    fresh = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fresh.bind(("127.0.0.1", 0))
    fresh.setblocking(False)
    cases: list[tuple[str, bytes]] = [
        ("/rb/alpha f (a param set)", encode("/rb/alpha", (0.25,))),
        (f"bundle of {len(many)} param sets (the most elements)", _bundle(*many)),
        ("/rb/alpha (a query)", encode("/rb/alpha")),
        ("/rb/alpha f 7 (refused: out of range)", encode("/rb/alpha", (7.0,))),
        ("/rb/pattern s nosuch (the error lists names: capped)",
         encode("/rb/pattern", ("nosuch",))),
        ("/rb/preset/recall s nosuch", encode("/rb/preset/recall", ("nosuch",))),
        ("/rb/nope (unknown address)", encode("/rb/nope")),
        ("malformed (a truncated float)", b"/rb/alpha\0\0\0,f\0\0"),
        ("/rb/status", encode("/rb/status")),
        ("/rb/ping", encode("/rb/ping")),
        ("/rb/subscribe i (a refresh: keep-alive)",
         encode("/rb/subscribe", (subs[0].getsockname()[1],))),
        ("/rb/subscribe i (new: the state at once)",
         encode("/rb/subscribe", (fresh.getsockname()[1],))),
    ]
    rows = []
    with OscServer(hub, port=0, reply_port=replies.getsockname()[1],
                   max_subscribers=subscribers + 1) as server:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sub in subs:
            tx.sendto(encode("/rb/subscribe", (sub.getsockname()[1],)), server.address)
        time.sleep(0.5)
        drain()
        sinks.append(fresh)
        for label, dgram in cases:
            tx.sendto(dgram, server.address)
            tx.sendto(encode("/rb/unsubscribe", (fresh.getsockname()[1],)), server.address)
            time.sleep(0.3)
            out = drain()
            rows.append((label, len(dgram), out, out / len(dgram)))
        # subscribe/unsubscribe in a loop: what the snapshot bucket lets through
        loop_in = 0
        for _ in range(200):
            for dgram in (encode("/rb/subscribe", (fresh.getsockname()[1],)),
                          encode("/rb/unsubscribe", (fresh.getsockname()[1],))):
                tx.sendto(dgram, server.address)
                loop_in += len(dgram)
            time.sleep(0.002)
        time.sleep(0.5)
        loop_out = drain()
        throttled = server.snapshots_throttled
        # a flood of bad packets: answered up to the /rb/error bucket
        bad = b"/rb/alpha\0\0\0,f\0\0"
        flood_in, flood_out = 0, 0
        for i in range(5000):
            tx.sendto(bad, server.address)
            flood_in += len(bad)
            if i % 100 == 0:
                time.sleep(0.002)
                flood_out += drain()
        time.sleep(0.5)
        flood_out += drain()
        unanswered = server.errors_unanswered
    rows.append((f"200 x subscribe + unsubscribe (a loop; {SNAPSHOT_BURST} snapshots, then "
                 f"throttled: {throttled})", loop_in, loop_out, loop_out / loop_in))
    rows.append((f"5000 malformed packets as fast as they go ({unanswered} unanswered)",
                 flood_in, flood_out, flood_out / flood_in))
    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{mp.cpu_count()} cores, python {platform.python_version()}")
    print(f"{subscribers} subscribers (max_subscribers), all on loopback")
    print(f"{'request':<70} {'bytes in':>9} {'bytes out':>10} {'out/in':>7}")
    for label, n_in, n_out, ratio in rows:
        print(f"{label:<70} {n_in:>9} {n_out:>10} {ratio:>7.2f}")
    worst = max(rows, key=lambda r: r[3])
    print(f"worst case: {worst[3]:.1f} bytes out per byte in ({worst[0]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=None,
                        help="messages per second (default 1000; 20000 with --fuzz)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fuzz", action="store_true",
                        help="send hostile datagrams and measure /rb/ping instead")
    parser.add_argument("--amplification", action="store_true",
                        help="bytes out per byte in for each kind of request")
    parser.add_argument("--engine", action="store_true",
                        help="with --fuzz: fuzz a running serve and count its underruns")
    parser.add_argument("--audio-out", default="system",
                        help="with --engine: serve's audio device (default system: JACK)")
    parser.add_argument("--elsewhere", action="store_true",
                        help="with --engine: send the datagrams to a stand-in OSC server in "
                             "another process (the same load, none of it in the engine)")
    args = parser.parse_args()
    if args.amplification:
        amplification()
        return
    if args.fuzz and args.engine:
        fuzz_engine(args.rate or 20000.0, args.seconds, args.audio_out, args.elsewhere)
        return
    if args.fuzz:
        fuzz(args.rate or 20000.0, args.seconds)
        return
    args.rate = args.rate or 1000.0
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
