"""What the page shows, gathered from the hub, the engine's news and the engine's snapshot, and
handed to each connected page without ever holding anyone up.

Threads: the hub calls ``on_push`` (a sink) on whichever thread changed the state, the feedback
thread calls ``on_event`` (a consumer); both only note the news in bounded places and wake the
event loop. Everything else runs on the web server's event loop: ``run`` publishes at most
``FRAME_S`` apart (and at once when woken), reading immutable values only (the hub's state, the
engine's ``EngineStatus``, its grid, and the player's ``playing`` and ``cue`` references). It
never takes the hub's lock for reading and never touches the audio callback's data beyond reading
those references.

Each page is a ``Client`` with one slot for the latest state, one for the latest status (a slow
page gets the newest of each, never a backlog) and a bounded deque of events (the oldest go
first). Spectrogram pictures are drawn from the audio of loops that already play, on one
background thread, at a bounded cost (``spectro``); the newest few are kept by serial number.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from riffbridge.control.hub import Hub
from riffbridge.events import EngineError, EngineStatus, Event, LoopReady, Progress
from riffbridge.params import BY_NAME
from riffbridge.web import protocol, spectro

log = logging.getLogger(__name__)

FRAME_S = 1 / 30  # the longest the page waits for news; a change wakes it at once
STATUS_EVERY_S = 0.25  # the playhead's reference point, when nothing else changed
EVENTS_KEPT = 64  # per page
ERRORS_KEPT = 8
IMAGES_KEPT = 8


class EngineView(Protocol):
    """What the page reads of the engine (``riffbridge.engine.engine.Engine`` is one): immutable
    values and references swapped whole."""

    rate: int
    player: Any  # .frame, .playing (a Segment), .cue (a Cue or None), .applied_token

    def status(self) -> EngineStatus: ...

    @property
    def grid(self) -> Any: ...  # .bpm, .anchor_frame, .anchor_beat


class Client:
    """One page: the latest state and status, and a bounded run of events, to send."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.status: str | None = None
        self.events: collections.deque[str] = collections.deque(maxlen=EVENTS_KEPT)
        self.ready = asyncio.Event()

    def take(self) -> list[str]:
        out = list(self.events)
        self.events.clear()
        for attr in ("state", "status"):
            text = getattr(self, attr)
            if text is not None:
                out.append(text)
                setattr(self, attr, None)
        self.ready.clear()
        return out


class Face:
    def __init__(self, hub: Hub, engine: EngineView | None = None, *,
                 grid: int = BY_NAME["grid"].default,
                 xy_grid: int = BY_NAME["xy_grid"].default) -> None:
        self.hub = hub
        self.engine = engine
        self.grid = grid
        self.xy_grid = xy_grid
        self.clients: set[Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._wake_pending = False
        self._news: collections.deque[Event] = collections.deque(maxlen=256)
        self._news_lock = threading.Lock()
        self._progress = 0.0
        self._errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=ERRORS_KEPT)
        self._state: Any = None
        self._status_key: Any = None
        self._status_sent = 0.0
        self._images: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        # id(segment) -> (a weak reference to it, its serial): the page keeps no loop alive
        self._serial_of: dict[int, tuple[weakref.ref[Any], int]] = {}
        self._heard: Any = None  # the segment last seen sounding (not only filled ahead)
        self._serial = 0
        self._drawing: set[int] = set()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="riffbridge-web-draw")
        self.on_publish: Callable[[], None] | None = None  # for benchmarks and tests

    # ---- any thread ----------------------------------------------------------------------------
    def on_push(self, address: str, args: tuple[Any, ...]) -> None:
        """A hub sink: something changed (the state is read from the hub, whole)."""
        if address == "/rb/error" and len(args) == 2:
            with self._news_lock:
                self._errors.append(protocol.error_message(str(args[0]), str(args[1])))
        self.wake()

    def on_event(self, event: Event) -> None:
        """A feedback consumer: the engine's news, the same values OSC gets."""
        if isinstance(event, Progress):
            self._progress = float(event.fraction)
        elif isinstance(event, EngineError):
            pass  # errors come as /rb/error pushes (on_push), the feedback's own ones too
        else:
            if isinstance(event, LoopReady):
                self._progress = 0.0
            with self._news_lock:
                self._news.append(event)
        self.wake()

    def wake(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or self._wake_pending:
            return
        self._wake_pending = True
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is stopping
            loop.call_soon_threadsafe(wake.set)

    def image(self, serial: int) -> bytes | None:
        return self._images.get(serial)

    # ---- the event loop ------------------------------------------------------------------------
    def connect(self) -> Client:
        client = Client()
        client.events.append(protocol.dumps(protocol.hello(self.grid, self.xy_grid)))
        client.state = protocol.dumps(protocol.state_message(self.hub.state))
        client.status = protocol.dumps(self._status_message(time.monotonic()))
        client.ready.set()
        self.clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        self.clients.discard(client)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):  # 3.10: not TimeoutError
                    await asyncio.wait_for(self._wake.wait(), FRAME_S)
                self._wake.clear()
                self._wake_pending = False
                try:
                    self.publish()
                except Exception:  # the page's fault must not end the page
                    log.exception("web publish failed")
        finally:
            self._loop = None
            self._pool.shutdown(wait=False, cancel_futures=True)

    def publish(self) -> None:
        now = time.monotonic()
        texts: list[str] = []
        with self._news_lock:
            news = list(self._news)
            self._news.clear()
        for event in news:
            message = protocol.event_message(event)
            if message is not None:
                texts.append(protocol.dumps(message))
        state = self.hub.state
        state_text = None
        if state is not self._state:
            self._state = state
            state_text = protocol.dumps(protocol.state_message(state))
        status = self._status_message(now)
        key = {k: v for k, v in status.items() if k not in ("frame", "sent")}
        status_text = None
        if key != self._status_key or now - self._status_sent >= STATUS_EVERY_S:
            self._status_key, self._status_sent = key, now
            status_text = protocol.dumps(status)
        if texts or state_text or status_text:
            for client in self.clients:
                client.events.extend(texts)
                if state_text is not None:
                    client.state = state_text
                if status_text is not None:
                    client.status = status_text
                client.ready.set()
        if self.on_publish is not None:
            self.on_publish()

    def _status_message(self, now: float) -> dict[str, Any]:
        with self._news_lock:
            errors = list(self._errors)
        message: dict[str, Any] = {"type": "status", "progress": self._progress,
                                   "errors": errors, "sent": now}
        if self.engine is None:
            status = self.hub.status()
            message.update(queued=status[3], cached=status[4], underruns=status[5])
            return message
        engine = self.engine
        s = engine.status()
        grid, player = engine.grid, engine.player
        frame = sounding_frame(player, engine.rate, now)
        applied_at = player.applied_at
        playing = player.playing
        heard = self._heard
        if applied_at > frame and heard is not None and heard is not playing:
            # A buffered stream has played this switch into its ring, not to the speakers yet:
            # the page shows what sounds, and the switch as next, at its frame.
            sounding, upcoming = heard, (playing, applied_at)
        else:
            self._heard = playing
            sounding, upcoming = playing, None
        message.update(
            sounding=s.sounding, queued=s.queued, cached=s.cached, underruns=s.underruns,
            worker=s.worker, renders=s.renders, last_render_s=round(s.last_render_s, 3),
            rendered=list(s.rendered), wanted=list(s.wanted), rendering=s.rendering,
            rendered_xy=[list(p) for p in s.rendered_xy],
            wanted_xy=[list(p) for p in s.wanted_xy],
            rendering_xy=None if s.rendering_xy is None else list(s.rendering_xy),
            rate=engine.rate, frame=frame, bpm=grid.bpm,
            anchor_frame=grid.anchor_frame, anchor_beat=grid.anchor_beat,
            loop=self._segment(sounding), next=None)
        cue = player.cue
        if upcoming is None and cue is not None and cue.token > player.applied_token \
                and cue.token != player.dropped_token:
            upcoming = (cue.then, cue.at)
        if upcoming is not None:
            message["next"] = self._segment(upcoming[0])
            if message["next"] is not None:
                message["next"]["at"] = int(upcoming[1])
        return message

    def _segment(self, segment: Any) -> dict[str, Any] | None:
        if segment is None or segment.label == "silence":
            return None
        serial = self._serial_for(segment)
        return {"label": segment.label, "origin": int(segment.origin),
                "frames": int(segment.audio.shape[0]),
                "image": serial if serial in self._images else None}

    def _serial_for(self, segment: Any) -> int:
        known = self._serial_of.get(id(segment))
        if known is not None and known[0]() is segment:
            return known[1]
        self._serial += 1
        serial = self._serial
        self._serial_of[id(segment)] = (weakref.ref(segment), serial)
        while len(self._serial_of) > IMAGES_KEPT:  # oldest first: dicts keep insertion order
            self._serial_of.pop(next(iter(self._serial_of)))
        self._draw(segment.audio, serial)
        return serial

    def _draw(self, audio: Any, serial: int) -> None:
        loop = self._loop
        if loop is None or self.engine is None:
            return
        rate = self.engine.rate
        future = loop.run_in_executor(self._pool, spectro.spectrogram_png, audio, rate)

        def done(f: asyncio.Future[bytes]) -> None:
            if f.cancelled() or f.exception() is not None:
                if not f.cancelled():
                    log.error("spectrogram failed: %s", f.exception())
                return
            self._images[serial] = f.result()
            while len(self._images) > IMAGES_KEPT:
                self._images.popitem(last=False)
            self.wake()

        future.add_done_callback(done)


def sounding_frame(player: Any, rate: int, now: float) -> int:
    """The frame that sounds at ``now`` (monotonic): the player's stamp (a block's first frame
    and when it reaches the device callback) carried forward at the audio rate, never past what
    has been filled. With a buffered stream the filled frame runs ``audio_ahead`` ahead of the
    sound; the page's playhead follows the sound."""
    stamp_frame, stamp_time = player.stamp
    if stamp_time <= 0.0:  # nothing played yet
        return int(player.frame)
    return int(min(player.frame, max(0, round(stamp_frame + (now - stamp_time) * rate))))
