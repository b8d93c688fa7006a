"""The engine running for real with the tiny model in its worker process (no audio device: the
paced stream drives the player at the audio rate). Plumbing, order and isolation, not taste.
Everything is observed through public interfaces: the engine's events, its status snapshot, the
player, the worker's process id, and the files the writer leaves behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from engine_helpers import RATE, Live, running_engine, wait_for

from riffbridge.events import ClipCued, EngineError, LoopReady, Switched
from riffbridge.outputs.files import OutputFolder
from riffbridge.outputs.wav import WavSettings
from riffbridge.outputs.writer import LoopWriter
from riffbridge.state import EngineState, SetParam

LIVE = EngineState(steps=4, playing=True, bars=1, quantum="beat")


def sounding(live: Live) -> str:
    return live.engine.status().sounding


def look_ahead_done(live: Live) -> bool:
    status = live.engine.status()
    return status.worker == "idle" and status.queued == 0


def worker_errors(live: Live) -> list[EngineError]:
    return [e for e in live.log.of(EngineError) if e.source == "worker"]


def test_first_loop_sounds_on_a_beat_and_is_the_rendered_loop(tmp_path: Path):
    folder = OutputFolder(tmp_path, WavSettings("float32"))
    with LoopWriter(folder) as writer, running_engine(LIVE, writer=writer) as live:
        player = live.engine.player
        wait_for(lambda: player.applied_token >= 1, 60, "the first loop to sound")
        beat = live.engine.grid.beat_at(player.applied_at)
        assert beat == pytest.approx(round(beat), abs=1e-6)
        seg = player.playing
        assert seg.audio.shape == (round(4 * 60 / 120 * RATE), 2)  # one bar of 4/4 at 120 BPM
        clip = wait_for(lambda: live.log.of(ClipCued), 30, "the first clip")[0]
        assert max(live.tap.peaks[-10:]) > 0.0
        switched = wait_for(lambda: live.log.of(Switched), 10, "the switch event")[0]
        assert switched.label == "alpha 0" and switched.alpha == 0.0
    # what sounds is the rendered loop itself (gain 0 dB, same rate), as the file has it
    written, rate = sf.read(clip.path, dtype="float32", always_2d=True)
    assert rate == RATE and written.shape[0] == seg.audio.shape[0]
    expected = np.repeat(written, 2, axis=1) if written.shape[1] == 1 else written
    assert np.array_equal(seg.audio, expected)


def test_a_killed_worker_does_not_stop_the_audio_and_comes_back():
    with running_engine(LIVE) as live:
        engine, worker, tap = live.engine, live.worker, live.tap
        wait_for(lambda: engine.player.applied_token >= 1, 60, "the first loop to sound")
        wait_for(lambda: look_ahead_done(live), 60, "the worker to finish its look-ahead")
        old_pid = worker.pid
        assert old_pid is not None
        live.hub.submit(SetParam("alpha", 1.0))
        wait_for(lambda: (s := engine.status()).state.alpha == 1.0 and s.worker == "rendering",
                 10, "the alpha 1 render")
        blocks_before = len(tap.peaks)
        os.kill(old_pid, signal.SIGKILL)
        errors = wait_for(lambda: worker_errors(live), 10, "the error to be reported")
        assert "died" in errors[0].message and "restarting" in errors[0].message
        assert "died" in engine.status().last_error
        wait_for(lambda: worker.pid != old_pid and engine.status().worker != "starting",
                 60, "a new worker")
        assert worker.restarts == 1
        during = tap.peaks[blocks_before:]
        assert len(during) > 0 and min(during) > 0.0  # the loop kept playing throughout
        wait_for(lambda: sounding(live) == "alpha 1", 60, "the alpha 1 loop to sound")
        assert engine.status().underruns == 0


def test_a_stalled_worker_is_replaced_and_the_audio_goes_on():
    # The worker's heartbeat covers the first render's warm-up and the loop shaping, which
    # report no progress (15 s measured while other test runs shared this CPU): the limit only
    # has to outlast a heartbeat's delay on a busy machine.
    with running_engine(LIVE, render_timeout_s=10.0) as live:
        engine, worker, tap = live.engine, live.worker, live.tap
        wait_for(lambda: engine.player.applied_token >= 1, 60, "the first loop to sound")
        wait_for(lambda: look_ahead_done(live), 60, "the worker to finish its look-ahead")
        old_pid = worker.pid
        assert old_pid is not None
        live.hub.submit(SetParam("alpha", 1.0))
        wait_for(lambda: (s := engine.status()).state.alpha == 1.0 and s.worker == "rendering",
                 10, "the alpha 1 render")
        blocks_before = len(tap.peaks)
        os.kill(old_pid, signal.SIGSTOP)  # a render that never comes back
        try:
            errors = wait_for(lambda: worker_errors(live), 90, "the stall to be noticed")
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed and reaped: nothing to wake
                os.kill(old_pid, signal.SIGCONT)
        assert "stalled" in errors[0].message
        wait_for(lambda: worker.pid != old_pid and engine.status().worker != "starting",
                 60, "a new worker")
        during = tap.peaks[blocks_before:]
        assert min(during) > 0.0  # the loop played on through the stall and the restart
        wait_for(lambda: sounding(live) == "alpha 1", 60, "the alpha 1 loop to sound")


def test_stale_renders_are_dropped(tmp_path: Path):
    folder = OutputFolder(tmp_path)
    with LoopWriter(folder) as writer, running_engine(LIVE, writer=writer, lookahead=0) as live:
        wait_for(lambda: look_ahead_done(live), 60, "the worker")
        for i in range(12):
            live.hub.submit(SetParam("prompt_a", f"style {i}"))
            time.sleep(0.05)
        wait_for(lambda: live.engine.status().state.prompt_a == "style 11"
                 and look_ahead_done(live), 60, "the last prompt's loop")
        time.sleep(0.5)
        ready = live.log.of(LoopReady)
    prompts = [json.loads(p.read_text())["prompt"] for p in folder.run_dir.glob("0*.json")]
    assert "style 11" in prompts
    # only the render in flight when the prompt moved on may be an intermediate one
    assert len(prompts) <= 5, prompts
    assert len(ready) == len(prompts)


def test_auto_mode_walks_alpha_once_per_loop():
    state = EngineState(steps=2, playing=True, bars=1, bpm=240.0, auto=0.125, quantum="loop")
    changes: list[tuple[float, str]] = []
    with running_engine(state) as live:
        live.hub.add_listener(lambda ch: changes.append((ch.state.alpha, ch.source))
                              if "alpha" in ch.changed else None)
        wait_for(lambda: len(changes) >= 3, 60, "three steps of the walk")
    walk = [a for a, source in changes if source == "engine"]
    assert walk[:3] == [0.125, 0.25, 0.375]


def test_clip_events_name_the_file_of_the_loop_about_to_sound(tmp_path: Path):
    folder = OutputFolder(tmp_path)
    with LoopWriter(folder) as writer, running_engine(LIVE, writer=writer) as live:
        wait_for(lambda: live.log.of(ClipCued), 60, "the first clip")
        wait_for(lambda: live.engine.status().renders >= 3, 60, "the look-ahead renders")
        time.sleep(0.5)
        assert [c.alpha for c in live.log.of(ClipCued)] == [0.0]  # look-ahead: written only
        live.hub.submit(SetParam("alpha", 0.125))  # rendered ahead: announced at once
        wait_for(lambda: len(live.log.of(ClipCued)) >= 2, 10, "the second clip")
        clips = live.log.of(ClipCued)
    clip = clips[1]
    assert (clip.alpha, clip.bpm, clip.bars) == (0.125, 120.0, 1)
    sidecar = json.loads(Path(clip.path).with_suffix(".json").read_text())
    assert sidecar["alpha"] == 0.125 and Path(clip.path).stat().st_size > 0
    assert len(list(folder.run_dir.glob("0*.wav"))) >= 3


def test_a_render_that_fails_is_reported_and_retried_later_and_later(tmp_path: Path):
    state = LIVE.replace(pattern="missing.wav")  # a seed file that is not in the seed folder
    with running_engine(state, seed_dir=str(tmp_path), lookahead=0) as live:
        errors = wait_for(lambda: len(e := live.log.timed(EngineError)) >= 3 and e, 60,
                          "three failed tries")
        status = live.engine.status()
    assert all(e.source == "render" and "missing.wav" in e.message for _, e in errors)
    (t1, _), (t2, _), (t3, _) = errors[:3]
    assert t2 - t1 == pytest.approx(1.0, abs=0.3)  # 1 s, then 2 s before the next try
    assert t3 - t2 == pytest.approx(2.0, abs=0.3)
    assert status.errors >= 3 and "missing.wav" in status.last_error
    assert status.sounding == "silence" and status.renders == 0
