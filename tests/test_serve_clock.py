"""/rb/clock changes the tempo source live; a source that cannot run is refused and undone."""

from __future__ import annotations

import contextlib
import sys

from riffbridge.cli.serve import _ClockSources, _initial_state
from riffbridge.config import build
from riffbridge.control.hub import Hub
from riffbridge.state import SetParam


def test_clock_midi_without_a_midi_input_goes_back_to_internal():
    hub = Hub()
    pushed: list[tuple] = []
    hub.add_sink(lambda address, args: pushed.append((address, args)))
    clocks = _ClockSources(build(), hub, None, contextlib.ExitStack(), link_running=False)
    hub.submit(SetParam("clock", "midi"))
    clocks.check()
    assert hub.state.clock == "internal"
    assert ("/rb/error", ("/rb/clock", "clock midi needs a MIDI input: start riffbridge with "
                          "--midi-in NAME")) in pushed
    hub.submit(SetParam("bpm", 100.0))  # the tempo can be set by hand again
    assert hub.state.bpm == 100.0


def test_clock_link_without_aalink_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "aalink", None)
    hub = Hub()
    errors: list[tuple] = []
    hub.add_sink(lambda address, args: errors.append(args) if address == "/rb/error" else None)
    with contextlib.ExitStack() as stack:
        clocks = _ClockSources(build(), hub, None, stack, link_running=False)
        hub.submit(SetParam("clock", "link"))
        clocks.check()
    assert hub.state.clock == "internal"
    assert errors and errors[0][0] == "/rb/clock" and "riffbridge[link]" in errors[0][1]


def test_a_setlist_starts_on_its_first_pair():
    state = _initial_state(build(flags={"setlist": [["dub techno", "acid house"],
                                                     ["acid house", "ambient"]]}))
    assert (state.prompt_a, state.prompt_b) == ("dub techno", "acid house")


def test_midi_transport_starts_and_stops_playback_under_the_midi_clock():
    import mido

    from riffbridge.cli.serve import _open_midi
    from riffbridge.control.midi_port import MidiControl

    hub = Hub()
    hub.submit(SetParam("clock", "midi"))
    synced: list = []

    class FakeEngine:  # only the clock_sync edge: the engine's own tests cover the grid
        def clock_sync(self, sync):
            synced.append(sync)

    captured: dict = {}

    class FakeInput:
        def __init__(self, control, **kwargs):
            captured["control"] = control
            self.port_names = ["test"]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    import riffbridge.control.midi_port as midi_port

    original = midi_port.MidiInput
    midi_port.MidiInput = FakeInput  # the port needs a MIDI system; the wiring does not
    try:
        with contextlib.ExitStack() as stack:
            _open_midi(build(flags={"midi_in": "test"}), hub, FakeEngine(), stack)
    finally:
        midi_port.MidiInput = original
    control: MidiControl = captured["control"]
    control(mido.Message("start"), 1.0)
    assert hub.state.playing and synced and synced[-1].beat == 0.0
    control(mido.Message("stop"), 2.0)
    assert not hub.state.playing
    control(mido.Message("continue"), 3.0)
    assert hub.state.playing
