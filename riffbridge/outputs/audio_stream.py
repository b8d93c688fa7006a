"""The audio-device boundary: a PortAudio output stream that pulls from a player.

``DeviceStream`` opens the device at its own rate, stereo float32, in one of two ways:

- **buffered** (``ahead_s > 0``, the default): PortAudio's callback is rtmixer's, written in C.
  It copies from a lock-free ring and never takes Python's GIL, so nothing else in this process
  (the engine, the web page, an import, the garbage collector, torch) can make it late. A feeder
  thread calls ``fill(out, now, underrun)`` block by block to keep ``ahead_s`` of audio in the
  ring; ``now`` is when that block's first frame reaches the callback, so the player's stamp maps
  frames to the time they sound, as in direct mode. The cost is ``ahead_s`` more latency between
  a decision and its sound (a switch is still placed on its exact frame).
- **direct** (``ahead_s == 0``): ``fill`` runs in PortAudio's callback thread itself, through
  sounddevice. The least latency, but the callback needs the GIL every period.

``fill`` must only copy either way. ``PacedStream`` drives the same ``fill`` from a plain thread
at the audio rate with no device, so ``--audio-out none`` keeps the same clock (bar grid, auto
walk) while only files are written.
"""

from __future__ import annotations

import contextlib
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
from riffbridge.params import BY_NAME

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
AHEAD_S = float(BY_NAME["audio_ahead"].default) / 1000.0  # the buffered mode's default
STATS_S = 0.25  # how often the feeder asks the C callback for PortAudio's underflow count
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
                 blocksize: int = 512, latency: str | float = "low",
                 ahead_s: float = AHEAD_S) -> None:
        if not ahead_s >= 0.0:
            raise DeviceError(f"audio_ahead must be 0 (direct) or more seconds, got {ahead_s!r}")
        self.device = device
        self.rate = int(rate)
        self.channels = channels
        self.blocksize = blocksize
        self.latency_setting = latency
        self.ahead_s = float(ahead_s)
        self._fill = fill
        self._stream: Any = None
        self.name = ""
        self.mode = "buffered" if self.ahead_s > 0 else "direct"
        self.thread_id = 0  # direct: the callback thread's OS id, once it has run
        self._frozen = False  # this stream holds the GC freeze (``_hold_gc_freeze``)
        self._feeder: _Feeder | None = None

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if not self.thread_id:
            self.thread_id = threading.get_native_id()
        self._fill(outdata, time.monotonic(), bool(status.output_underflow))

    def scheduling(self) -> str:
        """How the OS schedules the audio callback's thread: "real-time (FIFO 65)", "not
        real-time", or "unknown" (no callback yet, or no way to ask). A thread that is not
        real-time waits behind every busy process of the machine: JACK without ``-R`` gives its
        clients such threads, and on a loaded machine they underrun (docs/benchmarks.md, issue
        17). Buffered, the callback runs in PortAudio's own thread, which Python never sees:
        the reading is that of the process's real-time thread if it has one (this process
        makes none itself), else "not real-time"."""
        if not hasattr(os, "sched_getscheduler"):
            return "unknown"
        if self.mode == "buffered":
            if self._stream is None:
                return "unknown"
            found = _realtime_thread()
            if found is None:
                return "not real-time"
            self.thread_id = found
        tid = self.thread_id
        if not tid:
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
        if self.mode == "buffered":
            try:
                import rtmixer  # noqa: F401  (the C callback; a dependency)
            except (ImportError, OSError) as exc:
                log.warning("buffered audio needs rtmixer (%s): playing direct, with the "
                            "callback in Python; pip install rtmixer to fix", exc)
                self.mode = "direct"
        try:
            import sounddevice as sd

            if self.mode == "buffered":
                self._start_buffered()
            else:
                self._start_direct()
            self.name = str(sd.query_devices(self._stream.device)["name"])
        except OSError as exc:
            self._abandon()
            raise DeviceError(f"cannot open the audio device {self.device!r}: {exc}; "
                              f"`riffbridge devices` lists outputs, --audio-out none plays "
                              f"to files only") from None
        except Exception as exc:  # sounddevice.PortAudioError and its kin
            self._abandon()
            raise DeviceError(f"cannot open the audio device {self.device!r} at {self.rate} Hz: "
                              f"{exc}; `riffbridge devices` lists outputs and their rates"
                              ) from None
        if not self._frozen:
            self._frozen = True
            _hold_gc_freeze(True)
        return self

    def _start_direct(self) -> None:
        import sounddevice as sd

        # The callback needs the GIL every few milliseconds; Python's default switch interval
        # (5 ms) lets any other thread of this process hold it for a whole JACK period.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._stream = sd.OutputStream(device=self.device, samplerate=self.rate,
                                       channels=self.channels, dtype="float32",
                                       blocksize=self.blocksize, latency=self.latency_setting,
                                       callback=self._callback)
        self._stream.start()

    def _start_buffered(self) -> None:
        import rtmixer

        self._stream = rtmixer.Mixer(device=self.device, samplerate=self.rate,
                                     channels=self.channels, blocksize=self.blocksize,
                                     latency=self.latency_setting)
        self._feeder = _Feeder(self._stream, self._fill, self.rate, self.channels,
                               self.blocksize, self.ahead_s)
        self._feeder.start()

    def _abandon(self) -> None:
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.close()
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception as exc:  # the start already failed: that error is the one raised
                log.warning("closing the audio device after a failed start failed too: %s", exc)

    @property
    def latency(self) -> float:
        """Seconds from a block's fill to the device: PortAudio's output latency, plus the
        ring's ``ahead_s`` when buffered."""
        if self._stream is None:
            return 0.0
        ahead = self._feeder.target / self.rate if self._feeder is not None else 0.0
        return float(self._stream.latency) + ahead

    @property
    def underruns(self) -> int:
        """Buffered: times the ring ran dry (the feeder was late); direct: 0 (PortAudio's flags
        reach ``fill`` in both modes)."""
        return self._feeder.dry if self._feeder is not None else 0

    def close(self) -> None:
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.close()  # no fill after this; the C callback plays out what is queued
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


def _realtime_thread() -> int | None:
    """The OS id of a real-time (FIFO or RR) thread of this process, or None. riffbridge never
    makes one itself: such a thread is the audio server's (JACK -R gives its clients one)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    realtime = {getattr(os, "SCHED_FIFO", -1), getattr(os, "SCHED_RR", -1)}
    for name in sorted(tasks, key=int):
        with contextlib.suppress(OSError, ValueError):  # a thread that ended meanwhile
            if os.sched_getscheduler(int(name)) in realtime:
                return int(name)
    return None


class _Feeder:
    """Keeps ``ahead_s`` of audio in the ring that rtmixer's C callback plays from.

    One thread calls ``fill`` a block at a time (the player's single writer, as the callback is
    in direct mode) and writes the block into a PortAudio ring buffer (lock-free, single reader
    and single writer). ``now`` for a block is when its first frame will reach the callback:
    the time now plus what is queued before it. If the ring runs dry (this thread was held up
    longer than ``ahead_s``), rtmixer ends the ring's playback; the feeder counts it, tells the
    next ``fill`` (an underrun, as PortAudio's flag does in direct mode), and plays the ring
    again. PortAudio's own underflow count is fetched from the C side every ``STATS_S``."""

    def __init__(self, mixer: Any, fill: Fill, rate: int, channels: int, blocksize: int,
                 ahead_s: float) -> None:
        import rtmixer

        self.mixer = mixer
        self.fill = fill
        self.rate = rate
        self.blocksize = blocksize
        self.target = max(2 * blocksize, round(ahead_s * rate))
        size = 1 << (self.target + 2 * blocksize - 1).bit_length()  # a power of two, as
        self.ring = rtmixer.RingBuffer(4 * channels, size)  # PortAudio's ring requires
        self._block = np.zeros((blocksize, channels), dtype=np.float32)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._action: Any = None
        self._stats: Any = None
        self._stats_due = 0.0
        self.dry = 0  # the ring ran dry
        self.underflows = 0  # PortAudio's own count
        self._late = False  # the next fill is told of an underrun

    def start(self) -> None:
        self._top_up()  # a full ring before the first callback
        self.mixer.start()
        self._action = self.mixer.play_ringbuffer(self.ring)
        self._thread = threading.Thread(target=self._run, name="riffbridge-audio-feeder",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = self.blocksize / self.rate
        failures = 0
        while not self._stop.is_set():
            try:
                self.turn()
            except Exception:  # a bug in a fill: say so, keep the audio thread alive
                failures += 1
                if failures == 1 or failures % 1000 == 0:
                    log.exception("the audio feeder failed (%d times); it carries on", failures)
            self._stop.wait(period / 2)

    def turn(self) -> None:
        """One round: top the ring up (playing it again if it ran dry), read the stats."""
        if self._action not in self.mixer.actions:  # ran dry: rtmixer ended its playback
            self.dry += 1
            self._late = True
            self._top_up()
            self._action = self.mixer.play_ringbuffer(self.ring)
        else:
            self._top_up()
        self._check_stats()

    def _top_up(self) -> None:
        ring, block, n = self.ring, self._block, self.blocksize
        while ring.read_available + n <= self.target and ring.write_available >= n:
            now = time.monotonic() + ring.read_available / self.rate
            self.fill(block, now, self._late)
            self._late = False
            ring.write(block)

    def _check_stats(self) -> None:
        now = time.monotonic()
        if self._stats is not None and self._stats not in self.mixer.actions:
            added = int(self._stats.stats.output_underflows)
            if added:
                self.underflows += added
                self._late = True
            self._stats = None
        if self._stats is None and now >= self._stats_due:
            self._stats = self.mixer.fetch_and_reset_stats()
            self._stats_due = now + STATS_S

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None


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
