"""The render worker: a separate process that owns the model and turns requests into loops.

The engine never renders in its own process: a crash, a GPU out-of-memory or a long stall in the
model code cannot stop the audio callback (it holds no lock or GIL the worker needs). The
``RenderWorker`` supervisor starts the process, hands it one request at a time (so nothing stale
waits in a queue), cancels it when the engine says a newer request made it useless, notices
when it dies or hangs, reports the error and starts a new one.

Contracts: the worker process is the one owner of the model. ``RenderWorker`` is owned by the
engine thread (``riffbridge.engine.engine``), which is its only caller; nothing here is
thread-safe. Messages both ways are frozen values. For each request the worker makes its loops
with the one loop pipeline (``riffbridge.pipeline.make_loops``: seed -> riffuse render -> loop
shaping, the same functions as the CLI's `render`) and then resamples each to the device rate.
A request may carry several planned loops of one schedule shape (``RenderRequest.more``, up to
``Ready.batch``): they go through the UNet as one batch, and each comes back as its own
``Rendered`` as soon as it is shaped, the first first; a cancel, a failure, a death or a hang
covers the loops not yet delivered (``Cancelled.also``, ``Failed.also``), and those delivered
stay delivered. The request is in flight until the last of its loops is answered.

The worker never outlives the process that started it, however that process ends (a SIGKILL, a
crash, a hang-up): on Linux the kernel sends it SIGKILL when its parent goes (PR_SET_PDEATHSIG),
and on every platform a watchdog thread in the worker ends it the moment the supervisor's end of
a pipe closes, a render in flight or not. Without both, an orphan holding the model (and
multiprocessing's resource tracker, which waits on a pipe the worker holds) lingers under PID 1.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from riffbridge import cancel
from riffbridge.engine.plan import LoopKey
from riffbridge.errors import RenderError
from riffbridge.loops.types import Loop
from riffbridge.params import BY_NAME, DEFAULT_MODEL
from riffbridge.pipeline import LoopRequest, make_loops
from riffbridge.render.path import choose_render_batch

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.1
# While a request is in flight the worker says it is alive this often, from a thread of its
# own: loop shaping and a first render's warm-up report no progress for a long while, and only
# a frozen process (stopped, deadlocked with the GIL held) should count as stalled. Well under
# the smallest render_timeout (5 s).
HEARTBEAT_S = 1.0
PARENT_CHECK_S = 0.5  # how often the watchdog also compares the parent pid (no pipe needed)
# The longest loop a live render takes on. The render's width grows with the loop's length
# (100 columns a second), and with it the diffusion's time, the Griffin-Lim phase recovery's
# time and memory, and the render's peak memory. 384 s (16 bars of 16/4 at 40 BPM) ran over
# 100 s at 1.2 GB with the tiny model on a CPU and starved the audio. 60 s covers 16 bars of
# 4/4 from 64 BPM, and 8 bars at any tempo; a render that long can still be cancelled at its
# next diffusion step or Griffin-Lim iteration when a newer request makes it useless
# (``RenderWorker.cancel``, ``riffbridge.cancel``).
MAX_LOOP_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class RenderRequest:
    """One render for the worker: the loop (the pipeline's request), at which device rate, and
    ``more`` loops rendered with it in one UNet batch (the planner's neighbours of the same
    schedule shape, ``EngineCore.next_renders``). ``key`` (the first loop's) names the render
    in flight: its progress, heartbeats and cancel."""

    loop: LoopRequest
    out_rate: int  # the device rate the player wants the loop at
    more: tuple[LoopRequest, ...] = ()

    @property
    def key(self) -> LoopKey:
        return self.loop.key

    @property
    def loops(self) -> tuple[LoopRequest, ...]:
        return (self.loop, *self.more)

    @property
    def keys(self) -> tuple[LoopKey, ...]:
        return tuple(loop.key for loop in self.loops)


@dataclass(frozen=True)
class Ready:
    model: str
    device: str
    pid: int
    path: str = ""  # the render path chosen ("render path: ..."), logged once at start
    batch: int = 1  # the most planned loops one request may carry (``render_batch``)


@dataclass(frozen=True)
class Progress:
    key: LoopKey
    fraction: float


@dataclass(frozen=True, eq=False)
class Rendered:
    """A finished loop: the pipeline's ``Loop`` (its own rate, metadata incl. render_seconds)
    and the same loop at the device rate for the player."""

    key: LoopKey
    loop: Loop
    frames: np.ndarray  # (frames, channels) float32 at the request's out_rate
    seconds: float  # the whole job in the worker, resampling included

    def __reduce__(self) -> tuple[Any, ...]:
        # A Loop's metadata is a read-only mapping, which pickle cannot carry: send the parts.
        loop = self.loop
        return (_rendered, (self.key, loop.audio, loop.sample_rate, loop.bpm, loop.bars,
                            loop.beats_per_bar, dict(loop.metadata), self.frames, self.seconds))


def _rendered(key: LoopKey, audio: np.ndarray, rate: int, bpm: float, bars: int, beats: int,
              metadata: Mapping[str, Any], frames: np.ndarray, seconds: float) -> Rendered:
    return Rendered(key, Loop(audio, rate, bpm, bars, beats, metadata), frames, seconds)


@dataclass(frozen=True)
class Failed:
    key: LoopKey | None  # None: the worker failed to start (model load)
    error: str
    fatal: bool = False  # the worker cannot go on (model not found): do not restart it
    source: Literal["render", "worker"] = "render"  # a render's own error, or the worker's
    also: tuple[LoopKey, ...] = ()  # the rest of a batch that failed with ``key``, not delivered


@dataclass(frozen=True)
class Cancelled:
    """The render of ``key`` stopped at a safe point because the supervisor asked
    (``RenderWorker.cancel``): a newer request made it useless. Not a failure: no retry, no
    error to the performer."""

    key: LoopKey
    seconds: float  # how long it ran before it stopped
    also: tuple[LoopKey, ...] = ()  # the rest of a batch stopped with ``key``, not delivered


@dataclass(frozen=True)
class Heartbeat:
    """The worker is alive and busy with ``key`` (sent every ``HEARTBEAT_S`` while a request is
    in flight). Kept inside ``RenderWorker``: it restarts the stall clock, and is news to no
    one else."""

    key: LoopKey


Message = Ready | Progress | Rendered | Failed | Cancelled


class SharedFlag:
    """A flag both processes see: one shared byte (no lock: one writer sets it, the worker
    clears it before a request the supervisor has not yet cancelled). Unlike a multiprocessing
    Event it holds no semaphore for the resource tracker to find leaked when the worker is
    killed."""

    def __init__(self, ctx: Any) -> None:
        self._value = ctx.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)


@dataclass(frozen=True)
class WorkerSettings:
    model: str = DEFAULT_MODEL
    device: str = BY_NAME["device"].default
    dtype: str = BY_NAME["dtype"].default
    cuda_graphs: bool = BY_NAME["cuda_graphs"].default
    compile: bool = BY_NAME["compile"].default
    compile_cache: str = BY_NAME["compile_cache"].default
    width_buckets: str = BY_NAME["width_buckets"].default
    render_batch: int = BY_NAME["render_batch"].default  # 0: auto (``choose_render_batch``)
    step_cache: int = BY_NAME["step_cache"].default
    nice: int = 10  # the worker's CPU priority below the audio (POSIX nice increment)


# ---- the worker process -------------------------------------------------------------------------

def loop_seconds(key: LoopKey) -> float:
    return key.bars * key.beats_per_bar * 60.0 / key.bpm


def check_loop_length(key: LoopKey, limit_s: float = MAX_LOOP_SECONDS) -> str | None:
    """Why a live render of ``key`` is refused (too long to render without starving the audio,
    and no way to stop it once started), or None when it may go ahead."""
    seconds = loop_seconds(key)
    if seconds <= limit_s:
        return None
    bar_s = key.beats_per_bar * 60.0 / key.bpm
    bars = int(limit_s // bar_s)
    fewer = (f"fewer bars (at most {bars} at {key.bpm:g} BPM)" if bars >= 1
             else f"fewer beats per bar (one bar is {bar_s:.0f} s)")
    need = key.bars * key.beats_per_bar * 60.0 / limit_s
    fastest = BY_NAME["bpm"].maximum
    faster = (f"a faster tempo ({key.bars} bars of {key.beats_per_bar} need at least "
              f"{math.ceil(need)} BPM" + (f"; the most is {fastest:g})"
                                          if fastest is not None and need > fastest else ")"))
    return (f"a loop of {key.bars} bars of {key.beats_per_bar} beats at {key.bpm:g} BPM is "
            f"{seconds:.0f} s long, over the {limit_s:.0f} s limit of a live render: use "
            f"{fewer} or {faster}")


def _die_with_parent(parent: int, life: Any) -> None:
    """Make sure this process ends when ``parent`` does: the kernel's parent-death signal where
    there is one, and a watchdog thread that ends the process when the supervisor's end of the
    ``life`` pipe closes or the parent pid changes (the process was orphaned).

    PR_SET_PDEATHSIG fires when the *thread* that started this process ends, not the process:
    that is the main thread at start (it lasts as long as the process) and the engine thread on
    a restart (it ends only when the engine closes, which ends the worker anyway). The watchdog
    covers the rest, and every platform. It calls ``os._exit``: a normal exit would wait for
    the results queue's feeder thread, blocked writing to a pipe nobody reads any more."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            try:
                if life is not None and life.poll(PARENT_CHECK_S):
                    os._exit(1)  # readable means EOF: the supervisor never writes to it
            except (OSError, EOFError):
                os._exit(1)
            if life is None:
                time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="riffbridge-parent-watch", daemon=True).start()


def _heartbeat(results: Any, busy: list[LoopKey | None]) -> None:
    """Thread: a ``Heartbeat`` every ``HEARTBEAT_S`` while ``busy[0]`` names a request."""
    while True:
        time.sleep(HEARTBEAT_S)
        key = busy[0]
        if key is not None:
            try:
                results.put(Heartbeat(key))
            except (ValueError, OSError):  # the queue is closed: the process is ending
                return


def _render(renderer: Any, request: RenderRequest, results: Any,
            delivered: list[LoopKey]) -> None:
    """Make the request's loops in one render (``make_loops``) and send each as it is shaped,
    the first first; ``delivered`` collects their keys (a cancel or failure covers the rest)."""
    started = time.perf_counter()
    key = request.key
    last = [0.0]

    def progress(fraction: float) -> None:
        now = time.perf_counter()
        if now - last[0] >= PROGRESS_EVERY_S or fraction >= 1.0:
            last[0] = now
            results.put(Progress(key, float(fraction)))

    loops = make_loops(renderer, request.loops, progress)
    for loop_request, loop in zip(request.loops, loops, strict=True):
        results.put(Rendered(loop_request.key, loop, device_frames(loop, request.out_rate),
                             time.perf_counter() - started))
        delivered.append(loop_request.key)


def device_frames(loop: Loop, rate: int) -> np.ndarray:
    """The loop as the player plays it: (frames, 2) float32 at the device ``rate``, exactly
    one loop long (the live worker and `riffbridge replay` both make their frames here)."""
    from riffbridge.dsp import resample_periodic
    from riffbridge.loops.tempo import loop_samples

    samples = loop_samples(loop.bpm, loop.bars, loop.beats_per_bar, rate)
    frames = resample_periodic(np.asarray(loop.audio), samples).T
    if frames.shape[1] == 1:
        frames = np.repeat(frames, 2, axis=1)
    return np.ascontiguousarray(frames, dtype=np.float32)


def open_renderer(settings: WorkerSettings) -> tuple[Any, Any]:
    """The worker's renderer on the render path chosen for this machine and these settings
    (``riffbridge.render.path``), with its compiler started in the background when compiling
    applies; the path too. The compile cache is pointed at before anything compiles."""
    from riffbridge.render.path import RenderOptions, choose_path, probe_platform, use_compile_cache
    from riffbridge.render.riffuse import Renderer
    from riffbridge.torch_device import resolve_device

    platform = probe_platform(resolve_device(settings.device))
    path = choose_path(platform, RenderOptions(settings.cuda_graphs, settings.compile,
                                               settings.compile_cache, settings.width_buckets,
                                               settings.step_cache))
    if path.compile_cache is not None:
        use_compile_cache(path.compile_cache)
    renderer = Renderer(settings.model, device=settings.device, dtype=settings.dtype,
                        max_batch=max(4, settings.render_batch),
                        cuda_graphs=path.cuda_graphs, width_buckets=path.width_buckets,
                        step_cache=path.step_cache)
    if path.compile:
        renderer.compile_in_background()
    return renderer, path


def worker_main(settings: WorkerSettings, requests: Any, results: Any, life: Any = None,
                parent: int | None = None, stop: Any = None) -> None:
    """The worker process: load the model, then render requests until a None arrives. ``life``
    is the read end of a pipe whose other end only the supervisor holds; ``parent`` its pid;
    ``stop`` an event the supervisor sets to cancel the request in flight (cleared as each
    request starts: the supervisor only cancels the one it knows is in flight)."""
    _die_with_parent(os.getppid() if parent is None else parent, life)
    logging.basicConfig(level=logging.WARNING, format="render worker: %(message)s")
    # Ctrl-C in a terminal, and a hang-up when the terminal closes, reach the whole process
    # group: the engine decides when the worker stops (it drops the render in flight), and the
    # worker dies with the engine's process in any case (above).
    # The same for SIGTERM sent to the group (`timeout`, `kill -TERM -PGID`, a service manager):
    # serve stops in stages and closes the worker; a worker that died first was reported as an
    # error of a clean stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if settings.nice and hasattr(os, "nice"):
        # Rendering is the work that can wait: on a busy machine the audio threads (the engine
        # process, the audio server) get the CPU first. The GPU does not care.
        os.nice(settings.nice)
    try:
        from riffbridge.errors import ModelNotFoundError

        renderer, path = open_renderer(settings)
    except ModelNotFoundError as exc:
        results.put(Failed(None, str(exc), fatal=True, source="worker"))
        return
    except Exception as exc:
        results.put(Failed(None, f"loading {settings.model}: {exc}", fatal=True,
                           source="worker"))
        return
    from diffusers.utils import logging as diffusers_logging  # loaded with the model above

    diffusers_logging.set_verbosity_error()  # its per-cast notes are noise in the live log
    batch, why = choose_render_batch(renderer.device.type, settings.render_batch)
    results.put(Ready(settings.model, str(renderer.device), os.getpid(),
                      f"{path.describe()}; {why}", batch))
    busy: list[LoopKey | None] = [None]
    threading.Thread(target=_heartbeat, args=(results, busy), name="riffbridge-heartbeat",
                     daemon=True).start()
    while True:
        req = requests.get()
        if req is None:
            return
        refused = check_loop_length(req.key)  # a batch shares one length
        if refused is not None:
            results.put(Failed(req.key, refused, also=req.keys[1:]))
            continue
        busy[0] = req.key
        started = time.perf_counter()
        delivered: list[LoopKey] = []
        try:
            if stop is None:
                _render(renderer, req, results, delivered)
            else:
                stop.clear()
                with cancel.cancellable(stop):
                    _render(renderer, req, results, delivered)
        except cancel.Cancelled:
            left = [k for k in req.keys if k not in delivered] or [req.key]
            results.put(Cancelled(left[0], round(time.perf_counter() - started, 3),
                                  tuple(left[1:])))
        except Exception as exc:
            tail = traceback.format_exc(limit=3).strip().splitlines()[-1]
            left = [k for k in req.keys if k not in delivered] or [req.key]
            results.put(Failed(left[0], f"{type(exc).__name__}: {exc}" if str(exc) else tail,
                               also=tuple(left[1:])))
        finally:
            busy[0] = None


# ---- the supervisor (engine side) ---------------------------------------------------------------

class RenderWorker:
    """Runs ``worker_main`` in a spawned process; restarts it when it dies or hangs.

    Owned by the engine thread. ``submit`` only when ``idle``; ``poll`` returns the messages that
    arrived (and a ``Failed`` for a death or a hang it noticed). A hang is a request in flight to
    a ready worker with no sign of life for ``render_timeout_s``: progress every diffusion step,
    and a heartbeat every ``HEARTBEAT_S`` from a thread of the worker's own, so a slow render, a
    first render's warm-up or a long loop shaping is never taken for one; a stopped or frozen
    process is. A worker still loading its model has no request and is never stalled.

    Start it from a thread that lasts as long as the worker is wanted: on Linux the kernel kills
    the worker when the thread that started it ends (see ``_die_with_parent``)."""

    def __init__(self, settings: WorkerSettings, *,
                 render_timeout_s: float = BY_NAME["render_timeout"].default,
                 restart_delay_s: float = 1.0) -> None:
        self.settings = settings
        self.render_timeout_s = render_timeout_s
        self.restart_delay_s = restart_delay_s
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._requests: Any = None
        self._results: Any = None
        self._life: Any = None  # our end of the pipe the worker's watchdog waits on
        self._stop: Any = None  # set to cancel the request in flight
        self._cancelling: LoopKey | None = None  # the in-flight key a cancel was sent for
        self.cancels = 0
        self.ready: Ready | None = None
        self.in_flight: RenderRequest | None = None
        self._left: set[LoopKey] = set()  # the in-flight request's loops not delivered yet
        self._sent_at = 0.0
        self._restart_at: float | None = None
        self.restarts = 0
        self.fatal: str | None = None
        self._closed = False

    # -- lifecycle --
    def start(self) -> RenderWorker:
        self._release()  # a restart: the old worker is gone, its queues and pipe go too
        self._requests = self._ctx.Queue()
        self._results = self._ctx.Queue()
        watch, self._life = self._ctx.Pipe(duplex=False)
        self._stop = SharedFlag(self._ctx)
        self._proc = self._ctx.Process(target=worker_main, name="riffbridge-render",
                                       args=(self.settings, self._requests, self._results,
                                             watch, os.getpid(), self._stop),
                                       daemon=True)
        try:
            self._proc.start()
        finally:
            watch.close()  # the worker has its own copy: only ours of the write end is left
        self.ready = None
        self._restart_at = None
        return self

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def idle(self) -> bool:
        return (self.ready is not None and self.in_flight is None and self.fatal is None
                and self._proc is not None and self._proc.is_alive())

    def wait_ready(self, timeout: float, cancelled: Callable[[], bool] | None = None) -> Ready:
        """Block until the model has loaded; raise RenderError with the worker's reason, or
        when ``cancelled()`` turns true (a stop asked for during a long load)."""
        deadline = time.monotonic() + timeout
        while self.ready is None:
            if cancelled is not None and cancelled():
                raise RenderError(f"stopped while loading {self.settings.model}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RenderError(f"the render worker did not load {self.settings.model} "
                                  f"within {timeout:.0f} s")
            for msg in self.poll(min(left, 0.2)):
                if isinstance(msg, Failed) and msg.key is None:
                    raise RenderError(msg.error)
        return self.ready

    def submit(self, request: RenderRequest) -> None:
        if not self.idle:
            raise RenderError("the render worker is busy or not ready")
        self.in_flight = request
        self._left = set(request.keys)
        self._cancelling = None
        self._sent_at = time.monotonic()
        self._requests.put(request)

    def cancel(self) -> bool:
        """Ask the worker to drop the request in flight at its next safe point (between
        diffusion steps, between Griffin-Lim iterations). A ``Cancelled`` (or, when it was
        already done, its ``Rendered``) follows; until then the worker is not idle. Whether a
        cancel was sent now (False: nothing in flight, or already asked)."""
        request = self.in_flight
        if request is None or self._stop is None or self._cancelling == request.key:
            return False
        self._cancelling = request.key
        self._stop.set()
        self.cancels += 1
        return True

    def poll(self, timeout: float = 0.0) -> list[Message]:
        out: list[Message] = []
        if self._results is None:
            return out
        try:
            msg = self._results.get(timeout=timeout) if timeout > 0 else \
                self._results.get_nowait()
            while True:
                out.append(msg)
                msg = self._results.get_nowait()
        except queue.Empty:
            pass
        except (EOFError, OSError):  # the queue's pipe broke with the process
            pass
        for msg in out:
            if isinstance(msg, (Progress, Heartbeat)) and self.in_flight is not None \
                    and msg.key == self.in_flight.key:
                self._sent_at = time.monotonic()  # a sign of life: the stall clock restarts
            if isinstance(msg, Ready):
                self.ready = msg
            elif isinstance(msg, (Rendered, Failed, Cancelled)):
                if isinstance(msg, Failed) and msg.fatal:
                    self.fatal = msg.error
                self._answered(msg)
        out = [msg for msg in out if not isinstance(msg, Heartbeat)]  # ours alone
        out.extend(self._supervise())
        return out

    def _answered(self, msg: Rendered | Failed | Cancelled) -> None:
        """A loop of the request in flight was delivered, or the rest of it failed or stopped:
        the worker is free when none of its loops is left."""
        request = self.in_flight
        if request is None:
            return
        if isinstance(msg, Rendered):
            self._left.discard(msg.key)
            if self._left:
                self._sent_at = time.monotonic()  # a sign of life too
                return
        elif msg.key not in self._left:
            return  # an answer to an earlier request
        self.in_flight = None
        self._left = set()

    def _supervise(self) -> list[Message]:
        if self._closed or self.fatal is not None or self._proc is None:
            return []
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self.restarts += 1
                self.start()
            return []
        alive = self._proc.is_alive()
        hung = (self.ready is not None and self.in_flight is not None
                and now - self._sent_at > self.render_timeout_s)
        if alive and not hung:
            return []
        lost = self.in_flight
        what = (f"rendering alpha {lost.key.alpha:g}" if lost is not None
                else "idle" if self.ready is not None else f"loading {self.settings.model}")
        if hung:
            reason = (f"render worker stalled: no sign of life for "
                      f"{self.render_timeout_s:.0f} s ({what})")
            self._kill()
        else:
            reason = f"render worker died (exit code {self._proc.exitcode}) while {what}"
        self.in_flight = None
        self.ready = None
        self._restart_at = now + self.restart_delay_s
        log.error("%s; restarting it", reason)
        left = () if lost is None else tuple(k for k in lost.keys if k in self._left)
        self._left = set()
        return [Failed(left[0] if left else lost.key if lost else None,
                       reason + "; restarting it", source="worker", also=left[1:])]

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            if self._proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    self._requests.put(None)
                self._proc.join(timeout if self.in_flight is None else 0.5)
            self._kill()
        self._release()

    def _release(self) -> None:
        """Close the queues and the life pipe of a worker that is gone (or never started)."""
        for q in (self._requests, self._results):
            if q is not None:
                q.cancel_join_thread()
                q.close()
        if self._life is not None:
            self._life.close()  # the worker's watchdog sees EOF: nothing outlives this
        self._requests = self._results = self._life = self._stop = None

    def __enter__(self) -> RenderWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
