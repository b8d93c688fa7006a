"""The engine's pure core, driven directly: render order, forced renders, cue replacement, the
transport, Link's phase, the setlist, refused auto steps and what a switch reports. (The blend,
tempo, external clock, retry, auto step and clip rules are in test_engine_parts.py.)"""

from __future__ import annotations

import pytest

from riffbridge.control.clocks import ClockSync
from riffbridge.control.hub import Change
from riffbridge.engine.clock import Grid
from riffbridge.engine.core import EngineCore, label_of
from riffbridge.engine.plan import Choice, LoopKey, batch, key_for, schedule_shape
from riffbridge.events import EngineError, Request, Switched
from riffbridge.state import (
    ApplyPreset,
    Command,
    CueAlpha,
    EngineState,
    Play,
    Render,
    SetParam,
    Stop,
    changed_params,
)

RATE = 44100
EARLIEST = 512 + int(0.005 * RATE)  # a block and the margin ahead of the playhead
BAR = 2 * RATE  # 4/4 at 120 BPM


def _change(core: EngineCore, command: Command | None = None, **values: object) -> Change:
    new = core.state.replace(**values)
    command = command or ApplyPreset("test", tuple(values.items()))
    return Change(command, new, tuple(changed_params(core.state, new)), "osc")


def test_renders_follow_the_plan_skip_cached_loops_and_wait_for_an_idle_worker():
    state = EngineState(alpha=0.5)
    core = EngineCore(state, RATE)
    cached: set[LoopKey] = set()
    assert core.next_render(cached.__contains__, False, 0.0) is None  # the worker is busy
    order = []
    while (key := core.next_render(cached.__contains__, True, 0.0)) is not None:
        order.append(key.alpha)
        cached.add(key)
    assert order == [0.5, 0.625, 0.75, 0.875, 0.375]
    assert core.queued(cached.__contains__) == 0
    core.on_change(_change(core, alpha=0.25), 0)  # the knob went down: render ahead that way
    assert core.direction == -1
    assert core.queued(cached.__contains__) == 3  # 0.25, 0.125, 0 (0.375 is cached)
    assert core.next_render(cached.__contains__, True, 0.0) == key_for(core.state, 0.25)


def test_render_now_renders_the_current_point_even_when_it_is_cached():
    state = EngineState(alpha=0.3)
    core = EngineCore(state, RATE)
    cached = {key_for(state)}
    core.on_change(_change(core, Render()), 0)
    assert core.next_render(cached.__contains__, False, 0.0) is None  # waits for the worker
    assert core.next_render(cached.__contains__, True, 0.0) == key_for(state, 0.25)
    assert core.next_render(cached.__contains__, True, 0.0) == key_for(state, 0.375)  # once


def test_a_render_in_flight_is_useless_only_when_no_current_sound_could_use_it():
    state = EngineState(alpha=0.5, bars=8, bpm=70.0)
    core = EngineCore(state, RATE)
    in_flight = core.next_render(set().__contains__, True, 0.0)
    assert in_flight is not None and not core.useless(in_flight)
    core.on_change(_change(core, alpha=0.9), 0)  # only alpha moved: a neighbour a blend uses
    assert in_flight not in core.wanted() and not core.useless(in_flight)
    core.on_change(_change(core, alpha=0.5), 0)
    for change in ({"bars": 2}, {"bpm": 120.0}, {"prompt_b": "ambient pads"}, {"seed_a": 7},
                   {"steps": 12}, {"beats_per_bar": 3}):
        core.on_change(_change(core, **change), 0)
        assert core.useless(in_flight), change
        core.on_change(_change(core, **{k: getattr(state, k) for k in change}), 0)
        assert not core.useless(in_flight), change  # back: wanted again
    core.on_change(_change(core, alpha=0.0, prompt_b="ambient pads"), 0)
    assert core.useless(in_flight)  # the plan sits at alpha 0, where B is silent: still counts


def test_on_the_xy_surface_an_exact_point_left_behind_is_useless_a_lattice_point_is_not():
    state = EngineState(mix="xy", slots=4, x=0.3, y=0.3)
    core = EngineCore(state, RATE)
    exact = core.next_render(set().__contains__, True, 0.0)
    assert exact is not None and exact.point == (0.3, 0.3)
    corner = core.wanted()[1]
    assert corner.point == (0.25, 0.25)
    core.on_change(_change(core, x=0.9, y=0.9), 0)  # the point moved on: both are stale
    assert exact not in core.wanted() and corner not in core.wanted()
    assert core.useless(exact)  # no blend plays an exact point
    assert not core.useless(corner)  # a lattice point of the same surface is a neighbour
    core.on_change(_change(core, prompt_3="rain on a tin roof"), 0)  # another surface
    assert core.useless(corner)
    core.on_change(_change(core, mix="ab", alpha=0.5, x=0.3, y=0.3), 0)
    assert core.useless(corner)  # another mix


def _batches(core: EngineCore, cached: set[LoopKey], limit: int,
             now: float = 0.0) -> list[tuple[float, ...]]:
    """Every render the core asks for until the plan is rendered, as alphas."""
    out = []
    while keys := core.next_renders(cached.__contains__, True, now, limit):
        out.append(tuple(float(k.alpha) for k in keys))
        cached.update(keys)
    return out


def test_the_knobs_point_renders_alone_then_its_neighbours_go_in_batches_in_plan_order():
    core = EngineCore(EngineState(alpha=0.5), RATE)
    assert core.next_renders(set().__contains__, False, 0.0, 4) == ()  # the worker is busy
    assert _batches(core, set(), 4) == [(0.5,), (0.625, 0.75, 0.875, 0.375)]
    assert _batches(EngineCore(EngineState(alpha=0.5), RATE), set(), 2) == [
        (0.5,), (0.625, 0.75), (0.875, 0.375)]
    assert _batches(EngineCore(EngineState(alpha=0.5), RATE), set(), 1) == [
        (0.5,), (0.625,), (0.75,), (0.875,), (0.375,)]  # 1: today's one loop per render
    core = EngineCore(EngineState(alpha=0.5), RATE)
    cached = {key_for(core.state, 0.5), key_for(core.state, 0.75)}  # rendered: skipped
    assert _batches(core, cached, 4) == [(0.625, 0.875, 0.375)]
    core.on_change(_change(core, alpha=0.25), 0)  # the knob went down: its point first, alone
    assert _batches(core, cached, 4) == [(0.25,), (0.125, 0.0)]


def test_what_the_performer_waits_on_renders_alone_even_when_it_is_not_the_knobs_point():
    state = EngineState(alpha=0.5)
    core = EngineCore(state, RATE)
    cached = {key_for(state)}
    core.on_change(_change(core, Render()), 0)  # /rb/render: the cached point again, alone
    assert core.next_renders(cached.__contains__, True, 0.0, 4) == (key_for(state),)
    core.on_change(_change(core, CueAlpha(0.0)), 0)  # the cue bus's candidate, alone
    assert core.next_renders(cached.__contains__, True, 0.0, 4) == (key_for(state, 0.0),)
    cached.add(key_for(state, 0.0))
    assert [k.alpha for k in core.next_renders(cached.__contains__, True, 0.0, 4)] == [
        0.625, 0.75, 0.875, 0.375]


def test_a_loop_waiting_to_be_retried_stays_out_of_a_batch_and_a_failed_batch_backs_off_whole():
    core = EngineCore(EngineState(alpha=0.5), RATE)
    cached = {key_for(core.state)}
    first = core.next_renders(cached.__contains__, True, 0.0, 4)
    assert len(first) == 4
    error = core.on_failed(first[0], "out of memory", "render", 100.0, also=first[1:])
    assert error == EngineError("render", "out of memory")  # one error for the batch
    assert core.next_renders(cached.__contains__, True, 100.5, 4) == ()  # all wait 1 s
    core.on_rendered(first[2])  # one of them came back from elsewhere: no wait for it
    again = core.next_renders(cached.__contains__, True, 100.5, 4)
    assert again == (first[2],)
    assert core.next_renders(cached.__contains__, True, 101.0, 4) == (
        first[0], first[1], first[2], first[3])


def test_on_the_xy_surface_the_exact_point_renders_alone_then_its_cell_in_one_batch():
    core = EngineCore(EngineState(mix="xy", slots=4, x=0.3, y=0.3), RATE)
    cached: set[LoopKey] = set()
    exact = core.next_renders(cached.__contains__, True, 0.0, 4)
    assert [k.point for k in exact] == [(0.3, 0.3)]
    cached.update(exact)
    cell = core.next_renders(cached.__contains__, True, 0.0, 4)
    assert cell == core.wanted()[1:5]  # the planner's order: nearest corner first
    assert {k.point for k in cell} == {(0.25, 0.25), (0.5, 0.25), (0.25, 0.5), (0.5, 0.5)}


def test_a_batch_keeps_one_schedule_shape_in_order_each_key_once():
    state = EngineState(alpha=0.5)
    first = key_for(state, 0.5)
    same = [key_for(state, 0.625), key_for(state.replace(prompt_b="rain", pattern="shuffle"),
                                            0.25)]
    other = [key_for(state.replace(**{name: value}), 0.75) for name, value in
             (("bpm", 121.0), ("bars", 4), ("beats_per_bar", 3), ("steps", 12),
              ("denoise", 0.5))]
    assert all(schedule_shape(k) != schedule_shape(first) for k in other)
    mixed = [other[0], same[0], other[1], first, same[0], other[2], same[1], *other[3:]]
    assert batch(first, mixed, 8) == (first, same[0], same[1])  # prompts and seeds may differ
    assert batch(first, mixed, 2) == (first, same[0])
    assert batch(first, mixed, 1) == (first,)
    # through the core: after a tempo change the plan is all at the new tempo, and the loops
    # of the old one that are still cached or in flight never join a batch of the new
    core = EngineCore(state, RATE)
    cached = {key_for(state)}
    core.on_change(_change(core, bpm=90.0), 0)
    cached.add(key_for(core.state))
    keys = core.next_renders(cached.__contains__, True, 0.0, 8)
    assert len(keys) == 4 and {schedule_shape(k) for k in keys} == {
        schedule_shape(key_for(core.state))}


def test_a_pending_cue_is_replaced_unless_it_is_about_to_sound():
    state = EngineState(playing=True, alpha=0.0, bars=1)
    core = EngineCore(state, RATE)
    cached = {key_for(state, a) for a in (0.0, 0.125, 0.25)}
    first = core.playback(cached.__contains__, 0, 0)
    assert first is not None and first.at == BAR and first.token == 1
    core.on_change(_change(core, alpha=0.125), 0)
    # the pending switch is about to sound (within a block and the margin): wait for it
    assert core.playback(cached.__contains__, BAR - EARLIEST, 0) is None
    after = core.playback(cached.__contains__, BAR + 10, 1)  # it sounded: cue the next bar
    assert after is not None and not after.replaces and after.token == 2
    assert after.at == 2 * BAR and after.label == "alpha 0.125"
    core.on_change(_change(core, alpha=0.25), BAR + 20)
    again = core.playback(cached.__contains__, BAR + 20, 1)  # token 2 has not sounded yet
    assert again is not None and again.replaces and again.at == 2 * BAR and again.token == 3


def test_a_dropped_cue_is_cued_again_from_the_switch_that_sounded_first():
    """The shell read the player just before it applied token 2 and replaced that cue (token
    3, faded from the loop before 2); the player dropped token 3. The core then plays from token
    2's sound: the next turn cues the knob's point again, after token 2, not replacing it."""
    state = EngineState(playing=True, alpha=0.0, bars=1)
    core = EngineCore(state, RATE)
    cached = {key_for(state, a) for a in (0.0, 0.125, 0.25)}
    assert core.playback(cached.__contains__, 0, 0) is not None  # token 1, at BAR
    core.on_change(_change(core, alpha=0.125), 0)
    second = core.playback(cached.__contains__, BAR + 10, 1)
    assert second is not None and second.token == 2 and second.at == 2 * BAR
    core.on_change(_change(core, alpha=0.25), BAR + 20)
    stale = core.playback(cached.__contains__, BAR + 20, 1)
    assert stale is not None and stale.replaces and stale.token == 3
    core.on_dropped(3, 2, 2 * BAR)  # token 2 sounded before token 3 reached the player
    again = core.playback(cached.__contains__, 2 * BAR + 3000, 2)
    assert again is not None and again.token == 4 and not again.replaces
    assert again.at == 3 * BAR and again.label == "alpha 0.25"
    core.on_dropped(3, 2, 2 * BAR)  # a late repeat changes nothing
    assert core.playback(cached.__contains__, 2 * BAR + 3100, 2) is None


def test_the_first_cue_starts_on_the_grid():
    core = EngineCore(EngineState(playing=True, bars=1, quantum="beat"), RATE)
    cached = {key_for(core.state)}
    cue = core.playback(cached.__contains__, 1000, 0)
    beat = RATE // 2
    assert cue is not None and cue.at == beat and cue.quantum == 1 and cue.phase == 0.25


def test_the_cue_preparation_budget_moves_a_boundary_that_would_come_too_soon():
    state = EngineState(playing=True, quantum="bar")
    cached = {key_for(state)}
    near = BAR - EARLIEST - 100  # the next bar is just far enough ahead for an instant cue
    cue = EngineCore(state, RATE).playback(cached.__contains__, near, 0)
    assert cue is not None and cue.at == BAR
    late = EngineCore(state, RATE).playback(cached.__contains__, near, 0, prepare_s=0.011)
    assert late is not None and late.at == 2 * BAR  # 11 ms to prepare: the bar after


def test_stop_cues_silence_play_cues_the_loop_again_and_nothing_rendered_keeps_what_plays():
    state = EngineState(playing=False, bars=1)
    core = EngineCore(state, RATE)
    cached = {key_for(state)}
    assert core.playback(cached.__contains__, 0, 0) is None  # stopped and silent: nothing new
    core.on_change(_change(core, Play(), playing=True), 0)
    play = core.playback(cached.__contains__, 0, 0)
    assert play is not None and play.label == "alpha 0" and core.playing_keys == {key_for(state)}
    core.on_change(_change(core, prompt_a="something new"), BAR)
    assert core.playback(cached.__contains__, BAR, 1) is None  # nothing of it yet: keep playing
    core.on_change(_change(core, Stop(), playing=False), BAR)
    stop = core.playback(cached.__contains__, BAR, 1)
    assert stop is not None and stop.choice is None and stop.label == "silence"
    assert stop.at == 2 * BAR and core.sounding == "silence" and core.playing_keys == frozenset()


def test_link_phase_is_followed_only_when_it_drifts_or_its_tempo_differs():
    core = EngineCore(EngineState(clock="link"), RATE)
    frame = 10 * RATE
    beat = core.grid.beat_at(frame)
    assert not core.on_clock(ClockSync(beat + 0.008, 0.0, 120.0, "link"), frame)  # 4 ms
    assert core.grid == Grid(RATE, 120.0)
    assert core.on_clock(ClockSync(beat + 0.012, 0.0, 120.0, "link"), frame)  # 6 ms
    assert core.grid.beat_at(frame) == pytest.approx(beat + 0.012)
    assert core.on_clock(ClockSync(core.grid.beat_at(frame), 0.0, 121.0, "link"), frame)
    assert core.grid.bpm == 121.0
    # a MIDI start always moves the grid
    assert core.on_clock(ClockSync(core.grid.beat_at(frame), 0.0, None, "midi"), frame)


def test_the_internal_clock_ignores_a_tempo_change_until_a_loop_at_that_tempo_plays():
    core = EngineCore(EngineState(playing=True, bars=1), RATE)
    core.on_change(_change(core, bpm=90.0), RATE)
    assert core.grid.bpm == 120.0


def test_the_auto_walk_takes_the_next_setlist_pair_at_the_end_of_the_path():
    setlist = (("techno", "dub"), ("jazz", "choir"))
    state = EngineState(playing=True, bars=1, alpha=1.0, auto=0.25)
    core = EngineCore(state, RATE, setlist=setlist)
    core.playback({key_for(state)}.__contains__, 0, 0)
    lead = int(0.25 * RATE)
    core.auto(0)
    step = core.auto(BAR - lead)
    assert step == Request(ApplyPreset("setlist", (("prompt_a", "jazz"), ("prompt_b", "choir"),
                                                   ("alpha", 0.0))))
    core.on_change(_change(core, prompt_a="jazz", prompt_b="choir", alpha=0.0, auto=-0.25), BAR)
    back = core.auto(2 * BAR - lead)  # walking down from 0: the next pair, starting at 1
    assert isinstance(back, Request) and isinstance(back.command, ApplyPreset)
    assert back.command.values == (("prompt_a", "techno"), ("prompt_b", "dub"), ("alpha", 1.0))


def test_without_a_setlist_the_auto_walk_bounces_and_stops_with_the_transport():
    state = EngineState(playing=True, bars=1, alpha=0.875, auto=0.25)
    core = EngineCore(state, RATE)
    core.playback({key_for(state)}.__contains__, 0, 0)
    core.auto(0)
    assert core.auto(BAR) == Request(SetParam("alpha", 0.875))  # 1.125 bounces to 0.875
    core.on_change(_change(core, Stop(), playing=False), BAR)
    assert core.auto(3 * BAR) is None


def test_a_refused_auto_step_is_reported_as_an_auto_error():
    setlist = (("ok", "fine"), ("x" * 600, "too long"))
    state = EngineState(playing=True, bars=1, alpha=1.0, auto=0.5)
    core = EngineCore(state, RATE, setlist=setlist)
    core.playback({key_for(state)}.__contains__, 0, 0)
    core.auto(0)
    error = core.auto(BAR)
    assert isinstance(error, EngineError) and error.source == "auto"
    assert error.message.startswith("auto walk: ") and "prompt" in error.message


def test_a_switch_is_reported_once_with_its_bar_and_label():
    state = EngineState(playing=True, bars=1, alpha=0.3)
    core = EngineCore(state, RATE)
    cached = {key_for(state, 0.0), key_for(state, 0.5)}
    cue = core.playback(cached.__contains__, 5 * BAR, 0)
    assert cue is not None
    assert core.on_applied(0, -1) is None  # nothing applied yet
    assert core.on_applied(cue.token, cue.at) == Switched(0.3, 6, "blend 0|0.5 @0.60")
    assert core.on_applied(cue.token, cue.at) is None


def test_a_switch_reports_the_alpha_that_sounds_not_the_knob():
    state = EngineState(playing=True, bars=1, alpha=0.3)
    core = EngineCore(state, RATE)
    cached = {key_for(state, 0.0)}
    nearest = core.playback(cached.__contains__, 0, 0)  # only alpha 0 is rendered
    assert nearest is not None
    assert core.on_applied(nearest.token, nearest.at) == Switched(0.0, 1, "alpha 0")
    cached |= {key_for(state, 0.5)}
    core.on_change(_change(core, alpha=0.2), BAR)
    blend = core.playback(cached.__contains__, BAR, nearest.token)  # 0|0.5 at weight 0.4
    assert blend is not None and blend.label == "blend 0|0.5 @0.40"
    core.on_change(_change(core, alpha=0.9), 2 * BAR - EARLIEST)  # too late for this switch
    switched = core.on_applied(blend.token, blend.at)
    assert switched is not None and switched.label == "blend 0|0.5 @0.40"
    assert switched.alpha == pytest.approx(0.2)  # low + weight * (high - low), not the knob's
    cached |= {key_for(state, 0.875)}
    exact = core.playback(cached.__contains__, 2 * BAR, blend.token)
    assert exact is not None
    core.on_change(_change(core, alpha=0.91), 2 * BAR)
    assert core.on_applied(exact.token, exact.at) == Switched(0.875, 3, "alpha 0.875")


def test_labels_name_what_sounds():
    key = key_for(EngineState())
    assert label_of(None) == "silence"
    assert label_of(Choice(key.at(0.25))) == "alpha 0.25"
    assert label_of(Choice(key.at(0.25), key.at(0.5), 0.123)) == "blend 0.25|0.5 @0.12"
