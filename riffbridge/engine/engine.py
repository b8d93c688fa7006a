"""The engine shell: one thread that runs the pure core (``riffbridge.engine.core``) against the
world: the render worker, the loop cache, the player and the file writer.

Who owns what:

- the engine thread (started by ``Engine.start``) is the only one that touches the core, the
  ``LoopCache``, the injected worker, and the player's ``cue`` (one reference swap per switch).
  Each turn (at most ``TURN_S`` apart) it takes its inbox, polls the worker, gives the idle worker
  the core's next loops (one, or planned neighbours in one batch of up to the worker's
  ``Ready.batch``: ``EngineCore.next_renders``), takes the auto walk's step, turns the core's
  ``CueDecision`` into a prepared ``Cue`` (all the numpy work happens here, never in the audio
  callback), reports what the player applied, and publishes an immutable ``EngineStatus``.
- the audio callback only reads ``player.cue`` and copies prepared samples (``Player.fill``).
- other threads talk to the engine only through its inbox, ``post`` (the hub's listener) and
  ``clock_sync`` (external clocks), and the writer's callbacks; all thread-safe queue puts.
- everything the engine has to say is an event value on ``engine.events`` (``Progress``,
  ``LoopReady``, ``ClipCued``, ``Switched``, ``EngineError``, and ``Request`` for the auto walk);
  one reader (the control side's feedback) turns them into its own messages. The engine neither
  imports nor calls the hub, and knows no OSC address.
- readers on any thread get ``status()`` / ``status_numbers()`` (the latest snapshot), ``grid``
  and ``sounded``: immutable values swapped by reference.
- the set recorder (``recorder``, injected: ``riffbridge.outputs.recorder.Recorder``) is
  started and stopped on the engine thread (``/rb/record/start``, ``--record``); the player's
  ``tap`` is its ring, and the engine queues it a log line per change and per switch that
  sounded. The cue bus (``/rb/cue/alpha``, ``/rb/cue/xy``, ``/rb/cue/weights``) is the player's
  ``cue_bus`` reference, swapped here.

A turn that raises is reported (``EngineError("engine", ...)``) and the engine goes on.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

from riffbridge import events as ev
from riffbridge.control.clocks import ClockSync
from riffbridge.engine.cache import CachedLoop, LoopCache
from riffbridge.engine.clock import Grid
from riffbridge.engine.core import CueDecision, EngineCore
from riffbridge.engine.plan import DEFAULT_GRID, DEFAULT_XY_GRID, LOOKAHEAD, LoopKey, key_for
from riffbridge.engine.player import (
    Cue,
    Player,
    Segment,
    Tap,
    keep_level,
    limit,
    mix,
    prepare_cue,
)
from riffbridge.engine.worker import (
    Cancelled,
    Failed,
    Message,
    Progress,
    Ready,
    Rendered,
    RenderRequest,
)
from riffbridge.errors import OutputError
from riffbridge.loops.types import Loop
from riffbridge.params import BY_NAME
from riffbridge.pipeline import LoopRequest
from riffbridge.state import EngineState, StartRecording, StopRecording

if TYPE_CHECKING:
    from riffbridge.control.hub import Change
    from riffbridge.outputs.writer import LoopWriter

log = logging.getLogger(__name__)

TURN_S = 0.005  # the engine's longest sleep: how late a knob can be seen
SOUNDED_KEPT = 8  # switches kept in ``sounded``
PREPARE_DECAY = 0.9  # per cue: how fast the cue preparation budget forgets a slow one


@dataclass(frozen=True)
class EngineSettings:
    grid: int = DEFAULT_GRID  # alpha grid points per unit
    xy_grid: int = DEFAULT_XY_GRID  # XY lattice points per unit on each axis
    lookahead: int = LOOKAHEAD
    cache_mb: float = BY_NAME["cache_mb"].default
    quality: str = "fast"
    seed_dir: str | None = None
    scheduler: str = "default"  # the diffusion scheduler every loop is rendered with
    setlist: tuple[tuple[str, str], ...] = ()
    # A switch is cued at least one audio block plus this margin ahead of the playhead: the
    # engine's turn (<= 5 ms) must fit before the callback reaches the boundary.
    margin_s: float = 0.005
    record: str = ""  # record the set from the start to this path (empty: not from the start)


class Worker(Protocol):
    """What the engine needs of its render worker (``RenderWorker`` is one): one request at a
    time, messages by ``poll``, supervision inside. Called from the engine thread only."""

    @property
    def ready(self) -> Ready | None: ...
    @property
    def in_flight(self) -> RenderRequest | None: ...
    @property
    def fatal(self) -> str | None: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def restarts(self) -> int: ...
    @property
    def idle(self) -> bool: ...

    def start(self) -> Any: ...
    def wait_ready(self, timeout: float, cancelled: Callable[[], bool] | None = None) -> Ready: ...
    def submit(self, request: RenderRequest) -> None: ...
    def cancel(self) -> bool: ...
    def poll(self, timeout: float = 0.0) -> list[Message]: ...
    def close(self) -> None: ...


class Recording(Protocol):
    """What the engine needs of a set recorder (``riffbridge.outputs.recorder.Recorder``)."""

    @property
    def path(self) -> Any: ...
    @property
    def ring(self) -> Tap: ...
    @property
    def running(self) -> bool: ...

    def start(self) -> Any: ...
    def log(self, entry: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class RecorderFactory(Protocol):
    def __call__(self, path: str, rate: int, channels: int = 2, *,
                 header: dict[str, Any] | None = None,
                 on_error: Callable[[str], None] | None = None) -> Recording: ...


@dataclass(frozen=True)
class _FileWritten:
    key: LoopKey
    path: str


@dataclass(frozen=True)
class _FileFailed:
    message: str


@dataclass(frozen=True)
class _RecordFailed:
    message: str


_Input: TypeAlias = "Change | ClockSync | _FileWritten | _FileFailed | _RecordFailed"
DECISIONS_KEPT = 8  # cue decisions remembered until the player applies them (the recorder's log)


def build_segment(decision: CueDecision, low: np.ndarray, high: np.ndarray | None) -> Segment:
    """The audio a decision plays: ``low`` (and ``high``, a blend) at the decision's level,
    placed so that frame ``decision.at`` falls ``decision.phase`` into the loop. A blend's
    equal-power gains are rescaled by the two loops' correlation (``keep_level``): neighbours on
    the alpha grid are near copies, and an equal-power mix of those goes up to +3 dB. The result
    stays under the ceiling (``limit``)."""
    if high is None:
        parts: tuple[np.ndarray, ...] = (low,)
        gains: tuple[float, ...] = (1.0,)
        n = low.shape[0]
    else:
        n = min(low.shape[0], high.shape[0])
        g_low, g_high = keep_level(low[:n], high[:n], *decision.gains)
        parts, gains = (low, high), (float(g_low), float(g_high))
    audio = limit(mix(parts, gains, decision.level, n))
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    audio.flags.writeable = False
    origin = decision.at - round(decision.phase * n)
    return Segment(audio, origin, decision.label, parts, gains, decision.level)


class Engine:
    """The shell around ``EngineCore``; see the module docstring for the thread contract.

    ``worker`` is started by ``start`` and closed by ``close``. ``writer`` (optional) stays its
    caller's to start and close; the engine takes its ``on_written`` and ``on_error`` callbacks
    (a written file becomes a ``ClipCued``, a failed one an ``EngineError("files", ...)``)."""

    def __init__(self, state: EngineState, player: Player, rate: int, settings: EngineSettings,
                 *, worker: Worker, writer: LoopWriter | None = None, block: int = 512,
                 events: queue.Queue[ev.Event] | None = None,
                 recorder: RecorderFactory | None = None) -> None:
        self.open_recorder = recorder
        self.player = player
        self.rate = int(rate)
        self.settings = settings
        self.block = block
        self.worker = worker
        self.writer = writer
        self.events: queue.Queue[ev.Event] = events if events is not None else queue.Queue()
        self._core = EngineCore(state, self.rate, alpha_grid=settings.grid,
                                lookahead=settings.lookahead, block=block,
                                margin_s=settings.margin_s, setlist=settings.setlist,
                                xy_grid=settings.xy_grid)
        self._cache = LoopCache(settings.cache_mb)
        self._inbox: queue.Queue[_Input] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: Cue | None = None  # the last cue issued, maybe not yet sounded
        self._cues: dict[int, Cue] = {}  # token -> the last cues issued, and the one that plays
        self._renders = 0
        self._last_render_s = 0.0
        self._errors = 0
        self._last_error = ""
        self._sounded: tuple[tuple[int, int, Segment | None], ...] = ()
        self._prepare_s = 0.0  # the budget for preparing a cue (see _cue)
        self._queued_for: tuple[tuple[LoopKey, ...], int] | None = None
        self._queued_count = 0
        self._points: dict[str, Any] = {}  # the style map's points (see _map_points)
        self._grid = self._core.grid
        self._status = self._snapshot()
        self._recorder: Recording | None = None
        self._stopping: list[Recording] = []  # recorders finishing their files
        self._decisions: dict[int, CueDecision] = {}  # token -> decision, for the record log
        self._sounding: CueDecision | None = None  # the decision of the last switch that sounded
        if writer is not None:
            writer.on_written = self._file_written
            writer.on_error = self._file_failed

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, ready_timeout_s: float = 600.0,
              cancelled: Callable[[], bool] | None = None) -> Engine:
        """Start the worker, wait for its model, then run the engine thread."""
        self.worker.start()
        try:
            self.worker.wait_ready(ready_timeout_s, cancelled)
        except Exception:
            self.worker.close()
            raise
        if self.settings.record:
            try:
                self.start_recording(self.settings.record)
            except OutputError:  # it stops the start
                self.worker.close()
                raise
        self._thread = threading.Thread(target=self._run, name="riffbridge-engine", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop planning and rendering, close the worker. Idempotent; the stream and the writer
        are closed by their owners (the serve command) in the staged shutdown."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.stop_recording()
        for recorder in self._stopping:
            recorder.close()
        self._stopping.clear()
        self.worker.close()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inputs: any thread ---------------------------------------------------------------------
    def post(self, change: Change) -> None:
        """A state change from the hub (``hub.add_listener(engine.post)``)."""
        self._inbox.put_nowait(change)

    def clock_sync(self, sync: ClockSync) -> None:
        """An external clock's phase (MIDI start/position, Link)."""
        self._inbox.put_nowait(sync)

    def _file_written(self, path: Path, loop: Loop, key: Any) -> None:
        if isinstance(key, LoopKey):
            self._inbox.put_nowait(_FileWritten(key, str(path)))

    def _file_failed(self, message: str) -> None:
        self._inbox.put_nowait(_FileFailed(message))

    # -- outputs: any thread --------------------------------------------------------------------
    def status(self) -> ev.EngineStatus:
        return self._status

    def status_numbers(self) -> tuple[int, int, int]:
        """(queued, cached, underruns) for the hub's /rb/status, from the latest snapshot."""
        s = self._status
        return s.queued, s.cached, s.underruns

    @property
    def grid(self) -> Grid:
        """The beat grid as of the last turn."""
        return self._grid

    @property
    def sounded(self) -> tuple[tuple[int, int, Segment | None], ...]:
        """The last switches the player applied: (token, frame, what plays from there)."""
        return self._sounded

    # -- the engine thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # the engine must keep going; say what broke
                log.exception("engine turn failed")
                self._emit(ev.EngineError("engine", f"{type(exc).__name__}: {exc}"))
                time.sleep(0.1)

    def _turn(self) -> None:
        core, player = self._core, self.player
        self._take_inputs()
        for msg in self.worker.poll():
            self._on_worker(msg)
        in_flight = self.worker.in_flight
        if in_flight is not None and self._useless(in_flight) and self.worker.cancel():
            k = in_flight.key
            log.info("cancelling the render of %d bars at %g BPM (alpha %g%s): a newer request "
                     "made it useless", k.bars, k.bpm, k.alpha,
                     f" and {len(in_flight.more)} more" if in_flight.more else "")
        ready = self.worker.ready
        keys = core.next_renders(self._cache.__contains__, self.worker.idle, time.monotonic(),
                                 ready.batch if ready is not None else 1)
        if keys:
            s = self.settings
            loops = [LoopRequest(key, s.quality, s.seed_dir, s.scheduler) for key in keys]
            self.worker.submit(RenderRequest(loops[0], self.rate, tuple(loops[1:])))
        self._emit(core.auto(player.frame))
        self._note_dropped()
        applied = player.applied_token
        decision = core.playback(self._cache.__contains__, player.frame, applied,
                                 self._prepare_s)
        if decision is not None:
            self._cue(decision, applied)
            self._emit(core.clip())
        audition = core.cue_playback(self._cache.__contains__, player.frame)
        if audition is not None:
            self._audition(audition)
        self._emit(core.commit())
        self._note_applied()
        self._publish()

    def _useless(self, request: RenderRequest) -> bool:
        """Whether to cancel the render in flight: every loop of it not yet delivered is useless
        to the core (a batch in which one loop is still of use goes on; those delivered stay)."""
        left = [k for k in request.keys if k not in self._cache]
        return bool(left) and all(self._core.useless(k) for k in left)

    def _take_inputs(self) -> None:
        try:
            item = self._inbox.get(timeout=TURN_S)
        except queue.Empty:
            return
        while True:
            self._take(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _take(self, item: _Input) -> None:
        core = self._core
        if isinstance(item, ClockSync):
            stamp_frame, stamp_time = self.player.stamp
            frame = int(stamp_frame + (item.time - stamp_time) * self.rate)
            if core.on_clock(item, frame):
                log.info("%s clock: beat %.2f at frame %d", item.source, item.beat, frame)
        elif isinstance(item, _FileWritten):
            self._emit(core.on_file(item.key, item.path, self._cache.__contains__))
        elif isinstance(item, _FileFailed):
            self._emit(ev.EngineError("files", item.message))
        elif isinstance(item, _RecordFailed):
            self.stop_recording()
            self._emit(ev.EngineError("record", item.message))
        else:
            self._on_record_command(item)
            core.on_change(item, self.player.frame)
            self._log_change(item)
            if "clock" in item.changed or "bpm" in item.changed:
                log.info("tempo %.2f BPM (%s clock)", core.state.bpm, core.state.clock)

    def _on_worker(self, msg: Message) -> None:
        if isinstance(msg, Ready):
            log.info("render worker ready: %s on %s (pid %d)", msg.model, msg.device, msg.pid)
        elif isinstance(msg, Progress):
            self._emit(ev.Progress(msg.fraction))
        elif isinstance(msg, Rendered):
            self._store(msg)
        elif isinstance(msg, Failed):
            self._emit(self._core.on_failed(msg.key, msg.error, msg.source, time.monotonic(),
                                            msg.also))
        elif isinstance(msg, Cancelled):
            log.info("render cancelled after %.1f s%s", msg.seconds,
                     f" ({1 + len(msg.also)} loops of a batch)" if msg.also else "")

    def _store(self, msg: Rendered) -> None:
        frames = np.ascontiguousarray(msg.frames, dtype=np.float32)
        frames.flags.writeable = False
        self._cache.put(CachedLoop(msg.key, msg.loop, frames), keep=self._core.playing_keys)
        self._core.on_rendered(msg.key)
        self._renders += 1
        self._last_render_s = msg.seconds
        if self.writer is not None:
            self.writer.submit(msg.loop, msg.key)
        key = msg.key
        self._emit(ev.LoopReady(float(key.alpha), float(key.bpm), int(key.bars), msg.seconds))

    def _cue(self, decision: CueDecision, after: int) -> None:
        started = time.perf_counter()
        self._prepare(decision, after)
        took = time.perf_counter() - started
        # the budget for the next cue: the slowest recent preparation, decaying slowly
        self._prepare_s = max(took, self._prepare_s * PREPARE_DECAY)

    def _prepare(self, decision: CueDecision, after: int) -> None:
        """The cue's audio, faded from what switch ``after`` plays (the player's last applied
        one when the core decided: the pending cue when it sounded, else the one it replaces
        started from there too). The player drops the cue if another switch sounded since."""
        choice, segment = decision.choice, None
        if choice is not None:
            high = None if choice.high is None else self._frames(choice.high)
            segment = build_segment(decision, self._frames(choice.low), high)
        known = self._cues.get(after)
        base = known.then if known is not None else self.player.playing if after else None
        cue = prepare_cue(base, segment, decision.at, decision.fade, decision.token,
                          self.player.channels, after)
        self._pending = cue
        # the recent cues, and the one that plays (a knob that keeps moving replaces the
        # pending cue every turn: the one that plays may be many tokens back)
        self._cues = {t: c for t, c in self._cues.items()
                      if t > decision.token - DECISIONS_KEPT or t == after}
        self._cues[decision.token] = cue
        self._decisions = {t: d for t, d in self._decisions.items()
                           if t > decision.token - DECISIONS_KEPT}
        self._decisions[decision.token] = decision
        self.player.cue = cue

    def _audition(self, decision: CueDecision) -> None:
        """Put the cue bus's new candidate in place (a reference swap the cue callback reads)."""
        choice, segment = decision.choice, None
        if choice is not None:
            high = None if choice.high is None else self._frames(choice.high)
            segment = build_segment(decision, self._frames(choice.low), high)
        self.player.cue_bus = segment
        self._emit(self._core.cue_news(decision))

    def _frames(self, key: LoopKey) -> np.ndarray:
        item = self._cache.get(key)  # the core chose it from the cache this very turn
        if item is None:
            raise RuntimeError(f"loop alpha {key.alpha:g} left the cache before its cue")
        return item.frames

    def _note_dropped(self) -> None:
        """The player dropped the pending cue (the switch it replaced sounded first: the engine
        read the player a moment before): what plays is that switch's loop; cue again from it."""
        pending, player = self._pending, self.player
        if pending is None or player.dropped_token != pending.token:
            return
        self._core.on_dropped(pending.token, player.applied_token, player.applied_at)
        self._pending = self._cues.get(player.applied_token)
        log.info("a switch sounded while the next one was prepared: cueing again from it")

    def _note_applied(self) -> None:
        token = self.player.applied_token
        cue = self._cues.get(token)
        # The callback sets applied_token before applied_at: the cue's own frame is exact.
        at = cue.at if cue is not None else self.player.applied_at
        switched = self._core.on_applied(token, at)
        if switched is None:
            return
        if cue is not None:
            self._sounded = (*self._sounded[1 - SOUNDED_KEPT:], (token, cue.at, cue.then))
        decision = self._decisions.get(token)
        if decision is not None:
            self._sounding = decision
            if self._recorder is not None:
                self._recorder.log(switch_entry(decision, switched.bar))
        self._emit(switched)

    # -- the set recorder ------------------------------------------------------------------------
    def start_recording(self, path: str) -> None:
        """Record from the next block on (engine thread, or before it starts). ``OutputError``
        when the files cannot be made or a recording runs already."""
        if self.open_recorder is None:
            raise OutputError("this engine has no set recorder; riffbridge serve has one")
        if self._recorder is not None:
            raise OutputError(f"already recording to {self._recorder.path}; send "
                              f"/rb/record/stop first")
        s = self.settings
        ready = self.worker.ready
        header = {"state": self._core.state.as_dict(), "grid": s.grid, "quality": s.quality,
                  "scheduler": s.scheduler, "seed_dir": s.seed_dir,
                  "model": ready.model if ready is not None else None, "block": self.block}
        recorder = self.open_recorder(path, self.rate, self.player.channels, header=header,
                            on_error=lambda message: self._inbox.put_nowait(
                                _RecordFailed(message))).start()
        frame = self.player.frame
        if self._sounding is not None:  # what plays as the recording starts
            bar = math.floor(self._core.grid.beat_at(frame)
                             / max(1, self._core.state.beats_per_bar) + 1e-6)
            recorder.log({**switch_entry(self._sounding, bar), "before_start": True})
        self._recorder = recorder
        self.player.tap = recorder.ring

    def stop_recording(self) -> None:
        """End the recording, if one runs. Its writer finishes the files on its own thread (a
        tenth of a second: the engine's turn does not wait); ``close`` waits for them."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        self.player.tap = None
        recorder.stop()
        self._stopping = [r for r in self._stopping if r.running]
        self._stopping.append(recorder)
        log.info("recording to %s ends", recorder.path)

    def _on_record_command(self, change: Change) -> None:
        command = change.command
        try:
            if isinstance(command, StartRecording):
                self.start_recording(command.path)
            elif isinstance(command, StopRecording):
                self.stop_recording()
        except OutputError as exc:
            self._emit(ev.EngineError("record", str(exc)))

    def _log_change(self, change: Change) -> None:
        if self._recorder is None or not change.changed:
            return
        frame = self.player.frame
        state = change.state
        bar = math.floor(self._core.grid.beat_at(frame) / max(1, state.beats_per_bar) + 1e-6)
        self._recorder.log({"type": "param", "frame": frame, "bar": bar,
                            "source": change.source,
                            "changed": {name: getattr(state, name) for name in change.changed}})

    def _emit(self, event: ev.Event | None) -> None:
        if event is None:
            return
        if isinstance(event, ev.EngineError):
            self._errors += 1
            self._last_error = event.message
        self.events.put_nowait(event)

    def _queued(self) -> int:
        # Counted again only when the plan or the cache changed: a key lookup is not free and
        # the snapshot is taken every turn.
        plan_and_cache = (self._core.wanted(), self._cache.version)
        if self._queued_for is None or self._queued_for[0] is not plan_and_cache[0] \
                or self._queued_for[1] != plan_and_cache[1]:
            self._queued_for = plan_and_cache
            self._queued_count = self._core.queued(self._cache.__contains__)
            self._points = self._map_points()
        return self._queued_count

    def _map_points(self) -> dict[str, Any]:
        """The style map's rendered and wanted points (alphas, or XY lattice points on the
        surface), counted with the queue."""
        core, cached = self._core, self._cache.__contains__
        grid = self.settings.grid
        if core.state.mix == "xy":
            steps = self.settings.xy_grid
            base = key_for(core.state, None, grid)
            lattice = [(i / steps, j / steps) for i in range(steps + 1)
                       for j in range(steps + 1)]
            return {"rendered_xy": tuple(p for p in lattice if cached(base.at_xy(*p))),
                    "wanted_xy": tuple(k.point for k in core.wanted() if not cached(k))}
        points = (i / grid for i in range(grid + 1))
        return {"rendered": tuple(a for a in points if cached(key_for(core.state, a, grid))),
                "wanted": tuple(float(k.alpha) for k in core.wanted() if not cached(k))}

    def _snapshot(self) -> ev.EngineStatus:
        core, cache, worker = self._core, self._cache, self.worker
        state = ("failed" if worker.fatal else "rendering" if worker.in_flight is not None
                 else "idle" if worker.ready is not None else "starting")
        queued = self._queued()
        flight = worker.in_flight
        return ev.EngineStatus(core.state, core.sounding, queued,
                               len(cache), cache.nbytes / 2**20, self.player.underruns, state,
                               self._renders, self._last_render_s, self._errors,
                               self._last_error, **self._points,
                               rendering=None if flight is None else float(flight.key.alpha),
                               rendering_xy=None if flight is None or flight.key.mix != "xy"
                               else flight.key.point)

    def _publish(self) -> None:
        self._grid = self._core.grid
        self._status = self._snapshot()


def switch_entry(decision: CueDecision, bar: int) -> dict[str, Any]:
    """The record log's line for a switch that sounded: enough to play it again
    (``riffbridge.cli.replay``): where (frame, bar), what (the loops' full keys, the mix) and
    how (the fade, the phase, the level)."""
    choice = decision.choice
    return {"type": "switch", "token": decision.token, "frame": decision.at, "bar": bar,
            "fade": decision.fade, "phase": decision.phase, "level": decision.level,
            "gains": list(decision.gains), "label": decision.label,
            "quantum": decision.quantum, "bpm": decision.grid.bpm,
            "low": None if choice is None else choice.low.sidecar(),
            "high": None if choice is None or choice.high is None else choice.high.sidecar(),
            "weight": 0.0 if choice is None else choice.weight}
