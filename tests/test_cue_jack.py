"""The cue bus on a second JACK port pair (``--cue-out``: a second stream on the same server).

A JACK client records the master's two ports and the cue bus's two in the same process cycle,
so the four channels share one timeline: the cue bus carries the candidate on the master's
frames, the master is unchanged until the commit, and the committed loop starts on a bar line;
for a candidate on the A/B path and one on the XY surface.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from engine_helpers import EventLog, wait_for
from jack_check import NO_JACK, jack_device, jack_running

from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.player import Player
from riffbridge.engine.worker import RenderWorker, WorkerSettings
from riffbridge.outputs.audio_stream import DeviceStream
from riffbridge.state import CueAlpha, CueCommit, CueXY, EngineState, SetMany, apply

RATE = 44100

pytestmark = [
    pytest.mark.jack,
    pytest.mark.skipif(not jack_running(), reason=NO_JACK),
]


class FourPortRecorder:
    def __init__(self, seconds: float) -> None:
        import jack

        self.client = jack.Client("rb-cue-recorder", no_start_server=True)
        self.ports = [self.client.inports.register(f"in_{i}") for i in range(4)]
        self.buffer = np.zeros((int(seconds * RATE), 4), np.float32)
        self.pos = 0
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        end = min(self.pos + frames, self.buffer.shape[0])
        for i, port in enumerate(self.ports):
            self.buffer[self.pos:end, i] = port.get_array()[:end - self.pos]
        self.pos = end

    def outputs(self) -> set[str]:
        return {p.name for p in self.client.get_ports(is_audio=True, is_output=True)}

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


# (the master's state, the candidate, the label of what it plays): a point of the A/B path, and
# the XY surface's far corner from a master at the surface's origin (issue 16's XY form).
CASES = {
    "alpha": (EngineState(steps=2, bars=1, playing=True, quantum="bar", xfade=0.05),
              CueAlpha(1.0), "alpha 1"),
    "xy": (apply(EngineState(steps=2, bars=1, playing=True, quantum="bar", xfade=0.05),
                 SetMany((("x", 0.0), ("y", 0.0)))), CueXY(1.0, 1.0), "xy 1,1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cue_bus_on_its_own_ports_master_unchanged_until_commit_on_the_bar(case: str) -> None:
    state, candidate, label = CASES[case]
    hub = Hub(state)
    player = Player()
    engine = Engine(state, player, RATE, EngineSettings(),
                    worker=RenderWorker(WorkerSettings("tiny", "cpu")), block=1024)
    hub.add_listener(engine.post)
    recorder = FourPortRecorder(150)
    recorder.client.activate()
    before = recorder.outputs()
    try:
        with EventLog(hub, engine.events), \
                DeviceStream(jack_device(), RATE, player.fill, blocksize=1024, ahead_s=0):
            # direct, both, as serve plays --cue-out (the cue stream finds the master's
            # block of the same cycle by the time of its callback)
            master_ports = sorted(recorder.outputs() - before)
            with DeviceStream(jack_device(), RATE, player.fill_cue, blocksize=1024,
                              ahead_s=0):
                cue_ports = sorted(recorder.outputs() - before - set(master_ports))
                assert len(master_ports) == 2 and len(cue_ports) == 2, (master_ports, cue_ports)
                for src, dst in zip(master_ports + cue_ports, recorder.ports, strict=True):
                    recorder.client.connect(src, dst)
                engine.start()
                # the engine notes a switch on its next turn after the callback applied it
                wait_for(lambda: engine.sounded, 90, "the first loop")
                _, first_at, master = engine.sounded[0]
                assert master is not None
                underruns = player.underruns + player.cue_underruns
                hub.submit(candidate)
                cue = wait_for(lambda: player.cue_bus if player.cue_bus is not None
                               and player.cue_bus.label == label else None, 90,
                               "the candidate on the cue bus")
                time.sleep(2.0)
                tokens = player.applied_token
                hub.submit(CueCommit())
                wait_for(lambda: player.applied_token > tokens, 10, "the commit to sound")
                time.sleep(2.5)
                underruns = player.underruns + player.cue_underruns - underruns
    finally:
        engine.close()
        recorder.close()
    _, at, committed = engine.sounded[-1]
    assert committed is not None and committed.label == label
    rec = recorder.buffer[:recorder.pos]
    # The master's timeline: its first sound is the first loop's fade-in from silence.
    off = first_at - int(np.nonzero(np.any(rec[:, 0:2] != 0, axis=1))[0][0])
    # the cue bus carried the candidate, on the master's frames (the same offset)
    heard = np.nonzero(np.any(rec[:, 2:4] != 0, axis=1))[0]
    assert heard.size > RATE
    first, last = int(heard[0]), int(heard[-1])
    assert np.array_equal(rec[first:last + 1, 2:4], cue.window(first + off, last + 1 - first))
    # the master played its loop, untouched by the audition, until the commit's switch
    fade = round(0.05 * RATE)
    start = first_at + fade - off
    assert start < first < at - off
    assert np.array_equal(rec[start:at - off, 0:2], master.window(start + off, at - off - start))
    # the committed loop starts on a bar line and plays on in phase: the candidate's phase
    bar = engine.grid.beat_at(at) / 4
    assert bar == pytest.approx(round(bar), abs=1e-6)
    after = rec[at - off + fade:at - off + fade + RATE, 0:2]
    assert np.array_equal(after, committed.window(at + fade, after.shape[0]))
    assert np.array_equal(committed.audio, cue.audio)
    assert underruns == 0, f"{underruns} underruns (the machine is too busy)"
