"""`riffbridge serve`: the live engine, its audio output, files and control servers, in one go.

Start order: settings (every value checked) -> audio device -> output folder (early, so an
unwritable one stops the start before a long model load) -> stream -> render worker (the model
loads; a missing model stops here with what to pass) -> engine -> OSC, MIDI, Link. A start that
fails, or is stopped before it runs, removes its run folder again if nothing was written to it.
Shutdown on SIGINT, SIGTERM or SIGHUP is staged the other way: stop input, stop rendering,
finish the files being written, close the stream. A second of them exits at once, render worker
included. However serve ends, even by SIGKILL, the render worker ends with it (see
``riffbridge.engine.worker``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riffbridge.config import ServeConfig
    from riffbridge.control.clocks import ClockSources
    from riffbridge.control.hub import Hub
    from riffbridge.engine.engine import Engine
    from riffbridge.outputs.devices import AudioDevice
    from riffbridge.outputs.files import OutputFolder
    from riffbridge.state import EngineState

log = logging.getLogger("riffbridge.serve")

STATUS_EVERY_S = 1.0
STATUS_LINE_EVERY_S = 10.0  # when stdout is not a terminal


def add_parser(sub: argparse._SubParsersAction) -> None:
    from riffbridge import params as P

    p = sub.add_parser("serve", help="run the live engine (OSC/MIDI in, loops to audio and files)",
                       description="Run the live engine. Flags override the --config file; "
                       "docs/configuration.md lists every setting.")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    for param in P.SETTINGS:  # the flags are a view of the parameter table
        if not param.cli_flag:
            continue
        help_text = f"{param.help} ({_default_text(param)})"
        if param.kind == "bool":
            p.add_argument(param.cli_flag, dest=param.key, action="store_const",
                           const=not param.default, help=help_text)
        else:
            p.add_argument(param.cli_flag, dest=param.key, type=_ARG_TYPES[param.kind],
                           metavar=param.metavar, help=help_text)
    p.add_argument("--for-seconds", type=float, default=None,
                   help="stop after this many seconds (tests, installations on a timer)")
    p.set_defaults(func=run)


_ARG_TYPES: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float}


def _default_text(param: Any) -> str:
    unit = f" {param.unit}" if param.unit else ""
    if param.choices:
        return f"{', '.join(param.choices)}; default {param.default}"
    if param.kind == "bool":
        return "off" if param.default is False else "on by default"
    if param.minimum is not None and param.maximum is not None:
        lo, hi = param.range_text()[1:-1].split(", ")
        return f"{lo} to {hi}{unit}, default {param.default:g}"
    return f"default {param.default!r}" if param.default != "" else "default none"


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"config", "func", "command", "for_seconds", "verbose", "json"}
    return {k: v for k, v in vars(args).items() if k not in skip}


class Shutdown:
    """The first SIGINT, SIGTERM or SIGHUP asks for a clean stop; a second SIGINT or SIGTERM
    exits at once with 128 + its number, after the ``at_force`` callbacks (which end what
    ``os._exit`` would leave running: the render worker).

    SIGHUP is a stop like the others: a closed terminal or ssh session must not kill serve on
    the spot and lose the loop being written. It never forces: one hang-up can arrive twice
    (from the kernel to the foreground group, and from the shell to its jobs)."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                    if hasattr(signal, name))
    FORCING = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.event = threading.Event()
        self._old: dict[int, Any] = {}
        self._at_force: list[Callable[[], None]] = []

    def at_force(self, callback: Callable[[], None]) -> None:
        self._at_force.append(callback)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set() and signum in self.FORCING:
            with contextlib.suppress(OSError):  # a hung-up terminal: exit all the same
                sys.stderr.write("\nforced exit\n")
            for callback in self._at_force:
                callback()
            os._exit(128 + signum)
        self.event.set()

    def __enter__(self) -> Shutdown:
        for sig in self.SIGNALS:
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


def initial_state(conf: ServeConfig) -> EngineState:
    """The engine's first state from the settings (each value was checked by ``config``); an
    unknown --pattern would otherwise fail every render, over and over, after a model load."""
    from riffbridge.control.hub import check_pattern_file
    from riffbridge.errors import ConfigError, ControlError
    from riffbridge.loops.patterns import GROOVES
    from riffbridge.state import EngineState

    state = EngineState(**conf.initial_state())
    try:
        check_pattern_file(state.pattern, Path(conf.seed_dir) if conf.seed_dir else None,
                           frozenset(GROOVES))
    except ControlError as exc:
        raise ConfigError(f"--pattern: {exc}") from None
    return state


def _check_cue(conf: ServeConfig, device: AudioDevice | None) -> None:
    """The cue bus's settings against the devices, before the model loads."""
    from riffbridge.errors import ConfigError
    from riffbridge.outputs.cue_bus import parse_cue_channels
    from riffbridge.outputs.devices import find_output

    if conf.cue_out and conf.cue_channels:
        raise ConfigError("give --cue-out DEVICE or --cue-channels A,B for the cue bus, not both")
    if conf.cue_channels:
        pair = parse_cue_channels(conf.cue_channels)
        if device is None:
            raise ConfigError("--cue-channels needs an audio device (--audio-out)")
        if max(pair) > device.max_output_channels:
            raise ConfigError(f"--cue-channels {conf.cue_channels}: {device.name} has "
                              f"{device.max_output_channels} output channels; use --cue-out "
                              f"for another device")
    if conf.cue_out:
        if device is None:
            raise ConfigError("--cue-out plays in time with the master's device; give "
                              "--audio-out too")
        find_output(conf.cue_out)


def _remove_if_empty(folder: Path) -> None:
    """Remove a run folder that holds nothing. rmdir refuses a folder with anything in it, so
    nothing written is ever lost here."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def _kill(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):  # it is gone already: nothing to end
            os.kill(pid, signal.SIGKILL)


def serve(conf: ServeConfig, stop: threading.Event, for_seconds: float | None = None, *,
          shutdown: Shutdown | None = None) -> int:
    from riffbridge.control.hub import Hub
    from riffbridge.control.presets import PresetStore
    from riffbridge.errors import ConfigError
    from riffbridge.loops.patterns import GROOVES
    from riffbridge.outputs.files import OutputFolder
    from riffbridge.outputs.wav import WavSettings

    if not conf.files and not conf.device_output and not conf.record:
        raise ConfigError("--audio-out none and --out-dir none leave nothing to play to: "
                          "give an audio device, an output folder or --record FILE")
    state = initial_state(conf)
    if conf.record:  # before the model loads: a path that cannot be written stops the start
        from riffbridge.errors import OutputError
        from riffbridge.outputs.recorder import check_record_path

        try:
            check_record_path(conf.record)
        except OutputError as exc:
            raise ConfigError(f"--record: {exc}") from None
    device = None
    if conf.device_output:
        from riffbridge.outputs.devices import find_output

        device = find_output(None if conf.audio_out == "default" else conf.audio_out)
    _check_cue(conf, device)
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


def _import_before_audio(conf: ServeConfig) -> None:
    """Import what the inputs and the page need now, before the audio stream runs: an import
    holds the GIL for long stretches (a whole web stack took the callback past its period, one
    underrun at every start with the page on)."""
    import importlib

    modules = ["riffbridge.control.midi_port", "riffbridge.control.midi_map"]
    if conf.web:
        modules.append("riffbridge.web.server")
    if conf.midi_in:
        modules += ["mido", "mido.backends.rtmidi"]
    if conf.clock == "link":
        modules.append("aalink")
    for name in modules:
        # a missing optional package is reported by the part that needs it, with its fix
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _run(conf: ServeConfig, hub: Hub, device: AudioDevice | None, folder: OutputFolder | None,
         stop: threading.Event, for_seconds: float | None, shutdown: Shutdown | None) -> bool:
    """Start everything, run until ``stop``, stop it all; whether it got to run."""
    from riffbridge.control.clocks import ClockSources
    from riffbridge.control.feedback import Feedback
    from riffbridge.control.osc_server import OscServer
    from riffbridge.engine.engine import Engine, EngineSettings
    from riffbridge.engine.player import Player
    from riffbridge.engine.worker import RenderWorker, WorkerSettings
    from riffbridge.errors import RenderError
    from riffbridge.events import Event
    from riffbridge.outputs.audio_stream import DeviceStream, PacedStream
    from riffbridge.outputs.recorder import Recorder
    from riffbridge.outputs.writer import LoopWriter
    from riffbridge.state import Play

    _import_before_audio(conf)
    rate = round(device.default_samplerate) if device is not None else 44100
    events: queue.Queue[Event] = queue.Queue()
    # The engine takes the writer's callbacks: a written file can be announced (/rb/clip), and a
    # file that cannot be written is news like any other (EngineError "files").
    writer = LoopWriter(folder).start() if folder is not None else None
    player = Player()
    worker = RenderWorker(WorkerSettings(conf.model, conf.device, conf.dtype,
                                         cuda_graphs=conf.cuda_graphs, compile=conf.compile,
                                         compile_cache=conf.compile_cache,
                                         width_buckets=conf.width_buckets,
                                         render_batch=conf.render_batch,
                                         step_cache=conf.step_cache),
                          render_timeout_s=conf.render_timeout)
    settings = EngineSettings(grid=conf.grid, xy_grid=conf.xy_grid, cache_mb=conf.cache_mb,
                              quality=conf.quality, seed_dir=conf.seed_dir or None,
                              setlist=conf.setlist, record=conf.record)
    engine = Engine(hub.state, player, rate, settings, worker=worker, writer=writer,
                    block=conf.blocksize, events=events, recorder=Recorder)
    hub.add_listener(engine.post)
    if shutdown is not None:  # os._exit would leave the worker process behind, model loaded
        shutdown.at_force(lambda: _kill(worker.pid))
    print(f"riffbridge: loading {conf.model} on {conf.device} ...", flush=True)
    with contextlib.ExitStack() as stack:
        stream: DeviceStream | PacedStream = (
            _master_stream(conf, device, rate, player)
            if device is not None else PacedStream(rate, player.fill, blocksize=conf.blocksize))
        stack.enter_context(stream)
        if conf.cue_out:  # the cue bus on a device of its own, on the same clock
            from riffbridge.outputs.devices import find_output

            # Direct, as the master is then: the cue stream starts its count on the master's
            # block of the same cycle, which only two direct callbacks can tell (_ahead_s).
            stack.enter_context(DeviceStream(find_output(conf.cue_out).index, rate,
                                             player.fill_cue, blocksize=conf.blocksize,
                                             ahead_s=0.0))
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
        if worker.ready is not None and worker.ready.path:
            log.info("%s", worker.ready.path)
        feedback = stack.enter_context(Feedback(hub, events))  # after the engine: last news
        hub.set_status_provider(engine.status_numbers)
        stack.callback(hub.set_status_provider, None)
        inputs = contextlib.ExitStack()
        stack.callback(inputs.close)  # closed first: no new input while the rest stops
        osc = inputs.enter_context(OscServer(
            hub, conf.osc_host, conf.osc_port, conf.reply_port, allow=conf.osc_allow,
            max_subscribers=conf.max_subscribers, subscriber_ttl=conf.subscriber_ttl))
        clocks = inputs.enter_context(ClockSources(hub, engine.clock_sync,
                                                   midi_available=bool(conf.midi_in)))
        midi_line = _open_midi(conf, hub, clocks, inputs)
        page_line = _open_page(conf, hub, engine, feedback, inputs)
        link_line = "off (clock = link to follow Ableton Link)"
        if conf.clock == "link":
            clocks.start_link()
            link_line = "on"
        if conf.autoplay:
            hub.submit(Play(), source="engine")
        _print_block(conf, worker.ready, stream, rate, osc, folder, midi_line, link_line,
                     page_line)
        _wait(stop, engine, for_seconds, clocks.check)
        print("\nriffbridge: stopping (Ctrl-C again to force)", flush=True)
    status = engine.status()
    files = writer.written if writer is not None else 0
    lost = f", {writer.given_up} not written" if writer is not None and writer.given_up else ""
    print(f"riffbridge: stopped. {status.renders} loops rendered, {files} written{lost}, "
          f"{status.underruns} underruns, {status.errors} errors", flush=True)
    return True


def _master_stream(conf: ServeConfig, device: AudioDevice, rate: int, player: Any) -> Any:
    """The master's stream: two channels, or more with the cue bus on two of them."""
    from riffbridge.outputs.audio_stream import DeviceStream

    if not conf.cue_channels:
        return DeviceStream(device.index, rate, player.fill, blocksize=conf.blocksize,
                            ahead_s=_ahead_s(conf))
    from riffbridge.outputs.cue_bus import ChannelSplit, parse_cue_channels

    split = ChannelSplit(player, parse_cue_channels(conf.cue_channels))
    return DeviceStream(device.index, rate, split, channels=split.channels,
                        blocksize=conf.blocksize, ahead_s=_ahead_s(conf))


def _ahead_s(conf: ServeConfig) -> float:
    """How far ahead the master's stream fills (``audio_ahead``). With the cue bus on a device
    of its own (``--cue-out``) both streams fill in their callbacks: the cue stream finds the
    master's frame by the time of the master's last callback, which a ring in between hides."""
    if conf.cue_out:
        if conf.audio_ahead > 0:
            log.info("--cue-out: both streams play direct (audio_ahead %g ms unused); "
                     "--cue-channels on one device keeps the buffered stream", conf.audio_ahead)
        return 0.0
    return float(conf.audio_ahead) / 1000.0


def _open_midi(conf: ServeConfig, hub: Hub, clocks: ClockSources,
               stack: contextlib.ExitStack) -> str:
    if not conf.midi_in:
        return "off (--midi-in NAME to use one)"
    from riffbridge.control.clocks import on_midi_clock
    from riffbridge.control.midi_map import DEFAULT_MAP, MidiMapper, load_map
    from riffbridge.control.midi_port import MidiControl, MidiInput

    control = MidiControl(hub, MidiMapper(load_map(conf.midi_map or DEFAULT_MAP)),
                          lambda event: on_midi_clock(hub, clocks.sync, event))
    virtual = conf.midi_in == "virtual"
    port = stack.enter_context(MidiInput(control, name=None if virtual else conf.midi_in,
                                         virtual=virtual, api=conf.midi_api))
    return ", ".join(port.port_names) or conf.midi_in


def _open_page(conf: ServeConfig, hub: Hub, engine: Engine, feedback: Any,
               stack: contextlib.ExitStack) -> str:
    if not conf.web:
        return "off"
    from riffbridge.web.server import WebServer

    web = stack.enter_context(WebServer(hub, engine, feedback, host=conf.web_host,
                                        port=conf.web_port, token=conf.web_token,
                                        grid=conf.grid, xy_grid=conf.xy_grid))
    return web.url


def _print_block(conf: ServeConfig, ready: Any, stream: Any, rate: int, osc: Any,
                 folder: OutputFolder | None, midi: str, link: str, page: str = "off") -> None:
    host, port = osc.address
    scheduling = stream.scheduling() if hasattr(stream, "scheduling") else ""
    if scheduling == "not real-time":
        log.warning("the audio thread is not real-time: on a busy machine it will underrun; "
                    "start JACK with -R (realtime), or give this user real-time priority "
                    "(the audio group's rtprio)")
    lines = [
        f"  model    {conf.model} on {ready.device if ready else conf.device}",
        f"  render   {ready.path.removeprefix('render path: ') if ready and ready.path else '?'}",
        f"  audio    {stream.name} at {rate} Hz, block {conf.blocksize}"
        + (f", {_mode_words(stream)}" if getattr(stream, "mode", "") else "")
        + (f", thread {scheduling}" if scheduling not in ("", "unknown") else ""),
        f"  osc      listening on {host}:{port}, replies to port {conf.reply_port}",
        f"  midi     {midi}",
        f"  link     {link}",
        f"  files    {folder.run_dir if folder is not None else 'off'}",
        f"  record   {conf.record or 'off (/rb/record/start PATH to record)'}",
        f"  cue      {_cue_line(conf)}",
        f"  tempo    {conf.bpm:g} BPM, {conf.bars} bar{'s' if conf.bars != 1 else ''} of "
        f"{conf.beats_per_bar}, "
        f"switch on the {conf.quantum}, clock {conf.clock}",
        f"  page     {page}",
    ]
    print("riffbridge is running (Ctrl-C to stop)\n" + "\n".join(lines), flush=True)


def _mode_words(stream: Any) -> str:
    if stream.mode == "buffered":
        return f"{stream.ahead_s * 1000:g} ms ahead (C callback)"
    return "direct (Python callback)"


def _cue_line(conf: ServeConfig) -> str:
    if conf.cue_out:
        return f"{conf.cue_out} (/rb/cue/alpha, /rb/cue/commit)"
    if conf.cue_channels:
        return f"channels {conf.cue_channels} (/rb/cue/alpha, /rb/cue/commit)"
    return "off (--cue-out DEVICE or --cue-channels A,B)"


def _status_line(engine: Engine) -> str:
    s = engine.status()
    st = s.state
    line = (f"{'play' if st.playing else 'stop'} {st.bpm:6.2f} BPM  alpha {st.alpha:4.2f}  "
            f"sounding {s.sounding:<22} queued {s.queued}  cached {s.cached} "
            f"({s.cache_mb:.0f} MB)  worker {s.worker}  underruns {s.underruns}  "
            f"errors {s.errors}")
    return line


def _wait(stop: threading.Event, engine: Engine, for_seconds: float | None,
          check: Callable[[], None] | None = None) -> None:
    tty = sys.stdout.isatty()
    started = time.monotonic()
    last_line = 0.0
    fatal = False
    while not stop.wait(STATUS_EVERY_S):
        now = time.monotonic()
        if for_seconds is not None and now - started >= for_seconds:
            return
        if check is not None:
            check()
        status = engine.status()
        if status.worker == "failed" and not fatal:  # once, not every second
            fatal = True
            log.error("the render worker cannot run: %s", status.last_error)
        if tty:
            sys.stdout.write("\r" + _status_line(engine)[:160] + "\x1b[K")
            sys.stdout.flush()
        elif now - last_line >= STATUS_LINE_EVERY_S:
            last_line = now
            print(_status_line(engine), flush=True)
