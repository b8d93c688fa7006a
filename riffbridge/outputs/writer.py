"""Writes loops to the output folder on its own thread, so disk time never holds up the engine.

``submit(loop, tag)`` queues; ``on_written(path, loop, tag)`` is called once a loop's own files
(WAV, sidecar, index line) have landed (``tag``: whatever the caller uses to know the loop
again, the engine's loop key). ``latest.wav`` / ``latest.json`` are a separate step after that:
when they fail the loop still counts as written and is still announced, and the failure is
reported through ``on_error`` on its own.

A loop whose own files fail (a full disk, say) is tried again after each of ``retry_delays``
(1 s, then 2 s: three tries in all), while newer loops are still written in between; after the
last try it is reported through ``on_error`` as given up, with the count of loops not written
so far. ``written`` and ``given_up`` count the two outcomes. ``close()`` finishes every queued
file and every pending retry before it returns (a clean shutdown loses nothing already rendered
that the disk will take).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riffbridge.errors import OutputError
from riffbridge.loops.types import Loop
from riffbridge.outputs.files import OutputFolder

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (1.0, 2.0)  # waits before the second and third try of a loop's files


@dataclass(order=True)
class _Retry:
    due: float
    order: int  # first failed, first retried when due together
    loop: Loop = field(compare=False)
    tag: Any = field(compare=False)
    tries: int = field(compare=False)


class LoopWriter:
    def __init__(self, folder: OutputFolder,
                 on_written: Callable[[Path, Loop, Any], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.folder = folder
        self.on_written = on_written
        self.on_error = on_error
        self.retry_delays = tuple(retry_delays)
        self._queue: queue.Queue[tuple[Loop, Any] | None] = queue.Queue()
        self._retries: list[_Retry] = []  # a heap by due time; the writer thread's own
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._run, name="riffbridge-writer", daemon=True)
        self._closed = False
        self.written = 0  # loops whose own files landed
        self.given_up = 0  # loops not written after every try

    def start(self) -> LoopWriter:
        self._thread.start()
        return self

    def submit(self, loop: Loop, tag: Any = None) -> None:
        if not self._closed:
            self._queue.put((loop, tag))

    @property
    def pending(self) -> int:
        """Loops queued or waiting for another try."""
        return self._queue.qsize() + len(self._retries)

    # -- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            wait = max(0.0, self._retries[0].due - time.monotonic()) if self._retries else None
            try:
                item = self._queue.get(timeout=wait)  # no retry pending: wait for a loop
            except queue.Empty:
                self._retry_due()
                continue
            if item is None:  # close(): what is queued is written; then the retries' turn
                break
            self._try(item[0], item[1], 1)
            self._retry_due()
        while self._retries or not self._queue.empty():
            while True:  # a loop that raced close() in, if any
                try:
                    late = self._queue.get_nowait()
                except queue.Empty:
                    break
                if late is not None:
                    self._try(late[0], late[1], 1)
            if self._retries:
                time.sleep(max(0.0, self._retries[0].due - time.monotonic()))
                self._retry_due()

    def _retry_due(self) -> None:
        now = time.monotonic()
        while self._retries and self._retries[0].due <= now:
            retry = heapq.heappop(self._retries)
            self._try(retry.loop, retry.tag, retry.tries + 1)

    def _try(self, loop: Loop, tag: Any, tries: int) -> None:
        try:
            written = self.folder.write_loop(loop)
        except (OutputError, OSError) as exc:
            self._failed(loop, tag, tries, exc)
            return
        self.written += 1
        if tries > 1:
            log.info("wrote %s on try %d", written.path.name, tries)
        if self.folder.update_latest:
            try:
                self.folder.write_latest(written)
            except (OutputError, OSError) as exc:
                self._report(f"wrote {written.path.name}, but {exc}")
        if self.on_written is not None:
            try:
                self.on_written(written.path, loop, tag)
            except Exception:
                log.exception("on_written failed for %s", written.path)

    def _failed(self, loop: Loop, tag: Any, tries: int, exc: Exception) -> None:
        if tries <= len(self.retry_delays):
            delay = self.retry_delays[tries - 1]
            log.warning("writing a loop failed (try %d of %d): %s; trying again in %g s",
                        tries, len(self.retry_delays) + 1, exc, delay)
            heapq.heappush(self._retries, _Retry(time.monotonic() + delay, next(self._order),
                                                 loop, tag, tries))
            return
        self.given_up += 1
        self._report(f"gave up writing a loop after {tries} tries: {exc} "
                     f"({self.given_up} loop{'s' if self.given_up != 1 else ''} not written "
                     "this run)")

    def _report(self, message: str) -> None:
        log.error("%s", message)
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("on_error failed for %r", message)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued files and the pending retries, then stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> LoopWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
