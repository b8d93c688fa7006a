"""Shared helpers for the engine tests: a running engine with the tiny model in a real render
worker, wired as `riffbridge serve` wires it (hub -> ``engine.post``, the engine's events ->
the control side's feedback), and a record of every event the engine put out."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from riffbridge.control.feedback import Feedback
from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.player import Player
from riffbridge.engine.worker import RenderWorker, WorkerSettings
from riffbridge.events import Event
from riffbridge.outputs.audio_stream import PacedStream
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
