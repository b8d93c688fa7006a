"""Shared helpers for the engine tests: a running engine with the tiny model in a real render
worker, wired as `riffbridge serve` wires it (hub -> ``engine.post``, the engine's events ->
the control side's feedback), and a record of every event the engine put out; the same on a
4-channel device with the cue bus on channels 3-4, and the checks of a committed cue; the
common part of the stand-ins for the render worker (``StandInWorker``)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pytest

from riffbridge.control.feedback import Feedback
from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.player import Player, Segment
from riffbridge.engine.worker import Message, Ready, RenderRequest, RenderWorker, WorkerSettings
from riffbridge.events import Event
from riffbridge.outputs.audio_stream import PacedStream
from riffbridge.outputs.cue_bus import ChannelSplit
from riffbridge.outputs.recorder import Recorder
from riffbridge.outputs.writer import LoopWriter
from riffbridge.state import EngineState

RATE = 44100
E = TypeVar("E")


class Tap:
    """Wraps ``Player.fill``: keeps the peak of every block, to see that audio never stopped."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.peaks: list[float] = []

    def __call__(self, out: np.ndarray, now: float, underrun: bool) -> None:
        self.player.fill(out, now, underrun)
        self.peaks.append(float(np.abs(out).max()))


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class EventLog:
    """Drains the engine's event queue on its own thread, as serve's feedback does (requests are
    submitted to the hub, news is pushed to its sinks), and keeps every event with the
    ``time.monotonic()`` it arrived."""

    def __init__(self, hub: Hub, events: queue.Queue[Event]) -> None:
        self.feedback = Feedback(hub, events)
        self.events = events
        self._seen: list[tuple[float, Event]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-events", daemon=True)

    def start(self) -> EventLog:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def __enter__(self) -> EventLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self.events.get(timeout=0.02)
            except queue.Empty:
                continue
            with self._lock:
                self._seen.append((time.monotonic(), event))
            self.feedback.handle(event)

    def timed(self, kind: type[E]) -> list[tuple[float, E]]:
        with self._lock:
            return [(t, e) for t, e in self._seen if isinstance(e, kind)]

    def of(self, kind: type[E]) -> list[E]:
        return [e for _, e in self.timed(kind)]


class StandInWorker:
    """The part of ``engine.Worker`` that stand-ins for the render worker (no model, no
    process) share: the state the engine reads, ``Ready`` on start, nothing to close. A
    subclass answers ``submit``, ``poll``, ``cancel`` and ``wait_ready``, putting its answers
    on ``_results``; ``MODEL`` names it in its ``Ready``."""

    MODEL = "stand-in"

    def __init__(self) -> None:
        self.ready: Ready | None = None
        self.in_flight: RenderRequest | None = None
        self.fatal: str | None = None
        self.pid: int | None = None
        self.restarts = 0
        self._results: queue.Queue[Message] = queue.Queue()

    @property
    def idle(self) -> bool:
        return self.ready is not None and self.in_flight is None

    def start(self) -> StandInWorker:
        self._results.put(Ready(self.MODEL, "cpu", 0))
        return self

    def close(self) -> None:
        self.ready = None


@dataclass
class Live:
    hub: Hub
    engine: Engine
    worker: RenderWorker
    tap: Tap
    log: EventLog


@contextlib.contextmanager
def running_engine(state: EngineState, *, writer: LoopWriter | None = None,
                   render_timeout_s: float = 300.0, **settings: Any) -> Iterator[Live]:
    hub = Hub(state)
    player = Player()
    tap = Tap(player)
    worker = RenderWorker(WorkerSettings("tiny", "cpu"), render_timeout_s=render_timeout_s)
    engine = Engine(state, player, RATE, EngineSettings(**settings), worker=worker,
                    writer=writer, recorder=Recorder)
    hub.add_listener(engine.post)
    with EventLog(hub, engine.events) as log, PacedStream(RATE, tap), engine:
        yield Live(hub, engine, worker, tap, log)


class FourChannels:
    """The device callback for a 4-channel device, keeping every block it plays."""

    def __init__(self, player: Player) -> None:
        self.split = ChannelSplit(player, (3, 4))
        self.player = player
        self.blocks: list[tuple[int, np.ndarray]] = []

    def __call__(self, out: np.ndarray, now: float, underrun: bool) -> None:
        frame = self.player.frame
        self.split(out, now, underrun)
        self.blocks.append((frame, out.copy()))

    def audio(self) -> tuple[int, np.ndarray]:
        return self.blocks[0][0], np.concatenate([b for _, b in self.blocks])


@dataclass
class CueLive:
    hub: Hub
    player: Player
    device: FourChannels
    engine: Engine
    log: EventLog
    master: Segment  # the first loop, which the master (channels 1-2) plays


@contextlib.contextmanager
def running_cue_engine(state: EngineState) -> Iterator[CueLive]:
    """A live engine (the tiny model, blocks of 512) on a paced 4-channel device, the master on
    channels 1-2 and the cue bus on 3-4; yields once its first loop sounds and is noted."""
    hub = Hub(state)
    player = Player()
    device = FourChannels(player)
    engine = Engine(state, player, RATE, EngineSettings(),
                    worker=RenderWorker(WorkerSettings("tiny", "cpu")), block=512)
    hub.add_listener(engine.post)
    with EventLog(hub, engine.events) as log, \
            PacedStream(RATE, device, channels=4, blocksize=512), engine:
        # the engine notes a switch on its turn after the callback applied it
        wait_for(lambda: engine.sounded, 90, "the first loop, noted")
        master = engine.sounded[-1][2]
        assert master is not None
        yield CueLive(hub, player, device, engine, log, master)


def check_commit(live: CueLive, cue: Segment, after_frames: int) -> None:
    """The cue bus (3-4) played ``cue`` on the master's frames, at the grid's phase, and it is
    the loop the master plays after the commit, on the same phase; the master (1-2) played its
    first loop, unchanged by the audition, until the commit, which landed on a bar line; after
    the commit's fade the master plays the committed loop (``after_frames`` frames checked)."""
    engine = live.engine
    _, at, committed = engine.sounded[-1]
    assert committed is not None
    start, audio = live.device.audio()
    heard = np.nonzero(np.any(audio[:, 2:4] != 0, axis=1))[0]
    assert heard.size > RATE // 2
    first, last = int(heard[0]), int(heard[-1])
    assert np.array_equal(audio[first:last + 1, 2:4], cue.window(start + first, last - first + 1))
    assert np.array_equal(cue.audio, committed.audio) and cue.origin % cue.audio.shape[0] == \
        committed.origin % committed.audio.shape[0]
    assert np.array_equal(audio[first:at - start, 0:2],
                          live.master.window(start + first, at - start - first))
    bar_position = engine.grid.beat_at(at) / 4
    assert bar_position == pytest.approx(round(bar_position), abs=1e-6)
    fade = round(0.05 * RATE)
    after = audio[at - start + fade:at - start + fade + after_frames, 0:2]
    assert np.array_equal(after, committed.window(at + fade, after.shape[0]))
