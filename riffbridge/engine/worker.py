"""The render worker: a separate process that owns the model and turns requests into loops.

The engine never renders in its own process: a crash, a GPU out-of-memory or a long stall in the
model code cannot stop the audio callback (it holds no lock or GIL the worker needs). The
``RenderWorker`` supervisor starts the process, hands it one request at a time (so nothing stale
waits in a queue), notices when it dies or hangs, reports the error and starts a new one.

Contracts: the worker process is the one owner of the model. ``RenderWorker`` is owned by the
engine thread (``riffbridge.engine.engine``), which is its only caller; nothing here is
thread-safe. Messages both ways are frozen values. For each request the worker makes the loop
with the one loop pipeline (``riffbridge.pipeline.make_loop``: seed -> riffuse render -> loop
shaping, the same function as the CLI's `render`) and then resamples it to the device rate.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from riffbridge.engine.plan import LoopKey
from riffbridge.errors import RenderError
from riffbridge.loops.types import Loop
from riffbridge.params import BY_NAME, DEFAULT_MODEL
from riffbridge.pipeline import LoopRequest, make_loop

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.1


@dataclass(frozen=True)
class RenderRequest:
    """One loop for the worker: how to make it (the pipeline's request), at which device rate."""

    loop: LoopRequest
    out_rate: int  # the device rate the player wants the loop at

    @property
    def key(self) -> LoopKey:
        return self.loop.key


@dataclass(frozen=True)
class Ready:
    model: str
    device: str
    pid: int


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


Message = Ready | Progress | Rendered | Failed


@dataclass(frozen=True)
class WorkerSettings:
    model: str = DEFAULT_MODEL
    device: str = BY_NAME["device"].default
    dtype: str = BY_NAME["dtype"].default
    cuda_graphs: bool = False
    nice: int = 10  # the worker's CPU priority below the audio (POSIX nice increment)


# ---- the worker process -------------------------------------------------------------------------

def _render(renderer: Any, request: RenderRequest, results: Any) -> None:
    from riffbridge.dsp import resample_periodic
    from riffbridge.loops.tempo import loop_samples

    started = time.perf_counter()
    key = request.key
    last = [0.0]

    def progress(fraction: float) -> None:
        now = time.perf_counter()
        if now - last[0] >= PROGRESS_EVERY_S or fraction >= 1.0:
            last[0] = now
            results.put(Progress(key, float(fraction)))

    loop = make_loop(renderer, request.loop, progress)
    samples = loop_samples(loop.bpm, loop.bars, loop.beats_per_bar, request.out_rate)
    frames = resample_periodic(np.asarray(loop.audio), samples).T
    if frames.shape[1] == 1:
        frames = np.repeat(frames, 2, axis=1)
    results.put(Rendered(key, loop, np.ascontiguousarray(frames, dtype=np.float32),
                         time.perf_counter() - started))


def worker_main(settings: WorkerSettings, requests: Any, results: Any) -> None:
    """The worker process: load the model, then render requests until a None arrives."""
    logging.basicConfig(level=logging.WARNING, format="render worker: %(message)s")
    # Ctrl-C in a terminal reaches the whole process group: the engine decides when the worker
    # stops (it finishes or drops the render in flight), not the keyboard.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    if settings.nice and hasattr(os, "nice"):
        # Rendering is the work that can wait: on a busy machine the audio threads (the engine
        # process, the audio server) get the CPU first. The GPU does not care.
        os.nice(settings.nice)
    try:
        from riffbridge.errors import ModelNotFoundError
        from riffbridge.render.riffuse import Renderer

        renderer = Renderer(settings.model, device=settings.device, dtype=settings.dtype,
                            cuda_graphs=settings.cuda_graphs)
    except ModelNotFoundError as exc:
        results.put(Failed(None, str(exc), fatal=True, source="worker"))
        return
    except Exception as exc:
        results.put(Failed(None, f"loading {settings.model}: {exc}", fatal=True,
                           source="worker"))
        return
    with contextlib.suppress(Exception):  # the tiny model's float32 notes are noise, not news
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
    results.put(Ready(settings.model, str(renderer.device), os.getpid()))
    while True:
        try:
            req = requests.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the engine died without a word: do not linger
                return
            continue
        if req is None:
            return
        try:
            _render(renderer, req, results)
        except Exception as exc:
            tail = traceback.format_exc(limit=3).strip().splitlines()[-1]
            results.put(Failed(req.key, f"{type(exc).__name__}: {exc}" if str(exc) else tail))


# ---- the supervisor (engine side) ---------------------------------------------------------------

class RenderWorker:
    """Runs ``worker_main`` in a spawned process; restarts it when it dies or hangs.

    Owned by the engine thread. ``submit`` only when ``idle``; ``poll`` returns the messages that
    arrived (and a ``Failed`` for a death or a hang it noticed). A hang is a render in flight
    with no progress message for ``render_timeout_s``: a slow first render (warm-up, a big model
    on a CPU) still reports progress every step and is not killed."""

    def __init__(self, settings: WorkerSettings, *, render_timeout_s: float = 300.0,
                 restart_delay_s: float = 1.0) -> None:
        self.settings = settings
        self.render_timeout_s = render_timeout_s
        self.restart_delay_s = restart_delay_s
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._requests: Any = None
        self._results: Any = None
        self.ready: Ready | None = None
        self.in_flight: RenderRequest | None = None
        self._sent_at = 0.0
        self._restart_at: float | None = None
        self.restarts = 0
        self.fatal: str | None = None
        self._closed = False

    # -- lifecycle --
    def start(self) -> RenderWorker:
        self._requests = self._ctx.Queue()
        self._results = self._ctx.Queue()
        self._proc = self._ctx.Process(target=worker_main, name="riffbridge-render",
                                       args=(self.settings, self._requests, self._results),
                                       daemon=True)
        self._proc.start()
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
        self._sent_at = time.monotonic()
        self._requests.put(request)

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
            if isinstance(msg, Progress):
                self._sent_at = time.monotonic()  # a sign of life: the stall clock restarts
            if isinstance(msg, Ready):
                self.ready = msg
            elif isinstance(msg, (Rendered, Failed)):
                if isinstance(msg, Failed) and msg.fatal:
                    self.fatal = msg.error
                if self.in_flight is not None and msg.key == self.in_flight.key:
                    self.in_flight = None
        out.extend(self._supervise())
        return out

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
        hung = (self.in_flight is not None
                and now - self._sent_at > self.render_timeout_s)
        if alive and not hung:
            return []
        lost = self.in_flight
        what = (f"rendering alpha {lost.key.alpha:g}" if lost is not None
                else "idle" if self.ready is not None else f"loading {self.settings.model}")
        if hung:
            reason = (f"render worker stalled: no progress for {self.render_timeout_s:.0f} s "
                      f"({what})")
            self._kill()
        else:
            reason = f"render worker died (exit code {self._proc.exitcode}) while {what}"
        self.in_flight = None
        self.ready = None
        self._restart_at = now + self.restart_delay_s
        log.error("%s; restarting it", reason)
        return [Failed(lost.key if lost else None, reason + "; restarting it", source="worker")]

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
        for q in (self._requests, self._results):
            if q is not None:
                q.cancel_join_thread()
                q.close()

    def __enter__(self) -> RenderWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
