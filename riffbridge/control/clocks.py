"""External clocks (MIDI clock, Ableton Link): their readings as values, and the policy of which
one runs the tempo. No engine, no audio: the serve wiring hands ``ClockSync`` readings to the
engine's inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from riffbridge.errors import ControlError, RiffbridgeError
from riffbridge.state import ClockTempo, Command, Play, SetParam, Stop

if TYPE_CHECKING:
    from riffbridge.control.hub import Hub
    from riffbridge.control.link import LinkState
    from riffbridge.control.midi_clock import ClockEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClockSync:
    """An external clock's reading: ``beat`` at monotonic ``time`` (tempo optional)."""

    beat: float
    time: float
    bpm: float | None = None
    source: Literal["midi", "link"] = "midi"


SyncSink = Callable[[ClockSync], None]
# Joins Link at a tempo and calls back with each reading; a context manager (``LinkClock``).
OpenLink = Callable[[float, Callable[["LinkState"], None]], AbstractContextManager[Any]]


def on_midi_clock(hub: Hub, sync: SyncSink, event: ClockEvent) -> None:
    """A MIDI clock event (rtmidi's thread). While the clock is "midi": start, position and
    continue move the beat grid, and the DAW's transport runs the show (start/continue play,
    stop stops). Measured tempos reach the hub through ``MidiControl`` as ``ClockTempo``."""
    if hub.state.clock != "midi":
        return
    if event.kind in ("start", "position", "continue"):
        sync(ClockSync(event.beat, event.time, None, "midi"))
    if event.kind in ("start", "continue", "stop"):
        _submit(hub, Stop() if event.kind == "stop" else Play(), "midi")


def on_link_state(hub: Hub, sync: SyncSink, state: LinkState) -> None:
    """A Link reading (Link's thread): its tempo goes to the hub, its phase to the grid."""
    if hub.state.clock != "link":
        return
    if abs(hub.state.bpm - state.bpm) > 0.01:
        _submit(hub, ClockTempo(round(state.bpm, 2)), "link")
    sync(ClockSync(state.beat, state.time, state.bpm, "link"))


def _submit(hub: Hub, command: Command, source: str) -> None:
    try:
        hub.submit(command, source=source)
    except ControlError as exc:  # e.g. a tempo outside the range: say so, keep the clock going
        log.warning("%s clock: %r refused: %s", source, command, exc)
        hub.push("/rb/error", "/rb/clock", f"{source} clock: {exc}")


class ClockSources:
    """Which external clock runs, following ``/rb/clock`` live.

    MIDI clock needs the MIDI input opened at the start (``midi_available``). Link is joined on
    demand, the first time the clock turns to "link", and stays joined (leaving and rejoining a
    Link session costs seconds). A source that cannot run is refused on /rb/error and the clock
    goes back to internal, so /rb/bpm works again. ``check`` runs on the main thread; it owns the
    Link session (closed by ``close``)."""

    def __init__(self, hub: Hub, sync: SyncSink, *, midi_available: bool,
                 open_link: OpenLink | None = None) -> None:
        self.hub = hub
        self.sync = sync
        self.midi_available = midi_available
        self._open_link = open_link or _default_link
        self._stack = ExitStack()
        self.link_running = False

    def start_link(self) -> None:
        """Join Link (raises ConfigError/DeviceError when it cannot run)."""
        hub, sync = self.hub, self.sync
        self._stack.enter_context(self._open_link(
            hub.state.bpm, lambda state: on_link_state(hub, sync, state)))
        self.link_running = True

    def check(self) -> None:
        clock = self.hub.state.clock
        if clock == "midi" and not self.midi_available:
            self._refuse("clock midi needs a MIDI input: start riffbridge with --midi-in NAME")
        elif clock == "link" and not self.link_running:
            try:
                self.start_link()
            except RiffbridgeError as exc:
                self._refuse(str(exc))

    def _refuse(self, reason: str) -> None:
        log.error("/rb/clock: %s", reason)
        self.hub.push("/rb/error", "/rb/clock", reason)
        _submit(self.hub, SetParam("clock", "internal"), "engine")

    def close(self) -> None:
        self._stack.close()
        self.link_running = False

    def __enter__(self) -> ClockSources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _default_link(bpm: float, on_state: Callable[[LinkState], None]) -> Any:
    from riffbridge.control.link import LinkClock

    return LinkClock(bpm, on_state)
