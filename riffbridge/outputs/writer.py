"""Writes loops to the output folder on its own thread, so disk time never holds up the engine.

``submit(loop, tag)`` queues; ``on_written(path, loop, tag)`` is called after each file lands
(``tag``: whatever the caller uses to know the loop again, the engine's loop key). ``close()``
finishes every queued file before it returns (a clean shutdown loses nothing already rendered).
A failed write is logged and reported through ``on_error``; the writer keeps going.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riffbridge.errors import OutputError
from riffbridge.loops.types import Loop
from riffbridge.outputs.files import OutputFolder

log = logging.getLogger(__name__)


class LoopWriter:
    def __init__(self, folder: OutputFolder,
                 on_written: Callable[[Path, Loop, Any], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.on_written = on_written
        self.on_error = on_error
        self._queue: queue.Queue[tuple[Loop, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="riffbridge-writer", daemon=True)
        self._closed = False
        self.written = 0

    def start(self) -> LoopWriter:
        self._thread.start()
        return self

    def submit(self, loop: Loop, tag: Any = None) -> None:
        if not self._closed:
            self._queue.put((loop, tag))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, tag = item
            try:
                path = self.folder.write(loop)
            except (OutputError, OSError) as exc:
                log.error("writing a loop failed: %s", exc)
                if self.on_error is not None:
                    self.on_error(str(exc))
                continue
            self.written += 1
            if self.on_written is not None:
                try:
                    self.on_written(path, loop, tag)
                except Exception:
                    log.exception("on_written failed for %s", path)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued files, then stop. Idempotent."""
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
