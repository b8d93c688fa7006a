"""`riffbridge serve`: the live engine, its audio output, files and control servers, in one go.

Start order: settings (every value checked) -> audio device -> output folder (early, so an
unwritable one stops the start before a long model load) -> stream -> render worker (the model
loads; a missing model stops here with what to pass) -> engine -> OSC, MIDI, Link. A start that
fails, or is stopped before it runs, removes its run folder again if nothing was written to it.
Shutdown on SIGINT/SIGTERM is staged the other way: stop input, stop rendering, finish the files
being written, close the stream. A second Ctrl-C exits at once, render worker included.
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
from collections.abc import Callable
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
    p.add_argument("--cuda-graphs", dest="cuda_graphs", action="store_const", const=True,
                   help="replay each UNet step as a CUDA graph (CUDA only; faster steps, "
                        "one capture per loop width)")
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
    """First SIGINT/SIGTERM asks for a clean stop; a second SIGINT exits at once, after the
    ``at_force`` callbacks (which end what ``os._exit`` would leave running: the render worker)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, Any] = {}
        self._at_force: list[Callable[[], None]] = []

    def at_force(self, callback: Callable[[], None]) -> None:
        self._at_force.append(callback)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            sys.stderr.write("\nforced exit\n")
            for callback in self._at_force:
                callback()
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
        return serve(conf, shutdown.event, args.for_seconds, shutdown=shutdown)


def _initial_state(conf: Any) -> Any:
    """The engine's first state from the settings, checked as OSC would check each value (an
    unknown --pattern would otherwise fail every render, over and over, after a model load)."""
    from riffbridge.control.hub import check_pattern_file
    from riffbridge.errors import ConfigError, ControlError
    from riffbridge.loops.patterns import GROOVES
    from riffbridge.state import EngineState, coerce

    prompt_a, prompt_b = conf.setlist[0] if conf.setlist else (conf.prompt, conf.prompt_b)
    params = {"prompt_a": ("prompt", prompt_a), "prompt_b": ("prompt-b", prompt_b),
              "seed_a": ("seed", conf.seed), "seed_b": ("seed-b", conf.seed_b),
              "bpm": ("bpm", conf.bpm), "bars": ("bars", conf.bars),
              "beats_per_bar": ("beats-per-bar", conf.beats_per_bar),
              "steps": ("steps", conf.steps), "pattern": ("pattern", conf.pattern),
              "quantum": ("quantum", conf.quantum), "xfade": ("xfade", conf.xfade),
              "auto": ("auto", conf.auto), "clock": ("clock", conf.clock)}
    values = {}
    for name, (flag, value) in params.items():
        try:
            values[name] = coerce(name, value)
            if name == "pattern":
                check_pattern_file(value, Path(conf.seed_dir) if conf.seed_dir else None,
                                   frozenset(GROOVES))
        except ControlError as exc:
            raise ConfigError(f"--{flag}: {exc}") from None
    return EngineState(**values)


def _remove_if_empty(folder: Path) -> None:
    """Remove a run folder that holds nothing. rmdir refuses a folder with anything in it, so
    nothing written is ever lost here."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def _kill(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def serve(conf: Any, stop: threading.Event, for_seconds: float | None = None, *,
          shutdown: Shutdown | None = None) -> int:
    from riffbridge.control.hub import Hub
    from riffbridge.control.presets import PresetStore
    from riffbridge.errors import ConfigError
    from riffbridge.loops.patterns import GROOVES
    from riffbridge.outputs.files import OutputFolder
    from riffbridge.outputs.wav import WavSettings

    if not conf.files and not conf.device_output:
        raise ConfigError("--audio-out none and --out-dir none leave nothing to play to: "
                          "give an audio device or an output folder")
    state = _initial_state(conf)
    device = None
    if conf.device_output:
        from riffbridge.outputs.devices import find_output

        device = find_output(None if conf.audio_out == "default" else conf.audio_out)
    hub = Hub(state, presets=PresetStore(conf.presets) if conf.presets else None,
              seed_dir=conf.seed_dir or None, pattern_names=GROOVES)
    folder = OutputFolder(Path(conf.out_dir).expanduser(), WavSettings("pcm24", 44100)) \
        if conf.files else None
    running = False
    try:
        running = _run(conf, hub, device, folder, stop, for_seconds, shutdown)
    finally:
        if folder is not None and not running:
            _remove_if_empty(folder.run_dir)
    return 0


def _run(conf: Any, hub: Any, device: Any, folder: Any, stop: threading.Event,
         for_seconds: float | None, shutdown: Shutdown | None) -> bool:
    """Start everything, run until ``stop``, stop it all; whether it got to run."""
    from riffbridge.control.osc_server import OscServer
    from riffbridge.engine.engine import Engine, EngineSettings
    from riffbridge.engine.player import Player
    from riffbridge.engine.worker import WorkerSettings
    from riffbridge.errors import RenderError
    from riffbridge.outputs.audio_stream import DeviceStream, PacedStream
    from riffbridge.outputs.writer import LoopWriter
    from riffbridge.state import Play

    rate = round(device.default_samplerate) if device is not None else 44100
    # The engine announces each written loop (/rb/clip) itself: it sets the writer's on_written.
    writer = LoopWriter(folder, on_error=lambda e: hub.push("/rb/error", "files", e)).start() \
        if folder is not None else None
    player = Player()
    settings = EngineSettings(
        worker=WorkerSettings(conf.model, conf.device, conf.dtype,
                              cuda_graphs=conf.cuda_graphs), grid=conf.grid,
        cache_mb=conf.cache_mb, quality=conf.quality, seed_dir=conf.seed_dir or None,
        setlist=conf.setlist, render_timeout_s=conf.render_timeout)
    engine = Engine(hub, player, rate, settings, writer=writer, block=conf.blocksize)
    if shutdown is not None:  # os._exit would leave the worker process behind, model loaded
        shutdown.at_force(lambda: _kill(engine.worker.pid))
    print(f"riffbridge: loading {conf.model} on {conf.device} ...", flush=True)
    with contextlib.ExitStack() as stack:
        stream: Any = (DeviceStream(device.index, rate, player.fill, blocksize=conf.blocksize)
                       if device is not None else
                       PacedStream(rate, player.fill, blocksize=conf.blocksize))
        stack.enter_context(stream)
        if writer is not None:
            stack.callback(writer.close)  # closes before the stream: files finish first
        try:
            engine.start(cancelled=stop.is_set)
        except RenderError:
            if not stop.is_set():
                raise
            # Ctrl-C in a terminal reaches the worker too and ends its model load.
        stack.callback(engine.close)
        if stop.is_set():
            print("riffbridge: stopped while loading the model", flush=True)
            return False
        inputs = contextlib.ExitStack()
        stack.callback(inputs.close)  # closed first: no new input while the rest stops
        osc = inputs.enter_context(OscServer(hub, conf.osc_host, conf.osc_port,
                                             conf.reply_port))
        midi_line = _open_midi(conf, hub, engine, inputs)
        link_line = _open_link(conf, hub, engine, inputs)
        if conf.autoplay:
            hub.submit(Play(), source="engine")
        _print_block(conf, engine.worker.ready, stream, rate, osc, folder, midi_line, link_line)
        clocks = _ClockSources(conf, hub, engine, inputs, link_running=conf.clock == "link")
        _wait(stop, engine, for_seconds, clocks.check)
        print("\nriffbridge: stopping (Ctrl-C again to force)", flush=True)
    status = engine.status()
    files = writer.written if writer is not None else 0
    print(f"riffbridge: stopped. {status.renders} loops rendered, {files} written, "
          f"{status.underruns} underruns, {status.errors} errors", flush=True)
    return True


def _open_midi(conf: Any, hub: Any, engine: Any, stack: contextlib.ExitStack) -> str:
    if not conf.midi_in:
        return "off (--midi-in NAME to use one)"
    from riffbridge.control.midi_map import DEFAULT_MAP, MidiMapper, load_map
    from riffbridge.control.midi_port import MidiControl, MidiInput
    from riffbridge.engine.engine import ClockSync
    from riffbridge.state import Play, Stop

    def on_clock(event: Any) -> None:
        if hub.state.clock != "midi":
            return
        if event.kind in ("start", "position", "continue"):
            engine.clock_sync(ClockSync(event.beat, event.time, None, "midi"))
        # The DAW's transport runs the show: its start/continue play, its stop stops.
        if event.kind in ("start", "continue", "stop"):
            with contextlib.suppress(Exception):
                hub.submit(Stop() if event.kind == "stop" else Play(), source="midi")

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


class _ClockSources:
    """/rb/clock can change the tempo source live: Link is joined on demand; a source that
    cannot run (no aalink, no MIDI input) is refused on /rb/error and the clock goes back to
    internal, so /rb/bpm works again. Checked from the main thread."""

    def __init__(self, conf: Any, hub: Any, engine: Any, stack: contextlib.ExitStack,
                 link_running: bool) -> None:
        self.conf, self.hub, self.engine, self.stack = conf, hub, engine, stack
        self.link_running = link_running

    def _refuse(self, reason: str) -> None:
        from riffbridge.state import SetParam

        log.error("/rb/clock: %s", reason)
        self.hub.push("/rb/error", "/rb/clock", reason)
        with contextlib.suppress(Exception):
            self.hub.submit(SetParam("clock", "internal"), source="engine")

    def check(self) -> None:
        clock = self.hub.state.clock
        if clock == "midi" and not self.conf.midi_in:
            self._refuse("clock midi needs a MIDI input: start riffbridge with --midi-in NAME")
        elif clock == "link" and not self.link_running:
            from dataclasses import replace

            try:
                _open_link(replace(self.conf, clock="link", bpm=self.hub.state.bpm), self.hub,
                           self.engine, self.stack)
                self.link_running = True
            except Exception as exc:
                self._refuse(str(exc))


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
        f"  tempo    {conf.bpm:g} BPM, {conf.bars} bar{'s' if conf.bars != 1 else ''} of "
        f"{conf.beats_per_bar}, "
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


def _wait(stop: threading.Event, engine: Any, for_seconds: float | None,
          check: Callable[[], None] | None = None) -> None:
    tty = sys.stdout.isatty()
    started = time.monotonic()
    last_line = 0.0
    fatal = None
    while not stop.wait(STATUS_EVERY_S):
        now = time.monotonic()
        if for_seconds is not None and now - started >= for_seconds:
            return
        if check is not None:
            check()
        if engine.worker.fatal and engine.worker.fatal != fatal:  # once, not every second
            fatal = engine.worker.fatal
            log.error("the render worker cannot run: %s", fatal)
        if tty:
            sys.stdout.write("\r" + _status_line(engine)[:160] + "\x1b[K")
            sys.stdout.flush()
        elif now - last_line >= STATUS_LINE_EVERY_S:
            last_line = now
            print(_status_line(engine), flush=True)
