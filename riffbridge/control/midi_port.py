"""The MIDI boundary: mido + python-rtmidi input ports, and nothing else.

``MidiInput`` opens an input whose name contains a given substring and/or a virtual input port
called ``riffbridge`` that other programs connect to, and calls ``on_message(msg, t)`` from
rtmidi's thread for every message (``t``: ``time.monotonic()`` at arrival). The JACK MIDI API is
used when ``api="jack"`` (or ``"auto"`` and a JACK server answers), else the system default (ALSA
on Linux, CoreMIDI on macOS).

``MidiControl(hub, mapper, on_clock)`` is the ``on_message`` to give a ``MidiInput``: it turns
each message into commands with a ``MidiMapper`` (and serves MIDI learn), feeds clock messages
to a ``MidiClock``, and hands the commands to the hub; a command the hub refuses is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from riffbridge.control.hub import Hub
from riffbridge.control.midi_clock import RESOLUTION_BPM, ClockEvent, MidiClock
from riffbridge.control.midi_map import MidiMapper
from riffbridge.errors import ControlError, DeviceError
from riffbridge.state import ClockTempo

log = logging.getLogger(__name__)

VIRTUAL_PORT_NAME = "riffbridge"
JACK_BACKEND = "mido.backends.rtmidi/UNIX_JACK"
DEFAULT_BACKEND = "mido.backends.rtmidi"

OnMessage = Callable[[Any, float], None]


def backend(api: str = "auto") -> Any:
    """The mido backend for ``api``: "jack", "default", or "auto" (JACK when a server runs)."""
    import mido

    if api not in ("auto", "jack", "default"):
        raise DeviceError(f"MIDI api must be auto, jack or default, got {api!r}")
    if api in ("auto", "jack"):
        jack = mido.Backend(JACK_BACKEND, load=True)
        try:
            jack.get_input_names()
            return jack
        except Exception as exc:  # rtmidi raises its own SystemError when no server runs
            if api == "jack":
                raise DeviceError(f"no JACK server for MIDI ({exc}); start jackd or use "
                                  f"--midi-api default") from None
    return mido.Backend(DEFAULT_BACKEND, load=True)


def input_names(api: str = "auto") -> list[str]:
    return list(backend(api).get_input_names())


class MidiInput:
    """Open MIDI inputs feeding one callback. A context manager; ``close()`` is idempotent."""

    def __init__(self, on_message: OnMessage, *, name: str | None = None,
                 virtual: bool = False, api: str = "auto",
                 virtual_name: str = VIRTUAL_PORT_NAME) -> None:
        if name is None and not virtual:
            raise DeviceError("open a MIDI input by name, a virtual port, or both")
        self._on_message = on_message
        self._ports: list[Any] = []
        self._backend = backend(api)
        try:
            if name is not None:
                names = self._backend.get_input_names()
                found = [n for n in names if name.lower() in n.lower()]
                if not found:
                    raise DeviceError(f"no MIDI input matches {name!r}; inputs: "
                                      f"{', '.join(names) or 'none'}")
                self._ports.append(self._backend.open_input(found[0], callback=self._callback))
                log.info("MIDI input %r open", found[0])
            if virtual:
                self._ports.append(self._backend.open_input(virtual_name, virtual=True,
                                                            callback=self._callback))
                log.info("virtual MIDI input %r open", virtual_name)
        except DeviceError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise DeviceError(f"cannot open MIDI input: {exc}") from None

    def _callback(self, msg: Any) -> None:
        t = time.monotonic()
        try:
            self._on_message(msg, t)
        except Exception:  # a bad message must not kill rtmidi's thread
            log.exception("MIDI message %s failed", msg)

    @property
    def port_names(self) -> list[str]:
        return [p.name for p in self._ports]

    def close(self) -> None:
        while self._ports:
            port = self._ports.pop()
            try:
                port.close()
            except Exception:
                log.exception("closing MIDI port %s", getattr(port, "name", port))

    def __enter__(self) -> MidiInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MidiControl:
    """MIDI messages -> hub: mapped commands, MIDI learn, and the clock.

    ``on_clock`` gets every ``ClockEvent`` (the engine's clock follows start/stop/position);
    measured tempos also go to the hub as ``ClockTempo`` while the hub's clock is "midi"."""

    def __init__(self, hub: Hub, mapper: MidiMapper | None = None,
                 on_clock: Callable[[ClockEvent], None] | None = None) -> None:
        self.hub = hub
        self.mapper = mapper or MidiMapper()
        self.clock = MidiClock()
        self.on_clock = on_clock
        self._refused_bpm: float | None = None  # the measured tempo the hub last refused
        hub.learner = self.mapper

    def __call__(self, msg: Any, t: float) -> None:
        if getattr(msg, "type", None) in ("clock", "start", "stop", "continue", "songpos"):
            for event in self.clock.feed(msg, t):
                if self.on_clock is not None:
                    self.on_clock(event)
            # Also catches up when /rb/clock turned to midi after the tempo was measured. The
            # clock reports a settled tempo only when it changes (midi_clock.py), so any
            # difference is news.
            bpm = self.clock.reported_bpm
            state = self.hub.state
            if (bpm is not None and state.clock == "midi" and bpm != self._refused_bpm
                    and abs(state.bpm - bpm) > RESOLUTION_BPM / 2
                    and not self._submit(ClockTempo(round(bpm, 2)))):
                self._refused_bpm = bpm  # out of range: said once, not on every next pulse
            return
        for command in self.mapper.handle(msg):
            self._submit(command)

    def _submit(self, command: Any) -> bool:
        """Whether the hub took ``command`` (a refusal is logged)."""
        try:
            self.hub.submit(command, source="midi")
        except ControlError as exc:
            log.warning("MIDI %r refused: %s", command, exc)
            return False
        return True
