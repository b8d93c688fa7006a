"""The set recorder and its log, without an audio server: the ring, the files, bad paths, a full
disk, a kill -9 mid-set, and logs that were cut short or edited by hand."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from engine_helpers import running_engine, wait_for

from riffbridge.cli import main
from riffbridge.control.routes import Do, route
from riffbridge.engine.plan import LoopKey
from riffbridge.errors import ControlError, OutputError
from riffbridge.events import EngineError
from riffbridge.outputs.recorder import Recorder, RecordRing, check_record_path
from riffbridge.outputs.setlog import read_log
from riffbridge.state import EngineState, StartRecording, StopRecording, apply

RATE = 44100
ROOT = Path(__file__).resolve().parents[1]


def test_ring_copies_wraps_and_counts_what_it_drops() -> None:
    ring = RecordRing(10)
    a = np.arange(12, dtype=np.float32).reshape(6, 2)
    ring.push(a, 100)
    assert ring.first_frame == 100
    assert np.array_equal(ring.pull(), a)
    ring.push(a + 100, 106)  # wraps around the end of the ring
    assert np.array_equal(ring.pull(), a + 100)
    ring.push(a, 112)
    ring.push(a, 118)  # 12 frames in a ring of 10: this block is dropped and counted
    assert ring.overflows == 1
    assert np.array_equal(ring.pull(), a)
    assert ring.pull() is None


def _push_from_a_thread(recorder: Recorder, audio: np.ndarray, block: int = 512) -> None:
    for i in range(0, audio.shape[0], block):
        recorder.ring.push(audio[i:i + block], 1000 + i)
        time.sleep(0.001)


def test_recorder_writes_what_was_played_and_a_line_per_entry(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal((RATE, 2)) * 0.2).astype(np.float32)
    path = tmp_path / "set.wav"
    with Recorder(path, RATE, header={"state": {"alpha": 0.0}}) as recorder:
        recorder.log({"type": "param", "frame": 1000 + 512, "changed": {"alpha": 0.5}})
        _push_from_a_thread(recorder, audio)
        time.sleep(0.2)
        # the log line is on disk already, before the recording ends (flushed per line)
        lines = path.with_suffix(".jsonl").read_text().splitlines()
        assert json.loads(lines[1])["sample"] == 512
    data, rate = sf.read(path, dtype="float32")
    assert rate == RATE and sf.info(path).subtype == "PCM_24"
    assert data.shape == audio.shape
    assert np.max(np.abs(data - audio)) <= 2.0 ** -23
    last = json.loads(path.with_suffix(".jsonl").read_text().splitlines()[-1])
    assert last == {"type": "stop", "samples": RATE, "overflows": 0}


def test_record_paths_that_cannot_be_written_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"folder .*nope does not exist; create it first"):
        check_record_path(tmp_path / "nope" / "set.wav")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="does not exist"):
        check_record_path(tmp_path / "file" / "set.wav")
    with pytest.raises(OutputError, match=r"must end in \.wav or \.flac, got .*set\.mp3"):
        check_record_path(tmp_path / "set.mp3")
    with _mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as folder, \
            pytest.raises(OutputError, match="not writable"):
        Recorder(folder / "set.wav", RATE).start()
    with pytest.raises(ControlError, match=r"\.wav or \.flac file, got 'x\.txt'"):
        apply(EngineState(), StartRecording("x.txt"))


def test_osc_routes_for_recording() -> None:
    assert route("/rb/record/start", ["/tmp/a.wav"]) == Do(StartRecording("/tmp/a.wav"))
    assert route("/rb/record/stop", []) == Do(StopRecording())
    with pytest.raises(ControlError, match="/rb/record/start takes a string"):
        route("/rb/record/start", [])


@contextlib.contextmanager
def _mounted_tmpfs(folder: Path, options: str) -> Iterator[Path]:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN); the full-disk and "
                    "read-only cases run where it can be mounted")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_stops_the_recording_with_a_clear_error_and_a_valid_file(
        tmp_path: Path) -> None:
    errors: list[str] = []
    with _mounted_tmpfs(tmp_path / "small", "size=256k") as folder:
        recorder = Recorder(folder / "set.wav", RATE, on_error=errors.append).start()
        audio = np.full((RATE * 2, 2), 0.25, dtype=np.float32)  # 2 s: 529 kB of 24-bit
        _push_from_a_thread(recorder, audio)
        wait_for(lambda: errors, 10, "the full disk to be reported")
        recorder.close()
        assert "stopped after" in errors[0] and "the file so far is kept" in errors[0]
        assert "the disk is full" in errors[0]
        data, _ = sf.read(folder / "set.wav", dtype="float32")
        assert 0 < data.shape[0] < RATE * 2
        assert np.allclose(data, 0.25, atol=2.0 ** -22)
        for line in (folder / "set.jsonl").read_text().splitlines():
            json.loads(line)


def test_engine_plays_on_when_recording_fails(tmp_path: Path) -> None:
    state = EngineState(steps=2, bars=1, playing=True)
    with running_engine(state) as live:
        live.hub.submit(StartRecording(str(tmp_path / "missing" / "set.wav")))
        errors = wait_for(lambda: [e for e in live.log.of(EngineError) if e.source == "record"],
                          10, "the refused path")
        assert "missing does not exist" in errors[0].message
        path = tmp_path / "set.wav"
        live.hub.submit(StartRecording(str(path)))
        wait_for(lambda: live.engine.player.tap is not None, 10, "the recording")
        # a writer that fails (a pulled drive): the engine says so and plays on
        recorder = live.engine._recorder
        assert recorder is not None

        def broken(block: np.ndarray) -> None:
            raise OSError(5, "Input/output error")

        time.sleep(0.3)
        assert recorder._sound is not None
        recorder._sound.write = broken  # type: ignore[method-assign]
        failed = wait_for(lambda: [e for e in live.log.of(EngineError)
                                   if e.source == "record" and "stopped after" in e.message],
                          10, "the failed write")
        assert "Input/output error" in failed[0].message
        wait_for(lambda: live.engine.player.tap is None, 5, "the recorder detached")
        frame = live.engine.player.frame
        time.sleep(0.3)
        assert live.engine.player.frame > frame  # still playing
    data, _ = sf.read(path)
    assert data.shape[0] > 0


def _serve(record: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "riffbridge", "serve", "--model", "tiny", "--device", "cpu",
         "--audio-out", "none", "--out-dir", "none", "--steps", "2", "--bars", "1",
         "--record", str(record), "--osc-port", str(port), "--reply-port", str(port + 1),
         "--no-web"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_leaves_a_playable_file_and_a_log_that_replays(tmp_path: Path) -> None:
    record = tmp_path / "set.wav"
    proc = _serve(record, 9760)
    try:
        def switched() -> bool:
            log = record.with_suffix(".jsonl")
            return log.exists() and log.read_text().count('"type":"switch"') >= 1
        wait_for(switched, 120, "a switch in the log")
        time.sleep(2.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    data, rate = sf.read(record, dtype="int32")  # the header holds the sizes so far
    assert rate == RATE and data.shape[0] > RATE
    setlog = read_log(record.with_suffix(".jsonl"))
    assert not setlog.complete and any("no stop line" in w for w in setlog.warnings)
    assert 0 < setlog.samples <= data.shape[0]
    out = tmp_path / "again.wav"
    assert main(["replay", str(record.with_suffix(".jsonl")), "--out", str(out),
                 "--model", "tiny", "--device", "cpu"]) == 0
    replayed, _ = sf.read(out, dtype="int32")
    assert replayed.shape[0] == setlog.samples
    assert np.array_equal(replayed, data[:setlog.samples])  # the set up to the kill, exactly


# ---- logs cut short or edited by hand ----------------------------------------------------------

def _log_lines() -> list[str]:
    key = LoopKey(steps=2, bars=1).sidecar()
    start = {"type": "start", "version": 1, "rate": RATE, "channels": 2, "model": "tiny"}
    switch = {"type": "switch", "token": 1, "frame": 1000, "sample": 0, "bar": 0, "fade": 100,
              "phase": 0.0, "level": 1.0, "gains": [1.0, 0.0], "label": "alpha 0",
              "quantum": 4, "bpm": 120.0, "low": key, "high": None, "weight": 0.0}
    return [json.dumps(start), json.dumps(switch),
            json.dumps({"type": "frames", "samples": RATE})]


def test_a_log_cut_short_replays_up_to_its_last_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    lines = _log_lines()
    path.write_text("\n".join(lines) + "\n" + lines[2][:10])
    setlog = read_log(path)
    assert len(setlog.switches) == 1 and setlog.samples == RATE
    assert any("line 4 is cut short" in w for w in setlog.warnings)
    assert path.read_text().endswith(lines[2][:10])  # nothing of the log was changed


@pytest.mark.parametrize(("edit", "message"), [
    (lambda e: e["low"].update(seed="abc"), r"line 2: low\.seed must be an int"),
    (lambda e: e["low"].pop("bpm"), r"line 2: low .*lacks \['bpm'\]"),
    (lambda e: e.update(fade=0), r"line 2: fade must be at least 1 frame"),
    (lambda e: e.update(type="swtich"), r"line 2: unknown line type 'swtich'"),
    (lambda e: e.update(gains="loud"), r"line 2: gains must be two numbers"),
])
def test_a_hand_edited_log_is_refused_naming_the_line(tmp_path: Path, edit, message) -> None:
    lines = _log_lines()
    entry = json.loads(lines[1])
    edit(entry)
    lines[1] = json.dumps(entry)
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(OutputError, match=message):
        read_log(path)


def test_logs_that_are_not_set_logs(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    with pytest.raises(OutputError, match="set log not found"):
        read_log(path)
    lines = _log_lines()
    path.write_text("\n".join([lines[0], "{oops", lines[2]]) + "\n")
    with pytest.raises(OutputError, match="line 2: not JSON"):
        read_log(path)
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(OutputError, match="not a riffbridge set log"):
        read_log(path)
    assert main(["replay", str(path), "--out", str(tmp_path / "x.wav")]) != 0
    assert not (tmp_path / "x.wav").exists()


def test_recording_thread_is_not_left_behind(tmp_path: Path) -> None:
    before = {t.name for t in threading.enumerate()}
    recorder = Recorder(tmp_path / "a.flac", RATE).start()
    audio = np.full((4096, 2), 0.5, dtype=np.float32)
    _push_from_a_thread(recorder, audio)
    recorder.close()
    recorder.close()  # idempotent
    assert "riffbridge-recorder" not in {t.name for t in threading.enumerate()} - before
    data, _ = sf.read(tmp_path / "a.flac")
    assert sf.info(tmp_path / "a.flac").format == "FLAC" and data.shape == (4096, 2)


def test_a_recording_started_mid_set_replays_to_the_same_samples(tmp_path: Path) -> None:
    from riffbridge.state import SetParam

    state = EngineState(steps=2, bars=1, playing=True, xfade=0.05)
    path = tmp_path / "mid.wav"
    with running_engine(state) as live:
        player = live.engine.player
        wait_for(lambda: player.applied_token >= 1, 90, "the first loop")
        time.sleep(0.5)
        live.hub.submit(StartRecording(str(path)))
        wait_for(lambda: player.tap is not None, 10, "the recording")
        live.hub.submit(SetParam("alpha", 0.0625))  # a blend of 0 and 1/8 once 1/8 is there
        wait_for(lambda: player.applied_token >= 2, 60, "a switch while recording")
        time.sleep(1.0)
        live.hub.submit(StopRecording())
        wait_for(lambda: player.tap is None, 10, "the recording to stop")
    setlog = read_log(path.with_suffix(".jsonl"))
    assert setlog.complete and setlog.switches[0].before_start
    assert setlog.sample_of(setlog.switches[0]) < 0 < setlog.sample_of(setlog.switches[-1])
    assert setlog.params == 1
    out = tmp_path / "again.wav"
    assert main(["replay", str(path.with_suffix(".jsonl")), "--out", str(out), "--model", "tiny",
                 "--device", "cpu"]) == 0
    recorded, _ = sf.read(path, dtype="int32")
    replayed, _ = sf.read(out, dtype="int32")
    assert np.array_equal(replayed, recorded)
    # more steps: other loops, the same set on the same samples (the same cue sheet)
    hq = tmp_path / "hq.wav"
    assert main(["replay", str(path.with_suffix(".jsonl")), "--out", str(hq), "--model", "tiny",
                 "--device", "cpu", "--steps", "3"]) == 0
    better, _ = sf.read(hq, dtype="int32")
    assert better.shape == recorded.shape and not np.array_equal(better, recorded)
    assert hq.with_suffix(".cue").read_text().replace("hq.wav", "again.wav") == \
        out.with_suffix(".cue").read_text()


def test_serve_refuses_a_record_path_it_cannot_write_before_the_model_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = main(["serve", "--model", "tiny", "--audio-out", "none", "--out-dir", "none",
                 "--record", str(tmp_path / "missing" / "set.wav")])
    assert code != 0 and time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "--record: cannot record to" in err and "missing does not exist" in err
    code = main(["serve", "--model", "tiny", "--audio-out", "none", "--out-dir", str(tmp_path),
                 "--cue-channels", "3,4"])
    assert code != 0 and "--cue-channels needs an audio device" in capsys.readouterr().err


def test_ctrl_c_finishes_the_recording_and_its_log(tmp_path: Path) -> None:
    record = tmp_path / "set.wav"
    proc = _serve(record, 9770)
    try:
        wait_for(lambda: record.with_suffix(".jsonl").exists()
                 and '"type":"frames"' in record.with_suffix(".jsonl").read_text(), 120,
                 "the recording")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    setlog = read_log(record.with_suffix(".jsonl"))
    assert setlog.complete and not setlog.warnings
    assert sf.info(record).frames == setlog.samples > 0
