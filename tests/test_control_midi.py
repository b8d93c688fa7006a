"""MIDI: the mapping on literal mido messages, 14-bit pairs, learn, the clock, and a real virtual
port through a JACK server when one runs."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import mido
import pytest
from jack_check import NO_JACK, jack_running

from riffbridge.control.hub import Hub
from riffbridge.control.midi_clock import PPQN, ClockEvent, MidiClock
from riffbridge.control.midi_map import DEFAULT_MAP, MidiMapper, load_map, parse_map
from riffbridge.control.midi_port import JACK_BACKEND, MidiControl, MidiInput
from riffbridge.errors import ConfigError, ControlError
from riffbridge.state import MidiLearn, Play, RecallPreset, Render, SetParam, Stop


def cc(control: int, value: int, channel: int = 0) -> mido.Message:
    return mido.Message("control_change", control=control, value=value, channel=channel)


def test_the_default_map_puts_alpha_on_the_mod_wheel() -> None:
    mapper = MidiMapper(load_map(DEFAULT_MAP))
    assert mapper.handle(cc(1, 0)) == [SetParam("alpha", 0.0)]
    assert mapper.handle(cc(1, 127, channel=9)) == [SetParam("alpha", 1.0)]
    [cmd] = mapper.handle(cc(1, 64))
    assert isinstance(cmd, SetParam) and cmd.value == pytest.approx(64 / 127)
    assert mapper.handle(mido.Message("note_on", note=36, velocity=100)) == [Render()]
    assert mapper.handle(mido.Message("note_on", note=37, velocity=1)) == [Play()]
    assert mapper.handle(mido.Message("note_on", note=38, velocity=1)) == [Stop()]
    assert mapper.handle(mido.Message("note_on", note=36, velocity=0)) == []  # a note off
    assert mapper.handle(cc(2, 10)) == []


def test_the_default_map_has_a_fader_per_slot_weight_an_xy_pair_and_scene_pads(
        tmp_path: Path) -> None:
    from riffbridge import params as P
    from riffbridge.control.presets import PresetStore
    from riffbridge.state import EngineState, SavePreset

    mapper = MidiMapper(load_map(DEFAULT_MAP))
    faders = {}
    for control in range(128):
        for command in mapper.handle(cc(control, 127)):
            assert isinstance(command, SetParam)
            faders[command.name] = control
    assert {P.SLOT["weight"][n] for n in range(1, P.MAX_SLOTS + 1)} <= set(faders)
    assert (faders["x"], faders["y"]) == (16, 17)
    assert mapper.handle(cc(16, 64)) == [SetParam("x", pytest.approx(64 / 127))]
    scenes = [mapper.handle(mido.Message("note_on", note=n, velocity=90)) for n in range(40, 48)]
    assert scenes == [[RecallPreset(f"scene {i}")] for i in range(1, 9)]
    # a pad recalls its scene through the hub (the engine cues it on the next quantum)
    hub = Hub(EngineState(), presets=PresetStore(tmp_path / "p.toml"))
    hub.submit(SetParam("x", 1.0))
    hub.submit(SavePreset("scene 2"))
    hub.submit(SetParam("alpha", 0.5))
    for command in scenes[1]:
        hub.submit(command)
    assert (hub.state.mix, hub.state.x) == ("xy", 1.0)


def test_ranges_curves_ints_choices_channels_and_programs() -> None:
    mapper = MidiMapper(parse_map({
        "cc": [{"control": 20, "param": "bpm", "min": 60, "max": 180, "channel": 2},
               {"control": 21, "param": "steps", "min": 10, "max": 90, "curve": "exp"},
               {"control": 22, "param": "quantum"},
               {"control": 23, "param": "guidance", "curve": "square"}],
        "program": [{"program": 3, "preset": "dub"}, {"command": "render"}],
    }))
    assert mapper.handle(cc(20, 127, channel=1)) == [SetParam("bpm", 180.0)]
    assert mapper.handle(cc(20, 127, channel=0)) == []  # channel 2 only
    assert mapper.handle(cc(21, 0)) == [SetParam("steps", 10)]
    assert mapper.handle(cc(21, 64)) == [SetParam("steps", round(10 * 9 ** (64 / 127)))]
    assert [mapper.handle(cc(22, v))[0].value for v in (0, 50, 127)] == [  # type: ignore[union-attr]
        "beat", "bar", "loop"]
    assert mapper.handle(cc(23, 127)) == [SetParam("guidance", 30.0)]
    assert mapper.handle(mido.Message("program_change", program=3)) == [
        RecallPreset("dub"), Render()]
    assert mapper.handle(mido.Message("program_change", program=4)) == [Render()]


@pytest.mark.parametrize(("data", "fragment"), [
    ({"cc": [{"control": 1, "param": "volume"}]}, "unknown parameter 'volume'"),
    ({"cc": [{"control": 128, "param": "alpha"}]}, "control must be an int in [0, 127]"),
    ({"cc": [{"control": 1, "param": "prompt_a"}]}, "is text"),
    ({"cc": [{"control": 1, "param": "alpha", "min": "low"}]}, "numeric min"),
    ({"cc": [{"control": 1, "param": "alpha", "curve": "exp"}]}, "above 0"),
    ({"note": [{"note": 1, "command": "explode"}]}, "command must be one of"),
    ({"knobs": []}, "unknown sections"),
])
def test_bad_maps_are_refused_naming_the_entry(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match="MIDI map") as info:
        parse_map(data)
    assert fragment in str(info.value)


def test_14_bit_pairs_msb_then_lsb() -> None:
    mapper = MidiMapper(parse_map({"cc14": [{"msb": 16, "param": "bpm"}]}))
    assert mapper.handle(cc(48, 5)) == []  # an LSB before any MSB means nothing yet
    # 0x2A0B of 0x3FFF: the MSB alone gives LSB 0 (the MIDI spec), the LSB refines it
    first = mapper.handle(cc(16, 0x2A))
    second = mapper.handle(cc(48, 0x0B))
    assert first == [SetParam("bpm", 40 + 200 * (0x2A << 7) / 16383)]
    assert second == [SetParam("bpm", 40 + 200 * ((0x2A << 7) | 0x0B) / 16383)]
    assert mapper.handle(cc(16, 127)) + mapper.handle(cc(48, 127)) == [
        SetParam("bpm", 40 + 200 * (127 << 7) / 16383), SetParam("bpm", 240.0)]
    # a second channel keeps its own MSB
    mapper.handle(cc(16, 0, channel=3))
    assert mapper.handle(cc(48, 0, channel=3)) == [SetParam("bpm", 40.0)]
    assert mapper.handle(cc(48, 127)) == [SetParam("bpm", 240.0)]


def test_midi_learn_over_the_hub_binds_the_next_cc() -> None:
    hub = Hub()
    control = MidiControl(hub, MidiMapper())
    hub.submit(MidiLearn("denoise"))
    control(cc(74, 127), 0.0)  # the knob moved: learned and applied at once
    assert hub.state.denoise == 1.0
    control(cc(74, 0), 0.0)
    assert hub.state.denoise == 0.0
    control(cc(75, 127), 0.0)
    assert hub.state.denoise == 0.0  # only the learned knob
    with pytest.raises(ControlError, match="is text"):
        hub.submit(MidiLearn("prompt_a"))


def test_learn_replaces_an_earlier_binding_of_the_same_cc() -> None:
    mapper = MidiMapper(load_map(DEFAULT_MAP))
    mapper.learn("xfade")
    mapper.handle(cc(1, 0))
    assert mapper.handle(cc(1, 127)) == [SetParam("xfade", 10.0)]


def _clock_messages(bpm: float, beats: int, jitter: float, seed: int) -> list[tuple[float, str]]:
    rng = random.Random(seed)
    period = 60.0 / (bpm * PPQN)
    return [(i * period + rng.uniform(-jitter, jitter), "clock") for i in range(beats * PPQN)]


def test_clock_tempo_is_robust_to_jitter_and_follows_transport() -> None:
    clock = MidiClock()
    events = clock.feed(mido.Message("start"), 0.0)
    for t, kind in _clock_messages(128.0, 16, jitter=0.003, seed=1):  # +-3 ms on 19.5 ms pulses
        events += clock.feed(mido.Message(kind), t)
    tempos = [e.bpm for e in events if e.kind == "tempo"]
    assert tempos and all(abs(b - 128.0) < 1.0 for b in tempos if b is not None)
    assert clock.bpm == pytest.approx(128.0, abs=0.5)
    assert len(tempos) < 16  # a steady clock does not flood the engine
    assert clock.pulse == 16 * PPQN
    assert clock.feed(mido.Message("stop"), 9.0)[0].kind == "stop"
    [pos] = clock.feed(mido.Message("songpos", pos=8), 9.1)  # 8 sixteenths = 2 beats
    assert pos.beat == 2.0
    assert clock.feed(mido.Message("continue"), 9.2)[0].pulse == 48
    # a pause longer than a pulse at 20 BPM starts a new window: no tempo from the gap
    assert clock.feed(mido.Message("clock"), 60.0) == []


def test_a_clock_window_under_two_pulses_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="window must be at least 2 pulses, got 1"):
        MidiClock(window=1)


def test_clock_tempo_reaches_the_hub_only_when_the_clock_is_midi() -> None:
    hub = Hub()
    control = MidiControl(hub)
    events: list[ClockEvent] = []
    control.on_clock = events.append
    for t, kind in _clock_messages(100.0, 4, jitter=0.0, seed=0):
        control(mido.Message(kind), t)
    assert hub.state.bpm == 120.0 and events  # clock internal: bpm untouched
    hub.submit(SetParam("clock", "midi"))
    for t, kind in _clock_messages(100.0, 4, jitter=0.0, seed=0):
        control(mido.Message(kind), 10 + t)
    assert hub.state.bpm == pytest.approx(100.0, abs=0.01)




@pytest.mark.jack
@pytest.mark.skipif(not jack_running(), reason=NO_JACK)
def test_a_virtual_jack_port_drives_the_hub(tmp_path: Path) -> None:
    hub = Hub()
    name = f"riffbridge-test-{os.getpid()}"
    with MidiInput(MidiControl(hub, MidiMapper(load_map(DEFAULT_MAP))), virtual=True, api="jack",
                   virtual_name=name) as port:
        assert port.port_names
        jack = mido.Backend(JACK_BACKEND, load=True)
        targets = [n for n in jack.get_output_names() if name in n]
        assert targets, jack.get_output_names()
        with jack.open_output(targets[0]) as out:
            out.send(cc(1, 127))
            out.send(mido.Message("note_on", note=37, velocity=90))
            deadline = time.monotonic() + 10
            while not (hub.state.alpha == 1.0 and hub.state.playing):
                assert time.monotonic() < deadline, hub.state
                time.sleep(0.01)
