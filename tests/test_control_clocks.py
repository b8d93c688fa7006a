"""/rb/clock changes the tempo source live; a source that cannot run is refused and undone; the
MIDI transport and Link readings reach the hub and the grid through the clock policy."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import mido

from riffbridge.cli.serve import initial_state
from riffbridge.config import build
from riffbridge.control.clocks import ClockSources, ClockSync, on_link_state, on_midi_clock
from riffbridge.control.hub import Hub
from riffbridge.control.link import LinkState
from riffbridge.control.midi_map import MidiMapper
from riffbridge.control.midi_port import MidiControl
from riffbridge.state import SetParam


def test_clock_midi_without_a_midi_input_goes_back_to_internal():
    hub = Hub()
    pushed: list[tuple] = []
    hub.add_sink(lambda address, args: pushed.append((address, args)))
    clocks = ClockSources(hub, lambda sync: None, midi_available=False)
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
    with ClockSources(hub, lambda sync: None, midi_available=False) as clocks:
        hub.submit(SetParam("clock", "link"))
        clocks.check()
        assert not clocks.link_running
    assert hub.state.clock == "internal"
    assert errors and errors[0][0] == "/rb/clock" and "riffbridge[link]" in errors[0][1]


def test_clock_link_is_joined_once_on_demand_and_left_on_close():
    opened: list[float] = []
    closed: list[bool] = []

    @contextlib.contextmanager
    def fake_link(bpm: float, on_state: Any):  # the Link session itself: tests/test_control_link
        opened.append(bpm)
        yield
        closed.append(True)

    hub = Hub()
    with ClockSources(hub, lambda sync: None, midi_available=False, open_link=fake_link) as c:
        hub.submit(SetParam("bpm", 97.0))
        hub.submit(SetParam("clock", "link"))
        c.check()
        c.check()
        assert opened == [97.0] and hub.state.clock == "link" and not closed
    assert closed == [True]


def test_link_readings_set_the_tempo_and_the_phase_only_under_the_link_clock():
    hub = Hub()
    synced: list[ClockSync] = []
    reading = LinkState(bpm=128.0, beat=3.5, time=10.0, peers=1, playing=True)
    on_link_state(hub, synced.append, reading)
    assert synced == [] and hub.state.bpm == 120.0  # clock internal: Link is ignored
    hub.submit(SetParam("clock", "link"))
    on_link_state(hub, synced.append, reading)
    assert hub.state.bpm == 128.0
    assert synced == [ClockSync(3.5, 10.0, 128.0, "link")]


def test_a_setlist_starts_on_its_first_pair():
    state = initial_state(build(flags={"setlist": [["dub techno", "acid house"],
                                                    ["acid house", "ambient"]]}))
    assert (state.prompt_a, state.prompt_b) == ("dub techno", "acid house")


def test_midi_transport_starts_and_stops_playback_under_the_midi_clock():
    hub = Hub()
    hub.submit(SetParam("clock", "midi"))
    synced: list[ClockSync] = []
    control = MidiControl(hub, MidiMapper(), lambda e: on_midi_clock(hub, synced.append, e))
    control(mido.Message("start"), 1.0)
    assert hub.state.playing and synced and synced[-1].beat == 0.0
    control(mido.Message("stop"), 2.0)
    assert not hub.state.playing
    control(mido.Message("continue"), 3.0)
    assert hub.state.playing
    hub.submit(SetParam("clock", "internal"))
    control(mido.Message("stop"), 4.0)
    assert hub.state.playing  # the internal clock: the DAW's transport does not run the show
