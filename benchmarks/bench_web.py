"""The browser page's latency: a click to the state change, a state change to the page.

This process runs the hub, the OSC server and the page's server (``WebServer``, uvicorn on its
own thread), as `riffbridge serve` does. A separate process plays the page (a WebSocket client
speaking the page's JSON, as app.js does) and an OSC client. Both read ``time.monotonic()``
(one system clock). Phases, ``--count`` each, one every ``1/--rate`` s:

- click -> state: the page sends ``/rb/alpha``; a hub listener here stamps the change;
- state -> page: this process submits ``/rb/bpm`` to the hub (a MIDI knob, the auto walk); the
  page stamps the ``state`` message that carries it;
- OSC -> page: the client sends ``/rb/bpm`` over UDP and stamps the page's state (both ends in
  the client: the whole way a Live device's change takes to the screen);
- page -> OSC: the page sends ``/rb/alpha`` and the client, subscribed over OSC, stamps the
  ``/rb/alpha`` push.

With ``--flood`` it measures the other promise instead: a running ``riffbridge serve`` (tiny
model, ``--audio-out none``: the paced stream counts underruns as a device would) while a separate
process floods its page's socket at ``--flood-rate`` messages a second for ``--seconds`` (good and
bad messages mixed, reconnecting each time the server closes it), and reports the underruns,
errors and loops rendered from serve's own summary.

With ``--cpu`` it measures what an open page costs: the page's server in this process, with a
stand-in engine (a real ``Player`` whose playing loop is 2 s of noise, a real grid, a status),
and headless chromium (Playwright) showing the page; the CPU time of this process and of the
chromium processes over ``--seconds``, as a fraction of one core.

Usage: python benchmarks/bench_web.py [--count 300] [--rate 30] [--pages 1]
       python benchmarks/bench_web.py --flood [--flood-rate 10000] [--seconds 20]
       python benchmarks/bench_web.py --cpu [--seconds 20]
(``--pages`` more pages connected and reading, to see what each one costs.) Last, the cost of one
spectrogram picture for a short and a 60 s loop.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import socket
import statistics
import threading
import time
from typing import Any

from riffbridge.control.hub import Change, Hub
from riffbridge.control.osc_server import OscServer, decode, encode
from riffbridge.state import SetParam
from riffbridge.web.server import WebServer


def _bpm(i: int) -> float:
    return 60.0 + (i % 640) / 4.0  # quarters: exact in OSC's float32


def _alpha(i: int) -> float:
    return (i % 1000 + 1) / 1024.0


def page_process(ws_url: str, osc: tuple[str, int], count: int, rate: float, go: Any,
                 out: Any) -> None:
    from websockets.sync.client import connect

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(2.0)
    seen_bpm: dict[float, float] = {}
    stop = threading.Event()
    ws = connect(ws_url, max_size=None)

    def read() -> None:
        while not stop.is_set():
            try:
                message = json.loads(ws.recv(timeout=0.2))
            except TimeoutError:
                continue
            except Exception:
                return
            if message["type"] == "state":
                seen_bpm.setdefault(message["state"]["bpm"], time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    udp.sendto(encode("/rb/subscribe", (udp.getsockname()[1],)), osc)
    time.sleep(0.3)

    def paced(send: Any) -> list[float]:
        stamps = []
        start = time.monotonic() + 0.1
        for i in range(count):
            due = start + i / rate
            while time.monotonic() < due:
                time.sleep(min(0.002, max(0.0, due - time.monotonic())))
            stamps.append(time.monotonic())
            send(i)
        return stamps

    # 1. click -> state
    clicks = paced(lambda i: ws.send(json.dumps({"address": "/rb/alpha",
                                                 "args": [_alpha(i)]})))
    out.put(("clicks", clicks))
    go.wait()  # 2. state -> page: the server submits now
    go.clear()
    go.wait()
    out.put(("server_bpm_seen", dict(seen_bpm)))
    seen_bpm.clear()
    # 3. OSC -> page
    osc_sent = paced(lambda i: udp.sendto(encode("/rb/bpm", (_bpm(i) + 0.125,)), osc))
    time.sleep(0.5)
    osc_to_page = [seen_bpm[_bpm(i) + 0.125] - t for i, t in enumerate(osc_sent)
                   if _bpm(i) + 0.125 in seen_bpm]
    out.put(("osc_to_page", osc_to_page))
    # 4. page -> OSC subscriber
    pushes: dict[float, float] = {}

    def listen() -> None:
        while not stop.is_set():
            try:
                data = udp.recv(65536)
            except (TimeoutError, OSError):
                continue
            for message in decode(data)[0]:
                if message.address == "/rb/alpha":
                    pushes.setdefault(round(float(message.params[0]), 6), time.monotonic())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    base = 0.5 / 1024
    sent = paced(lambda i: ws.send(json.dumps({"address": "/rb/alpha",
                                               "args": [_alpha(i) - base]})))
    time.sleep(0.5)
    page_to_osc = [pushes[round(_alpha(i) - base, 6)] - t for i, t in enumerate(sent)
                   if round(_alpha(i) - base, 6) in pushes]
    out.put(("page_to_osc", page_to_osc))
    stop.set()
    ws.close()
    udp.close()


def idle_page(ws_url: str, stop: Any) -> None:
    from websockets.sync.client import connect

    with connect(ws_url, max_size=None) as ws:
        while not stop.is_set():
            try:
                ws.recv(timeout=0.2)
            except TimeoutError:
                continue


def describe(name: str, seconds: list[float], total: int) -> None:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        print(f"{name:<16} nothing arrived of {total}")
        return
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"{name:<16} n={len(ms):4d}/{total}  median {statistics.median(ms):6.2f} ms  "
          f"p99 {p99:6.2f} ms  max {ms[-1]:6.2f} ms")


def flooder(ws_url: str, rate: float, seconds: float, out: Any) -> None:
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    messages = [json.dumps({"address": "/rb/alpha", "args": [0.5]}),
                json.dumps({"address": "/rb/alpha", "args": [7]}),
                json.dumps({"address": "/rb/nope", "args": [True]}), "{not json"]
    sent = closed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with connect(ws_url, max_size=None) as ws:
                start, here = time.monotonic(), 0
                while time.monotonic() < end:
                    due = start + here / rate
                    if due > time.monotonic():
                        time.sleep(max(0.0, due - time.monotonic()))
                    ws.send(messages[sent % len(messages)])
                    sent += 1
                    here += 1
        except (WebSocketException, OSError):
            closed += 1
            time.sleep(0.05)
    out.put((sent, closed))


def flood(rate: float, seconds: float) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp_probe:
        probe.bind(("127.0.0.1", 0))
        udp_probe.bind(("127.0.0.1", 0))
        web_port, osc_port = probe.getsockname()[1], udp_probe.getsockname()[1]
        probe.close()
        udp_probe.close()
        cmd = [sys.executable, "-m", "riffbridge", "serve", "--model", "tiny", "--device", "cpu",
               "--steps", "4", "--bars", "1", "--audio-out", "none", "--out-dir", tmp,
               "--osc-port", str(osc_port), "--reply-port", "9", "--web-port", str(web_port)]
        log = open(os.path.join(tmp, "serve.log"), "w+")  # noqa: SIM115 (read back below)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("  page "):
                break
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue()
        p = ctx.Process(target=flooder, args=(f"ws://127.0.0.1:{web_port}/ws", rate, seconds,
                                              out))
        p.start()
        sent, closed = out.get(timeout=seconds + 60)
        p.join(10)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        log.seek(0)
        closes = log.read().count("closed a page that flooded")
        log.close()
    summary = next((line for line in rest.splitlines() if line.startswith("riffbridge: stopped")),
                   rest[-300:])
    found = re.search(r"(\d+) loops rendered.* (\d+) underruns, (\d+) errors", summary)
    print(f"page flood: {sent} messages in {seconds:g} s (asked {rate:g}/s), the server closed "
          f"the socket {closed} times ({closes} flood closes in its log)")
    print(f"serve: {summary.strip()}")
    if found:
        print(f"loops rendered {found[1]}, underruns {found[2]}, errors {found[3]}")


def _chromium_cpu_s() -> float:
    import os

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"chromium" not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


def page_cpu(seconds: float) -> None:
    import os

    import numpy as np
    from playwright.sync_api import sync_playwright

    from riffbridge.engine.clock import Grid
    from riffbridge.engine.player import Player, Segment
    from riffbridge.events import EngineStatus

    class View:
        rate = 48000

        def __init__(self, hub: Hub) -> None:
            self.player, self.grid, self.hub = Player(), Grid(48000, 120.0), hub

        def status(self) -> EngineStatus:
            return EngineStatus(self.hub.state, "alpha 0", 1, 1, 1.0, 0, "idle", 1, 1.0, 0, "",
                                rendered=(0.0,), wanted=(0.125,))

    hub = Hub()
    view = View(hub)
    audio = (np.random.default_rng(0).standard_normal((96000, 2)) * 0.1).astype(np.float32)
    audio.flags.writeable = False
    view.player.playing = Segment(audio, 0, "alpha 0")
    with WebServer(hub, view, port=0) as web, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(web.url)
        page.locator("#ctl-alpha").wait_for()
        time.sleep(1.0)
        t0, own0, chrome0 = time.monotonic(), os.times(), _chromium_cpu_s()
        time.sleep(seconds)
        own1, chrome1 = os.times(), _chromium_cpu_s()
        wall = time.monotonic() - t0
        browser.close()
    own = (own1.user + own1.system - own0.user - own0.system) / wall
    print(f"an open page for {wall:.0f} s: the page's server (this process) {own:.1%} of a "
          f"core, headless chromium {(chrome1 - chrome0) / wall:.1%} of a core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--pages", type=int, default=0, help="more pages connected, reading")
    ap.add_argument("--flood", action="store_true", help="underruns under a page flood")
    ap.add_argument("--flood-rate", type=float, default=10_000.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cpu", action="store_true", help="what an open page costs")
    args = ap.parse_args()
    if args.cpu:
        page_cpu(args.seconds)
        return
    if args.flood:
        flood(args.flood_rate, args.seconds)
        return

    hub = Hub()
    changed: dict[float, float] = {}

    def on_change(change: Change) -> None:
        if "alpha" in change.changed:
            changed.setdefault(round(change.state.alpha, 9), time.monotonic())

    hub.add_listener(on_change)
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    go = ctx.Event()
    stop = ctx.Event()
    with OscServer(hub, host="127.0.0.1", port=0, reply_port=9) as osc, \
            WebServer(hub, port=0) as web:
        host, port = web.address
        ws_url = f"ws://{host}:{port}/ws"
        extra = [ctx.Process(target=idle_page, args=(ws_url, stop)) for _ in range(args.pages)]
        for p in extra:
            p.start()
        client = ctx.Process(target=page_process,
                             args=(ws_url, osc.address, args.count, args.rate, go, out))
        client.start()
        _, clicks = out.get(timeout=120)
        time.sleep(0.3)
        click_to_state = [changed[round(_alpha(i), 9)] - t for i, t in enumerate(clicks)
                          if round(_alpha(i), 9) in changed]
        go.set()
        submitted = {}
        start = time.monotonic() + 0.1
        for i in range(args.count):
            due = start + i / args.rate
            while time.monotonic() < due:
                time.sleep(min(0.002, max(0.0, due - time.monotonic())))
            submitted[_bpm(i)] = time.monotonic()
            hub.submit(SetParam("bpm", _bpm(i)), source="midi")
        time.sleep(0.5)
        go.set()
        results = dict(out.get(timeout=120) for _ in range(3))
        client.join(30)
        stop.set()
        for p in extra:
            p.join(10)
    seen = results["server_bpm_seen"]
    state_to_page = [seen[b] - t for b, t in submitted.items() if b in seen]

    print(f"riffbridge web latency: {platform.processor() or platform.machine()}, "
          f"{mp.cpu_count()} CPUs, Python {platform.python_version()}; {args.count} each at "
          f"{args.rate:g}/s, {args.pages} more page(s) reading")
    describe("click -> state", click_to_state, args.count)
    describe("state -> page", state_to_page, args.count)
    describe("OSC -> page", results["osc_to_page"], args.count)
    describe("page -> OSC", results["page_to_osc"], args.count)
    draw_cost()


def draw_cost() -> None:
    """What one spectrogram picture costs the page's drawing thread, by loop length."""
    import numpy as np

    from riffbridge.web.spectro import spectrogram_png

    rng = np.random.default_rng(0)
    for seconds in (4.0, 60.0):
        audio = (rng.standard_normal((int(seconds * 48000), 2)) * 0.1).astype(np.float32)
        spectrogram_png(audio, 48000)
        runs = []
        for _ in range(20):
            t = time.perf_counter()
            spectrogram_png(audio, 48000)
            runs.append(time.perf_counter() - t)
        print(f"picture of a {seconds:g} s loop at 48 kHz: median "
              f"{statistics.median(runs) * 1000:.1f} ms, max {max(runs) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
