"""Recording a set through a real audio server, and playing it again from its log.

The engine plays to PortAudio's JACK device for about 30 s with switches and a tempo change,
recording the set (``EngineSettings.record``, 24-bit) while jack_capture, an independent JACK
recorder, records the same ports as float. Once aligned, and jack_capture's floats encoded as the
recorder encodes them, the two agree sample for sample; `riffbridge replay`
renders the log's loops again with the same model and settings and assembles a set whose switches
fall on the same samples and whose samples are the recording's.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from engine_helpers import EventLog, wait_for
from jack_capture import NO_CAPTURE, JackCapture, capture_missing, output_ports
from jack_check import NO_JACK, jack_device, jack_running

from riffbridge.cli import main
from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.player import Player
from riffbridge.engine.worker import RenderWorker, WorkerSettings
from riffbridge.events import EngineError
from riffbridge.outputs.audio_stream import DeviceStream
from riffbridge.outputs.recorder import Recorder
from riffbridge.outputs.setlog import read_log
from riffbridge.state import EngineState, SetParam, StopRecording

RATE = 44100
RUN_S = 30.0

pytestmark = [
    pytest.mark.jack,
    pytest.mark.skipif(not jack_running(), reason=NO_JACK),
    pytest.mark.skipif(capture_missing(), reason=NO_CAPTURE),
]


def _as_24_bit(audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` through the recorder's encoding (libsndfile, 24-bit WAV), read back."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, subtype="PCM_24", format="WAV")
    buffer.seek(0)
    return sf.read(buffer, dtype="int32")[0]


def _first_sound(data: np.ndarray) -> int:
    loud = np.nonzero(np.any(data != 0, axis=1))[0]
    assert loud.size, "the recording is silent"
    return int(loud[0])


def test_record_agrees_with_jack_capture_and_replays(tmp_path: Path) -> None:
    record = tmp_path / "set.wav"
    captured = tmp_path / "capture.wav"
    state = EngineState(steps=2, bars=1, playing=True, quantum="bar", xfade=0.05)
    hub = Hub(state)
    player = Player()
    engine = Engine(state, player, RATE, EngineSettings(record=str(record)),
                    worker=RenderWorker(WorkerSettings("tiny", "cpu")), block=1024,
                    recorder=Recorder)
    hub.add_listener(engine.post)
    events = EventLog(hub, engine.events).start()
    before = output_ports()
    capture = None
    try:
        with DeviceStream(jack_device(), RATE, player.fill, blocksize=1024) as stream:
            ours = sorted(output_ports() - before)
            assert len(ours) == 2, f"cannot tell PortAudio's ports apart: {ours}"
            capture = JackCapture(ours, captured).start()
            engine.start()
            wait_for(lambda: player.applied_token >= 1, 90, "the first loop")
            underruns = player.underruns
            started = time.monotonic()
            targets = iter([0.25, 1.0, 0.5, 0.0, 0.75, 0.375, 1.0, 0.125] * 3)
            tempo_changed = False
            while time.monotonic() - started < RUN_S:
                if not tempo_changed and time.monotonic() - started > RUN_S / 2:
                    hub.submit(SetParam("bpm", 100.0))
                    tempo_changed = True
                else:
                    hub.submit(SetParam("alpha", next(targets)))
                time.sleep(2.5)
            hub.submit(StopRecording())
            wait_for(lambda: player.tap is None, 10, "the recording to stop")
            underruns = player.underruns - underruns
            realtime = stream.scheduling().startswith("real-time")  # JACK runs with -R
            time.sleep(0.5)
            theirs_float = capture.stop()
    finally:
        if capture is not None:
            capture.kill()
        engine.close()
        events.close()
    assert not [e for e in events.of(EngineError) if e.source == "record"]

    ours_rec, rate = sf.read(record, dtype="int32")
    assert sf.info(captured).subtype == "FLOAT"  # jack_capture keeps JACK's float samples
    assert rate == sf.info(captured).samplerate == RATE
    theirs = _as_24_bit(theirs_float, RATE)  # quantized as the recorder quantizes
    # Align on the first sound (both recorders started in silence), then every sample agrees.
    offset = _first_sound(theirs) - _first_sound(ours_rec)
    start = max(0, -offset)
    n = min(ours_rec.shape[0] - start, theirs.shape[0] - (start + offset))
    assert n > RATE * (RUN_S - 2)
    # riffbridge's ring never ran dry; the server's xruns (any client late for its cycle) must be
    # none on a real-time server, and without -R (CI) they measure the machine's load
    # (tests/test_engine_jack.py): the recordings must agree sample for sample either way.
    assert stream.underruns == 0, f"riffbridge's ring ran dry {stream.underruns} times"
    assert underruns == 0 or not realtime, f"{underruns} xruns on a real-time JACK server"
    assert np.array_equal(ours_rec[start:start + n], theirs[start + offset:start + offset + n])

    setlog = read_log(record.with_suffix(".jsonl"))
    assert setlog.complete and setlog.samples == ours_rec.shape[0]
    assert len(setlog.switches) >= 4
    assert {round(s.bpm) for s in setlog.switches} >= {120, 100}, "no tempo change sounded"
    # Replay with the same model and settings: the same set, sample for sample.
    out = tmp_path / "replayed.wav"
    assert main(["replay", str(record.with_suffix(".jsonl")), "--out", str(out),
                 "--model", "tiny", "--device", "cpu"]) == 0
    replayed, _ = sf.read(out, dtype="int32")
    assert replayed.shape == ours_rec.shape
    for switch in setlog.switches:
        s = setlog.sample_of(switch)
        window = slice(max(0, s - 2048), s + switch.fade + 2048)
        assert np.array_equal(replayed[window], ours_rec[window]), f"switch at sample {s}"
    assert np.array_equal(replayed, ours_rec)
    cue = out.with_suffix(".cue").read_text()
    assert cue.count("TRACK") == len([s for s in setlog.switches
                                      if 0 <= setlog.sample_of(s) < setlog.samples])
    # Resumable: a second replay renders nothing and writes the same set.
    assert main(["replay", str(record.with_suffix(".jsonl")), "--out", str(out),
                 "--model", "tiny", "--device", "cpu"]) == 0
    again, _ = sf.read(out, dtype="int32")
    assert np.array_equal(again, replayed)
