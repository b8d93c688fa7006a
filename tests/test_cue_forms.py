"""The cue bus's XY and slot-weights forms (``/rb/cue/xy``, ``/rb/cue/weights``): the core's
decisions driven directly, the refusals over real OSC, and a live engine with the tiny model
whose 4-channel device has the master on 1-2 and the cue bus on 3-4."""

from __future__ import annotations

import time
from typing import Any

import pytest
from engine_helpers import RATE, check_commit, running_cue_engine, wait_for
from osc_helpers import Listener
from pythonosc.udp_client import SimpleUDPClient

from riffbridge.control.feedback import to_osc
from riffbridge.control.hub import Change, Hub
from riffbridge.control.osc_server import OscServer
from riffbridge.control.routes import Do, route
from riffbridge.engine.core import EngineCore
from riffbridge.engine.plan import key_for
from riffbridge.errors import ControlError
from riffbridge.events import CuePlaying, Request
from riffbridge.state import (
    Command,
    CueAlpha,
    CueCommit,
    CueWeights,
    CueXY,
    EngineState,
    SetMany,
    SetParam,
    apply,
)
from riffbridge.web import protocol


def _change(core: EngineCore, command: Command) -> Change:
    return Change(command, core.state, (), "osc")


def _on_surface(x: float, y: float, **values: Any) -> EngineState:
    """A playing state on the XY surface at (x, y), as /rb/xy leaves it."""
    return apply(EngineState(playing=True, **values), SetMany((("x", x), ("y", y))))


def test_an_xy_candidate_blends_its_lattice_neighbours_then_plays_its_exact_point() -> None:
    state = _on_surface(0.0, 0.0)
    core = EngineCore(state, RATE, xy_grid=4)
    cached = {key_for(state)}
    master = core.playback(cached.__contains__, 0, 0)
    assert master is not None and master.label == "xy 0,0"
    core.on_change(_change(core, CueXY(0.3, 0.6)), 100)
    exact = key_for(state.replace(x=0.3, y=0.6))
    assert core.cue_key() == exact
    assert core.next_render(cached.__contains__, True, 0.0) == exact  # rendered first
    assert core.cue_playback(cached.__contains__, 100) is None  # no neighbour yet: quiet
    cached |= {exact.at_xy(0.25, 0.5), exact.at_xy(0.25, 0.75)}  # two lattice neighbours
    blend = core.cue_playback(cached.__contains__, 200)
    assert blend is not None and blend.choice is not None and blend.choice.high is not None
    assert {blend.choice.low.point, blend.choice.high.point} == {(0.25, 0.5), (0.25, 0.75)}
    news = core.cue_news(blend)
    assert news is not None and news.mix == "xy" and news.point is not None
    assert news.point[0] == pytest.approx(0.25) and 0.5 < news.point[1] < 0.75
    assert to_osc(news) == ("/rb/cue/playing/xy", news.point)
    assert core.playback(cached.__contains__, 300, 1) is None  # the master plays on
    cached.add(exact)
    then = core.cue_playback(cached.__contains__, 400)
    assert then is not None and then.choice is not None and then.choice.low == exact \
        and then.choice.high is None and then.label == "xy 0.3,0.6"
    assert core.playback(cached.__contains__, 500, 1) is None  # still the master's own loop
    core.on_change(_change(core, CueCommit()), 600)
    request = core.commit()
    assert request == Request(SetMany((("x", 0.3), ("y", 0.6))))
    # the hub applies the request: the master goes to the cued point, whose render is cached
    assert isinstance(request, Request)
    after = apply(core.state, request.command)
    core.on_change(Change(request.command, after, ("x", "y"), "engine"), 700)
    switch = core.playback(cached.__contains__, 800, 1)
    assert switch is not None and switch.choice is not None and switch.choice.low == exact
    silence = core.cue_playback(cached.__contains__, 900)  # the cue bus goes quiet
    assert silence is not None and silence.choice is None


def test_an_xy_candidate_on_an_ab_master_auditions_the_surface_and_commit_moves_it() -> None:
    state = EngineState(alpha=1.0, playing=True)  # the A/B path, at B
    core = EngineCore(state, RATE)
    cached = {key_for(state)}
    assert core.playback(cached.__contains__, 0, 0) is not None
    core.on_change(_change(core, CueXY(1.0, 0.0)), 100)
    key = core.cue_key()
    assert key is not None and key.mix == "xy" and key.point == (1.0, 0.0)
    # the surface's corner (1, 0) is slot 2 alone: the same mix, so the same loop as alpha 1
    assert key == key_for(state)
    audition = core.cue_playback(cached.__contains__, 200)
    assert audition is not None and audition.choice is not None and audition.choice.low == key
    core.on_change(_change(core, CueCommit()), 300)
    request = core.commit()
    assert isinstance(request, Request)
    after = apply(core.state, request.command)
    assert (after.mix, after.slots, after.x, after.y) == ("xy", 4, 1.0, 0.0)


def test_a_weights_candidate_renders_first_and_plays_only_its_exact_mix() -> None:
    state = EngineState(alpha=0.0, playing=True)
    core = EngineCore(state, RATE)
    cached = {key_for(state)}
    assert core.playback(cached.__contains__, 0, 0) is not None
    core.on_change(_change(core, CueWeights((0.5, 0.25, 0.25))), 100)
    mix = apply(state, SetMany((("slots", 3), ("weight_1", 0.5), ("weight_2", 0.25),
                                ("weight_3", 0.25))))
    assert (mix.mix, mix.slots) == ("weights", 3)
    exact = key_for(mix)
    assert core.cue_key() == exact
    assert core.next_render(cached.__contains__, True, 0.0) == exact
    assert core.cue_playback(cached.__contains__, 200) is None  # a mix has no path to blend
    cached.add(exact)
    audition = core.cue_playback(cached.__contains__, 300)
    assert audition is not None and audition.choice is not None
    assert audition.choice.low == exact and audition.choice.high is None
    news = core.cue_news(audition)
    assert news == CuePlaying(0.0, "mix 0.5/0.25/0.25", "weights", weights=(0.5, 0.25, 0.25))
    assert to_osc(news) == ("/rb/cue/playing/weights", (0.5, 0.25, 0.25))
    assert protocol.event_message(news) == {
        "type": "event", "kind": "cue", "mix": "weights", "alpha": 0.0, "point": None,
        "weights": [0.5, 0.25, 0.25], "label": "mix 0.5/0.25/0.25"}
    assert core.playback(cached.__contains__, 400, 1) is None  # the master plays on
    core.on_change(_change(core, CueCommit()), 500)
    request = core.commit()
    assert request == Request(SetMany((("slots", 3), ("weight_1", 0.5), ("weight_2", 0.25),
                                       ("weight_3", 0.25))))
    assert isinstance(request, Request) and apply(state, request.command) == mix


def test_a_new_candidate_replaces_the_last_whatever_its_form() -> None:
    state = EngineState(playing=True)
    core = EngineCore(state, RATE)
    core.on_change(_change(core, CueXY(0.5, 0.5)), 0)
    core.on_change(_change(core, CueWeights((1.0, 1.0))), 0)
    core.on_change(_change(core, CueCommit()), 0)
    assert core.commit() == Request(SetMany((("slots", 2), ("weight_1", 1.0),
                                             ("weight_2", 1.0))))
    core.on_change(_change(core, CueXY(0.5, 0.5)), 0)
    core.on_change(_change(core, CueAlpha(0.25)), 0)
    core.on_change(_change(core, CueCommit()), 0)
    assert core.commit() == Request(SetParam("alpha", 0.25))


def test_the_cue_forms_route_and_are_checked() -> None:
    assert route("/rb/cue/xy", [0.25, 1]) == Do(CueXY(0.25, 1.0))
    assert route("/rb/cue/weights", [1, 0.5]) == Do(CueWeights((1.0, 0.5)))
    assert route("/rb/cue/weights", [0.125] * 8) == Do(CueWeights((0.125,) * 8))
    for bad in (CueXY(0.5, float("nan")), CueWeights((0.0, 0.0)), CueWeights((0.5,)),
                CueWeights((0.5, 1.5))):
        with pytest.raises(ControlError):
            apply(EngineState(), bad)


@pytest.mark.parametrize(("address", "args", "fragment"), [
    ("/rb/cue/xy", [0.5, float("nan")], "/rb/cue/xy y must be a finite number in [0, 1], "
                                        "got nan"),
    ("/rb/cue/xy", [1.5, 0.5], "/rb/cue/xy x must be in [0, 1], got 1.5"),
    ("/rb/cue/xy", [0.5], "/rb/cue/xy takes a float a float, got 1 argument(s)"),
    ("/rb/cue/xy", ["a", 0.5], "/rb/cue/xy x must be a float"),
    ("/rb/cue/weights", [0.5], "takes 2 to 8 floats (one per style slot from slot 1), got 1"),
    ("/rb/cue/weights", [0.1] * 9, "takes 2 to 8 floats"),
    ("/rb/cue/weights", [0.0, 0.0, 0.0], "the weights must not all be 0, got [0.0, 0.0, 0.0]; "
                                         "give at least one slot a weight above 0"),
    ("/rb/cue/weights", [0.5, -0.25], "weight 2 (slot 2) must be in [0, 1], got -0.25"),
    ("/rb/cue/weights", [float("inf"), 0.5], "weight 1 (slot 1) must be a finite number"),
])
def test_bad_cue_input_gets_an_error_and_changes_nothing(
        replies: Listener, address: str, args: list[Any], fragment: str) -> None:
    hub = Hub()
    seen: list[Change] = []
    hub.add_listener(seen.append)
    before = hub.state
    with OscServer(hub, host="127.0.0.1", port=0, reply_port=replies.port) as server:
        client = SimpleUDPClient(*server.address)
        client.send_message(address, args)
        got, (where, reason) = replies.get()
        assert (got, where) == ("/rb/error", address)
        assert fragment in reason, reason
        client.send_message("/rb/ping", [])
        replies.wait_for("/rb/pong")  # still serving
    assert hub.state == before and not seen  # nothing reached the engine


def test_engine_cue_xy_loops_the_point_on_the_cue_bus_and_commit_moves_the_master() -> None:
    state = _on_surface(0.0, 0.0, steps=2, bars=1, quantum="bar", xfade=0.05)
    with running_cue_engine(state) as live:
        hub, player, engine = live.hub, live.player, live.engine
        hub.submit(CueXY(1.0, 1.0))
        heard = wait_for(lambda: [e for e in live.log.of(CuePlaying) if e.point == (1.0, 1.0)],
                         90, "/rb/cue/playing/xy 1 1")
        assert heard[-1].mix == "xy" and heard[-1].label == "xy 1,1"
        cue = player.cue_bus
        assert cue is not None and cue.label == "xy 1,1"
        time.sleep(1.0)
        assert engine.sounded[-1][2] is live.master and (hub.state.x, hub.state.y) == (0.0, 0.0)
        tokens = player.applied_token
        hub.submit(CueCommit())
        wait_for(lambda: player.applied_token > tokens, 10, "the commit to sound")
        assert (hub.state.mix, hub.state.x, hub.state.y) == ("xy", 1.0, 1.0)  # x/y follow
        time.sleep(1.5)
    assert engine.sounded[-1][2].label == "xy 1,1"
    check_commit(live, cue, after_frames=RATE // 2)


def test_engine_cue_weights_loops_the_mix_on_the_cue_bus_and_commit_sets_the_weights() -> None:
    state = EngineState(steps=2, bars=1, playing=True, quantum="bar", xfade=0.05)
    with running_cue_engine(state) as live:
        hub, player, engine = live.hub, live.player, live.engine
        hub.submit(CueWeights((0.5, 0.0, 0.5)))
        heard = wait_for(lambda: live.log.of(CuePlaying), 90, "/rb/cue/playing/weights")
        assert heard[-1].mix == "weights" and heard[-1].weights == (0.5, 0.0, 0.5)
        cue = player.cue_bus
        assert cue is not None and cue.label == "mix 0.5/0.5"
        time.sleep(1.0)
        assert engine.sounded[-1][2] is live.master and hub.state.mix == "ab"
        tokens = player.applied_token
        hub.submit(CueCommit())
        wait_for(lambda: player.applied_token > tokens, 10, "the commit to sound")
        s = hub.state
        assert (s.mix, s.slots, s.weight_1, s.weight_2, s.weight_3) == ("weights", 3, 0.5,
                                                                          0.0, 0.5)
        time.sleep(1.5)
    assert engine.sounded[-1][2].label == "mix 0.5/0.5"
    check_commit(live, cue, after_frames=RATE // 2)
