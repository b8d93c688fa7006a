"""The engine running for real with the tiny model in its worker process (no audio device: the
paced stream drives the player at the audio rate). Plumbing, order and isolation, not taste."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import RATE, running_engine, wait_for

from riffbridge.control.hub import Hub
from riffbridge.engine.cache import CachedLoop
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.plan import key_for
from riffbridge.engine.player import Player
from riffbridge.loops.types import Loop
from riffbridge.outputs.files import OutputFolder
from riffbridge.outputs.writer import LoopWriter
from riffbridge.state import EngineState, SetParam

LIVE = EngineState(steps=4, playing=True, bars=1, quantum="beat")


def sounding(engine: Engine) -> str:
    return engine.status().sounding


def test_first_loop_sounds_on_a_beat_and_is_the_rendered_loop():
    with running_engine(LIVE) as (hub, engine, tap):
        wait_for(lambda: engine.player.applied_token >= 1, 60, "the first loop to sound")
        switch = engine.switches[0]
        beat = engine.grid.beat_at(switch.at_frame)
        assert beat == pytest.approx(round(beat), abs=1e-6)
        cached = engine.cache.get(key_for(hub.state))
        assert cached is not None
        n = cached.frames.shape[0]
        assert n == round(4 * 60 / 120 * RATE)  # one bar of 4/4 at 120 BPM, exactly
        seg = engine.player.playing
        assert seg.audio.shape == cached.frames.shape
        assert np.array_equal(seg.audio, cached.frames)  # gain 0 dB: the loop itself
        assert max(tap.peaks[-10:]) > 0.0


def test_a_killed_worker_does_not_stop_the_audio_and_comes_back():
    errors: list[tuple[str, tuple]] = []
    with running_engine(LIVE) as (hub, engine, tap):
        hub.add_sink(lambda address, args: errors.append((address, args))
                     if address == "/rb/error" else None)
        wait_for(lambda: engine.player.applied_token >= 1, 60, "the first loop to sound")
        wait_for(lambda: engine.worker.idle, 60, "the worker to finish its look-ahead")
        old_pid = engine.worker.pid
        hub.submit(SetParam("alpha", 1.0))
        wait_for(lambda: engine.worker.in_flight is not None
                 and engine.worker.in_flight.key.alpha == 1.0, 10, "the alpha 1 render")
        blocks_before = len(tap.peaks)
        os.kill(old_pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_for(lambda: engine.errors >= 1, 10, "the error to be reported")
        assert "died" in engine.last_error and "restarting" in engine.last_error
        assert any("died" in args[1] for _, args in errors)
        wait_for(lambda: engine.worker.ready is not None and engine.worker.pid != old_pid,
                 60, "a new worker")
        assert engine.worker.restarts == 1
        during = tap.peaks[blocks_before:]
        assert len(during) > 0 and min(during) > 0.0  # the loop kept playing throughout
        wait_for(lambda: sounding(engine) == "alpha 1", 60, "the alpha 1 loop to sound")
        assert engine.player.underruns == 0


def test_stale_renders_are_dropped(tmp_path: Path):
    folder = OutputFolder(tmp_path)
    with LoopWriter(folder) as writer, running_engine(LIVE, writer=writer, lookahead=0) as (
            hub, engine, _):
        wait_for(lambda: engine.worker.idle, 60, "the worker")
        for i in range(12):
            hub.submit(SetParam("prompt_a", f"style {i}"))
            time.sleep(0.05)
        wait_for(lambda: key_for(hub.state) in engine.cache, 60, "the last prompt's loop")
        wait_for(lambda: engine.worker.idle, 60, "the worker")
        time.sleep(0.5)
    prompts = [json.loads(p.read_text())["prompt"] for p in folder.run_dir.glob("0*.json")]
    assert "style 11" in prompts
    # only the render in flight when the prompt moved on may be an intermediate one
    assert len(prompts) <= 5, prompts


def _loop_entry(state: EngineState, alpha: float, value: float) -> CachedLoop:
    n = round(4 * 60 / state.bpm * RATE) * state.bars
    frames = np.full((n, 2), value, np.float32)
    loop = Loop(frames.T, 44100, state.bpm, state.bars, state.beats_per_bar)
    return CachedLoop(key_for(state, alpha), loop, frames)


def test_between_rendered_points_an_equal_power_blend_plays_at_the_next_quantum():
    state = EngineState(playing=True, alpha=0.3, bars=1)
    hub = Hub(state)
    engine = Engine(hub, Player(), RATE, EngineSettings())
    engine.cache.put(_loop_entry(state, 0.0, 0.5))
    engine.cache.put(_loop_entry(state, 0.5, 0.25))
    engine._update_playback()
    cue = engine.player.cue
    assert cue is not None and cue.then is not None
    assert cue.then.label == "blend 0|0.5 @0.60"
    lo, hi = np.cos(0.6 * np.pi / 2), np.sin(0.6 * np.pi / 2)
    assert cue.then.audio[0, 0] == pytest.approx(0.5 * lo + 0.25 * hi, rel=1e-6)
    assert engine.grid.beat_at(cue.at) % 4 == pytest.approx(0.0)  # the next bar
    # the exact render lands: the blend is replaced
    engine.cache.put(_loop_entry(state, 0.25, 0.125))
    engine._update_playback()
    assert engine.player.cue.then.label == "alpha 0.25"  # type: ignore[union-attr]
    # a gain change re-cues the same loop at the new level
    engine.state = EngineState(playing=True, alpha=0.3, bars=1, gain_db=-6.0)
    engine._update_playback()
    assert engine.player.cue.then.audio[0, 0] == pytest.approx(  # type: ignore[union-attr]
        0.125 * 10 ** (-6 / 20), rel=1e-5)


def test_a_tempo_change_keeps_the_old_loop_until_the_new_one_lands():
    state = EngineState(playing=True, bars=1)
    engine = Engine(Hub(state), Player(), RATE, EngineSettings())
    engine.cache.put(_loop_entry(state, 0.0, 0.5))
    engine._update_playback()
    first = engine.player.cue
    assert first is not None and engine.grid.bpm == 120.0
    faster = EngineState(playing=True, bars=1, bpm=140.0)
    engine.state = faster
    engine._update_playback()
    assert engine.player.cue is first  # nothing at 140 yet: keep playing on the old grid
    engine.cache.put(_loop_entry(faster, 0.0, 0.25))
    engine.player.frame = first.at + 10 * RATE
    engine.player.applied_token = first.token
    engine._update_playback()
    cue = engine.player.cue
    assert cue is not first and cue.then.audio.shape[0] == round(4 * 60 / 140 * RATE)
    assert engine.grid.bpm == 140.0
    assert engine.grid.beat_at(cue.at) == pytest.approx(round(engine.grid.beat_at(cue.at)))


def test_auto_mode_walks_alpha_once_per_loop():
    state = EngineState(steps=2, playing=True, bars=1, bpm=240.0, auto=0.125, quantum="loop")
    changes: list[tuple[float, str]] = []
    with running_engine(state) as (hub, _engine, _):
        hub.add_listener(lambda ch: changes.append((ch.state.alpha, ch.source))
                         if "alpha" in ch.changed else None)
        wait_for(lambda: len(changes) >= 3, 60, "three steps of the walk")
    walk = [a for a, source in changes if source == "engine"]
    assert walk[:3] == [0.125, 0.25, 0.375]


def test_an_external_clock_moves_the_grid():
    from riffbridge.control.hub import Change
    from riffbridge.engine.engine import ClockSync
    from riffbridge.state import ClockTempo

    state = EngineState(playing=True, clock="midi")
    hub = Hub(state)
    engine = Engine(hub, Player(), RATE, EngineSettings())
    engine.player.stamp[:] = (RATE * 10, 100.0)  # frame 441000 sounded at t = 100 s
    engine._on_clock(ClockSync(beat=0.0, time=100.5, source="midi"))  # MIDI start
    start = RATE * 10 + RATE // 2
    assert engine.grid.beat_at(start) == pytest.approx(0.0)
    assert engine.grid.next_boundary(start + 1, 4)[0] == start + 4 * RATE // 2
    engine.player.frame = start + RATE
    faster = EngineState(playing=True, clock="midi", bpm=140.0)
    engine._on_change(Change(ClockTempo(140.0), faster, ("bpm",), "midi"))
    assert engine.grid.bpm == 140.0
    assert engine.grid.beat_at(start + RATE) == pytest.approx(2.0)  # the beat count goes on


def test_a_stalled_worker_is_replaced_and_the_audio_goes_on():
    with running_engine(LIVE, render_timeout_s=15.0) as (hub, engine, tap):
        wait_for(lambda: engine.player.applied_token >= 1, 60, "the first loop to sound")
        wait_for(lambda: engine.worker.idle, 60, "the worker to finish its look-ahead")
        old_pid = engine.worker.pid
        assert old_pid is not None
        hub.submit(SetParam("alpha", 1.0))
        wait_for(lambda: engine.worker.in_flight is not None, 10, "the alpha 1 render")
        blocks_before = len(tap.peaks)
        os.kill(old_pid, signal.SIGSTOP)  # a render that never comes back
        try:
            wait_for(lambda: engine.errors >= 1, 30, "the stall to be noticed")
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed and reaped: nothing to wake
                os.kill(old_pid, signal.SIGCONT)
        assert "stalled" in engine.last_error
        wait_for(lambda: engine.worker.ready is not None and engine.worker.pid != old_pid,
                 60, "a new worker")
        during = tap.peaks[blocks_before:]
        assert min(during) > 0.0  # the loop played on through the stall and the restart
        wait_for(lambda: sounding(engine) == "alpha 1", 60, "the alpha 1 loop to sound")


def test_clip_pushes_name_the_file_of_the_loop_about_to_sound(tmp_path: Path):
    clips: list[tuple] = []
    folder = OutputFolder(tmp_path)
    with LoopWriter(folder) as writer, running_engine(LIVE, writer=writer) as (hub, engine, _):
        hub.add_sink(lambda address, args: clips.append(args) if address == "/rb/clip" else None)
        wait_for(lambda: clips, 60, "the first /rb/clip")
        wait_for(lambda: engine.renders >= 3, 60, "the look-ahead renders")
        time.sleep(0.5)
        assert [c[1] for c in clips] == [0.0]  # look-ahead loops are written, not announced
        hub.submit(SetParam("alpha", 0.125))  # rendered ahead: announced at once
        wait_for(lambda: len(clips) >= 2, 10, "the second /rb/clip")
    path, alpha, bpm, bars = clips[1]
    assert (alpha, bpm, bars) == (0.125, 120.0, 1)
    sidecar = json.loads(Path(path).with_suffix(".json").read_text())
    assert sidecar["alpha"] == 0.125 and Path(path).stat().st_size > 0
    assert len(list(folder.run_dir.glob("0*.wav"))) >= 3


def test_a_loop_that_keeps_failing_is_retried_later_and_later():
    from riffbridge.engine.worker import Failed

    engine = Engine(Hub(EngineState(playing=True)), Player(), RATE, EngineSettings())
    key = key_for(engine.state)
    engine._on_worker(Failed(key, "RenderError: boom"))
    first = engine._retry[key]
    engine._on_worker(Failed(key, "RenderError: boom"))
    second = engine._retry[key]
    assert first[0] == 1 and second[0] == 2
    assert second[1] - time.monotonic() > 1.5  # 2 s before the second retry
    assert engine.errors == 2 and "boom" in engine.last_error
