"""Shared helpers for the engine tests: a running engine with the tiny model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.player import Player
from riffbridge.engine.worker import WorkerSettings
from riffbridge.outputs.audio_stream import PacedStream
from riffbridge.state import EngineState

RATE = 44100


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


@contextlib.contextmanager
def running_engine(state: EngineState, *, writer: Any = None, **settings: Any
                   ) -> Iterator[tuple[Hub, Engine, Tap]]:
    hub = Hub(state)
    player = Player()
    tap = Tap(player)
    conf = EngineSettings(worker=WorkerSettings("tiny", "cpu"), **settings)
    engine = Engine(hub, player, RATE, conf, writer=writer)
    with PacedStream(RATE, tap), engine:
        yield hub, engine, tap
