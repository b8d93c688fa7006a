"""Engine news -> the control surface: each engine event becomes its OSC push, and the engine's
requests (the auto walk, the setlist) become hub commands like any other.

``to_osc`` is the pure translation (tested with literal events). ``Feedback`` is the thread that
drains the engine's event queue; it is the only reader of that queue. It hands every event, as
the same value, to its consumers too (``add_consumer``: the browser page), after the OSC push, so
other transports get the engine's news without a second reader. A consumer must be quick (a
bounded queue put); one that raises is logged and the others still get the event. The engine
never calls the hub and never names an OSC address.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

from riffbridge.control.hub import Hub
from riffbridge.errors import ControlError
from riffbridge.events import (
    ClipCued,
    CuePlaying,
    EngineError,
    Event,
    LoopReady,
    Progress,
    Request,
    Switched,
)

log = logging.getLogger(__name__)


def to_osc(event: Event) -> tuple[str, tuple[Any, ...]] | None:
    """The OSC push for ``event`` (address, args), or None for news OSC does not carry."""
    if isinstance(event, Progress):
        return "/rb/progress", (float(event.fraction),)
    if isinstance(event, ClipCued):
        return "/rb/clip", (event.path, float(event.alpha), float(event.bpm), int(event.bars))
    if isinstance(event, Switched):
        return "/rb/playing", (float(event.alpha), int(event.bar))
    if isinstance(event, EngineError):
        return "/rb/error", (event.source, event.message)
    if isinstance(event, CuePlaying):
        if event.mix == "xy" and event.point is not None:
            return "/rb/cue/playing/xy", (float(event.point[0]), float(event.point[1]))
        if event.mix == "weights":
            return "/rb/cue/playing/weights", tuple(float(w) for w in event.weights)
        return "/rb/cue/playing", (float(event.alpha),)
    return None


class Feedback:
    """Drains ``events`` on its own thread: pushes to the hub's sinks, submits requests.
    Every event then goes to each consumer. A context manager; ``close()`` is idempotent and
    handles what is already queued."""

    def __init__(self, hub: Hub, events: queue.Queue[Event],
                 consumers: Iterable[Callable[[Event], None]] = ()) -> None:
        self.hub = hub
        self.events = events
        self._consumers: tuple[Callable[[Event], None], ...] = tuple(consumers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Feedback:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="riffbridge-feedback",
                                            daemon=True)
            self._thread.start()
        return self

    def add_consumer(self, consumer: Callable[[Event], None]) -> None:
        """``consumer(event)`` for every event from now on, on the feedback thread."""
        self._consumers = (*self._consumers, consumer)  # a swap: the thread reads a tuple

    def remove_consumer(self, consumer: Callable[[Event], None]) -> None:
        self._consumers = tuple(c for c in self._consumers if c != consumer)

    def handle(self, event: Event) -> None:
        self._to_osc(event)
        for consumer in self._consumers:
            try:
                consumer(event)
            except Exception:  # one transport's fault must not starve the others
                log.exception("feedback consumer %r failed on %r", consumer, event)

    def _to_osc(self, event: Event) -> None:
        if isinstance(event, Request):
            try:
                self.hub.submit(event.command, source="engine")
            except ControlError as exc:
                log.error("auto walk: %s", exc)
                self.hub.push("/rb/error", "auto", str(exc))
            return
        if isinstance(event, LoopReady):
            log.debug("loop ready: alpha %g at %g BPM in %.2f s", event.alpha, event.bpm,
                      event.seconds)
        if isinstance(event, EngineError):
            log.error("%s: %s", event.source, event.message)
        message = to_osc(event)
        if message is not None:
            self.hub.push(message[0], *message[1])

    def _run(self) -> None:
        while not (self._stop.is_set() and self.events.empty()):
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                self.handle(event)
            except Exception:  # one bad event must not end the feedback
                log.exception("feedback for %r failed", event)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Feedback:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
