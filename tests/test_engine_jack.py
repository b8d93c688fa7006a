"""The engine through a real audio server: PortAudio -> JACK (dummy driver) -> a JACK recorder.

CI starts `jackd --no-realtime -d dummy -r 44100 -p 1024`. The engine plays to PortAudio's JACK
device while the tiny model renders in the background; jack_capture, an independent JACK recorder
in a process of its own, records what the engine sends. The recording alone says where the bars
are (the first loop's own start), where each switch happened (where the audio stops being the
previous loop), and whether every stretch between switches is the rendered loop, sample for
sample.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import EventLog, StandInWorker, wait_for
from jack_capture import NO_CAPTURE, JackCapture, capture_missing, jack_period, output_ports
from jack_check import NO_JACK, jack_device, jack_running
from scipy import signal

from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.plan import LoopKey
from riffbridge.engine.player import (
    CEILING,
    Player,
    Segment,
    equal_power,
    keep_level,
    limit,
    prepare_cue,
    same_loop,
)
from riffbridge.engine.worker import (
    Failed,
    Message,
    Ready,
    Rendered,
    RenderRequest,
    RenderWorker,
    WorkerSettings,
)
from riffbridge.events import Switched
from riffbridge.loops.tempo import loop_samples
from riffbridge.loops.types import Loop
from riffbridge.outputs.audio_stream import AHEAD_S, DeviceStream
from riffbridge.state import Command, EngineState, SetMany, SetParam, apply

RATE = 44100
RUN_S = 30.0




pytestmark = [
    pytest.mark.jack,
    pytest.mark.skipif(not jack_running(), reason=NO_JACK),
    pytest.mark.skipif(capture_missing(), reason=NO_CAPTURE),
]


def _find(recording: np.ndarray, pattern: np.ndarray, start: int, span: int) -> int:
    """Index in ``recording[start:start + span]`` where ``pattern`` matches best."""
    window = recording[start:start + span + pattern.shape[0]]
    corr = signal.correlate(window, pattern, mode="valid", method="fft")
    return start + int(np.argmax(corr))


def _continuation(seg_audio: np.ndarray, phase0: int, start: int, end: int) -> np.ndarray:
    """What a loop whose sample 0 sits at ``phase0`` plays over [start, end)."""
    return seg_audio[(np.arange(start, end) - phase0) % seg_audio.shape[0]]


_POLLER = """
import sys, time, urllib.request
base, fetched = sys.argv[1], 0
paths = ["/", "/app.js", *(f"/spectrogram/{n}.png" for n in range(1, 9))]
while True:
    started = time.monotonic()
    for path in paths:
        try:
            with urllib.request.urlopen(base + path, timeout=2) as response:
                response.read()
                fetched += 1
        except OSError:
            pass
    print(fetched, flush=True)
    time.sleep(max(0.0, 0.25 - (time.monotonic() - started)))
"""


@contextlib.contextmanager
def _page_open(hub: Hub, engine: Engine, events: EventLog, on: bool) -> Iterator[None]:
    """With ``on``: the browser page served for this engine (in this process, as serve does),
    open in headless chromium, and another process fetching the page and its pictures four
    times a second, for the whole run."""
    if not on:
        yield
        return
    from test_web_browser import CHROMIUM, sync_api

    from riffbridge.web.server import WebServer

    with WebServer(hub, engine, events.feedback, port=0) as web, \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(web.url)
        page.locator("#ctl-alpha").wait_for()
        poller = subprocess.Popen([sys.executable, "-c", _POLLER, web.url.rstrip("/")],
                                  stdout=subprocess.PIPE, text=True)
        try:
            yield
            beat = float(page.locator("#counter").get_attribute("data-beat") or "nan")
            assert beat > 8, f"the page's beat counter stood at {beat}"
            assert page.locator("#specimg").get_attribute("data-serial")
        finally:
            poller.terminate()
            out, _ = poller.communicate(timeout=10)
            browser.close()
        fetched = int(out.split()[-1]) if out.split() else 0
        assert fetched > 60, f"only {fetched} fetches while the engine played"


def _kernel_says(tid: int) -> str:
    """The kernel's own account of a thread's policy (/proc/self/task/TID/stat, field 41: 0
    normal, 1 FIFO, 2 RR; field 40 its real-time priority), in ``scheduling()``'s words."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # fields after "(comm)" start at 3
    policy, priority = int(fields[38]), int(fields[37])
    return "not real-time" if policy == 0 else \
        f"real-time ({'FIFO' if policy == 1 else 'RR'} {priority})"


def test_the_direct_stream_says_how_the_os_schedules_its_callback_thread():
    """``scheduling()`` reads the callback thread's policy; the kernel's account of that thread
    must agree. JACK gives its clients a real-time thread when it runs with -R, and serve prints
    which it got."""
    player = Player()
    with DeviceStream(jack_device(), RATE, player.fill, blocksize=1024, ahead_s=0) as stream:
        assert stream.mode == "direct"
        wait_for(lambda: stream.thread_id, 10, "the first callback")
        said = stream.scheduling()
        assert said == _kernel_says(stream.thread_id), said


def test_the_buffered_stream_says_whether_the_process_has_a_real_time_audio_thread():
    """Buffered, the callback is rtmixer's C function in PortAudio's thread, which Python never
    sees: ``scheduling()`` reports a real-time thread of the process if the kernel lists one
    (JACK -R), else "not real-time"; the kernel's account of every thread must agree."""
    import os

    player = Player()
    with DeviceStream(jack_device(), RATE, player.fill, blocksize=1024) as stream:
        assert stream.mode == "buffered"
        wait_for(lambda: player.blocks > 10, 10, "the feeder to fill")
        said = stream.scheduling()
        accounts = [_kernel_says(int(t)) for t in sorted(os.listdir("/proc/self/task"), key=int)]
    realtime = [a for a in accounts if a != "not real-time"]
    assert said == (realtime[0] if realtime else "not real-time"), (said, accounts)


def test_open_streams_keep_the_objects_of_startup_out_of_the_cyclic_gc():
    """A full collection of a process with numpy and scipy loaded holds the GIL for about 40 ms
    (240 ms with torch), past a period: while a device stream is open, what existed when it
    opened is frozen (``gc.freeze``), until the last stream closes."""
    import gc

    assert gc.get_freeze_count() == 0
    player = Player()
    with DeviceStream(jack_device(), RATE, player.fill, blocksize=1024):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # this test process's imports, pytest's among them
        with DeviceStream(jack_device(), RATE, player.fill_cue, blocksize=1024):
            pass
        # the other stream still plays: still frozen (a frozen object that dies leaves the
        # count, such as the feeder's first requests to the C callback; unfrozen it is 0)
        assert gc.get_freeze_count() > frozen - 1000
        gc.collect()
        assert gc.get_freeze_count() > frozen - 1000
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("page", [
    False, pytest.param(True, marks=[pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None or not shutil.which("chromium"),
        reason="the page variant needs playwright and chromium (pip install -e .[dev], "
               "apt-get install chromium)")])], ids=["alone", "page-open"])
def test_engine_plays_through_jack_on_the_bar_without_underruns(page: bool, tmp_path: Path):
    state = EngineState(steps=4, bars=1, playing=True, quantum="bar", xfade=0.05)
    targets = [0.25, 1.0, 0.5, 0.0, 0.75, 0.375, 1.0, 0.125] * 3
    _plays_on_the_bar(state, iter([SetParam("alpha", a) for a in targets]), tmp_path,
                      page=page)


def test_an_xy_move_across_the_surface_plays_on_the_bar_without_underruns(tmp_path: Path):
    """The point crosses the XY surface corner to corner and back while it plays: what sounds
    is the exact render or the blend of the two nearest rendered lattice points, switched only
    on the bar, and every stretch of the recording is one of those, sample for sample."""
    state = apply(EngineState(steps=4, bars=1, playing=True, quantum="bar", xfade=0.05),
                  SetMany((("x", 0.0), ("y", 0.0))))
    path = [(i / 12, i / 12) for i in range(13)] + [(1 - i / 12, i / 12) for i in range(13)]
    _plays_on_the_bar(state, iter([SetMany((("x", round(x, 3)), ("y", round(y, 3))))
                                   for x, y in path * 3]), tmp_path, pause_s=2.5, run_s=45.0,
                      min_renders=3,  # the blends between them make the switches
                      settings=EngineSettings(lookahead=1))


def _plays_on_the_bar(state: EngineState, moves: Iterator[Command], tmp_path: Path,
                      pause_s: float = 2.5, run_s: float = RUN_S, min_renders: int = 6,
                      settings: EngineSettings | None = None, page: bool = False) -> None:
    """``page``: with the browser page open and polled meanwhile (``_page_open``), opened
    before the audio starts, as serve imports the web stack before it does."""
    hub = Hub(state)
    player = Player()
    period = jack_period()  # one audio block: the JACK period
    engine = Engine(state, player, RATE, settings or EngineSettings(),
                    worker=RenderWorker(WorkerSettings("tiny", "cpu")), block=period)
    hub.add_listener(engine.post)
    sounded: dict[int, tuple[int, Segment | None]] = {}
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            for token, at, seg in list(engine.sounded):
                sounded[token] = (at, seg)
            time.sleep(0.1)

    collector = threading.Thread(target=collect, daemon=True)
    events = EventLog(hub, engine.events).start()
    capture = None
    try:
        # The page opens first, then the audio starts, as a performer opens the page before
        # the set: a browser starting on these two cores (chromium's processes at once) keeps
        # every other process off the CPU for a while (docs/benchmarks.md). The engine starts
        # once the independent recorder listens, so it hears the first loop from its start.
        with _page_open(hub, engine, events, page):
            before = output_ports()
            with DeviceStream(jack_device(), RATE, player.fill, blocksize=period) as stream:
                capture = JackCapture(sorted(output_ports() - before), tmp_path / "rec.wav")
                capture.start()
                engine.start()
                collector.start()
                wait_for(lambda: player.applied_token >= 1, 60, "the first loop")
                started = time.monotonic()
                while time.monotonic() - started < run_s:
                    hub.submit(next(moves))
                    time.sleep(pause_s)
                rendering = engine.status().renders
                realtime = stream.scheduling().startswith("real-time")  # JACK runs with -R
                time.sleep(0.5)
                rec = capture.stop()
    finally:
        stop.set()
        engine.close()
        events.close()
        if capture is not None:
            capture.kill()
    collector.join(1)
    dry = stream.underruns  # the ring ran dry: riffbridge's own lateness
    xruns = player.underruns - dry  # the server's (JACK's xrun, reported by PortAudio)
    print(f"\n{stream.mode} stream: ring ran dry {dry} times; JACK xruns {xruns} "
          f"({'real-time' if realtime else 'not real-time'} server)")
    assert rendering >= min_renders, f"only {rendering} renders in the background"
    assert stream.mode == "buffered"
    assert dry == 0, f"riffbridge's ring ran dry {dry} times"

    plays: list[tuple[int, Segment]] = []
    for _, (at, seg) in sorted(sounded.items()):
        # A switch to the same mix of the same loops at the same phase and level changes no
        # sample (prepare_cue plays the loop on): a recording cannot show it, so it is skipped.
        if seg is not None and not (plays and same_loop(plays[-1][1], seg)
                                    and plays[-1][1].level == seg.level):
            plays.append((at, seg))
    assert len(plays) >= 6, f"only {len(plays)} switches sounded"
    bar = plays[0][1].audio.shape[0]  # one bar of 4/4 at 120 BPM
    assert bar == RATE * 2
    fade = round(0.05 * RATE)

    # The bar grid, from the recording: where the first loop's own sample 0 landed (it fades in
    # from silence there, so match the stretch after the fade).
    first = plays[0][1].audio
    nonzero = int(np.argmax(np.abs(rec[:, 0]) > 0))
    probe = first[fade:fade + 8192]
    phase0 = _find(rec[:, 0], probe[:, 0], nonzero, first.shape[0]) - fade
    assert abs(phase0 - nonzero) <= 1, "the first loop did not start from its sample 0"
    assert np.max(np.abs(rec[phase0 + fade:phase0 + fade + 8192] - probe)) < 1e-6

    starts = [phase0]
    for (_, prev), (_, new) in itertools.pairwise(plays):
        assert prev is not None and new is not None
        begin = starts[-1] + fade
        stretch = rec[begin:]
        expected = _continuation(prev.audio, starts[-1], begin, begin + stretch.shape[0])
        off = np.nonzero(np.max(np.abs(stretch - expected), axis=1) > 1e-6)[0]
        assert off.size, "the switch never happened in the recording"
        switch = begin + int(off[0])
        # The stretch before it is exactly the previous loop (nothing dropped or repeated).
        assert switch - begin > RATE // 2
        # The switch starts on a bar line of the first loop's grid, within one audio block.
        to_bar = (switch - phase0 + bar // 2) % bar - bar // 2
        assert abs(to_bar) <= period, f"switch {to_bar} frames from the bar line"
        line = switch - to_bar
        # The new loop plays on from the bar line at its bar-aligned phase, after the fade.
        after = _continuation(new.audio, line, line + fade, line + fade + RATE)
        got = rec[line + fade:line + fade + RATE]
        if got.shape[0] == RATE:
            bad = np.nonzero(np.max(np.abs(got - after), axis=1) > 1e-6)[0]
            assert bad.size == 0, (f"switch at {line}: {bad.size} frames differ from "
                                   f"{new.label} from frame {int(bad[0]) if bad.size else -1}, "
                                   f"after {prev.label}; switches at "
                                   f"{[(a, s.label) for a, s in plays]}")
        # ... and the fade is the mix of the two, equal power rescaled by their correlation, under
        # the ceiling.
        old = _continuation(prev.audio, starts[-1], line, line + fade)
        fresh = _continuation(new.audio, line, line, line + fade)
        out_c, in_c = keep_level(old, fresh, *equal_power(fade))
        mix = limit(old * out_c[:, None] + fresh * in_c[:, None])
        assert np.max(np.abs(rec[line:line + fade] - mix)) < 1e-5
        assert np.max(np.abs(rec[line:line + fade])) <= CEILING
        starts.append(line)
    # Last, the server's own xruns: a client of the graph, any of them, late for its cycle.
    # With -R every client's thread is real-time, and there must be none. Without it (CI's
    # jackd --no-realtime) they measure the machine's load: jack_capture, C in a process of its
    # own, is late about as often as PortAudio's client there (JACK's log). Whether one cost
    # audio, the sample-for-sample checks above say; riffbridge's ring never ran dry.
    if realtime:
        assert xruns == 0, f"{xruns} JACK xruns on a real-time server"


class LoudWorker(StandInWorker):
    """Stands in for the render worker (no model, no process, the same protocol) with loops near
    full scale (sample peak ``PEAK``) that are copies of each other: alpha 0 and 1 are the same
    audio, every other point a near copy, as neighbours on the alpha grid are. Alpha 0.5 fails,
    so the knob between 0.375 and 0.625 plays a blend of those two."""

    MODEL = "loud"
    PEAK = 0.95

    def wait_ready(self, timeout: float, cancelled: object = None) -> Ready:
        self.ready = Ready("loud", "cpu", 0)
        return self.ready

    def submit(self, request: RenderRequest) -> None:
        self.in_flight = request
        key = request.key
        if key.alpha == 0.5:
            self._results.put(Failed(key, "RenderError: no loop at 0.5 (on purpose)"))
            return
        frames = self.audio(key, request.out_rate)
        loop = Loop(np.ascontiguousarray(frames.T), request.out_rate, key.bpm, key.bars,
                    key.beats_per_bar)
        self._results.put(Rendered(key, loop, frames, 0.0))

    def cancel(self) -> bool:
        return False  # each answer is ready the moment it is asked for: nothing to stop

    def poll(self, timeout: float = 0.0) -> list[Message]:
        out: list[Message] = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                break
        if out:
            self.in_flight = None
        return out

    @classmethod
    def audio(cls, key: LoopKey, rate: int) -> np.ndarray:
        n = loop_samples(key.bpm, key.bars, key.beats_per_bar, rate)
        t = np.arange(n) / rate
        rng = np.random.default_rng(1)
        base = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
                   for f in rng.uniform(60, 2000, 6))
        base = base + rng.standard_normal(n) * np.exp(-(t % 0.25) * 40)
        other = np.random.default_rng(2).standard_normal(n) * np.exp(-(t % 0.125) * 60)
        amount = 0.0 if key.alpha in (0.0, 1.0) else 0.1 * key.alpha
        mono = (1 - amount) * base + amount * other
        stereo = np.stack([mono, 0.95 * mono], axis=1)
        return (stereo / np.max(np.abs(stereo)) * cls.PEAK).astype(np.float32)


def test_switches_between_copies_near_full_scale_never_go_over_the_ceiling(tmp_path: Path):
    state = EngineState(bars=1, playing=True, quantum="beat", xfade=0.05)
    hub = Hub(state)
    player = Player()
    steps = [("alpha", 1.0), ("alpha", 0.0), ("alpha", 0.125), ("alpha", 0.0),
             ("gain_db", -3.0), ("gain_db", 0.0), ("alpha", 0.45), ("alpha", 0.55),
             ("alpha", 1.0), ("alpha", 0.875), ("alpha", 1.0), ("alpha", 0.25),
             ("gain_db", -1.0), ("alpha", 0.0), ("gain_db", 0.0), ("alpha", 0.125)]
    period = jack_period()
    engine = Engine(state, player, RATE, EngineSettings(), worker=LoudWorker(), block=period)
    hub.add_listener(engine.post)
    events = EventLog(hub, engine.events).start()
    capture = None
    try:
        before = output_ports()
        with DeviceStream(jack_device(), RATE, player.fill, blocksize=period):
            capture = JackCapture(sorted(output_ports() - before), tmp_path / "rec.wav").start()
            engine.start()
            wait_for(lambda: player.applied_token >= 1, 10, "the first loop")
            for i, (name, value) in enumerate(steps):
                hub.submit(SetParam(name, value))
                # a quick there and back: the pending switch is replaced by the loop that plays
                time.sleep(0.01 if i == 9 else 0.6)
            time.sleep(1.5)
            rec = capture.stop()
    finally:
        engine.close()
        events.close()
        if capture is not None:
            capture.kill()
    switched = events.of(Switched)
    labels = {e.label for e in switched}
    peak = float(np.max(np.abs(rec)))
    print(f"\n{len(switched)} switches sounded ({len(labels)} sounds); recorded peak "
          f"{peak:.4f} ({20 * np.log10(peak):.2f} dBFS), ceiling {CEILING:.4f}")
    assert len(switched) >= 12, f"only {len(switched)} switches sounded"
    assert {"alpha 0", "alpha 1", "alpha 0.125", "blend 0.375|0.625 @0.30"} <= labels, labels
    assert peak > 0.9, "the loops did not play near full scale"
    assert peak <= CEILING, f"recorded {peak:.4f}, over the {CEILING:.4f} ceiling"


def _gil_hold(seconds: float) -> list[float]:
    """A list whose sort holds the GIL for about ``seconds`` in one C call (list.sort never
    lets go of it), sized by timing sorts here (the time is not linear in the size); the list
    returned is the one last timed, so its first sort in the test is not a cold one."""
    rng = np.random.default_rng(3)
    n = 200_000
    for _ in range(3):
        items = rng.random(n).tolist()
        started = time.perf_counter()
        sorted(items)
        took = time.perf_counter() - started
        n = int(n * seconds / took)
    return items


@pytest.mark.parametrize("mode", ["buffered", "direct"])
def test_a_thread_that_holds_the_gil_past_a_period_costs_the_buffered_stream_nothing(
        mode: str, tmp_path: Path):
    """Another thread of the process holds the GIL for about 50 ms (2.2 JACK periods) five times
    while a loop plays (the ring is 150 ms: a hold may run slow on a busy machine and still fit).
    Buffered, the C callback plays on from the ring: nothing runs dry and
    jack_capture hears the loop unbroken. Direct, the Python callback waits for the GIL, and
    the player is told of the underruns: what the buffered stream is for."""
    period = jack_period()
    player = Player()
    loop = (np.random.default_rng(7).standard_normal((RATE, 2)) * 0.1).astype(np.float32)
    loop.flags.writeable = False
    items = _gil_hold(0.05)
    held = []
    before = output_ports()
    capture = None
    try:
        with DeviceStream(jack_device(), RATE, player.fill, blocksize=period,
                          ahead_s=AHEAD_S if mode == "buffered" else 0.0) as stream:
            capture = JackCapture(sorted(output_ports() - before), tmp_path / "rec.wav").start()
            at = player.frame + RATE // 4
            player.cue = prepare_cue(None, Segment(loop, at), at, 1, token=1)
            wait_for(lambda: player.applied_token == 1, 10, "the loop to start")
            time.sleep(1.0)
            underruns = player.underruns
            for _ in range(5):
                started = time.perf_counter()
                sorted(items)
                held.append(time.perf_counter() - started)
                time.sleep(0.3)
            time.sleep(0.5)
            underruns = player.underruns - underruns
            dry = stream.underruns
            rec = capture.stop()
    finally:
        if capture is not None:
            capture.kill()
    print(f"\n{mode}: GIL held {', '.join(f'{h * 1000:.0f}' for h in held)} ms; "
          f"underruns {underruns}, ring ran dry {dry}")
    assert min(held) > 1.5 * period / RATE  # each hold outlasts a period and a half
    start = int(np.argmax(np.any(rec != 0, axis=1))) + 1  # after the one-frame fade in
    heard = rec[start:]
    expected = loop[np.arange(1, heard.shape[0] + 1) % RATE]
    wrong = np.nonzero(np.any(heard != expected, axis=1))[0]
    # the end: jack_capture stops some time after the stream (silence there)
    unbroken = wrong.size == 0 or wrong[0] >= heard.shape[0] - RATE // 2
    print(f"first wrong frame {wrong[0] if wrong.size else None} of {heard.shape[0]}")
    if mode == "buffered":
        assert dry == 0, f"the ring ran dry {dry} times"
        assert unbroken, "jack_capture heard the loop broken"
    else:
        assert underruns > 0 or not unbroken, "the direct callback rode out the GIL holds"
