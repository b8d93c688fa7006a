"""Set recorder benchmarks: what recording costs the audio callback, how fast the writer drains
the ring, and how fast a logged set is assembled again (`riffbridge replay` without renders).

    python benchmarks/bench_record.py [--block 512] [--seconds 60]
    python benchmarks/bench_record.py --jack [--rounds 2] [--seconds 20]

Callback: ``Player.fill`` of one block with and without the recorder's ring attached (the tap's
copy is the only extra work), median of many blocks, in microseconds. Writer: a ring fed at
once with ``--seconds`` of audio, drained to a 24-bit WAV by the writer thread (seconds of audio
written per second). Assembly: a set of ``--seconds`` with a switch every bar, assembled from
two synthetic loops with the player's own code (x real time).

With ``--jack``: the engine (tiny model, 2 steps, 1 bar) plays to PortAudio's JACK device with
an alpha move every 2.5 s, for ``--seconds`` per run, alternately without and with
``--record``; the underruns of each run are printed (a JACK server must run).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from riffbridge.engine.plan import LoopKey
from riffbridge.engine.player import Player, Segment, frozen_frames
from riffbridge.outputs.recorder import Recorder, RecordRing
from riffbridge.outputs.setlog import SetLog, SwitchEntry, assemble

RATE = 44100


def _player(seconds: float) -> Player:
    player = Player()
    audio = frozen_frames(np.random.default_rng(0).standard_normal((RATE * 2, 2)) * 0.1)
    player.playing = Segment(audio, 0, "loop")
    return player


def bench_callback(block: int, blocks: int = 20000) -> tuple[float, float]:
    out = np.zeros((block, 2), dtype=np.float32)
    results = []
    for tap in (None, RecordRing(blocks * block + 1)):
        player = _player(2)
        player.tap = tap
        times = []
        for _ in range(blocks):
            t = time.perf_counter()
            player.fill(out)
            times.append(time.perf_counter() - t)
        results.append(statistics.median(times) * 1e6)
    return results[0], results[1]


def bench_writer(seconds: float) -> float:
    audio = (np.random.default_rng(1).standard_normal((int(seconds * RATE), 2)) * 0.1
             ).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        recorder = Recorder(Path(folder) / "set.wav", RATE, ring_seconds=seconds + 1)
        recorder.ring.push(audio, 0)
        started = time.perf_counter()
        recorder.start()
        while recorder.frames < audio.shape[0]:
            time.sleep(0.001)
        elapsed = time.perf_counter() - started
        recorder.close()
    return seconds / elapsed


def bench_assemble(seconds: float) -> float:
    rng = np.random.default_rng(2)
    loops = {LoopKey(alpha=a): frozen_frames(rng.standard_normal((RATE * 2, 2)) * 0.1)
             for a in (0.0, 0.5)}
    keys = list(loops)
    switches = tuple(
        SwitchEntry(i, i * RATE * 2, i, 2205, 0.0, 1.0, (1.0, 0.0), f"loop {i}", 4, 120.0,
                    keys[i % 2], None, 0.0, False)
        for i in range(int(seconds / 2)))
    setlog = SetLog(Path("bench.jsonl"), RATE, 2, {}, 0, int(seconds * RATE), switches, 0,
                    True, ())
    started = time.perf_counter()
    assemble(setlog, loops.__getitem__)
    return seconds / (time.perf_counter() - started)


def _jack_device() -> int:
    import sounddevice as sd

    for i, dev in enumerate(sd.query_devices()):
        if "JACK" in sd.query_hostapis(dev["hostapi"])["name"] and dev["name"] == "system":
            return i
    raise SystemExit("no JACK device named 'system': start jackd first")


def bench_jack(record: str, seconds: float) -> tuple[int, int]:
    from riffbridge.control.feedback import Feedback
    from riffbridge.control.hub import Hub
    from riffbridge.engine.engine import Engine, EngineSettings
    from riffbridge.engine.worker import RenderWorker, WorkerSettings
    from riffbridge.outputs.audio_stream import DeviceStream
    from riffbridge.state import EngineState, SetParam

    state = EngineState(steps=2, bars=1, playing=True, quantum="bar", xfade=0.05)
    hub = Hub(state)
    player = Player()
    engine = Engine(state, player, RATE, EngineSettings(record=record),
                    worker=RenderWorker(WorkerSettings("tiny", "cpu")), block=1024,
                    recorder=Recorder)
    hub.add_listener(engine.post)
    with Feedback(hub, engine.events), \
            DeviceStream(_jack_device(), RATE, player.fill, blocksize=1024), engine:
        while player.applied_token < 1:
            time.sleep(0.05)
        before = player.underruns
        started = time.monotonic()
        alphas = [0.25, 1.0, 0.5, 0.0, 0.75, 0.375, 1.0, 0.125]
        i = 0
        while time.monotonic() - started < seconds:
            hub.submit(SetParam("alpha", alphas[i % len(alphas)]))
            i += 1
            time.sleep(2.5)
        return player.underruns - before, engine.status().renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--jack", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.jack:
        seconds = args.seconds or 20.0
        with tempfile.TemporaryDirectory() as folder:
            for n in range(args.rounds):
                for record in ("", str(Path(folder) / f"set{n}.wav")):
                    underruns, renders = bench_jack(record, seconds)
                    print(f"{'recording' if record else 'not recording'}: {underruns} "
                          f"underruns in {seconds:g} s ({renders} renders)", flush=True)
        return
    args.seconds = args.seconds or 60.0
    plain, tapped = bench_callback(args.block)
    print(f"callback, block {args.block}: fill {plain:.1f} us, fill + record {tapped:.1f} us "
          f"(+{tapped - plain:.1f} us of a {args.block / RATE * 1e6:.0f} us block)")
    print(f"writer: {bench_writer(args.seconds):.0f} s of audio written per second "
          f"(24-bit WAV, header sizes kept current)")
    print(f"assembly: {bench_assemble(args.seconds):.0f}x real time "
          f"({args.seconds:g} s set, a switch every bar)")


if __name__ == "__main__":
    main()
