"""The engine: one thread that owns the plan, the cache, the grid and the switches.

It takes the hub's ``Change`` events (the state), the render worker's messages and the external
clocks' events, all as frozen values on queues, and does four things each turn: keep the worker
busy with the most urgent missing loop, pick what should sound, cue a switch at the next quantum
when that changes, and walk alpha in auto mode. The audio callback only ever sees prepared
``Segment``/``Cue`` values (see ``riffbridge.engine.player``).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from riffbridge.control.hub import Change, Hub
from riffbridge.engine.cache import CachedLoop, LoopCache
from riffbridge.engine.clock import Grid, quantum_beats
from riffbridge.engine.plan import (
    DEFAULT_GRID,
    LOOKAHEAD,
    Choice,
    LoopKey,
    auto_step,
    blend_gains,
    choose,
    plan,
)
from riffbridge.engine.player import Cue, Player, Segment, frozen_frames, prepare_cue
from riffbridge.engine.worker import (
    Failed,
    Progress,
    Ready,
    Rendered,
    RenderRequest,
    RenderWorker,
    WorkerSettings,
)
from riffbridge.errors import ControlError
from riffbridge.loops.types import Loop
from riffbridge.state import ApplyPreset, EngineState, Render, SetParam

log = logging.getLogger(__name__)

TURN_S = 0.005  # the engine's longest sleep: how late a knob can be seen
AUTO_LEAD_S = 0.25  # the auto walk moves alpha this long before the loop boundary


@dataclass(frozen=True)
class EngineSettings:
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    grid: int = DEFAULT_GRID
    lookahead: int = LOOKAHEAD
    cache_mb: float = 512.0
    quality: str = "fast"
    seed_dir: str | None = None
    setlist: tuple[tuple[str, str], ...] = ()
    render_timeout_s: float = 300.0
    # A switch is cued at least one audio block plus this margin ahead of the playhead: the
    # engine's turn (<= 5 ms) must fit before the callback reaches the boundary.
    margin_s: float = 0.005


@dataclass(frozen=True)
class ClockSync:
    """An external clock's reading: ``beat`` at monotonic ``time`` (tempo optional)."""

    beat: float
    time: float
    bpm: float | None = None
    source: str = "midi"


@dataclass(frozen=True)
class Switch:
    """One cued switch, for the status and the latency benchmark."""

    token: int
    label: str
    requested_time: float  # time.monotonic() when the change that caused it was seen
    requested_frame: int  # the playhead then
    at_frame: int  # where the switch starts (a quantum boundary)
    quantum: int  # beats


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    sounding: str
    queued: int
    cached: int
    cache_mb: float
    underruns: int
    worker: str
    renders: int
    last_render_s: float
    errors: int
    last_error: str


class Engine:
    def __init__(self, hub: Hub, player: Player, rate: int, settings: EngineSettings,
                 *, writer: Any = None, block: int = 512) -> None:
        self.hub = hub
        self.block = block
        self.player = player
        self.rate = int(rate)
        self.settings = settings
        self.writer = writer
        self._files: queue.Queue[tuple[LoopKey, str]] = queue.Queue()
        self._paths: dict[LoopKey, str] = {}
        self._announced: LoopKey | None = None
        if writer is not None:
            writer.on_written = self._file_written
        self.state = hub.state
        self.cache = LoopCache(settings.cache_mb)
        self.worker = RenderWorker(settings.worker, render_timeout_s=settings.render_timeout_s)
        self.grid = Grid(self.rate, self.state.bpm)
        self.direction = 1
        self._events = hub.events()
        self._clock_events: queue.Queue[ClockSync] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._token = 0
        self._pending: Cue | None = None  # issued, maybe not yet sounded
        self._before_pending: Segment | None = None
        self._sounding: tuple[Any, ...] | None = None  # what the last cue plays (identity)
        self._segment: Segment | None = None  # what the last cue plays
        self._changed_at = (time.monotonic(), 0)
        self._forced: LoopKey | None = None
        self._retry: dict[LoopKey, tuple[int, float]] = {}  # failures, not before (monotonic)
        self._next_auto: int | None = None
        self._last_reported_token = 0
        self._setlist_index = 0
        self.switches: deque[Switch] = deque(maxlen=256)
        self.sounded: deque[tuple[int, int, Segment | None]] = deque(maxlen=8)  # token, at
        self.renders = 0
        self.last_render_s = 0.0
        self.errors = 0
        self.last_error = ""

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
        self.hub.set_status_provider(self._status_numbers)
        self._thread = threading.Thread(target=self._run, name="riffbridge-engine", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop planning and rendering. Idempotent; the stream and writer are closed by their
        owners (the serve command) in the staged shutdown."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.worker.close()
        self.hub.set_status_provider(None)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inputs from other threads --------------------------------------------------------------
    def _file_written(self, path: Path, loop: Loop, key: Any) -> None:
        """The writer's thread: a loop's file has landed."""
        if isinstance(key, LoopKey):
            self._files.put((key, str(path)))

    def clock_sync(self, sync: ClockSync) -> None:
        """An external clock's phase (MIDI start/position, Link); thread-safe."""
        self._clock_events.put(sync)

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # the engine must keep going; say what broke
                log.exception("engine turn failed")
                self._report(f"engine: {type(exc).__name__}: {exc}")
                time.sleep(0.1)

    def _turn(self) -> None:
        try:
            change = self._events.get(timeout=TURN_S)
            self._on_change(change)
            while True:
                self._on_change(self._events.get_nowait())
        except queue.Empty:
            pass
        while True:
            try:
                self._on_clock(self._clock_events.get_nowait())
            except queue.Empty:
                break
        for msg in self.worker.poll():
            self._on_worker(msg)
        while True:
            try:
                key, path = self._files.get_nowait()
            except queue.Empty:
                break
            self._paths[key] = path
            self._announce()
        self._feed_worker()
        self._auto_walk()
        self._update_playback()
        self._report_switches()

    def _on_change(self, change: Change) -> None:
        old, self.state = self.state, change.state
        self._changed_at = (time.monotonic(), self.player.frame)
        if "alpha" in change.changed and change.state.alpha != old.alpha:
            self.direction = 1 if change.state.alpha > old.alpha else -1
        if isinstance(change.command, Render):
            from riffbridge.engine.plan import key_for

            self._forced = key_for(self.state, None, self.settings.grid)
        if "bpm" in change.changed and self.state.clock != "internal":
            # An external clock sets the grid now; the loop playing keeps its own length until
            # the loop at the new tempo lands (the internal clock moves the grid with that loop).
            self.grid = self.grid.with_tempo(self.state.bpm, self.player.frame)
        if "clock" in change.changed or "bpm" in change.changed:
            log.info("tempo %.2f BPM (%s clock)", self.state.bpm, self.state.clock)

    def _on_clock(self, sync: ClockSync) -> None:
        stamp_frame, stamp_time = self.player.stamp
        frame = int(stamp_frame + (sync.time - stamp_time) * self.rate)
        if sync.source == "link":  # a continuous phase: follow it only when it drifts
            drift = abs(self.grid.beat_at(frame) - sync.beat) * self.grid.frames_per_beat
            if drift < 0.005 * self.rate and (sync.bpm is None or sync.bpm == self.grid.bpm):
                return
        self.grid = self.grid.align(sync.beat, frame, sync.bpm)
        log.info("%s clock: beat %.2f at frame %d", sync.source, sync.beat, frame)

    def _on_worker(self, msg: Any) -> None:
        if isinstance(msg, Ready):
            log.info("render worker ready: %s on %s (pid %d)", msg.model, msg.device, msg.pid)
        elif isinstance(msg, Progress):
            self.hub.push("/rb/progress", float(msg.fraction))
        elif isinstance(msg, Rendered):
            self.renders += 1
            self.last_render_s = msg.seconds
            frames = np.ascontiguousarray(msg.frames, dtype=np.float32)
            frames.flags.writeable = False
            k = msg.key
            loop = Loop(msg.audio, 44100, k.bpm, k.bars, k.beats_per_bar, msg.metadata)
            self.cache.put(CachedLoop(msg.key, loop, frames), keep=self._playing_keys())
            self._retry.pop(msg.key, None)
            if self.writer is not None:
                self.writer.submit(loop, msg.key)
            if len(self._paths) > 4 * len(self.cache) + 16:  # forget files of evicted loops
                self._paths = {k: p for k, p in self._paths.items() if k in self.cache}
        elif isinstance(msg, Failed):
            self._report(msg.error)
            if msg.key is not None:  # back off: 1, 2, 4 ... 60 s before that loop is tried again
                count = self._retry.get(msg.key, (0, 0.0))[0] + 1
                self._retry[msg.key] = (count, time.monotonic() + min(60.0, 2.0 ** (count - 1)))

    def _report(self, error: str) -> None:
        self.errors += 1
        self.last_error = error
        log.error("%s", error)
        self.hub.push("/rb/error", "render", error)

    def _playing_keys(self) -> frozenset[LoopKey]:
        if self._sounding is None:
            return frozenset()
        return frozenset(k for k in self._sounding if isinstance(k, LoopKey))

    # -- rendering ------------------------------------------------------------------------------
    def wanted(self) -> list[LoopKey]:
        return plan(self.state, self.direction, self.settings.grid, self.settings.lookahead)

    def _feed_worker(self) -> None:
        if not self.worker.idle:
            return
        if self._forced is not None:
            key, self._forced = self._forced, None
        else:
            now = time.monotonic()
            missing = [k for k in self.wanted() if k not in self.cache
                       and self._retry.get(k, (0, 0.0))[1] <= now]
            if not missing:
                return
            key = missing[0]
        self.worker.submit(RenderRequest(key, self.rate, self.settings.quality,
                                         self.settings.seed_dir))

    def queued(self) -> int:
        return sum(1 for k in self.wanted() if k not in self.cache)

    # -- playback -------------------------------------------------------------------------------
    def _choice(self) -> Choice | None:
        return choose(self.state, self.cache.__contains__, self.settings.grid)

    def _segment_for(self, choice: Choice, at: int) -> Segment:
        gain = 10 ** (self.state.gain_db / 20)
        low = self.cache.get(choice.low)
        assert low is not None
        if choice.high is None:
            audio = frozen_frames(low.frames, gain)
            label = f"alpha {choice.low.alpha:g}"
        else:
            high = self.cache.get(choice.high)
            assert high is not None
            g_low, g_high = blend_gains(choice.weight)
            n = min(low.frames.shape[0], high.frames.shape[0])
            audio = frozen_frames(low.frames[:n] * g_low + high.frames[:n] * g_high, gain)
            label = (f"blend {choice.low.alpha:g}|{choice.high.alpha:g} "
                     f"@{choice.weight:.2f}")
        key = choice.low
        loop_beats = key.bars * key.beats_per_bar
        beat = self.grid.beat_at(at)
        phase = (round(beat, 6) % loop_beats) / loop_beats
        origin = at - round(phase * audio.shape[0])
        return Segment(audio, origin, label)

    def _update_playback(self) -> None:
        state = self.state
        choice = self._choice() if state.playing else None
        if state.playing and choice is None:
            return  # nothing rendered for this sound yet: keep what plays
        identity: tuple[Any, ...] | None = None
        if choice is not None:
            identity = (choice.low, choice.high, round(choice.weight, 4), state.gain_db)
        if identity == self._sounding:
            return
        player = self.player
        pending = self._pending
        earliest = player.frame + self.block + int(self.settings.margin_s * self.rate)
        replace_pending = pending is not None and pending.token > player.applied_token
        if replace_pending and pending is not None and pending.at <= earliest:
            return  # the pending switch is about to sound: cue the next one after it
        base = self._before_pending if replace_pending else self._segment
        bpm = choice.low.bpm if choice is not None else self.grid.bpm
        bars = choice.low.bars if choice is not None else state.bars
        beats = choice.low.beats_per_bar if choice is not None else state.beats_per_bar
        q = quantum_beats(state.quantum, bars, beats)
        at, _ = self.grid.next_boundary(earliest, q)
        if state.clock == "internal" and bpm != self.grid.bpm:
            self.grid = self.grid.with_tempo(bpm, at)  # the new tempo starts with its loop
        segment = self._segment_for(choice, at) if choice is not None else None
        self._token += 1
        fade = max(1, round(state.xfade * self.rate))
        cue = prepare_cue(base, segment, at, fade, self._token, player.channels)
        if not replace_pending:
            self._before_pending = self._segment
        self._pending = cue
        self._segment = segment
        self._sounding = identity
        player.cue = cue
        self._announce()
        requested_time, requested_frame = self._changed_at
        self.switches.append(Switch(self._token, segment.label if segment else "silence",
                                    requested_time, requested_frame, at, q))

    def _announce(self) -> None:
        """/rb/clip: the file of the loop about to sound (exact renders only: a blend has no
        file), once per switch, as soon as both the cue and the file exist."""
        if self._sounding is None or self._sounding[1] is not None:
            return
        key = self._sounding[0]
        path = self._paths.get(key)
        if path is None or key == self._announced:
            return
        self._announced = key
        self.hub.push("/rb/clip", path, float(key.alpha), float(key.bpm), int(key.bars))

    def _report_switches(self) -> None:
        token = self.player.applied_token
        if token != self._last_reported_token:
            self._last_reported_token = token
            pending = self._pending
            if pending is not None and pending.token == token:
                self.sounded.append((token, pending.at, pending.then))
            bar = math.floor(self.grid.beat_at(self.player.applied_at)
                             / max(1, self.state.beats_per_bar) + 1e-6)
            self.hub.push("/rb/playing", float(self.state.alpha), int(bar))

    # -- auto mode ------------------------------------------------------------------------------
    def _auto_walk(self) -> None:
        state = self.state
        if not state.auto or not state.playing or self._segment is None:
            self._next_auto = None
            return
        loop_beats = state.bars * state.beats_per_bar
        now = self.player.frame
        lead = int(AUTO_LEAD_S * self.rate)
        if self._next_auto is None:
            self._next_auto, _ = self.grid.next_boundary(now + lead, loop_beats)
            return
        if now < self._next_auto - lead:
            return
        self._next_auto, _ = self.grid.next_boundary(self._next_auto + 1, loop_beats)
        alpha = state.alpha + state.auto
        setlist = self.settings.setlist
        try:
            if setlist and not 0.0 <= alpha <= 1.0:
                self._setlist_index = (self._setlist_index + 1) % len(setlist)
                a, b = setlist[self._setlist_index]
                self.hub.submit(ApplyPreset("setlist", (("prompt_a", a), ("prompt_b", b),
                                                        ("alpha", 0.0 if state.auto > 0
                                                         else 1.0))), source="engine")
            else:
                self.hub.submit(SetParam("alpha", round(auto_step(state.alpha, state.auto), 6)),
                                source="engine")
        except ControlError as exc:
            self._report(f"auto walk: {exc}")

    # -- status ---------------------------------------------------------------------------------
    def _status_numbers(self) -> tuple[int, int, int]:
        return self.queued(), len(self.cache), self.player.underruns

    def status(self) -> EngineStatus:
        worker = ("failed" if self.worker.fatal else
                  "rendering" if self.worker.in_flight else
                  "idle" if self.worker.ready else "starting")
        segment = self._segment
        return EngineStatus(self.state, segment.label if segment else "silence", self.queued(),
                            len(self.cache), self.cache.nbytes / 2**20, self.player.underruns,
                            worker, self.renders, self.last_render_s, self.errors,
                            self.last_error)
