"""The cue bus: the core's decisions driven directly, and a live engine whose device has the
master on channels 1-2 and the cue bus on 3-4 (``ChannelSplit``), every channel kept."""

from __future__ import annotations

import threading
import time

import pytest
from engine_helpers import RATE, check_commit, running_cue_engine, wait_for

from riffbridge.control.hub import Change
from riffbridge.control.routes import Do, route
from riffbridge.engine.core import EngineCore
from riffbridge.engine.plan import key_for
from riffbridge.errors import ConfigError, ControlError
from riffbridge.events import CuePlaying, EngineError, Request
from riffbridge.outputs.cue_bus import parse_cue_channels
from riffbridge.state import Command, CueAlpha, CueCommit, EngineState, SetParam, apply


def _change(core: EngineCore, command: Command) -> Change:
    return Change(command, core.state, (), "osc")


def test_the_core_renders_and_plays_the_candidate_without_touching_the_master() -> None:
    state = EngineState(alpha=0.0, playing=True)
    core = EngineCore(state, RATE)
    cached = {key_for(state)}
    master = core.playback(cached.__contains__, 0, 0)
    assert master is not None and master.choice is not None
    core.on_change(_change(core, CueAlpha(0.75)), 100)
    candidate = key_for(state, 0.75)
    assert core.next_render(cached.__contains__, True, 0.0) == candidate  # rendered first
    assert core.cue_playback(cached.__contains__, 100) is None  # nothing to play yet
    cached.add(candidate)
    audition = core.cue_playback(cached.__contains__, 200)
    assert audition is not None and audition.choice is not None
    assert audition.choice.low == candidate and audition.phase == pytest.approx(
        ((200 + 512 + int(0.005 * RATE)) / (RATE / 2)) % 8 / 8, abs=1e-6)
    assert core.cue_playback(cached.__contains__, 300) is None  # the same: no new cue
    assert core.playback(cached.__contains__, 300, 1) is None  # the master plays on
    assert core.commit() is None
    core.on_change(_change(core, CueCommit()), 400)
    assert core.commit() == Request(SetParam("alpha", 0.75))
    assert core.commit() is None
    silence = core.cue_playback(cached.__contains__, 500)  # the cue bus goes quiet
    assert silence is not None and silence.choice is None
    core.on_change(_change(core, CueCommit()), 600)
    refused = core.commit()
    assert isinstance(refused, EngineError) and "send /rb/cue/alpha first" in refused.message


def test_cue_commands_are_checked() -> None:
    assert route("/rb/cue/alpha", [0.5]) == Do(CueAlpha(0.5))
    assert route("/rb/cue/commit", []) == Do(CueCommit())
    with pytest.raises(ControlError, match=r"alpha must be in \[0, 1\], got 1.5"):
        route("/rb/cue/alpha", [1.5])
    with pytest.raises(ControlError):
        apply(EngineState(), CueAlpha(-1.0))
    assert parse_cue_channels("3, 4") == (3, 4)
    for bad in ("1,2", "3", "3,3", "a,b", "3,4,5"):
        with pytest.raises(ConfigError, match="cue_channels must be two different"):
            parse_cue_channels(bad)


def test_cue_bus_plays_the_candidate_in_time_and_commit_lands_on_the_quantum() -> None:
    state = EngineState(steps=2, bars=1, playing=True, quantum="bar", xfade=0.05)
    with running_cue_engine(state) as live:
        hub, player = live.hub, live.player
        hub.submit(CueAlpha(1.0))
        cue = wait_for(lambda: player.cue_bus, 90, "the candidate on the cue bus")
        heard = wait_for(lambda: live.log.of(CuePlaying), 5, "/rb/cue/playing")
        assert heard[0].alpha == 1.0
        time.sleep(1.0)
        tokens = player.applied_token
        hub.submit(CueCommit())
        wait_for(lambda: player.applied_token > tokens, 10, "the commit to sound")
        time.sleep(2.5)
    committed = live.engine.sounded[-1][2]
    assert committed is not None and committed.label == "alpha 1"
    check_commit(live, cue, after_frames=RATE)
    assert threading.active_count() < 50
