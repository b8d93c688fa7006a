"""The set recorder: the master output as it sounded, and a log of how it was played.

Three parts, three owners:

- ``RecordRing`` is a preallocated ring of frames. The audio callback is its only writer: it
  copies the block it just played into the ring and advances ``written`` (``push``: two slice
  copies at most, no allocation of note, no lock, no I/O). The writer thread is its only reader:
  it copies what is there out and advances ``read``. A block that does not fit (the disk fell
  behind by the ring's length) is dropped and counted in ``overflows``; the writer reports it.
- ``Recorder`` owns the files and the writer thread. The audio goes to a 24-bit WAV (or FLAC,
  by the path's suffix) through libsndfile; after every batch the WAV header is rewritten with
  the sizes so far, so a crash, a kill -9 or a full disk leaves a file that every reader opens.
  The log (the path with the suffix ``.jsonl``) gets one JSON object per line, flushed per line:
  a ``start`` line (rate, channels, the full state, how loops are made), then every ``param``
  change and every ``switch`` (its sample position in the file, its bar, the loops' full keys
  and the mix) in order, ``frames`` every second (how much audio is safely in the file) and a
  ``stop`` line at the end. ``riffbridge replay`` reads it back (``riffbridge.cli.replay``).
- The engine thread hands log entries in (``log``, a queue put) and starts and stops it; a
  failure on the writer thread goes back through ``on_error`` (the engine says so on
  ``/rb/error`` and plays on).

A log entry names frames of the player's clock (``frame``); the writer turns them into sample
positions in the file (``sample``) once the first recorded block says where the file begins.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from riffbridge.errors import OutputError

log = logging.getLogger(__name__)

LOG_VERSION = 1
RING_SECONDS = 10.0  # how far the disk may fall behind before blocks are lost
WRITE_EVERY_S = 0.05  # the writer's wake-up: audio and log lines reach the file this often
FRAMES_EVERY_S = 1.0  # a ``frames`` line this often: how far the file is known to be good
FORMATS = {".wav": ("WAV", "PCM_24"), ".flac": ("FLAC", "PCM_24")}
_SFC_UPDATE_HEADER_NOW = 0x1060  # <sndfile.h>: write the header's sizes as they are now


def log_path(path: str | os.PathLike[str]) -> Path:
    """Where the log of the recording ``path`` goes: beside it, with the suffix ``.jsonl``."""
    return Path(path).with_suffix(".jsonl")


def check_record_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if a recording can be made there (a .wav or .flac in a folder that exists and
    can be written), else ``OutputError`` naming the path and the fix."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in FORMATS:
        raise OutputError(f"record path must end in .wav or .flac, got {str(path)!r}")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot record to {p}: the folder {folder} does not exist; "
                          f"create it first or give another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot record to {p}: the folder {folder} is not writable; "
                          f"give a path in a folder you can write to")
    if p.is_dir():
        raise OutputError(f"cannot record to {p}: it is a folder; give a file name")
    return p


class RecordRing:
    """A single-producer, single-consumer ring of float32 frames. See the module docstring."""

    def __init__(self, frames: int, channels: int = 2) -> None:
        self.buffer = np.zeros((max(1, int(frames)), channels), dtype=np.float32)
        self.capacity = self.buffer.shape[0]
        self.written = 0  # frames pushed: the audio thread's
        self.read = 0  # frames pulled: the writer's
        self.overflows = 0  # blocks dropped because the ring was full
        self.first_frame = -1  # the player's frame of the first recorded sample
        self.open = True

    # -- audio thread --
    def push(self, block: np.ndarray, frame: int) -> None:
        """Copy ``block`` (frames, channels), played from the player's ``frame``, into the ring."""
        if not self.open:
            return
        n = block.shape[0]
        w = self.written
        if w - self.read + n > self.capacity:
            self.overflows += 1
            return
        if self.first_frame < 0:
            self.first_frame = frame
        i = w % self.capacity
        m = min(n, self.capacity - i)
        self.buffer[i:i + m] = block[:m]
        if m < n:
            self.buffer[:n - m] = block[m:]
        self.written = w + n  # last: the reader sees the frames only once they are copied

    # -- writer thread --
    def pull(self) -> np.ndarray | None:
        """The frames pushed since the last pull (a copy), or None."""
        w, r = self.written, self.read
        if w == r:
            return None
        i, n = r % self.capacity, w - r
        m = min(n, self.capacity - i)
        out = np.empty((n, self.buffer.shape[1]), dtype=np.float32)
        out[:m] = self.buffer[i:i + m]
        if m < n:
            out[m:] = self.buffer[:n - m]
        self.read = w
        return out


class Recorder:
    """Records to ``path`` (and the log beside it) from ``ring`` on its own thread.

    ``start`` opens both files (``OutputError`` when they cannot be made) and writes the
    ``start`` line with ``header``; ``log`` queues an entry; ``stop`` ends the recording after
    what is in the ring and the queue is written (the player must no longer push: it waits
    ``settle_s`` for a block in flight); ``close`` stops and waits. ``on_error`` gets one line
    when writing fails: audio or log; the recording then stops and what was written stays valid.
    """

    def __init__(self, path: str | os.PathLike[str], rate: int, channels: int = 2, *,
                 header: dict[str, Any] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 ring_seconds: float = RING_SECONDS, settle_s: float = 0.1) -> None:
        self.path = check_record_path(path)
        self.log_path = log_path(self.path)
        self.rate = int(rate)
        self.channels = channels
        self.ring = RecordRing(int(ring_seconds * self.rate), channels)
        self.header = dict(header or {})
        self.on_error = on_error
        self.settle_s = settle_s
        self.frames = 0  # frames in the file
        self.failed: str | None = None
        self._entries: queue.Queue[dict[str, Any]] = queue.Queue()
        self._held: list[dict[str, Any]] = []  # entries waiting for the first recorded block
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sound: sf.SoundFile | None = None
        self._log: Any = None
        self._overflows = 0
        self._last_frames_line = 0.0

    # -- engine thread --
    def start(self) -> Recorder:
        fmt, subtype = FORMATS[self.path.suffix.lower()]
        try:
            self._sound = sf.SoundFile(str(self.path), "w", self.rate, self.channels, subtype,
                                       format=fmt)
            self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close)
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            self._close_files()
            raise OutputError(f"cannot record to {self.path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        self._write_line({"type": "start", "version": LOG_VERSION, "rate": self.rate,
                          "channels": self.channels, "file": self.path.name,
                          "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          **self.header})
        self._thread = threading.Thread(target=self._run, name="riffbridge-recorder",
                                        daemon=True)
        self._thread.start()
        log.info("recording to %s (log %s)", self.path, self.log_path)
        return self

    def log(self, entry: dict[str, Any]) -> None:
        """Queue a log entry; ``entry["frame"]`` (the player's frame) becomes its sample."""
        self._entries.put_nowait(entry)

    def stop(self) -> None:
        """End the recording once what is queued is written (the writer thread finishes)."""
        self.ring.open = False
        self._stop.set()

    def close(self) -> None:
        """Stop and wait for the files to be complete. Idempotent."""
        self.stop()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._close_files()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread --
    def _run(self) -> None:
        try:
            while not self._stop.wait(WRITE_EVERY_S):
                self._write_some()
            time.sleep(self.settle_s)  # a block the callback is copying right now
            self._write_some()
            self._write_line({"type": "stop", "samples": self.frames,
                              "overflows": self.ring.overflows})
        except Exception as exc:  # a full disk, a pulled drive: report and stop recording
            self.ring.open = False
            what = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            what += self._disk_note()
            self.failed = f"recording to {self.path} stopped after " \
                          f"{self.frames / self.rate:.1f} s: {what}; the file so far is kept"
            log.error("%s", self.failed)
            self._finish_header()
            if self.on_error is not None:
                self.on_error(self.failed)
        finally:
            self._close_files()

    def _write_some(self) -> None:
        block = self.ring.pull()
        if block is not None:
            assert self._sound is not None
            self._sound.write(block)
            self.frames += block.shape[0]
            self._finish_header()
        if self.ring.overflows != self._overflows:
            lost = self.ring.overflows - self._overflows
            self._overflows = self.ring.overflows
            message = (f"recording to {self.path}: {lost} audio block(s) lost, the disk fell "
                       f"{RING_SECONDS:g} s behind")
            log.error("%s", message)
            if self.on_error is not None:
                self.on_error(message)
        first = self.ring.first_frame
        while True:
            try:
                self._held.append(self._entries.get_nowait())
            except queue.Empty:
                break
        if first >= 0 or self._stop.is_set():
            for entry in self._held:
                frame = entry.get("frame")
                sample = None if frame is None or first < 0 else int(frame) - first
                self._write_line({**entry, "sample": sample})
            self._held.clear()
        now = time.monotonic()
        if now - self._last_frames_line >= FRAMES_EVERY_S and first >= 0:
            self._last_frames_line = now
            self._write_line({"type": "frames", "samples": self.frames})

    def _disk_note(self) -> str:
        """Why a write failed, when the disk says so (libsndfile only says "System error")."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return ""
        if free < (1 << 20):
            return f" (the disk is full: {free} bytes free; free some space or record elsewhere)"
        return ""

    def _finish_header(self) -> None:
        """Write the WAV header's sizes as they are now: the file is whole at every point."""
        sound = self._sound
        if sound is None or sound.closed:
            return
        from soundfile import _ffi, _snd  # libsndfile's own command; soundfile has no wrapper

        _snd.sf_command(sound._file, _SFC_UPDATE_HEADER_NOW, _ffi.NULL, 0)

    def _write_line(self, entry: dict[str, Any]) -> None:
        self._log.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._log.flush()

    def _close_files(self) -> None:
        sound, self._sound = self._sound, None
        if sound is not None:
            try:
                sound.close()
            except (OSError, RuntimeError, sf.LibsndfileError) as exc:
                log.error("closing %s: %s", self.path, exc)
        handle, self._log = self._log, None
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                log.error("closing %s: %s", self.log_path, exc)
