"""Cancellation of a long job at its safe points: a scope that long loops check.

The render worker makes one loop at a time, and a long loop (tens of seconds on a CPU) must give
way when a newer request makes it useless. Python cannot stop a thread from outside safely, so
the long loops check a flag at points where stopping leaves nothing half-made: between diffusion
steps (``render/riffuse.py``) and between Griffin-Lim iterations on the CPU
(``spectrogram/stft.py``; on CUDA the iterations are one graph replay, a few milliseconds).

``cancellable(flag)`` opens a scope on the current thread; ``check()`` raises ``Cancelled``
inside it once ``flag.is_set()``. Outside any scope ``check()`` costs one attribute read and
never raises, so the CLI's renders and the tests are unaffected. ``flag`` is anything with an
``is_set()``: a ``threading.Event``, or a ``multiprocessing`` event the render worker's
supervisor sets from the engine's process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from riffbridge.errors import RiffbridgeError


class Flag(Protocol):
    def is_set(self) -> bool: ...


class Cancelled(RiffbridgeError):
    """The job was cancelled at a safe point (not an error: a newer request made it useless)."""


_local = threading.local()


@contextmanager
def cancellable(flag: Flag) -> Iterator[None]:
    """Within this block, ``check()`` on this thread raises ``Cancelled`` once ``flag`` is set."""
    outer = getattr(_local, "flag", None)
    _local.flag = flag
    try:
        yield
    finally:
        _local.flag = outer


def check() -> None:
    """Raise ``Cancelled`` if the current scope's flag is set; nothing outside a scope."""
    flag = getattr(_local, "flag", None)
    if flag is not None and flag.is_set():
        raise Cancelled("cancelled: a newer request made this job useless")
