"""The audio-device boundary: a PortAudio output stream (sounddevice) that pulls from a player.

``DeviceStream`` opens the device at its own rate, stereo float32, and calls ``fill(out, now,
underrun)`` from PortAudio's callback thread; ``fill`` must only copy. ``PacedStream`` drives the
same ``fill`` from a plain thread at the audio rate with no device, so ``--audio-out none`` keeps
the same clock (bar grid, auto walk) while only files are written.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from riffbridge.errors import DeviceError

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
_open_streams = 0  # device streams open in this process (the GC freeze lasts while any is)
_streams_lock = threading.Lock()


def _hold_gc_freeze(opening: bool) -> None:
    """While a device stream is open, the objects that existed when the first one opened (the
    imports: numpy, scipy, the web stack, torch where loaded) sit outside the cyclic GC
    (``gc.freeze``). A full collection of them holds the GIL for one uninterrupted stretch: 40
    ms with numpy and scipy imported, 240 ms with torch and diffusers (2-core x86 box), one to
    ten periods of audio; frozen, a collection scans only what is new. The last stream to close
    gives them back (``gc.unfreeze``)."""
    global _open_streams
    with _streams_lock:
        if opening:
            _open_streams += 1
            if _open_streams == 1:
                gc.freeze()
        elif _open_streams > 0:
            _open_streams -= 1
            if _open_streams == 0:
                gc.unfreeze()

Fill = Callable[[np.ndarray, float, bool], None]


class DeviceStream:
    def __init__(self, device: int | str | None, rate: int, fill: Fill, *, channels: int = 2,
                 blocksize: int = 512, latency: str | float = "low") -> None:
        self.device = device
        self.rate = int(rate)
        self.channels = channels
        self.blocksize = blocksize
        self.latency_setting = latency
        self._fill = fill
        self._stream: Any = None
        self.name = ""
        self.thread_id = 0  # the callback thread's OS id, once it has run
        self._frozen = False  # this stream holds the GC freeze (``_hold_gc_freeze``)

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if not self.thread_id:
            self.thread_id = threading.get_native_id()
        self._fill(outdata, time.monotonic(), bool(status.output_underflow))

    def scheduling(self) -> str:
        """How the OS schedules the callback's thread: "real-time (FIFO 65)", "not real-time",
        or "unknown" (no callback yet, or no way to ask). A thread that is not real-time waits
        behind every busy process of the machine: JACK without ``-R`` gives its clients such
        threads, and on a loaded machine they underrun (docs/benchmarks.md, issue 17)."""
        tid = self.thread_id
        if not tid or not hasattr(os, "sched_getscheduler"):
            return "unknown"
        try:
            policy = os.sched_getscheduler(tid)
            priority = os.sched_getparam(tid).sched_priority
        except OSError:  # the thread is gone, or the OS will not say
            return "unknown"
        names = {getattr(os, "SCHED_FIFO", -1): "FIFO", getattr(os, "SCHED_RR", -1): "RR"}
        if policy in names:
            return f"real-time ({names[policy]} {priority})"
        return "not real-time"

    def start(self) -> DeviceStream:
        # The callback needs the GIL every few milliseconds; Python's default switch interval
        # (5 ms) lets any other thread of this process hold it for a whole JACK period.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        try:
            import sounddevice as sd

            self._stream = sd.OutputStream(device=self.device, samplerate=self.rate,
                                           channels=self.channels, dtype="float32",
                                           blocksize=self.blocksize, latency=self.latency_setting,
                                           callback=self._callback)
            self._stream.start()
            self.name = str(sd.query_devices(self._stream.device)["name"])
        except OSError as exc:
            raise DeviceError(f"cannot open the audio device {self.device!r}: {exc}; "
                              f"`riffbridge devices` lists outputs, --audio-out none plays "
                              f"to files only") from None
        except Exception as exc:  # sounddevice.PortAudioError and its kin
            raise DeviceError(f"cannot open the audio device {self.device!r} at {self.rate} Hz: "
                              f"{exc}; `riffbridge devices` lists outputs and their rates"
                              ) from None
        if not self._frozen:
            self._frozen = True
            _hold_gc_freeze(True)
        return self

    @property
    def latency(self) -> float:
        return float(self._stream.latency) if self._stream is not None else 0.0

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()
        if self._frozen:
            self._frozen = False
            _hold_gc_freeze(False)

    def __enter__(self) -> DeviceStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class PacedStream:
    """No device: a thread calls ``fill`` every block at the audio rate (for file-only runs)."""

    def __init__(self, rate: int, fill: Fill, *, channels: int = 2, blocksize: int = 512) -> None:
        self.rate = int(rate)
        self.channels = channels
        self.blocksize = blocksize
        self._fill = fill
        self._buffer = np.zeros((blocksize, channels), dtype=np.float32)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = "none (paced, no device)"
        self.latency = 0.0
        self.late_blocks = 0

    def start(self) -> PacedStream:
        self._thread = threading.Thread(target=self._run, name="riffbridge-paced", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = self.blocksize / self.rate
        start = time.monotonic()
        blocks = 0
        while not self._stop.is_set():
            due = start + blocks * period
            now = time.monotonic()
            if due > now:
                self._stop.wait(due - now)
                continue
            if now - due > period:
                self.late_blocks += 1  # nothing audible: there is no device to starve
            self._fill(self._buffer, now, False)
            blocks += 1
            if now - due > 1.0:  # asleep (a suspended laptop): restart the pacing, not catch up
                start, blocks = now, 0

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def __enter__(self) -> PacedStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
