"""Ableton Link clock: the tempo and beat shared with Live, Traktor, phone apps and any other
Link peer on the local network.

The one boundary over the optional ``aalink`` package (GPL-3.0, ``pip install
'riffbridge[link]'``), imported only when a clock starts, so riffbridge runs without it. aalink
binds its Link object to a running asyncio loop, so a :class:`LinkClock` runs a private loop in
its own thread, and only that thread touches the Link object. Every ``poll_s`` it reads the
session's tempo, the beat on the timeline (with ``quantum`` beats to the phase cycle, 4 = a 4/4
bar), the number of peers and the shared play state into a frozen :class:`LinkState` and hands
it to ``on_state``. ``set_tempo`` proposes a tempo; Link shares it with every peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from riffbridge.errors import ConfigError, DeviceError

logger = logging.getLogger(__name__)

LINK_MISSING = ("Ableton Link needs the optional aalink package: pip install 'riffbridge[link]' "
                "(GPL-3.0)")
MIN_BPM, MAX_BPM = 20.0, 999.0  # Link's own tempo range
START_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 2.0
ERROR_LOG_INTERVAL_S = 1.0  # on_state failing at every poll is logged at most this often


def _import_aalink() -> ModuleType | None:
    try:
        import aalink
    except ImportError:
        return None
    return aalink


def link_available() -> bool:
    """True when the optional aalink package can be imported."""
    return _import_aalink() is not None


@dataclass(frozen=True)
class LinkState:
    """The Link session as read at one poll. ``beat`` is the position on the shared timeline
    (its phase within the clock's quantum is ``beat % quantum``), ``time`` the
    ``time.monotonic()`` at which it was read, ``playing`` the session's shared transport."""

    bpm: float
    beat: float
    time: float
    peers: int
    playing: bool


def _check_bpm(bpm: float) -> float:
    if not (isinstance(bpm, int | float) and math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ConfigError(f"Link tempo must be in [{MIN_BPM:g}, {MAX_BPM:g}] bpm, got {bpm}")
    return float(bpm)


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value}")
    return float(value)


def _make_link(aalink: ModuleType, bpm: float) -> Any:
    """A Link object bound to the running loop (called inside it)."""
    try:
        return aalink.Link(bpm)  # aalink >= 0.2 takes the running loop itself
    except TypeError:
        return aalink.Link(bpm, asyncio.get_running_loop())  # aalink 0.1 needs it passed


class LinkClock:
    """A Link session member that reports its state every ``poll_s`` seconds to ``on_state``.

    ``on_state`` runs on the clock's thread; an exception from it is logged and the clock goes
    on. Use as a context manager, or ``start()`` and ``close()`` (idempotent).
    """

    def __init__(self, bpm: float, on_state: Callable[[LinkState], None], *,
                 quantum: float = 4.0, poll_s: float = 0.02) -> None:
        self._bpm = _check_bpm(bpm)
        self.quantum = _check_positive("Link quantum (beats per phase cycle)", quantum)
        self.poll_s = _check_positive("Link poll interval poll_s (seconds)", poll_s)
        self._on_state = on_state
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set while the loop runs
        self._stop: asyncio.Event | None = None
        self._link: Any = None  # touched on the clock's thread only
        self._failure: BaseException | None = None
        self._closed = False
        self._last_error_log = -math.inf
        self._errors_unlogged = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LinkClock:
        """Join the Link session (or start one) and begin polling; returns the clock."""
        aalink = _import_aalink()
        if aalink is None:
            raise ConfigError(LINK_MISSING)
        with self._lock:
            if self._closed:
                raise ConfigError("this LinkClock was closed; make a new one to join Link again")
            if self._thread is not None:
                return self
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(aalink, ready),
                                            name="riffbridge-link", daemon=True)
            self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            self.close()
            raise DeviceError(f"Ableton Link did not start within {START_TIMEOUT_S:g} s")
        if self._failure is not None:
            failure = self._failure
            self.close()
            raise DeviceError(f"Ableton Link could not start: {failure}") from failure
        logger.info("Ableton Link on: %g bpm proposed, quantum %g", self._bpm, self.quantum)
        return self

    def close(self) -> None:
        """Leave the Link session and stop the thread. Safe to call more than once."""
        with self._lock:
            self._closed = True
            thread, loop, stop = self._thread, self._loop, self._stop
            if loop is not None and stop is not None:
                loop.call_soon_threadsafe(stop.set)
        if thread is None or thread is threading.current_thread():
            return  # never started, or closed from on_state: the loop ends after this poll
        thread.join(JOIN_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("Ableton Link thread still running %g s after close", JOIN_TIMEOUT_S)

    def __enter__(self) -> LinkClock:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- control -----------------------------------------------------------------------------
    def set_tempo(self, bpm: float) -> None:
        """Propose ``bpm`` to the session; every peer follows it. Before ``start()`` it is
        the tempo the clock starts with."""
        bpm = _check_bpm(bpm)
        with self._lock:
            self._bpm = bpm
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._apply_tempo, bpm)
            elif self._closed:
                logger.debug("Link tempo %g ignored: the clock is closed", bpm)

    # -- the clock's thread ------------------------------------------------------------------
    def _run(self, aalink: ModuleType, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(aalink, loop, ready))
        except Exception as exc:
            logger.exception("Ableton Link thread failed")
            self._failure = self._failure or exc
        finally:
            with self._lock:
                self._loop, self._stop = None, None
            ready.set()
            loop.close()

    async def _main(self, aalink: ModuleType, loop: asyncio.AbstractEventLoop,
                    ready: threading.Event) -> None:
        try:
            link = _make_link(aalink, self._bpm)
            link.quantum = self.quantum
            link.start_stop_sync_enabled = True  # ``playing`` follows the session's transport
            link.enabled = True
        except Exception as exc:
            self._failure = exc
            return
        stop = asyncio.Event()
        with self._lock:
            self._link, self._loop, self._stop = link, loop, stop
            if self._closed:
                stop.set()
        ready.set()
        try:
            while not stop.is_set():
                self._poll(link)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)
        finally:
            link.enabled = False
            self._link = None
            logger.info("Ableton Link off")

    def _apply_tempo(self, bpm: float) -> None:
        if self._link is not None:
            self._link.tempo = bpm

    def _poll(self, link: Any) -> None:
        try:
            before = time.monotonic()
            beat = float(link.beat)
            read_at = (before + time.monotonic()) / 2
            state = LinkState(bpm=float(link.tempo), beat=beat, time=read_at,
                              peers=int(link.num_peers), playing=bool(link.playing))
            self._on_state(state)
        except Exception:
            self._log_error()

    def _log_error(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log < ERROR_LOG_INTERVAL_S:
            self._errors_unlogged += 1
            return
        more = f" ({self._errors_unlogged} more since the last report)" \
            if self._errors_unlogged else ""
        logger.exception("Ableton Link: reading or handling the session state failed%s; "
                         "the clock goes on", more)
        self._last_error_log, self._errors_unlogged = now, 0
