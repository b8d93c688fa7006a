"""Style slots, the XY surface and their control: the mix's mode rules, bad input, OSC routes and
feedback, presets, the loop key, and the lattice planner in the core. Pure, except the last two
tests, which render with the tiny model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from riffbridge import params as P
from riffbridge import styles
from riffbridge.control.hub import Hub
from riffbridge.control.presets import PresetStore
from riffbridge.control.routes import Do, QueryGroup, route
from riffbridge.engine.core import EngineCore
from riffbridge.engine.plan import Choice, LoopKey, choose, key_for, plan, xy_walk
from riffbridge.errors import ControlError
from riffbridge.events import Request
from riffbridge.state import (
    ApplyPreset,
    EngineState,
    Play,
    RecallPreset,
    SavePreset,
    SetMany,
    SetParam,
    apply,
)


def weights_of(state: EngineState) -> list[float]:
    return [getattr(state, f"weight_{n}") for n in range(1, P.MAX_SLOTS + 1)]


# ---- the mix's mode rules ----------------------------------------------------------------------

def test_alpha_is_the_two_slot_case() -> None:
    state = apply(EngineState(), SetParam("alpha", 0.25))
    assert (state.mix, state.slots) == ("ab", 2)
    assert styles.weights(state.as_dict()) == (0.75, 0.25)
    assert [w for _, _, w in styles.styles(state.as_dict())] == [0.75, 0.25]


def test_a_weight_starts_from_what_sounds_and_extends_the_slots() -> None:
    state = apply(EngineState(), SetParam("alpha", 0.3))
    state = apply(state, SetParam("weight_5", 0.5))
    assert state.mix == "weights" and state.slots == 5
    assert weights_of(state)[:5] == [0.7, 0.3, 0.0, 0.0, 0.5]
    mix = styles.styles(state.as_dict())
    assert [(s, w) for _, s, w in mix] == [(42, 0.466667), (43, 0.2), (46, 0.333333)]
    # /rb/alpha goes back to A/B, whatever the weights say
    back = apply(state, SetParam("alpha", 0.5))
    assert (back.mix, back.slots) == ("ab", 2)


def test_xy_sets_bilinear_corner_weights() -> None:
    state = apply(EngineState(), SetMany((("x", 0.25), ("y", 0.5))))
    assert (state.mix, state.slots) == ("xy", 4)
    assert styles.weights(state.as_dict()) == pytest.approx((0.375, 0.125, 0.375, 0.125))
    for (x, y), corner in (((0, 0), 1), ((1, 0), 2), ((0, 1), 3), ((1, 1), 4)):
        at = apply(state, SetMany((("x", x), ("y", y))))
        mix = styles.styles(at.as_dict())
        assert mix == ((getattr(at, P.SLOT["prompt"][corner]),
                        getattr(at, P.SLOT["seed"][corner]), 1.0),)


def test_weights_are_normalised_in_the_key() -> None:
    base = EngineState(mix="weights", slots=3)
    a = base.replace(weight_1=0.2, weight_2=0.2, weight_3=0.4)
    b = base.replace(weight_1=0.5, weight_2=0.5, weight_3=1.0)
    assert key_for(a) == key_for(b)
    assert [w for _, _, w in key_for(a).styles] == [0.25, 0.25, 0.5]
    # alpha 0.25 on the A/B path is the same loop as weights (3, 1): one cache entry
    ab = key_for(EngineState(alpha=0.25))
    assert ab == key_for(base.replace(slots=2, weight_1=0.75, weight_2=0.25))
    # a slot at weight 0 plays no part: its prompt does not split the cache
    assert key_for(a.replace(weight_3=0.0, prompt_3="zz")) == key_for(a.replace(weight_3=0.0))
    assert key_for(a.replace(prompt_3="zz")) != key_for(a)
    # slots past the count play no part either
    assert key_for(a.replace(weight_4=1.0, prompt_4="zz")) == key_for(a)


@pytest.mark.parametrize(("command", "words"), [
    (SetMany((("weight_1", 0.0), ("weight_2", 0.0))), "must not all be 0, got [0.0, 0.0"),
    (SetParam("weight_2", -0.5), "weight_2 must be in [0, 1], got -0.5"),
    (SetParam("weight_3", math.nan), "weight_3 must be a finite number in [0, 1], got nan"),
    (SetParam("slots", 9), "slots must be in [2, 8], got 9"),
    (SetMany((("x", 0.5), ("y", 1.5))), "y must be in [0, 1], got 1.5"),
    (ApplyPreset("p", (("mix", "weights"), ("weight_1", 0.0), ("weight_2", 0.0))),
     "preset 'p': the style weights must not all be 0"),
])
def test_bad_mixes_are_refused_naming_the_value(command: Any, words: str) -> None:
    state = apply(EngineState(), SetMany((("weight_1", 0.5), ("weight_2", 0.0))))
    with pytest.raises(ControlError) as err:
        apply(state, command)
    assert words in str(err.value)


def test_zeroing_the_last_weight_is_refused_and_nothing_changes() -> None:
    hub = Hub(EngineState())
    hub.submit(SetParam("weight_2", 0.0))  # weights mode, (1, 0)
    before = hub.state
    with pytest.raises(ControlError, match="must not all be 0"):
        hub.submit(SetParam("weight_1", 0.0))
    assert hub.state == before


# ---- OSC ----------------------------------------------------------------------------------------

def test_slot_addresses_route_to_their_params() -> None:
    assert route("/rb/slot/3/prompt", ["dub"]) == Do(SetParam("prompt_3", "dub"))
    assert route("/rb/slot/1/prompt", ["x"]) == Do(SetParam("prompt_a", "x"))
    assert route("/rb/slot/2/seed", [7.0]) == Do(SetParam("seed_b", 7))
    assert route("/rb/slot/8/weight", [1]) == Do(SetParam("weight_8", 1.0))
    assert route("/rb/slots", [3]) == Do(SetParam("slots", 3))
    assert route("/rb/xy", [0.25, 0.75]) == Do(SetMany((("x", 0.25), ("y", 0.75))))
    assert route("/rb/xy", []) == QueryGroup(("x", "y"), "/rb/xy")


@pytest.mark.parametrize(("address", "args", "words"), [
    ("/rb/slot/9/weight", [0.5], "slot '9' is out of range: style slots are 1 to 8"),
    ("/rb/slot/0/prompt", ["x"], "slot '0' is out of range"),
    ("/rb/slot/x/seed", [1], "slot 'x' is out of range"),
    ("/rb/slot/3/volume", [1.0], "a style slot has no 'volume'"),
    ("/rb/slot/3/weight", [-1.0], "weight_3 must be in [0, 1], got -1.0"),
    ("/rb/slot/3/weight", [float("nan")], "got nan"),
    ("/rb/xy", [0.5], "/rb/xy takes a float a float, got 1 argument"),
    ("/rb/xy", [0.5, "a"], "y must be a float"),
])
def test_bad_slot_messages_are_refused(address: str, args: list[Any], words: str) -> None:
    with pytest.raises(ControlError) as err:
        route(address, args)
    assert words in str(err.value)


def test_subscribers_hear_every_address_of_a_change() -> None:
    hub = Hub(EngineState())
    heard: list[tuple[str, tuple[Any, ...]]] = []
    hub.add_sink(lambda address, args: heard.append((address, args)))
    hub.submit(SetParam("prompt_a", "dub"))
    assert ("/rb/prompt/a", ("dub",)) in heard and ("/rb/slot/1/prompt", ("dub",)) in heard
    heard.clear()
    hub.submit(SetMany((("x", 0.5), ("y", 0.25))))
    assert ("/rb/xy", (0.5, 0.25)) in heard
    assert ("/rb/x", (0.5,)) in heard and ("/rb/mix", ("xy",)) in heard
    assert ("/rb/slots", (4,)) in heard
    assert [a for a, _ in heard].count("/rb/xy") == 1


def test_presets_store_and_recall_the_slots(tmp_path: Path) -> None:
    store = PresetStore(tmp_path / "presets.toml")
    hub = Hub(EngineState(), presets=store)
    hub.submit(SetParam("prompt_5", "steel drums"))
    hub.submit(SetParam("weight_5", 0.8))
    hub.submit(SavePreset("five"))
    saved = hub.state
    hub.submit(SetMany((("x", 1.0), ("y", 1.0))))
    hub.submit(SetParam("prompt_5", "kazoo"))
    assert hub.state != saved
    hub.submit(RecallPreset("five"))
    assert hub.state == saved and hub.state.mix == "weights" and hub.state.slots == 5
    # from the file, in a fresh store
    again = Hub(EngineState(), presets=PresetStore(tmp_path / "presets.toml"))
    again.submit(RecallPreset("five"))
    assert key_for(again.state) == key_for(saved)


def test_an_old_preset_with_alpha_only_recalls_the_ab_path() -> None:
    state = apply(EngineState(), SetMany((("x", 1.0), ("y", 0.0))))
    back = apply(state, ApplyPreset("old", (("alpha", 0.5), ("prompt_a", "jazz"))))
    assert (back.mix, back.slots) == ("ab", 2)


# ---- the lattice planner (pure) -----------------------------------------------------------------

def xy_state(x: float, y: float, **kw: Any) -> EngineState:
    return apply(EngineState(**kw), SetMany((("x", x), ("y", y))))


def points(keys: list[LoopKey]) -> list[tuple[float, float]]:
    return [k.point for k in keys]


def test_the_lattice_plan_is_the_point_its_cell_then_ahead() -> None:
    state = xy_state(0.3, 0.6)
    keys = plan(state, 1, xy_direction=(1.0, 0.0), xy_grid=4, lookahead=3)
    assert points(keys) == [(0.3, 0.6),  # the exact point first
                            (0.25, 0.5), (0.25, 0.75), (0.5, 0.5), (0.5, 0.75),  # its cell
                            (0.75, 0.5), (0.75, 0.75),  # the cell ahead, to the right
                            (1.0, 0.5), (1.0, 0.75)]  # and the one after (then the edge)
    assert all(k.mix == "xy" for k in keys)
    # moving up instead: the lattice ahead is above
    up = points(plan(state, 1, xy_direction=(0.0, 1.0), xy_grid=4))
    assert up[5:] == [(0.25, 1.0), (0.5, 1.0)]
    # on a lattice point the cell's corner is the point: no duplicate
    on = points(plan(xy_state(0.5, 0.5), 1, xy_direction=(-1.0, -1.0), xy_grid=4))
    assert on[0] == (0.5, 0.5) and len(on) == len(set(on))
    assert (0.25, 0.25) in on and (0.0, 0.0) in on  # down-left, the way it moved


def test_the_lattice_plan_keeps_to_the_surface_and_follows_the_grid() -> None:
    for x, y in ((0.0, 0.0), (1.0, 1.0), (0.99, 0.01)):
        for d in ((1.0, 1.0), (-1.0, 0.0)):
            for p in points(plan(xy_state(x, y), 1, xy_direction=d, xy_grid=8)):
                assert 0.0 <= p[0] <= 1.0 and 0.0 <= p[1] <= 1.0
    fine = points(plan(xy_state(0.3, 0.6), 1, xy_direction=(1.0, 0.0), xy_grid=8))
    assert fine[1:5] == [(0.25, 0.625), (0.375, 0.625), (0.25, 0.5), (0.375, 0.5)]


def test_the_auto_walk_on_the_surface_plans_its_path() -> None:
    state = xy_state(0.75, 0.5, auto=0.125)
    walk = [xy_walk(0.75, 0.5, 0.125)]
    assert walk[0] == pytest.approx((0.5 + 0.25 * math.cos(math.pi / 4),
                                     0.5 + 0.25 * math.sin(math.pi / 4)), abs=1e-3)
    planned = points(plan(state, 1, xy_direction=(0.0, 0.0), xy_grid=4))
    assert (0.75, 0.75) in planned  # the walk's next point, on the lattice


def test_choose_blends_the_two_nearest_rendered_lattice_points() -> None:
    state = xy_state(0.3, 0.5, playing=True)
    rendered: set[LoopKey] = set()
    assert choose(state, rendered.__contains__) is None
    exact = key_for(state)
    left, right = exact.at_xy(0.25, 0.5), exact.at_xy(0.5, 0.5)
    rendered |= {left, exact.at_xy(1.0, 1.0)}
    assert choose(state, rendered.__contains__) == Choice(left)  # the far one is not near
    rendered.add(right)
    choice = choose(state, rendered.__contains__)
    assert choice is not None and choice.low == left and choice.high == right
    assert choice.weight == pytest.approx(0.05 / 0.25)
    rendered.add(exact)
    assert choose(state, rendered.__contains__) == Choice(exact)


def test_a_weights_mix_plays_its_exact_render_only() -> None:
    state = apply(EngineState(playing=True), SetParam("weight_3", 0.5))
    assert plan(state, 1) == [key_for(state)]
    assert choose(state, lambda k: k != key_for(state)) is None


def test_the_core_plans_the_lattice_in_the_direction_of_motion() -> None:
    hub = Hub(EngineState())
    changes = hub.events()
    core = EngineCore(hub.state, 44100, xy_grid=4)
    hub.submit(SetMany((("x", 0.3), ("y", 0.6))))
    core.on_change(changes.get_nowait(), 0)
    hub.submit(SetMany((("x", 0.35), ("y", 0.6))))  # moving right
    core.on_change(changes.get_nowait(), 0)
    wanted = points(list(core.wanted()))
    assert wanted[0] == (0.35, 0.6) and wanted[5:7] == [(0.75, 0.5), (0.75, 0.75)]
    rendered = {k for k in core.wanted() if k.point in ((0.25, 0.5), (0.5, 0.5))}
    assert core.next_render(rendered.__contains__, True, 0.0) == key_for(hub.state)
    hub.submit(Play())
    core.on_change(changes.get_nowait(), 0)
    cue = core.playback(rendered.__contains__, 0, 0)
    assert cue is not None and cue.choice is not None and cue.choice.high is not None
    assert cue.label.startswith("blend xy 0.25,0.5|0.5,0.5")


def test_the_core_walks_the_surface_in_auto_mode() -> None:
    state = xy_state(0.75, 0.5, auto=0.25, playing=True)
    core = EngineCore(state, 1000, block=16)
    key = key_for(state)
    assert core.playback({key}.__contains__, 0, 0) is not None
    assert core.auto(0) is None  # arms at the next loop boundary
    frames_per_loop = int(core.grid.frames_per_beat * 8)
    step = core.auto(frames_per_loop)
    assert isinstance(step, Request)
    assert step.command == SetMany((("x", 0.5), ("y", 0.75)))


# ---- rendering with the tiny model --------------------------------------------------------------

@pytest.fixture(scope="module")
def renderer() -> Any:
    from riffbridge.render.riffuse import Renderer

    return Renderer("tiny", device="cpu")


def loop_bytes(renderer: Any, state: EngineState) -> bytes:
    from riffbridge.pipeline import LoopRequest, make_loop

    return np.asarray(make_loop(renderer, LoopRequest(key_for(state))).audio).tobytes()


def test_same_slots_weights_seeds_give_the_same_loop_bytes(renderer: Any) -> None:
    base = EngineState(steps=2, bars=1, bpm=120.0)
    mixed = apply(base, SetMany((("weight_1", 0.5), ("weight_2", 0.2), ("weight_3", 0.3))))
    first = loop_bytes(renderer, mixed)
    renderer.forget_prompts()
    assert loop_bytes(renderer, mixed) == first
    # the same mix, set with weights at twice the scale: the same bytes (normalised)
    double = apply(base, SetMany((("weight_1", 1.0), ("weight_2", 0.4), ("weight_3", 0.6))))
    assert loop_bytes(renderer, double) == first


def test_two_slots_at_one_minus_a_and_a_are_the_ab_loop_byte_for_byte(renderer: Any) -> None:
    for a in (0.625,):
        ab = EngineState(steps=2, bars=1, alpha=a)
        slots = apply(EngineState(steps=2, bars=1),
                      SetMany((("weight_1", 1 - a), ("weight_2", a))))
        assert slots.mix == "weights" and key_for(slots).mix == "weights"
        assert loop_bytes(renderer, ab) == loop_bytes(renderer, slots)


def test_a_config_whose_weights_cannot_sound_is_refused(tmp_path: Path) -> None:
    from riffbridge.config import build
    from riffbridge.errors import ConfigError

    path = tmp_path / "rb.toml"
    path.write_text('mix = "weights"\nslots = 3\nweight_1 = 0.0\n')
    with pytest.raises(ConfigError, match="style weights must not all be 0"):
        build(path)
    path.write_text('mix = "xy"\nx = 0.5\ny = 0.25\nprompt_4 = "gamelan"\n')
    state = EngineState(**build(path).initial_state())
    assert key_for(state).styles[-1] == ("gamelan", 45, 0.125)
