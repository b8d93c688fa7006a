"""The engine's pure parts: plan order, choice and blends, cache bound, grid, player, cues."""

from __future__ import annotations

import math

import numpy as np
import pytest

from riffbridge.engine.cache import CachedLoop, LoopCache
from riffbridge.engine.clock import Grid, quantum_beats
from riffbridge.engine.plan import auto_step, blend_gains, choose, key_for, plan, snap
from riffbridge.engine.player import Player, Segment, equal_power, frozen_frames, prepare_cue
from riffbridge.errors import ConfigError
from riffbridge.loops.types import Loop
from riffbridge.state import EngineState


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


def test_player_loops_and_switches_on_the_cued_frame_with_any_block_size():
    for block in (64, 100, 512):
        player = Player()
        a = Segment(_ramp(1000), origin=0, label="a")
        b = Segment(_ramp(700, scale=-1.0), origin=2500, label="b")
        player.cue = prepare_cue(None, a, 0, 1, token=1)
        out = _play(player, 2500, block)
        player.cue = prepare_cue(a, b, 3000, 50, token=2)
        out2 = _play(player, 2000, block)
        assert player.applied_token == 2 and player.applied_at == 3000
        full = np.concatenate([out, out2])
        assert np.array_equal(full[1:3000, 0], np.arange(1, 3000) % 1000)  # a loops exactly
        tail = full[3050:4500, 0]
        assert np.array_equal(tail, -((np.arange(3050, 4500) - 2500) % 700).astype(np.float32))
        fade = full[3000:3050, 0]
        out_c, in_c = equal_power(50)
        expect = (np.arange(3000, 3050) % 1000) * out_c - ((np.arange(3000, 3050) - 2500)
                                                           % 700) * in_c
        assert np.allclose(fade, expect, atol=1e-3)


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
