"""The render worker's life: it dies with `serve` however `serve` ends, a stall is only a frozen
worker, and a loop too long to render is refused up front.

Real parts throughout: `riffbridge serve` subprocesses killed with real signals and watched
through /proc, and a real worker process with the tiny model on the CPU.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pythonosc.udp_client import SimpleUDPClient
from test_serve import (
    CLIP_TIMEOUT_S,
    PROC,
    Inbox,
    Serve,
    check_run_folder,
    free_udp_port,
    session_processes,
    summary_counts,
    wait_until,
)

from riffbridge.engine.plan import key_for
from riffbridge.engine.worker import (
    MAX_LOOP_SECONDS,
    Cancelled,
    Failed,
    Progress,
    Rendered,
    RenderRequest,
    RenderWorker,
    WorkerSettings,
)
from riffbridge.pipeline import LoopRequest
from riffbridge.state import EngineState

pytestmark = pytest.mark.skipif(not PROC.is_dir() or not hasattr(os, "killpg"),
                                reason="these tests watch processes through /proc (Linux)")

GONE_WITHIN_S = 10.0  # the worker and the resource tracker must follow serve out this fast


def cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2:].split()[0] != "Z"


def helpers(serve: Serve) -> dict[str, int]:
    """The render worker and multiprocessing's resource tracker among serve's children."""
    found = {}
    for pid in serve.children():
        line = cmdline(pid)
        if "spawn_main" in line:
            found["worker"] = pid
        elif "resource_tracker" in line:
            found["tracker"] = pid
    return found


def start_rendering(tmp_path: Path, inbox: Inbox, *extra: str) -> tuple[Serve, Path, dict]:
    """A serve in its own session, its worker rendering a loop right now (a progress push just
    arrived): the render and its loop shaping still have a while to go."""
    osc_port = free_udp_port()
    args = ["--model", "tiny", "--device", "cpu", "--steps", "4", "--audio-out", "none",
            "--out-dir", str(tmp_path / "out"), "--osc-port", str(osc_port),
            "--reply-port", str(inbox.port), "--bars", "4", "--no-web", *extra]
    serve = Serve(args, tmp_path)
    try:
        run_dir = Path(serve.wait_running()["files"])
        SimpleUDPClient("127.0.0.1", osc_port).send_message("/rb/subscribe", [])
        found = wait_until(lambda: len(h := helpers(serve)) == 2 and h, 10)
        assert found, f"no worker and resource tracker among {serve.children()}"
        return serve, run_dir, found
    except BaseException:
        serve.kill()
        raise


@pytest.mark.parametrize(("signum", "group"),
                         [(signal.SIGKILL, False), (signal.SIGHUP, False),
                          (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["SIGKILL", "SIGHUP", "SIGTERM", "SIGTERM-to-the-group"])
def test_the_worker_dies_with_serve_while_it_renders(tmp_path: Path, signum: int,
                                                      group: bool) -> None:
    """``group``: the signal goes to the whole process group, as `timeout` or a service manager
    send it: the worker gets it too, and the stop is as clean (no "worker died" error)."""
    inbox = Inbox()
    serve, run_dir, found = start_rendering(tmp_path, inbox)
    try:
        if signum != signal.SIGKILL:  # a clean stop has something to keep
            inbox.wait("/rb/clip", timeout=CLIP_TIMEOUT_S)
        mark = inbox.mark()
        inbox.wait("/rb/progress", mark, CLIP_TIMEOUT_S, where=lambda args: args[0] < 1.0)
        assert all(alive(pid) for pid in found.values())
        if group:
            os.killpg(serve.sid, signum)
        else:
            serve.signal(signum)
        if signum != signal.SIGKILL:  # staged, as for Ctrl-C
            assert serve.wait_exit() == 0, "\n".join(serve.err[-20:])
            assert any("riffbridge: stopping" in line for line in serve.out)
            summary = next(line for line in serve.out if line.startswith("riffbridge: stopped"))
            assert summary.endswith(" 0 errors"), (summary, serve.err[-5:])
            _, written = summary_counts(serve.out)
            assert written >= 1
            check_run_folder(run_dir, written)
        else:
            assert serve.wait_exit() == -signal.SIGKILL
        wait_until(lambda: not any(alive(pid) for pid in found.values()), GONE_WITHIN_S)
        lingering = [name for name, pid in found.items() if alive(pid)]
        assert lingering == [], f"{lingering} outlived serve ({found})"
        assert session_processes(serve.sid) == []
    finally:
        serve.kill()
        inbox.close()


def test_a_worker_restarted_by_the_engine_thread_dies_with_serve_too(tmp_path: Path) -> None:
    """The first worker is started by serve's main thread, a restart by the engine thread: the
    kernel's parent-death signal names the thread, so check the restarted one as well."""
    inbox = Inbox()
    serve, _, found = start_rendering(tmp_path, inbox)
    try:
        inbox.wait("/rb/progress", timeout=CLIP_TIMEOUT_S)
        os.kill(found["worker"], signal.SIGKILL)
        new = wait_until(lambda: (h := helpers(serve)).get("worker", found["worker"])
                         != found["worker"] and h, 30)
        assert new, f"no new worker among {serve.children()}"
        mark = inbox.mark()
        inbox.wait("/rb/progress", mark, CLIP_TIMEOUT_S)  # the new worker renders
        serve.signal(signal.SIGKILL)
        assert serve.wait_exit() == -signal.SIGKILL
        wait_until(lambda: not any(alive(pid) for pid in new.values()), GONE_WITHIN_S)
        lingering = [name for name, pid in new.items() if alive(pid)]
        assert lingering == [], f"{lingering} outlived serve ({new})"
        assert session_processes(serve.sid) == []
    finally:
        serve.kill()
        inbox.close()


# ---- a real worker -------------------------------------------------------------------------------

STALL_S = 3.0  # the stall limit of the shared worker: well under a long loop's silent shaping
LOAD_TIMEOUT_S = 300.0  # torch import and the tiny model, on two cores that others use too
RENDER_TIMEOUT_S = 300.0


def request(**values: Any) -> RenderRequest:
    state = EngineState(**{"steps": 2, **values})
    return RenderRequest(LoopRequest(key_for(state)), 44100)


@pytest.fixture(scope="module")
def worker() -> Iterator[RenderWorker]:
    with RenderWorker(WorkerSettings("tiny", "cpu"), render_timeout_s=STALL_S,
                      restart_delay_s=0.5) as w:
        w.wait_ready(LOAD_TIMEOUT_S)
        yield w


def run(worker: RenderWorker, req: RenderRequest,
        timeout: float = RENDER_TIMEOUT_S) -> list[tuple[float, object]]:
    """Submit ``req``; every message until its answer (a ``Rendered`` or ``Failed``), timed."""
    worker.submit(req)
    return run_until(worker, (Rendered, Failed), timeout)


def run_until(worker: RenderWorker, kinds: tuple[type, ...],
              timeout: float = RENDER_TIMEOUT_S) -> list[tuple[float, object]]:
    """Every message until one of ``kinds``, timed."""
    got: list[tuple[float, object]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in worker.poll(0.05):
            got.append((time.monotonic(), msg))
            if isinstance(msg, kinds):
                return got
    raise AssertionError(f"no answer within {timeout:.0f} s; got {got}")


def test_a_loop_too_long_to_render_is_refused_at_once_and_the_worker_goes_on(
        worker: RenderWorker) -> None:
    pid = worker.pid
    started = time.monotonic()
    got = run(worker, request(bars=16, beats_per_bar=16, bpm=40.0), timeout=30.0)
    took = got[-1][0] - started
    refused = got[-1][1]
    assert isinstance(refused, Failed) and refused.source == "render" and not refused.fatal
    assert took < 10.0, f"refused after {took:.1f} s: it was rendered first"  # a render: > 100 s
    for name in ("384 s", f"{MAX_LOOP_SECONDS:.0f} s", "fewer bars", "faster tempo"):
        assert name in refused.error, refused.error
    assert not any(isinstance(msg, Progress) for _, msg in got)
    assert worker.idle and worker.pid == pid
    done = run(worker, request(bars=1))[-1][1]
    assert isinstance(done, Rendered), done
    assert worker.pid == pid and worker.restarts == 0


@pytest.mark.parametrize("stage", ["diffusion", "griffin-lim"])
def test_a_long_render_is_cancelled_at_a_safe_point_and_the_worker_goes_on(
        worker: RenderWorker, stage: str) -> None:
    """A 60 s loop (the longest a live render takes) renders for tens of seconds here; a cancel
    stops it in the diffusion (after a step) or in the Griffin-Lim phase recovery (the shaping,
    which reports no progress), and the same worker takes the next request."""
    pid = worker.pid
    long = request(bars=16, bpm=64.0, steps=20 if stage == "diffusion" else 2)
    worker.submit(long)
    steps = 0
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    while time.monotonic() < deadline:
        msgs = worker.poll(0.05)
        assert not any(isinstance(m, (Rendered, Failed)) for m in msgs), msgs
        done = [m.fraction for m in msgs if isinstance(m, Progress)]
        steps += len(done)
        if (stage == "diffusion" and steps >= 2) or (stage == "griffin-lim" and 1.0 in done):
            break
    if stage == "griffin-lim":
        time.sleep(1.0)  # well into the phase recovery (several seconds for 60 s of audio)
    asked = time.monotonic()
    assert worker.cancel() and not worker.cancel()  # once per request
    assert not worker.idle
    got = run_until(worker, (Rendered, Failed, Cancelled))
    answer = got[-1][1]
    assert isinstance(answer, Cancelled) and answer.key == long.key, answer
    if stage == "diffusion":
        assert max((m.fraction for _, m in got if isinstance(m, Progress)), default=0.0) < 1.0
    print(f"{stage}: cancelled {got[-1][0] - asked:.2f} s after the request, "
          f"{answer.seconds:.1f} s into the render")
    assert worker.idle and worker.pid == pid and worker.cancels >= 1
    done = run(worker, request(bars=1))[-1][1]
    assert isinstance(done, Rendered), done  # the cancel flag does not stop the next request
    assert worker.pid == pid


def test_a_long_silent_loop_shaping_is_not_taken_for_a_stall(worker: RenderWorker) -> None:
    """Loop shaping reports no progress; the worker's heartbeat keeps it from counting as
    stalled. The silence must outlast the stall limit, or this proves nothing."""
    pid, restarts = worker.pid, worker.restarts
    got = run(worker, request(bars=8, bpm=60.0))  # 32 s of audio: seconds of Griffin-Lim
    answer = got[-1]
    assert isinstance(answer[1], Rendered), answer[1]
    last_progress = max(t for t, msg in got if isinstance(msg, Progress))
    silent = answer[0] - last_progress
    assert silent > STALL_S, f"the shaping took only {silent:.1f} s: make the loop longer"
    assert worker.pid == pid and worker.restarts == restarts


def test_a_frozen_worker_is_still_a_stall(worker: RenderWorker) -> None:
    pid = worker.pid
    assert pid is not None
    worker.submit(request(bars=2, alpha=0.5))
    os.kill(pid, signal.SIGSTOP)  # its heartbeat thread stops with it
    try:
        failed = wait_until(lambda: [m for m in worker.poll(0.05) if isinstance(m, Failed)],
                            STALL_S + 30.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert failed and failed[0].source == "worker" and "stalled" in failed[0].error, failed
    wait_until(lambda: worker.poll(0.05) is not None and worker.idle, LOAD_TIMEOUT_S)
    assert worker.idle and worker.pid != pid and worker.restarts >= 1


def test_the_worker_ends_when_its_supervisors_end_of_the_life_pipe_closes(
        worker: RenderWorker) -> None:
    """The watchdog on its own (on Linux the parent-death signal also covers a dead parent):
    the worker goes mid-render, without a request to stop."""
    worker.wait_ready(LOAD_TIMEOUT_S)
    pid = worker.pid
    assert pid is not None
    worker.submit(request(bars=8, bpm=60.0, alpha=1.0))
    wait_until(lambda: any(isinstance(m, Progress) for m in worker.poll(0.05)), 60.0)
    worker._life.close()  # what the kernel does to every fd of a process that dies
    assert wait_until(lambda: not alive(pid), GONE_WITHIN_S), "the worker outlived the pipe"
