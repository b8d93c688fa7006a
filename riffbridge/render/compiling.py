"""torch.compile off the critical path: compiled UNet calls made per input shape on a thread.

The renderer asks ``pick(key)`` before every UNet step. Until the compiled call for that shape
is ready it gets None and runs the uncompiled path (eager, or eager replayed as a CUDA graph);
the first ask queues the shape, and a background thread compiles it (``make(variant)`` builds a
compiled callable once per variant, ``warm(call, key)`` runs it once at the key's shape, which
is what compiles). When that is done the next ``pick`` returns the compiled call: the switch
happens between steps, never during one. A failed compile is logged once, as a warning, and
from then on every step runs uncompiled. Nothing here imports torch: tests drive it with a
slow fake.

Contract: ``pick`` is called from one thread (the renderer's); ``make`` and ``warm`` run on the
compiler's own thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

log = logging.getLogger(__name__)

Call = Callable[..., Any]
ShapeKey = tuple[Hashable, Hashable]  # (variant, shapes): the variant says which build to use


class BackgroundCompiler:
    """Compiled calls per shape, made on a daemon thread; None until ready."""

    def __init__(self, make: Callable[[Hashable], Call], warm: Callable[[Call, ShapeKey], None],
                 name: str = "UNet") -> None:
        self._make = make
        self._warm = warm
        self.name = name
        self._builds: dict[Hashable, Call] = {}
        self._ready: dict[ShapeKey, Call] = {}
        self._asked: set[ShapeKey] = set()
        self._todo: queue.Queue[ShapeKey | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()  # "queue empty -> idle" and "queue -> busy" in one piece
        self.failed: str | None = None
        self.compile_s: dict[ShapeKey, float] = {}
        self._thread = threading.Thread(target=self._run, name="riffbridge-compile", daemon=True)
        self._thread.start()

    @property
    def state(self) -> str:
        if self.failed is not None:
            return "failed"
        return "compiling" if not self._idle.is_set() else "idle"

    def pick(self, key: ShapeKey) -> Call | None:
        """The compiled call for ``key`` when ready; else None (and ``key`` is queued)."""
        ready = self._ready.get(key)
        if ready is not None or self.failed is not None:
            return ready
        if key not in self._asked:
            self._asked.add(key)
            with self._lock:
                self._idle.clear()
                self._todo.put(key)
        return None

    def ready(self, key: ShapeKey) -> bool:
        return key in self._ready

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued shape is compiled (or the compile failed)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            key = self._todo.get()
            if key is None:
                return
            if self.failed is None:
                self._compile(key)
            with self._lock:
                if self._todo.empty():
                    self._idle.set()

    def _compile(self, key: ShapeKey) -> None:
        started = time.perf_counter()
        try:
            variant = key[0]
            call = self._builds.get(variant)
            if call is None:
                call = self._builds[variant] = self._make(variant)
            self._warm(call, key)
        except Exception as exc:  # any failure of the compiler: play on uncompiled
            self.failed = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}" \
                if str(exc).strip() else type(exc).__name__
            log.warning("compiling the %s failed, rendering uncompiled from now on: %s",
                        self.name, self.failed)
            return
        seconds = time.perf_counter() - started
        self.compile_s[key] = seconds
        self._ready[key] = call
        log.info("compiled the %s for %s in %.1f s; the next render uses it", self.name,
                 key[1], seconds)

    def close(self) -> None:
        self._todo.put(None)
