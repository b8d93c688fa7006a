"""`riffbridge serve`: the live engine, its audio output, files and control servers, in one go.

Start order: settings -> output folder -> audio device -> render worker (the model loads; a
missing model stops here with what to pass) -> engine -> stream -> OSC, MIDI, Link. Shutdown on
SIGINT/SIGTERM is staged the other way: stop input, stop rendering, finish the files being
written, close the stream. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("riffbridge.serve")

STATUS_EVERY_S = 1.0
STATUS_LINE_EVERY_S = 10.0  # when stdout is not a terminal


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the live engine (OSC/MIDI in, loops to audio and files)",
                       description="Run the live engine. Flags override the --config file.")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument("--model", help="hub id, diffusers folder, .ckpt/.safetensors file, or tiny "
                                   "(default riffusion/riffusion-model-v1)")
    p.add_argument("--device", help="auto, cuda, cuda:N, mps or cpu (default auto)")
    p.add_argument("--dtype", help="auto, fp16, bf16 or fp32")
    p.add_argument("--audio-out", help="audio output name or index, 'default', or 'none' "
                                       "(files only)")
    p.add_argument("--out-dir", help="folder for the loop WAVs (default ./out), or 'none'")
    p.add_argument("--bpm", type=float)
    p.add_argument("--bars", type=int)
    p.add_argument("--beats-per-bar", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--prompt", help="style A")
    p.add_argument("--prompt-b", help="style B")
    p.add_argument("--seed", type=int)
    p.add_argument("--seed-b", type=int)
    p.add_argument("--pattern", help="seed groove (riffbridge seed --list)")
    p.add_argument("--quantum", help="where switches land: beat, bar or loop")
    p.add_argument("--xfade", type=float, help="switch crossfade in seconds")
    p.add_argument("--auto", type=float, help="auto walk: alpha change per loop (0 = off)")
    p.add_argument("--clock", help="internal, midi or link")
    p.add_argument("--osc-host")
    p.add_argument("--osc-port", type=int)
    p.add_argument("--reply-port", type=int)
    p.add_argument("--midi-in", help="MIDI input (any part of its name), or 'virtual'")
    p.add_argument("--midi-api", help="auto, jack or default")
    p.add_argument("--midi-map", help="MIDI map TOML file (default: the built-in map)")
    p.add_argument("--presets", help="presets TOML file (read and written)")
    p.add_argument("--seed-dir", help="folder of seed images/sounds that /rb/pattern may name")
    p.add_argument("--cache-mb", type=float, help="loop cache bound in MB (default 512)")
    p.add_argument("--quality", help="Griffin-Lim quality: fast or high")
    p.add_argument("--blocksize", type=int, help="audio block in frames (default 512)")
    p.add_argument("--no-autoplay", dest="autoplay", action="store_const", const=False,
                   help="wait for /rb/play before sounding")
    p.add_argument("--for-seconds", type=float, default=None,
                   help="stop after this many seconds (tests, installations on a timer)")
    p.set_defaults(func=run)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"config", "func", "command", "for_seconds", "verbose", "json"}
    return {k: v for k, v in vars(args).items() if k not in skip}


class Shutdown:
    """First SIGINT/SIGTERM asks for a clean stop; a second SIGINT exits at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            sys.stderr.write("\nforced exit\n")
            os._exit(130)
        self.event.set()

    def __enter__(self) -> Shutdown:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run(args: argparse.Namespace) -> int:
    from riffbridge import config as cfg

    conf = cfg.build(args.config, _flags(args))
    with Shutdown() as shutdown:
        return serve(conf, shutdown.event, args.for_seconds)


def serve(conf: Any, stop: threading.Event, for_seconds: float | None = None) -> int:
    from riffbridge.control.hub import Hub
    from riffbridge.control.osc_server import OscServer
    from riffbridge.control.presets import PresetStore
    from riffbridge.engine.engine import Engine, EngineSettings
    from riffbridge.engine.player import Player
    from riffbridge.engine.worker import WorkerSettings
    from riffbridge.errors import ConfigError
    from riffbridge.loops.patterns import GROOVES
    from riffbridge.outputs.audio_stream import DeviceStream, PacedStream
    from riffbridge.outputs.files import OutputFolder
    from riffbridge.outputs.wav import WavSettings
    from riffbridge.outputs.writer import LoopWriter
    from riffbridge.state import EngineState, Play

    if not conf.files and not conf.device_output:
        raise ConfigError("--audio-out none and --out-dir none leave nothing to play to: "
                          "give an audio device or an output folder")
    device = None
    rate = 44100
    if conf.device_output:
        from riffbridge.outputs.devices import find_output

        spec = None if conf.audio_out == "default" else conf.audio_out
        device = find_output(spec)
        rate = round(device.default_samplerate)
    state = EngineState(prompt_a=conf.prompt, prompt_b=conf.prompt_b, seed_a=conf.seed,
                        seed_b=conf.seed_b, bpm=conf.bpm, bars=conf.bars,
                        beats_per_bar=conf.beats_per_bar, steps=conf.steps,
                        pattern=conf.pattern, quantum=conf.quantum, xfade=conf.xfade,
                        auto=conf.auto, clock=conf.clock)
    hub = Hub(state, presets=PresetStore(conf.presets) if conf.presets else None,
              seed_dir=conf.seed_dir or None, pattern_names=GROOVES)
    folder = OutputFolder(Path(conf.out_dir).expanduser(), WavSettings("pcm24", 44100)) \
        if conf.files else None
    writer = None
    if folder is not None:
        def written(path: Path, loop: Any) -> None:
            hub.push("/rb/clip", str(path), float(loop.metadata.get("alpha", 0.0)),
                     float(loop.bpm), int(loop.bars))

        writer = LoopWriter(folder, on_written=written,
                            on_error=lambda e: hub.push("/rb/error", "files", e)).start()
    player = Player()
    settings = EngineSettings(
        worker=WorkerSettings(conf.model, conf.device, conf.dtype), grid=conf.grid,
        cache_mb=conf.cache_mb, quality=conf.quality, seed_dir=conf.seed_dir or None,
        setlist=conf.setlist, render_timeout_s=conf.render_timeout)
    engine = Engine(hub, player, rate, settings, writer=writer, block=conf.blocksize)
    print(f"riffbridge: loading {conf.model} on {conf.device} ...", flush=True)
    with contextlib.ExitStack() as stack:
        stream: Any = (DeviceStream(device.index, rate, player.fill, blocksize=conf.blocksize)
                       if device is not None else
                       PacedStream(rate, player.fill, blocksize=conf.blocksize))
        stack.enter_context(stream)
        if writer is not None:
            stack.callback(writer.close)  # closes before the stream: files finish first
        engine.start()
        stack.callback(engine.close)
        inputs = contextlib.ExitStack()
        stack.callback(inputs.close)  # closed first: no new input while the rest stops
        osc = inputs.enter_context(OscServer(hub, conf.osc_host, conf.osc_port,
                                             conf.reply_port))
        midi_line = _open_midi(conf, hub, engine, inputs)
        link_line = _open_link(conf, hub, engine, inputs)
        if conf.autoplay:
            hub.submit(Play(), source="engine")
        ready = engine.worker.ready
        _print_block(conf, ready, stream, rate, osc, folder, midi_line, link_line)
        _wait(stop, engine, for_seconds)
        print("\nriffbridge: stopping (Ctrl-C again to force)", flush=True)
    status = engine.status()
    files = writer.written if writer is not None else 0
    print(f"riffbridge: stopped. {status.renders} loops rendered, {files} written, "
          f"{status.underruns} underruns, {status.errors} errors", flush=True)
    return 0


def _open_midi(conf: Any, hub: Any, engine: Any, stack: contextlib.ExitStack) -> str:
    if not conf.midi_in:
        return "off (--midi-in NAME to use one)"
    from riffbridge.control.midi_map import DEFAULT_MAP, MidiMapper, load_map
    from riffbridge.control.midi_port import MidiControl, MidiInput
    from riffbridge.engine.engine import ClockSync

    def on_clock(event: Any) -> None:
        if hub.state.clock == "midi" and event.kind in ("start", "position", "continue"):
            engine.clock_sync(ClockSync(event.beat, event.time, None, "midi"))

    control = MidiControl(hub, MidiMapper(load_map(conf.midi_map or DEFAULT_MAP)), on_clock)
    virtual = conf.midi_in == "virtual"
    port = stack.enter_context(MidiInput(control, name=None if virtual else conf.midi_in,
                                         virtual=virtual, api=conf.midi_api))
    return ", ".join(port.port_names) or conf.midi_in


def _open_link(conf: Any, hub: Any, engine: Any, stack: contextlib.ExitStack) -> str:
    if conf.clock != "link":
        return "off (clock = link to follow Ableton Link)"
    from riffbridge.control.link import LinkClock
    from riffbridge.engine.engine import ClockSync
    from riffbridge.state import ClockTempo

    def on_state(s: Any) -> None:
        if hub.state.clock != "link":
            return
        if abs(hub.state.bpm - s.bpm) > 0.01:
            with contextlib.suppress(Exception):
                hub.submit(ClockTempo(round(s.bpm, 2)), source="link")
        engine.clock_sync(ClockSync(s.beat, s.time, s.bpm, "link"))

    stack.enter_context(LinkClock(conf.bpm, on_state))
    return "on"


def _print_block(conf: Any, ready: Any, stream: Any, rate: int, osc: Any, folder: Any,
                 midi: str, link: str) -> None:
    host, port = osc.address
    lines = [
        f"  model    {conf.model} on {ready.device if ready else conf.device}",
        f"  audio    {stream.name} at {rate} Hz, block {conf.blocksize}",
        f"  osc      listening on {host}:{port}, replies to port {conf.reply_port}",
        f"  midi     {midi}",
        f"  link     {link}",
        f"  files    {folder.run_dir if folder is not None else 'off'}",
        f"  tempo    {conf.bpm:g} BPM, {conf.bars} bars of {conf.beats_per_bar}, "
        f"switch on the {conf.quantum}, clock {conf.clock}",
    ]
    print("riffbridge is running (Ctrl-C to stop)\n" + "\n".join(lines), flush=True)


def _status_line(engine: Any) -> str:
    s = engine.status()
    st = s.state
    line = (f"{'play' if st.playing else 'stop'} {st.bpm:6.2f} BPM  alpha {st.alpha:4.2f}  "
            f"sounding {s.sounding:<22} queued {s.queued}  cached {s.cached} "
            f"({s.cache_mb:.0f} MB)  worker {s.worker}  underruns {s.underruns}  "
            f"errors {s.errors}")
    return line


def _wait(stop: threading.Event, engine: Any, for_seconds: float | None) -> None:
    tty = sys.stdout.isatty()
    started = time.monotonic()
    last_line = 0.0
    while not stop.wait(STATUS_EVERY_S):
        now = time.monotonic()
        if for_seconds is not None and now - started >= for_seconds:
            return
        if engine.worker.fatal:
            log.error("the render worker cannot run: %s", engine.worker.fatal)
        if tty:
            sys.stdout.write("\r" + _status_line(engine)[:160] + "\x1b[K")
            sys.stdout.flush()
        elif now - last_line >= STATUS_LINE_EVERY_S:
            last_line = now
            print(_status_line(engine), flush=True)
