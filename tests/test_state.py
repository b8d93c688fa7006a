"""The engine state and its commands: pure values, checked on the way in."""

from __future__ import annotations

import math

import pytest

from riffbridge import styles
from riffbridge.control.osc_spec import OSC_SPEC
from riffbridge.errors import ControlError
from riffbridge.params import LIVE, MAX_PROMPT_CHARS
from riffbridge.state import (
    ApplyPreset,
    ClockTempo,
    EngineState,
    MidiLearn,
    Play,
    Render,
    SavePreset,
    SetParam,
    Stop,
    apply,
    changed_params,
)


def test_every_osc_param_is_a_state_field_with_a_valid_default() -> None:
    state = EngineState()
    names = {e.param for e in OSC_SPEC if e.kind == "param" and e.param}
    assert names == {p.name for p in LIVE}
    for name in names:
        # the default itself passes the checks (a control that selects the style mix's mode,
        # a weight or the XY point, also selects its mode: riffbridge.styles)
        new = apply(state, SetParam(name, getattr(state, name)))
        assert getattr(new, name) == getattr(state, name)
        if styles.mode_of(name) in (None, "ab"):
            assert new == state, name
    assert (state.alpha, state.denoise, state.guidance, state.steps) == (0.0, 0.75, 7.0, 50)
    assert (state.bpm, state.bars, state.beats_per_bar, state.quantum) == (120.0, 2, 4, "bar")
    assert (state.clock, state.pattern, state.xfade, state.playing) == (
        "internal", "four-on-the-floor", 0.05, False)


def test_set_returns_a_new_state_and_leaves_the_old_one() -> None:
    old = EngineState()
    new = apply(old, SetParam("alpha", 0.25))
    assert new.alpha == 0.25 and old.alpha == 0.0
    assert changed_params(old, new) == ["alpha"]
    with pytest.raises(AttributeError):
        new.alpha = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("alpha", 1.3, "alpha must be in [0, 1], got 1.3"),
    ("alpha", -0.1, "got -0.1"),
    ("alpha", math.nan, "finite"),
    ("alpha", math.inf, "finite"),
    ("bpm", 39.9, "[40, 240]"),
    ("bpm", "120", "must be a float"),
    ("alpha", True, "got bool"),
    ("steps", 20.5, "whole number"),
    ("steps", 0, "[1, 500]"),
    ("seed_a", -1, "seed_a must be in [0,"),
    ("seed_a", 2**31, "seed_a must be in [0, 2147483647], got 2147483648"),
    ("quantum", "bars", "one of beat, bar, loop"),
    ("clock", 1, "must be a string"),
    ("prompt_a", "x" * (MAX_PROMPT_CHARS + 1), f"at most {MAX_PROMPT_CHARS} characters"),
    ("pattern", "/etc/passwd", "absolute"),
    ("pattern", "../secret.png", "inside the seed folder"),
    ("pattern", "a/../../b.png", "inside the seed folder"),
    ("pattern", "C:\\x.png", "absolute"),
    ("pattern", "", "empty"),
    ("pattern", "kick\x7fsnare", "pattern must not contain control characters, got '\\x7f' at "
                                 "position 4 of 'kick\\x7fsnare'"),
    ("pattern", "c1\x85name", "control characters, got '\\x85'"),
    ("prompt_a", "del\x7f", "prompt_a must not contain control characters (tab and newline are "
                            "fine), got '\\x7f' at position 3"),
    ("prompt_b", "\x00", "got '\\x00' at position 0"),
    ("negative", "bell\x07", "control characters"),
    ("prompt_a", "vt\x0b ff\x0c", "got '\\x0b'"),
    ("prompt_a", "esc\x1b[31m", "got '\\x1b'"),
    ("nope", 1, "unknown parameter"),
])
def test_bad_values_are_refused_with_the_value_and_the_rule(name: str, value: object,
                                                            fragment: str) -> None:
    state = EngineState()
    with pytest.raises(ControlError) as info:
        apply(state, SetParam(name, value))
    assert fragment in str(info.value)
    assert state == EngineState()


def test_number_rules_ints_for_floats_and_integral_floats_for_ints() -> None:
    state = apply(EngineState(), SetParam("bpm", 90))
    assert state.bpm == 90.0 and isinstance(state.bpm, float)
    state = apply(state, SetParam("steps", 20.0))
    assert state.steps == 20 and isinstance(state.steps, int)
    assert apply(state, SetParam("prompt_a", "y" * MAX_PROMPT_CHARS)).prompt_a == "y" * 500


def test_prompts_may_span_lines_and_hold_c1_letters_names_may_not() -> None:
    text = "verse\tone\r\nchorus\n\x85 next line \u2028 \u00a0 ünïcode"
    assert apply(EngineState(), SetParam("prompt_a", text)).prompt_a == text
    assert apply(EngineState(), SetParam("pattern", "ünïcode groove")).pattern == "ünïcode groove"
    for name in ("a\tb", "a\nb", "a\x9fb", "a\x80b"):
        with pytest.raises(ControlError, match="preset name must not contain control characters"):
            apply(EngineState(), SavePreset(name))


def test_bpm_follows_an_external_clock() -> None:
    state = apply(EngineState(), SetParam("clock", "midi"))
    with pytest.raises(ControlError, match="set /rb/clock internal"):
        apply(state, SetParam("bpm", 100.0))
    assert apply(state, ClockTempo(127.5)).bpm == 127.5


def test_transport_and_commands_that_do_not_change_the_state() -> None:
    state = EngineState()
    assert apply(state, Play()).playing is True
    assert apply(apply(state, Play()), Stop()).playing is False
    assert apply(state, Render()) == state
    assert apply(state, MidiLearn("alpha")) == state
    with pytest.raises(ControlError, match="unknown parameter"):
        apply(state, MidiLearn("volume"))


def test_a_preset_applies_all_or_nothing() -> None:
    state = EngineState()
    good = apply(state, ApplyPreset("p", (("alpha", 0.5), ("prompt_b", "dub techno"))))
    assert (good.alpha, good.prompt_b) == (0.5, "dub techno")
    with pytest.raises(ControlError, match="preset 'q': bpm must be in"):
        apply(state, ApplyPreset("q", (("alpha", 0.5), ("bpm", 999.0))))
