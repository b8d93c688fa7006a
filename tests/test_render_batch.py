"""Planned loops rendered together (``render_batch``): a batch equals its loops rendered one by
one (up to the rounding of batched kernels), goes through the UNet as one call per step with both
CFG halves in it, comes back loop by loop from the worker, and is stored and played by the
engine; a cancel covers what of a batch is not delivered yet. The tiny model on this CPU; the
choice of which loops go together is in test_engine_core.py."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from engine_helpers import RATE, EventLog, Live, Tap, wait_for

from riffbridge.control.hub import Hub
from riffbridge.engine.engine import Engine, EngineSettings
from riffbridge.engine.plan import LoopKey, key_for
from riffbridge.engine.player import Player
from riffbridge.engine.worker import (
    Cancelled,
    Failed,
    Progress,
    Rendered,
    RenderRequest,
    RenderWorker,
    WorkerSettings,
)
from riffbridge.events import LoopReady, Switched
from riffbridge.outputs.audio_stream import PacedStream
from riffbridge.pipeline import LoopRequest, make_loops
from riffbridge.render.bench import seed_image
from riffbridge.render.riffuse import Renderer, RiffuseJob
from riffbridge.state import EngineState, SetParam

LOAD_TIMEOUT_S = 300.0  # torch import and the tiny model, on two cores that others use too
RENDER_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("tiny", device="cpu")


def _jobs(width: int = 128) -> list[RiffuseJob]:
    """Neighbouring alphas of one loop, as the engine renders them: img2img from one seed
    image, tiled in time, guidance and denoise moving with alpha."""
    image = seed_image(width)
    return [RiffuseJob("funky jazz drums", "church organ", seed_a=1, seed_b=2, alpha=a,
                       guidance_a=7.0, guidance_b=3.0, steps=4, seed_image=image,
                       tile_time=True) for a in (0.625, 0.75, 0.375)]


def test_a_batch_of_neighbours_is_one_unet_call_per_step_with_both_cfg_halves(
        renderer: Renderer) -> None:
    jobs = _jobs()
    batches: list[int] = []
    hook = renderer.components.unet.register_forward_pre_hook(
        lambda _module, args, *rest: batches.append(int(args[0].shape[0])))
    try:
        renderer.render(jobs)
    finally:
        hook.remove()
    steps = int(renderer.timings["unet_steps"])  # the schedule's steps after img2img's start
    assert steps >= 3 and batches == [2 * len(jobs)] * steps  # uncond + cond of each loop


def test_a_batch_of_neighbours_equals_the_loops_rendered_one_by_one(renderer: Renderer) -> None:
    """Not to the bit: the CPU's convolution and matmul kernels sum in another order for
    another batch size (float32 differences of about 1e-6), and the final rounding of the image
    to 8 bits turns a value that sits at a half into a difference of one level. So: at most one
    level anywhere, in at most 0.1 % of the pixels (seen here: 0.004 % to 0.006 %). A real
    difference (another alpha's noise or embedding, a neighbour's guidance) moves most pixels
    by many levels; the last check shows that this test sees one."""
    jobs = _jobs()
    together = renderer.render(jobs)
    for job, batched in zip(jobs, together, strict=True):
        alone = np.asarray(renderer.render([job])[0], dtype=np.int16)
        diff = np.abs(np.asarray(batched, dtype=np.int16) - alone)
        assert diff.max() <= 1, (job.alpha, diff.max())
        assert (diff > 0).mean() < 1e-3, (job.alpha, (diff > 0).mean())
    apart = np.abs(np.asarray(together[0], dtype=np.int16)
                   - np.asarray(together[1], dtype=np.int16))
    assert (apart > 1).mean() > 0.1  # neighbours differ: each job kept its own inputs


def test_make_loops_shapes_each_loop_of_the_batch_in_order(renderer: Renderer) -> None:
    """The audio is not compared with single renders: the Griffin-Lim phase recovery is
    chaotic in its input, and a one-level pixel difference moves the recovered phase (the
    spectrogram comparison above is the equality that holds)."""
    state = EngineState(steps=2, bars=1)
    keys = [key_for(state, a) for a in (0.625, 0.75)]
    images: list[Any] = []
    loops = list(make_loops(renderer, [LoopRequest(k) for k in keys], on_image=images.append))
    assert [loop.metadata["alpha"] for loop in loops] == [0.625, 0.75]
    assert len(images) == 2 and images[0].tobytes() != images[1].tobytes()
    for loop in loops:
        assert loop.metadata["model"] == "tiny" and loop.bpm == 120.0 and loop.bars == 1
        assert np.isfinite(np.asarray(loop.audio)).all() and np.abs(loop.audio).max() > 0.01
    assert loops[0].metadata["render_seconds"] <= loops[1].metadata["render_seconds"]


# ---- the worker ---------------------------------------------------------------------------------

def _batch(*alphas: float, **values: Any) -> RenderRequest:
    state = EngineState(**{"steps": 2, "bars": 1, **values})
    loops = [LoopRequest(key_for(state, a)) for a in alphas]
    return RenderRequest(loops[0], RATE, tuple(loops[1:]))


def _until(worker: RenderWorker, done: Any, timeout: float = RENDER_TIMEOUT_S) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got += worker.poll(0.05)
        if done(got):
            return got
    raise AssertionError(f"no answer within {timeout:.0f} s; got {got}")


@pytest.fixture(scope="module")
def worker() -> Iterator[RenderWorker]:
    with RenderWorker(WorkerSettings("tiny", "cpu", render_batch=3)) as w:
        w.wait_ready(LOAD_TIMEOUT_S)
        yield w


def test_the_worker_renders_a_batch_and_sends_each_loop_first_first(
        worker: RenderWorker) -> None:
    assert worker.ready is not None and worker.ready.batch == 3
    assert worker.ready.path.endswith("; render batch 3")
    request = _batch(0.5, 0.625, 0.375)
    worker.submit(request)
    got = _until(worker, lambda got: sum(isinstance(m, Rendered) for m in got) == 3
                 or any(isinstance(m, (Failed, Cancelled)) for m in got))
    rendered = [m for m in got if isinstance(m, Rendered)]
    assert [m.key for m in rendered] == list(request.keys)
    assert all(m.frames.shape == (RATE * 2, 2) for m in rendered)  # one bar of 4/4 at 120 BPM
    assert len({m.frames.tobytes() for m in rendered}) == 3
    assert all(m.key == request.key for m in got if isinstance(m, Progress))
    assert worker.idle and worker.in_flight is None


@pytest.mark.parametrize("stage", ["diffusion", "shaping"])
def test_a_cancel_covers_the_loops_of_a_batch_not_yet_delivered(worker: RenderWorker,
                                                                 stage: str) -> None:
    """In the diffusion nothing of the batch is out yet: the cancel covers all of it. In the
    shaping (Griffin-Lim, one loop after another) the loops already sent stay sent."""
    pid = worker.pid
    if stage == "diffusion":
        request = _batch(0.0, 0.125, 0.25, steps=40, bars=4, bpm=60.0)
    else:
        request = _batch(0.0, 0.125, 0.25, steps=2, bars=4, bpm=60.0)  # 16 s loops
    worker.submit(request)
    if stage == "diffusion":
        got = _until(worker, lambda got: sum(isinstance(m, Progress) for m in got) >= 2)
    else:
        got = _until(worker, lambda got: any(isinstance(m, Rendered) for m in got))
    assert not any(isinstance(m, (Failed, Cancelled)) for m in got), got
    assert worker.cancel() and not worker.cancel()  # once per request, whatever its size
    assert not worker.idle
    got += _until(worker, lambda got: any(isinstance(m, (Failed, Cancelled)) for m in got))
    delivered = [m.key for m in got if isinstance(m, Rendered)]
    cancelled = [m for m in got if isinstance(m, Cancelled)]
    assert len(cancelled) == 1 and not any(isinstance(m, Failed) for m in got), got
    left = (cancelled[0].key, *cancelled[0].also)
    assert delivered + list(left) == list(request.keys)  # every loop answered once, in order
    if stage == "diffusion":
        assert delivered == []
    else:
        assert len(delivered) in (1, 2) and len(left) >= 1
    assert worker.idle and worker.pid == pid
    worker.submit(_batch(0.5))  # the same worker goes on; the cancel flag does not stop it
    done = _until(worker, lambda got: any(isinstance(m, (Rendered, Failed, Cancelled))
                                          for m in got))
    assert isinstance(done[-1], Rendered) and worker.pid == pid, done


def test_a_worker_that_dies_mid_batch_fails_the_whole_batch(worker: RenderWorker) -> None:
    """The last worker test: the module's worker is killed (its restart is left to close)."""
    pid = worker.pid
    assert pid is not None
    request = _batch(0.0, 0.125, 0.25, steps=40, bars=4, bpm=60.0)
    worker.submit(request)
    _until(worker, lambda got: any(isinstance(m, Progress) for m in got))
    os.kill(pid, signal.SIGKILL)
    got = _until(worker, lambda got: any(isinstance(m, Failed) for m in got), 30.0)
    failed = [m for m in got if isinstance(m, Failed)]
    assert len(failed) == 1 and failed[0].source == "worker" and "died" in failed[0].error
    assert (failed[0].key, *failed[0].also) == request.keys  # one error, every loop backs off
    assert worker.in_flight is None


# ---- the engine ---------------------------------------------------------------------------------

class SpyWorker(RenderWorker):
    """The real worker, noting every request the engine submits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submitted: list[RenderRequest] = []

    def submit(self, request: RenderRequest) -> None:
        super().submit(request)
        self.submitted.append(request)


@contextlib.contextmanager
def batched_engine(state: EngineState, render_batch: int) -> Iterator[tuple[Live, SpyWorker]]:
    hub = Hub(state)
    player = Player()
    tap = Tap(player)
    worker = SpyWorker(WorkerSettings("tiny", "cpu", render_batch=render_batch))
    engine = Engine(state, player, RATE, EngineSettings(), worker=worker)
    hub.add_listener(engine.post)
    with EventLog(hub, engine.events) as log, PacedStream(RATE, tap), engine:
        yield Live(hub, engine, worker, tap, log), worker


def _alphas(request: RenderRequest) -> tuple[float, ...]:
    return tuple(float(k.alpha) for k in request.keys)


def test_the_engine_renders_the_neighbours_in_one_batch_stores_every_loop_and_plays_them():
    state = EngineState(steps=2, bars=1, playing=True, quantum="beat", alpha=0.5)
    with batched_engine(state, 4) as (live, worker):
        status = live.engine.status
        wait_for(lambda: status().worker == "idle" and status().queued == 0
                 and len(live.log.of(LoopReady)) == 5, RENDER_TIMEOUT_S, "the look-ahead")
        assert [_alphas(r) for r in worker.submitted] == [(0.5,), (0.625, 0.75, 0.875, 0.375)]
        assert status().rendered == (0.375, 0.5, 0.625, 0.75, 0.875)
        assert sorted(e.alpha for e in live.log.of(LoopReady)) == [0.375, 0.5, 0.625, 0.75,
                                                                    0.875]
        batch = set(worker.submitted[1].keys)
        for alpha in (0.75, 0.875, 0.375):  # loops of the batch, played as the knob gets there
            live.hub.submit(SetParam("alpha", alpha))
            wait_for(lambda a=alpha: status().sounding == f"alpha {a:g}", 30, f"alpha {alpha}")
            wait_for(lambda a=alpha: any(s.alpha == a for s in live.log.of(Switched)), 10,
                     f"the switch to alpha {alpha}")
        rendered_again = [k for r in worker.submitted[2:] for k in r.keys if k in batch]
        assert rendered_again == []  # they played from the cache, never rendered again
        assert max(live.tap.peaks[-10:]) > 0.0


def test_the_engine_cancels_a_batch_a_tempo_change_made_useless():
    state = EngineState(steps=4, bars=2, bpm=60.0, playing=True, quantum="beat", alpha=0.5)
    with batched_engine(state, 4) as (live, worker):
        wait_for(lambda: any(r.more for r in worker.submitted), RENDER_TIMEOUT_S,
                 "the batch of neighbours")
        in_flight = worker.in_flight
        assert in_flight is not None and len(in_flight.keys) == 4, worker.submitted
        live.hub.submit(SetParam("bpm", 90.0))
        wait_for(lambda: worker.cancels >= 1, 10, "the cancel")
        new: LoopKey = key_for(live.engine.status().state)
        wait_for(lambda: any(e.bpm == 90.0 for e in live.log.of(LoopReady)),
                 RENDER_TIMEOUT_S, "the new tempo's loop")
        old = [e for e in live.log.of(LoopReady) if e.bpm == 60.0]
        assert len(old) < 5  # the first, and at most the batch's loops out before the cancel
        assert worker.submitted[2].key == new  # after the batch: the knob's point, new tempo
