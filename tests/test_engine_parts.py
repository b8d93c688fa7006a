"""The engine's parts: plan order, choice and blends, cache bound, grid, player, cues; the pure
core's decisions driven directly (blends, tempo, external clocks, retries, the auto walk, clip
announcements); and the shell turning them into cues, with a stand-in worker."""

from __future__ import annotations

import math
import pickle
import queue
import time
import tracemalloc

import numpy as np
import pytest
from engine_helpers import RATE, StandInWorker, wait_for

from riffbridge.control.clocks import ClockSync
from riffbridge.control.hub import Change, Hub
from riffbridge.engine.cache import CachedLoop, LoopCache
from riffbridge.engine.clock import Grid, quantum_beats
from riffbridge.engine.core import CueDecision, EngineCore
from riffbridge.engine.engine import Engine, EngineSettings, build_segment
from riffbridge.engine.plan import LoopKey, auto_step, blend_gains, choose, key_for, plan, snap
from riffbridge.engine.player import (
    CEILING,
    KNEE,
    Player,
    Segment,
    equal_power,
    frozen_frames,
    limit,
    prepare_cue,
)
from riffbridge.engine.worker import Cancelled, Message, Ready, Rendered, RenderRequest
from riffbridge.errors import ConfigError, RenderError
from riffbridge.events import ClipCued, EngineError, Request, Switched
from riffbridge.loops.tempo import loop_samples
from riffbridge.loops.types import Loop
from riffbridge.state import ApplyPreset, ClockTempo, Command, EngineState, SetParam, changed_params

BLOCK = 512
MARGIN = int(0.005 * RATE)
def test_snap_to_eighths():
    assert snap(0.3) == 0.25
    assert snap(0.33) == 0.375
    assert snap(1.0) == 1.0
    assert snap(0.0) == 0.0
    assert snap(0.99) == 1.0
    assert snap(0.3, grid=4) == 0.25


def test_plan_current_first_then_direction_then_behind():
    state = EngineState(alpha=0.5)
    up = [k.alpha for k in plan(state, +1)]
    assert up == [0.5, 0.625, 0.75, 0.875, 0.375]
    down = [k.alpha for k in plan(state, -1)]
    assert down == [0.5, 0.375, 0.25, 0.125, 0.625]


def test_plan_stops_at_the_ends_and_walks_the_auto_path():
    keys = plan(EngineState(alpha=0.875), +1)
    assert [k.alpha for k in keys] == [0.875, 1.0, 0.75]
    auto = [k.alpha for k in plan(EngineState(alpha=0.0, auto=0.25), +1)]
    assert auto[:4] == [0.0, 0.125, 0.25, 0.375]
    assert 0.5 in auto and 1.0 in auto  # the rest of the walk to its end


def test_keys_change_with_every_sound_parameter_and_not_with_transport():
    base = EngineState()
    k = key_for(base)
    assert key_for(EngineState(prompt_a="x")) != k
    assert key_for(EngineState(bpm=121.0)) != k
    assert key_for(EngineState(steps=20)) != k
    assert key_for(EngineState(pattern="half-time")) != k
    assert key_for(EngineState(playing=True, gain_db=-6.0, quantum="beat")) == k
    assert key_for(EngineState(alpha=0.01)) == k  # same grid point


def test_choose_exact_blend_nearest_and_nothing():
    state = EngineState(alpha=0.3)
    rendered: set = set()
    assert choose(state, rendered.__contains__) is None
    rendered.add(key_for(state, 0.0))
    only = choose(state, rendered.__contains__)
    assert only is not None and only.exact and only.low.alpha == 0.0
    rendered.add(key_for(state, 0.5))
    blend = choose(state, rendered.__contains__)
    assert blend is not None and not blend.exact
    assert (blend.low.alpha, blend.high.alpha) == (0.0, 0.5)  # type: ignore[union-attr]
    assert blend.weight == pytest.approx(0.6)
    rendered.add(key_for(state, 0.25))
    exact = choose(state, rendered.__contains__)
    assert exact is not None and exact.exact and exact.low.alpha == 0.25
    other = choose(EngineState(alpha=0.3, prompt_a="new"), rendered.__contains__)
    assert other is None  # nothing of the new sound: the engine keeps what plays


def test_equal_power_gains_and_curves():
    for w in (0.0, 0.25, 0.5, 0.9, 1.0):
        lo, hi = blend_gains(w)
        assert lo**2 + hi**2 == pytest.approx(1.0)
    out, fade_in = equal_power(100)
    assert np.allclose(out**2 + fade_in**2, 1.0, atol=1e-6)
    assert out[0] > 0.99 and fade_in[-1] > 0.99


def test_auto_step_bounces():
    assert auto_step(0.5, 0.25) == 0.75
    assert auto_step(0.875, 0.25) == pytest.approx(0.875)  # 1.125 -> 0.875
    assert auto_step(0.1, -0.25) == pytest.approx(0.15)


def _cached(state: EngineState, alpha: float, seconds: float = 1.0) -> CachedLoop:
    n = int(44100 * seconds)
    loop = Loop(np.zeros((2, n), np.float32), 44100, 120.0, 1)
    return CachedLoop(key_for(state, alpha), loop, np.zeros((n, 2), np.float32))


def test_cache_is_bounded_lru_and_keeps_what_plays():
    state = EngineState()
    one = _cached(state, 0.0).nbytes
    cache = LoopCache(max_mb=2.5 * one / 2**20)
    a, b, c = _cached(state, 0.0), _cached(state, 0.125), _cached(state, 0.25)
    cache.put(a)
    cache.put(b)
    assert cache.get(a.key) is a  # a is now the most recent
    cache.put(c)
    assert a.key in cache and c.key in cache and b.key not in cache
    assert cache.nbytes <= cache.max_bytes
    d = _cached(state, 0.375)
    cache.put(d, keep=frozenset({c.key}))
    assert c.key in cache and d.key in cache and a.key not in cache
    assert cache.evictions == 2
    with pytest.raises(ConfigError, match="cache size"):
        LoopCache(max_mb=0)


def test_grid_boundaries_and_tempo_change():
    grid = Grid(48000, 120.0)
    assert grid.frames_per_beat == 24000
    assert grid.next_boundary(0, 4) == (0, 0)
    assert grid.next_boundary(1, 4) == (96000, 4)
    assert grid.next_boundary(96000, 1) == (96000, 4)
    faster = grid.with_tempo(240.0, 96000)
    assert faster.beat_at(96000) == pytest.approx(4.0)
    assert faster.next_boundary(96001, 4) == (96000 + 48000, 8)
    aligned = grid.align(0.0, 1000)
    assert aligned.next_boundary(1000, 4) == (1000, 0)
    assert quantum_beats("beat", 2, 4) == 1
    assert quantum_beats("bar", 2, 3) == 3
    assert quantum_beats("loop", 2, 4) == 8
    with pytest.raises(ConfigError, match="quantum"):
        quantum_beats("phrase", 2, 4)


def _ramp(n: int, channels: int = 2, scale: float = 1.0) -> np.ndarray:
    data = np.repeat((np.arange(n, dtype=np.float32) * scale)[:, None], channels, axis=1)
    return frozen_frames(data)


def _play(player: Player, frames: int, block: int) -> np.ndarray:
    out = np.zeros((frames, player.channels), np.float32)
    for start in range(0, frames, block):
        buf = np.zeros((min(block, frames - start), player.channels), np.float32)
        player.fill(buf)
        out[start:start + buf.shape[0]] = buf
    return out


STEP = 1 / 2048  # a ramp's slope: exact in float32, and every sample under the ceiling


def test_player_loops_and_switches_on_the_cued_frame_with_any_block_size():
    for block in (64, 100, 512):
        player = Player()
        a = Segment(_ramp(1000, scale=STEP), origin=0, label="a")
        b = Segment(_ramp(700, scale=-STEP), origin=2500, label="b")
        player.cue = prepare_cue(None, a, 0, 1, token=1)
        out = _play(player, 2500, block)
        player.cue = prepare_cue(a, b, 3000, 50, token=2)
        out2 = _play(player, 2000, block)
        assert player.applied_token == 2 and player.applied_at == 3000
        full = np.concatenate([out, out2])
        assert np.array_equal(full[1:3000, 0], np.arange(1, 3000) % 1000 * STEP)  # a loops
        tail = full[3050:4500, 0]
        assert np.array_equal(tail, -((np.arange(3050, 4500) - 2500) % 700) * STEP)
        fade = full[3000:3050, 0]
        out_c, in_c = equal_power(50)  # a and b go opposite ways: unrelated, equal power
        expect = (np.arange(3000, 3050) % 1000) * out_c - ((np.arange(3000, 3050) - 2500)
                                                           % 700) * in_c
        assert np.allclose(fade, expect * STEP, atol=1e-6)


def _playing_a(frames: int) -> tuple[Player, Segment, Segment, Segment]:
    """Three loops from frame 0, told apart by their ramps (a: 1000 frames rising, b: 700
    falling, c: 900 rising at half the slope), and a player that has played ``frames`` frames
    of a, the first switch (cue token 1), in blocks of 256."""
    a = Segment(_ramp(1000, scale=STEP), origin=0, label="a")
    b = Segment(_ramp(700, scale=-STEP), origin=0, label="b")
    c = Segment(_ramp(900, scale=STEP / 2), origin=0, label="c")
    player = Player()
    player.cue = prepare_cue(None, a, 0, 1, token=1, after=0)
    _play(player, frames, 256)
    return player, a, b, c


def test_player_drops_a_cue_whose_fade_starts_from_audio_that_no_longer_plays():
    """The engine replaced cue 2 (a -> b) with cue 3 (a -> c, after switch 1), but the player
    had applied cue 2 first: cue 3's fade starts from a, which no longer plays. The player drops
    it (the engine cues again) and b plays on, sample for sample."""
    player, a, b, c = _playing_a(2048)
    player.cue = prepare_cue(a, b, 3000, 50, token=2, after=1)
    _play(player, 2048, 256)
    assert player.applied_token == 2
    player.cue = prepare_cue(a, c, 5000, 50, token=3, after=1)  # read before cue 2 applied
    out = _play(player, 4096, 256)
    assert player.applied_token == 2 and player.dropped_token == 3
    assert np.array_equal(out[:, 0], -(np.arange(4096, 8192) % 700) * STEP)
    player.cue = prepare_cue(b, c, 9000, 50, token=4, after=2)  # cued again, from b
    _play(player, 2048, 256)
    assert player.applied_token == 4 and player.playing is c


def test_player_plays_a_fade_that_began_to_its_end_whatever_replaces_its_cue():
    """A cue swapped in while the player is inside another cue's fade does not cut that fade
    (the output would jump back to the old loop): the fade plays whole, its loop follows, and
    the new cue, prepared from the loop before, is dropped."""
    player, a, b, c = _playing_a(3072)
    second = prepare_cue(a, b, 3072, 1024, token=2, after=1)
    player.cue = second
    first_half = _play(player, 512, 256)
    player.cue = prepare_cue(a, c, 3072, 1024, token=3, after=1)  # replaces cue 2, too late
    rest = _play(player, 2048, 256)
    fade = np.concatenate([first_half, rest[:512]])
    assert np.array_equal(fade, second.fade)
    assert player.applied_token == 2 and player.dropped_token == 3 and player.playing is b
    assert np.array_equal(rest[512:, 0], -(np.arange(4096, 5632) % 700) * STEP)


def test_player_late_cue_starts_inside_its_fade_and_silence_cue_stops():
    player = Player()
    a = Segment(_ramp(100), origin=0)
    _play(player, 512, 512)
    player.cue = prepare_cue(None, a, 256, 1024, token=1)  # already 256 frames late
    _play(player, 2048, 512)
    assert player.applied_token == 1
    player.cue = prepare_cue(a, None, 3000, 10, token=2)
    out = _play(player, 2048, 512)
    assert np.all(out[3010 - 2560:] == 0.0)
    assert player.underruns == 0


def test_player_counts_underruns_and_ignores_old_tokens():
    player = Player()
    a = Segment(_ramp(100), origin=0)
    player.cue = prepare_cue(None, a, 0, 1, token=1)
    buf = np.zeros((64, 2), np.float32)
    player.fill(buf, 0.0, True)
    assert player.underruns == 1
    player.cue = prepare_cue(None, Segment(_ramp(100, scale=2.0), 0), 0, 1, token=1)
    player.fill(buf)
    assert buf[1, 0] == 65.0  # token 1 was applied: the repeat is ignored
    assert math.isclose(player.stamp[0], 64)


# ---- levels at switches: no overs ---------------------------------------------------------------

LOUD = KNEE  # -1 dBFS: the sample peak of a loop shaped to -1 dBTP


def _music(n: int, seed: int, peak: float = LOUD) -> np.ndarray:
    """A stereo loop of ``n`` frames: a few partials and a noise burst per 'beat', at ``peak``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    mono = sum(rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
               for f in rng.uniform(60, 2000, 6))
    burst = rng.standard_normal(n) * np.exp(-(t % 0.25) * 40)
    stereo = np.stack([mono + burst, 0.9 * mono + burst], axis=1)
    return frozen_frames(stereo / np.max(np.abs(stereo)) * peak)


def _near_copy(audio: np.ndarray, seed: int, amount: float = 0.05) -> np.ndarray:
    other = _music(audio.shape[0], seed, 1.0)
    mixed = (1 - amount) * audio + amount * other
    return frozen_frames(mixed / np.max(np.abs(mixed)) * np.max(np.abs(audio)))


def test_a_loop_crossfaded_into_itself_or_a_near_copy_stays_under_the_ceiling():
    n, k = 8000, 2205  # a 50 ms fade
    loop = _music(n, 1)
    near = _near_copy(loop, 2)
    at = n + int(np.argmax(np.abs(loop[:, 0]))) - k // 2  # the loop's peak mid-fade
    assert np.max(np.abs(loop)) == pytest.approx(LOUD)
    current = Segment(loop, origin=0)
    # The same audio in another segment (a re-render, a copy): equal gain, the loop itself.
    itself = prepare_cue(current, Segment(loop.copy(), origin=0), at, k, token=1)
    assert np.max(np.abs(itself.fade)) <= LOUD + 1e-6
    assert np.max(np.abs(itself.fade - current.window(at, k))) < 1e-6
    # A near copy (neighbours on the alpha grid): about equal gain, no +3 dB bump.
    copy = prepare_cue(current, Segment(near, origin=0), at, k, token=2)
    assert np.max(np.abs(copy.fade)) <= CEILING
    assert np.max(np.abs(copy.fade)) < 1.02 * LOUD
    # An equal-power fade of those two would have gone about 1.4x over the loop: past full scale.
    out_c, in_c = equal_power(k)
    naive = current.window(at, k) * out_c[:, None] + near[(np.arange(at, at + k)) % n] \
        * in_c[:, None]
    assert np.max(np.abs(naive)) > 1.0


def test_unrelated_loops_keep_equal_power_through_the_fade():
    n, at, k = 20000, 30000, 4410
    rng = np.random.default_rng(7)
    a = frozen_frames(0.25 * rng.standard_normal((n, 2)))
    b = frozen_frames(0.25 * rng.standard_normal((n, 2)))
    cue = prepare_cue(Segment(a, 0), Segment(b, 0), at, k, token=1)
    power = float(np.mean(a.astype(np.float64) ** 2))
    middle = cue.fade[k // 3:2 * k // 3].astype(np.float64)
    assert float(np.mean(middle**2)) == pytest.approx(power, rel=0.1)  # linear would be -3 dB
    out_c, in_c = equal_power(k)
    expect = Segment(a, 0).window(at, k) * out_c[:, None] + Segment(b, 0).window(at, k) \
        * in_c[:, None]
    assert np.max(np.abs(cue.fade - expect)) < 0.03 * np.max(np.abs(expect))


def _decision(level_db: float = 0.0, alpha: float = 0.0, *, cached: tuple[float, ...] = (0.0,),
              frame: int = 0) -> CueDecision:
    state = EngineState(playing=True, bars=1, alpha=alpha, gain_db=level_db)
    core = EngineCore(state, RATE)
    decision = core.playback({key_for(state, a) for a in cached}.__contains__, frame, 0)
    assert decision is not None
    return decision


def test_a_blend_of_near_copies_keeps_the_level_and_of_unrelated_loops_equal_power():
    n = 2 * RATE  # one bar
    low = _music(n, 3)
    high = _near_copy(low, 4)
    blend = _decision(alpha=0.125, cached=(0.0, 0.25))  # halfway between the two
    assert blend.gains == pytest.approx(blend_gains(0.5))
    seg = build_segment(blend, low, high)
    assert np.max(np.abs(seg.audio)) < 1.02 * LOUD  # an equal-power sum would be ~1.4x LOUD
    g_low, g_high = blend_gains(0.5)
    assert np.max(np.abs(low * g_low + high * g_high)) > 1.0  # (what it was)
    rng = np.random.default_rng(5)
    a = frozen_frames(0.2 * rng.standard_normal((n, 2)))
    b = frozen_frames(0.2 * rng.standard_normal((n, 2)))
    unrelated = build_segment(blend, a, b)
    assert unrelated.gains == pytest.approx((g_low, g_high), rel=0.01)


def test_the_same_loop_again_is_not_crossfaded_only_its_level_ramps():
    n = 2 * RATE
    audio = _music(n, 6)
    first = build_segment(_decision(), audio, None)
    k = round(0.05 * RATE)
    # A re-cue of the same key at the same level (A -> B -> A before B sounded): nothing moves.
    again = build_segment(_decision(), audio, None)
    same = prepare_cue(first, again, 4 * n, k, token=2)
    assert np.array_equal(same.fade, first.window(4 * n, k))
    # A gain change: a ramp from one level to the other, never above the louder one.
    quieter = build_segment(_decision(-6.0), audio, None)
    ramp = prepare_cue(first, quieter, 4 * n, k, token=3)
    unit = first.window(4 * n, k).astype(np.float64)
    t = (np.arange(k) + 1) / k  # the last frame is the new level: it joins the loop
    level = 1 - t * (1 - 10 ** (-6 / 20))
    assert np.max(np.abs(ramp.fade - unit * level[:, None])) < 1e-6
    # And +12 dB on a loop at -1 dBFS: limited, in the segment and in the fade.
    louder = build_segment(_decision(12.0), audio, None)
    up = prepare_cue(first, louder, 4 * n, k, token=4)
    assert np.max(np.abs(louder.audio)) <= CEILING and np.max(np.abs(up.fade)) <= CEILING
    assert np.array_equal(up.fade[-1], louder.window(4 * n + k - 1, 1)[0])  # joins exactly


def test_the_ceiling_passes_quiet_audio_untouched_and_bends_the_loud():
    quiet = frozen_frames(np.linspace(-KNEE, KNEE, 101)[:, None].repeat(2, axis=1))
    assert limit(quiet) is quiet
    loud = np.linspace(-4.0, 4.0, 8001, dtype=np.float32)[:, None]
    bent = limit(loud)
    assert np.max(np.abs(bent)) <= CEILING
    assert np.all(np.diff(bent[:, 0]) >= 0)  # monotone: no folding
    inside = np.abs(loud[:, 0]) <= KNEE
    assert np.array_equal(bent[inside], loud[inside])


def test_fill_allocates_no_buffers_through_a_switch():
    player = Player()
    a = Segment(_music(5000, 8), origin=0)
    b = Segment(_near_copy(a.audio, 9), origin=0)
    player.cue = prepare_cue(None, a, 0, 100, token=1)
    out = np.zeros((4096, 2), np.float32)
    player.fill(out)
    player.cue = prepare_cue(a, b, 6000, 3000, token=2)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(8):  # through the fade and the new loop, wrapping
            player.fill(out)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert player.applied_token == 2
    assert peak - before < 2048, f"fill allocated {peak - before} bytes"  # a block is 32 KiB


def test_the_unused_side_does_not_change_the_key_at_the_ends():
    at_a = key_for(EngineState(alpha=0.0))
    assert key_for(EngineState(alpha=0.0, prompt_b="ambient", seed_b=7)) == at_a
    assert hash(key_for(EngineState(alpha=0.0, prompt_b="ambient"))) == hash(at_a)
    at_b = key_for(EngineState(alpha=1.0))
    assert key_for(EngineState(alpha=1.0, prompt_a="techno", seed_a=9)) == at_b
    assert key_for(EngineState(alpha=0.5, prompt_b="ambient")) != key_for(EngineState(alpha=0.5))
    assert key_for(EngineState(alpha=0.0, prompt_a="x")) != at_a
    # neighbours keep both sides
    assert at_a.at(0.5) == key_for(EngineState(alpha=0.5))
    assert at_a.at(0.5).prompt_b == EngineState().prompt_b


def test_a_rendered_loop_crosses_the_process_boundary_whole():
    key = key_for(EngineState())
    loop = Loop(np.full((1, 480), 0.25, np.float32), 48000, 120.0, 1,
                metadata={"render_seconds": 1.5, "seam": {"method": "circular"}})
    sent = Rendered(key, loop, np.zeros((441, 2), np.float32), 2.0)
    got = pickle.loads(pickle.dumps(sent))
    assert got.key == key and got.seconds == 2.0 and got.frames.shape == (441, 2)
    assert got.loop.sample_rate == 48000 and np.array_equal(got.loop.audio, loop.audio)
    assert dict(got.loop.metadata) == dict(loop.metadata)


# ---- the core's decisions, driven directly ----------------------------------------------------

def _change(core: EngineCore, command: Command | None = None, **values: object) -> Change:
    """The ``Change`` the hub would send for ``values`` applied to the core's state."""
    new = core.state.replace(**values)
    command = command or ApplyPreset("test", tuple(values.items()))
    return Change(command, new, tuple(changed_params(core.state, new)), "osc")


def test_between_rendered_points_an_equal_power_blend_is_cued_at_the_next_quantum():
    state = EngineState(playing=True, alpha=0.3, bars=1)  # quantum: a bar
    core = EngineCore(state, RATE)
    rendered = {key_for(state, 0.0), key_for(state, 0.5)}
    frame = 3 * RATE  # 1.5 bars in at 120 BPM
    cue = core.playback(rendered.__contains__, frame, 0)
    assert cue is not None and cue.choice is not None and cue.label == "blend 0|0.5 @0.60"
    assert cue.gains == pytest.approx((math.cos(0.6 * math.pi / 2), math.sin(0.6 * math.pi / 2)))
    assert cue.at == 4 * RATE  # the next bar line after the playhead plus a block and a margin
    assert cue.at >= frame + BLOCK + MARGIN and cue.phase == 0.0 and cue.level == 1.0
    assert cue.fade == round(0.05 * RATE) and not cue.replaces
    assert core.playback(rendered.__contains__, frame, 0) is None  # nothing new to say
    rendered.add(key_for(state, 0.25))  # the exact render lands: it replaces the pending blend
    exact = core.playback(rendered.__contains__, frame, 0)
    assert exact is not None and exact.label == "alpha 0.25" and exact.gains == (1.0, 0.0)
    assert exact.replaces and exact.at == cue.at and exact.token == cue.token + 1
    core.on_change(_change(core, gain_db=-6.0), frame)  # a gain change re-cues the same loop
    louder = core.playback(rendered.__contains__, frame, 0)
    assert louder is not None and louder.level == pytest.approx(10 ** (-6 / 20))
    assert louder.choice == exact.choice


def test_a_tempo_change_keeps_the_old_loop_until_the_new_one_lands():
    state = EngineState(playing=True, bars=1)
    core = EngineCore(state, RATE)
    rendered = {key_for(state)}
    first = core.playback(rendered.__contains__, 0, 0)
    assert first is not None and core.grid.bpm == 120.0
    core.on_change(_change(core, bpm=140.0), RATE)
    assert core.playback(rendered.__contains__, RATE, first.token) is None  # nothing at 140 yet
    assert core.grid.bpm == 120.0  # the old loop plays on, on its own grid
    faster = core.state
    rendered.add(key_for(faster))
    frame = first.at + 10 * RATE
    cue = core.playback(rendered.__contains__, frame, first.token)
    assert cue is not None and cue.choice is not None and cue.choice.low.bpm == 140.0
    assert core.grid.bpm == 140.0 and cue.grid == core.grid
    assert cue.at == Grid(RATE, 120.0).next_boundary(frame + BLOCK + MARGIN, 4)[0]
    assert core.grid.beat_at(cue.at) == pytest.approx(round(core.grid.beat_at(cue.at)))
    assert core.grid.next_boundary(cue.at + 1, 4)[0] - cue.at == round(4 * 60 / 140 * RATE)


def test_an_external_clock_moves_the_grid():
    core = EngineCore(EngineState(playing=True, clock="midi"), RATE)
    start = RATE * 10 + RATE // 2
    assert core.on_clock(ClockSync(beat=0.0, time=100.5, source="midi"), start)  # MIDI start
    assert core.grid.beat_at(start) == pytest.approx(0.0)
    assert core.grid.next_boundary(start + 1, 4)[0] == start + 4 * RATE // 2
    core.on_change(_change(core, ClockTempo(140.0), bpm=140.0), start + RATE)
    assert core.grid.bpm == 140.0  # at once, not with the next loop
    assert core.grid.beat_at(start + RATE) == pytest.approx(2.0)  # the beat count goes on


def test_a_loop_that_keeps_failing_is_retried_later_and_later():
    state = EngineState(playing=True)
    core = EngineCore(state, RATE, lookahead=0)
    key = key_for(state)
    nothing: set[LoopKey] = set()
    assert core.next_render(nothing.__contains__, True, 100.0) == key
    error = core.on_failed(key, "RenderError: boom", "render", 100.0)
    assert (error.source, error.message) == ("render", "RenderError: boom")
    assert core.next_render(nothing.__contains__, True, 100.9) is None  # 1 s first
    assert core.next_render(nothing.__contains__, True, 101.0) == key
    core.on_failed(key, "RenderError: boom", "render", 101.0)
    assert core.next_render(nothing.__contains__, True, 102.9) is None  # then 2 s
    assert core.next_render(nothing.__contains__, True, 103.0) == key
    now = 103.0
    for _ in range(8):
        core.on_failed(key, "RenderError: boom", "render", now)
    assert core.next_render(nothing.__contains__, True, now + 59.9) is None
    assert core.next_render(nothing.__contains__, True, now + 60.0) == key  # at most 60 s
    core.on_rendered(key)  # a render that lands clears the backoff
    core.on_failed(key, "died", "worker", now)
    assert core.next_render(nothing.__contains__, True, now + 1.0) == key


def test_auto_mode_steps_alpha_once_per_loop_just_before_the_boundary():
    state = EngineState(playing=True, bars=1, auto=0.125, quantum="loop")
    core = EngineCore(state, RATE)
    assert core.auto(0) is None  # nothing sounds yet: no walk
    core.playback({key_for(state)}.__contains__, 0, 0)
    loop = 2 * RATE  # one bar of 4/4 at 120 BPM
    lead = int(0.25 * RATE)
    assert core.auto(100) is None  # arms for the next boundary
    assert core.auto(loop - lead - 1) is None
    step = core.auto(loop - lead)
    assert step == Request(SetParam("alpha", 0.125))
    assert core.auto(loop - lead + 1) is None and core.auto(2 * loop - lead - 1) is None
    core.on_change(_change(core, alpha=0.125), loop)
    assert core.auto(2 * loop - lead) == Request(SetParam("alpha", 0.25))


def test_a_clip_is_announced_once_per_switch_for_exact_renders_when_cue_and_file_exist():
    state = EngineState(playing=True, alpha=0.3, bars=1)
    core = EngineCore(state, RATE)
    rendered = {key_for(state, 0.0), key_for(state, 0.5)}
    assert core.on_file(key_for(state, 0.0), "/out/0001.wav", rendered.__contains__) is None
    assert core.playback(rendered.__contains__, 0, 0) is not None  # a blend: it has no file
    assert core.clip() is None
    rendered.add(key_for(state, 0.25))
    assert core.playback(rendered.__contains__, 0, 0) is not None
    assert core.clip() is None  # the cue exists, its file not yet
    clip = core.on_file(key_for(state, 0.25), "/out/0003.wav", rendered.__contains__)
    assert clip == ClipCued("/out/0003.wav", 0.25, 120.0, 1)
    assert core.clip() is None  # once
    core.on_change(_change(core, gain_db=-3.0), 0)
    assert core.playback(rendered.__contains__, 0, 0) is not None
    assert core.clip() is None  # the same loop louder: not a new clip
    core.on_change(_change(core, alpha=0.0), 0)
    assert core.playback(rendered.__contains__, 0, 0) is not None
    assert core.clip() == ClipCued("/out/0001.wav", 0.0, 120.0, 1)  # file first, then the cue


# ---- the shell, with a stand-in worker ----------------------------------------------------------

class SteppedWorker(StandInWorker):
    """Stands in for the render worker where the test must know the samples: no model, no
    process, but the same protocol (one request at a time, messages through ``poll``). A
    request is finished when the test calls ``finish``, with a loop of the exact length at the
    request's rate whose every sample is ``0.5 - alpha / 2``."""

    MODEL = "constant"

    def __init__(self) -> None:
        super().__init__()
        self._requests: queue.Queue[RenderRequest] = queue.Queue()
        self.cancelled: list[LoopKey] = []

    def cancel(self) -> bool:
        """Like the real worker: the request in flight stops, a ``Cancelled`` answers it."""
        request = self.in_flight
        if request is None or request.key in self.cancelled:
            return False
        self.cancelled.append(request.key)
        self._requests.get_nowait()  # the test will not see it
        self._results.put(Cancelled(request.key, 0.0))
        return True

    def wait_ready(self, timeout: float, cancelled: object = None) -> Ready:
        for msg in self.poll(timeout):
            if isinstance(msg, Ready):
                return msg
        raise RenderError("the stand-in worker did not start")

    def submit(self, request: RenderRequest) -> None:
        if not self.idle:
            raise RenderError("the render worker is busy or not ready")
        self.in_flight = request
        self._requests.put(request)

    def poll(self, timeout: float = 0.0) -> list[Message]:
        out: list[Message] = []
        try:
            out.append(self._results.get(timeout=timeout) if timeout > 0
                       else self._results.get_nowait())
            while True:
                out.append(self._results.get_nowait())
        except queue.Empty:
            pass
        for msg in out:
            if isinstance(msg, Ready):
                self.ready = msg
            elif isinstance(msg, (Rendered, Cancelled)) and self.in_flight is not None \
                    and msg.key == self.in_flight.key:
                self.in_flight = None
        return out

    def finish(self, timeout: float = 5.0) -> LoopKey:
        """The test thread: finish the request the engine sent (waits for it)."""
        request = self._requests.get(timeout=timeout)
        key = request.key
        level = 0.5 - key.alpha / 2
        n = loop_samples(key.bpm, key.bars, key.beats_per_bar)
        loop = Loop(np.full((2, n), level, np.float32), 44100, key.bpm, key.bars,
                    key.beats_per_bar)
        frames = np.full((loop_samples(key.bpm, key.bars, key.beats_per_bar, request.out_rate),
                          2), level, np.float32)
        self._results.put(Rendered(key, loop, frames, 0.01))
        return key


def test_the_shell_plays_the_core_choice_mixed_from_what_the_worker_rendered():
    state = EngineState(playing=True, bars=1)
    hub, player, worker = Hub(state), Player(), SteppedWorker()
    engine = Engine(state, player, RATE, EngineSettings(lookahead=0), worker=worker)
    hub.add_listener(engine.post)

    def cued(label: str) -> Segment | None:
        cue = player.cue
        return cue.then if cue is not None and cue.then is not None \
            and cue.then.label == label else None

    with engine:
        assert worker.finish().alpha == 0.0
        wait_for(lambda: cued("alpha 0"), 5, "the first loop's cue")
        hub.submit(SetParam("alpha", 0.5))
        assert worker.finish().alpha == 0.5
        wait_for(lambda: engine.status().cached == 2, 5, "the alpha 0.5 loop in the cache")
        hub.submit(SetParam("alpha", 0.3))  # 0.375 is in flight, 0.25 not asked for yet
        blend = wait_for(lambda: cued("blend 0|0.5 @0.60"), 5, "the blend's cue")
        lo, hi = blend_gains(0.6)
        # the two constant loops are fully correlated: the blend keeps the power an equal-power
        # mix of unrelated loops would have, instead of adding up to +3 dB
        assert np.allclose(blend.audio, math.sqrt((0.5 * lo) ** 2 + (0.25 * hi) ** 2))
        assert blend.audio.shape[0] == 2 * RATE and not blend.audio.flags.writeable
        cue = player.cue
        assert cue is not None and engine.grid.beat_at(cue.at) % 4 == pytest.approx(0.0)
        assert worker.finish().alpha == 0.375
        assert worker.finish().alpha == 0.25
        wait_for(lambda: cued("alpha 0.25"), 5, "the exact render's cue")
        hub.submit(SetParam("gain_db", -6.0))
        quiet = wait_for(lambda: (c := cued("alpha 0.25")) is not None
                         and c.audio[0, 0] < 0.375 and c, 5, "the quieter cue")
        assert np.allclose(quiet.audio, 0.375 * 10 ** (-6 / 20))
        status = wait_for(lambda: (s := engine.status()).cached == 4 and s, 5, "the status")
        assert status.sounding == "alpha 0.25" and status.renders == 4
        assert engine.status_numbers() == (status.queued, 4, 0)
    events = []
    while not engine.events.empty():
        events.append(engine.events.get_nowait())
    assert not any(isinstance(e, Switched) for e in events)  # no audio ran: nothing sounded


def test_the_shell_cues_again_when_a_switch_sounds_while_it_prepares_the_next():
    """The race a loaded machine makes: the shell reads the player, decides to replace the
    pending cue (token 2), and by the time the replacement (token 3) is in place the player has
    applied token 2. The player drops token 3 (its fade starts from the loop before token 2);
    the shell sees that, cues the same sound again from token 2's loop, and logs token 2 as
    sounded. Every frame the player plays is the loop that sounds or a fade out of it."""
    state = EngineState(playing=True, bars=1, xfade=0.01)
    hub, player, worker = Hub(state), Player(), SteppedWorker()
    engine = Engine(state, player, RATE, EngineSettings(lookahead=0), worker=worker)
    hub.add_listener(engine.post)
    prepare = engine._prepare
    played: list[np.ndarray] = []

    def play_to(frame: int) -> None:
        while player.frame < frame:
            buf = np.zeros((512, 2), np.float32)
            player.fill(buf)
            played.append(buf)

    def late(decision: CueDecision, after: int) -> None:
        pending = player.cue
        if decision.token == 3 and pending is not None:  # the audio ran on meanwhile
            play_to(pending.at + pending.fade.shape[0] + 512)
        prepare(decision, after)

    engine._prepare = late  # type: ignore[method-assign]
    with engine:
        assert worker.finish().alpha == 0.0
        wait_for(lambda: player.cue is not None and player.cue.token == 1, 5, "the first cue")
        play_to(player.cue.at + 2048)
        hub.submit(SetParam("alpha", 0.5))
        assert worker.finish().alpha == 0.5
        wait_for(lambda: player.cue is not None and player.cue.token == 2, 5, "cue 2")
        second = player.cue
        hub.submit(SetParam("alpha", 0.25))  # a blend of 0 and 0.5, cued at once
        wait_for(lambda: player.cue is not None and player.cue.token == 3, 5, "cue 3")
        play_to(player.frame + 512)
        assert player.dropped_token == 3
        assert player.applied_token == 2
        again = wait_for(lambda: (c := player.cue) is not None and c.token == 4 and c, 5,
                         "cue 4")
        assert again.after == 2 and again.then is not None
        assert again.then.label == "blend 0|0.5 @0.50" and again.at > second.at
        play_to(again.at + again.fade.shape[0] + 512)
        wait_for(lambda: [t for t, _, _ in engine.sounded] == [1, 2, 4], 5, "the log")
        assert engine.status().sounding == "blend 0|0.5 @0.50"
    out = np.concatenate(played)[:, 0]
    assert second.then is not None and again.then is not None
    b_level = float(second.then.audio[0, 0])
    between = out[second.at + second.fade.shape[0]:again.at]
    assert np.all(between == b_level)  # token 2's loop, not the one before it
    after_fade = out[again.at + again.fade.shape[0]:again.at + again.fade.shape[0] + 512]
    assert np.all(after_fade == again.then.audio[0, 0])


def test_the_shell_cancels_a_render_that_a_newer_request_made_useless():
    state = EngineState(playing=True, bars=8, bpm=60.0)
    hub, worker = Hub(state), SteppedWorker()
    engine = Engine(state, Player(), RATE, EngineSettings(lookahead=0), worker=worker)
    hub.add_listener(engine.post)
    with engine:
        wait_for(lambda: worker.in_flight is not None, 5, "the 8-bar render")
        long = worker.in_flight.key if worker.in_flight is not None else None
        hub.submit(SetParam("alpha", 0.5))  # only alpha: the 8-bar loop at 0 is still of use
        time.sleep(0.2)
        assert worker.cancelled == [] and worker.in_flight is not None
        hub.submit(SetParam("bars", 2))  # a new length: nothing could play the 8-bar loop
        wait_for(lambda: worker.cancelled == [long], 5, "the cancel")
        key = worker.finish()
        assert key.bars == 2 and key.alpha == 0.5
        wait_for(lambda: engine.status().sounding == "alpha 0.5", 5, "the new loop's cue")
        status = engine.status()
        assert status.renders == 1 and status.errors == 0  # a cancel is not a failure


class BrokenPipeWorker(SteppedWorker):
    """A stepped worker whose result pipe breaks once, right after the first request."""

    def __init__(self) -> None:
        super().__init__()
        self.broke = False

    def poll(self, timeout: float = 0.0) -> list[Message]:
        if self.in_flight is not None and not self.broke:
            self.broke = True
            raise OSError("the results pipe broke")
        return super().poll(timeout)


def test_a_turn_that_raises_is_reported_and_the_engine_goes_on():
    state = EngineState(playing=True, bars=1)
    worker = BrokenPipeWorker()
    engine = Engine(state, Player(), RATE, EngineSettings(lookahead=0), worker=worker)
    with engine:
        assert worker.finish().alpha == 0.0
        wait_for(lambda: engine.status().sounding == "alpha 0", 5, "the loop after the error")
    status = engine.status()
    assert status.errors == 1 and status.last_error == "OSError: the results pipe broke"
    events = []
    while not engine.events.empty():
        events.append(engine.events.get_nowait())
    assert [e for e in events if isinstance(e, EngineError)] == [
        EngineError("engine", "OSError: the results pipe broke")]
