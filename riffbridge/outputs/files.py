"""The output folder: every loop as a WAV (acid + smpl chunks) and a JSON sidecar, written
atomically, plus a per-run ``index.jsonl`` and ``OUT/latest.wav`` / ``latest.json``.

Layout::

    OUT/<run start, YYYY-MM-DD_HH-MM-SS>/<NNNN>_<prompt-slug>_<bpm>bpm_<bars>bars.wav
    OUT/<run start>/<NNNN>_<prompt-slug>_<bpm>bpm_<bars>bars.json
    OUT/<run start>/index.jsonl
    OUT/latest.wav, OUT/latest.json

Every file is written with :mod:`riffbridge.fsutil`: to a hidden temporary name in its own
folder, flushed, and renamed into place with ``os.replace``; a file is never opened for writing
under its final name. Disk full, no permission and similar failures raise :class:`OutputError`
and leave no partial file in sight.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import math
import os
import re
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from riffbridge.errors import OutputError
from riffbridge.fsutil import atomic_write_all
from riffbridge.loops.types import Loop
from riffbridge.outputs.wav import WavSettings, wav_bytes

logger = logging.getLogger(__name__)

RUN_FORMAT = "%Y-%m-%d_%H-%M-%S"
NAME_RE = re.compile(r"^(\d{4})_.*\.wav$")


def slugify(text: str, limit: int = 40) -> str:
    """'Funky Synth Solo!' -> 'funky-synth-solo'; 'loop' when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].strip("-")
    return slug or "loop"


def format_bpm(bpm: float) -> str:
    return f"{round(float(bpm), 3):g}"


def loop_filename(number: int, prompt: str, bpm: float, bars: int) -> str:
    return f"{number:04d}_{slugify(prompt)}_{format_bpm(bpm)}bpm_{bars}bars.wav"


def _describe(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing {path}; free some space or choose another output folder"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {path}; choose a writable output folder"
    return f"cannot write {path}: {exc.strerror or exc}"


def _write(files: list[tuple[Path, bytes]]) -> None:
    """Write all ``(path, data)`` atomically, together; OutputError names the file that failed."""
    try:
        atomic_write_all(files)
    except OSError as exc:
        raise OutputError(_describe(exc, Path(exc.filename or files[0][0]))) from None


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary name + rename); OutputError on failure."""
    final = Path(path)
    _write([(final, data)])
    return final


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _prompt_of(metadata: Mapping[str, Any]) -> str:
    """The prompt a loop is named after: the one that dominates at its alpha (style B from 0.5
    on), else the other one when that is empty."""
    alpha = metadata.get("alpha")
    b_leads = isinstance(alpha, int | float) and not isinstance(alpha, bool) and alpha >= 0.5
    prompts: list[Any] = [metadata.get("prompt"), metadata.get("prompt_b")]
    if not any(prompts):
        listed = metadata.get("prompts")
        if isinstance(listed, list | tuple):
            prompts = [p.get("prompt") if isinstance(p, Mapping) else p for p in listed[:2]]
    if b_leads:
        prompts.reverse()
    prompt = next((p for p in prompts if p), None)
    return str(prompt) if prompt else "loop"


def sidecar(loop: Loop, settings: WavSettings, wav_path: Path,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON sidecar of a loop's WAV: every parameter that made it (its metadata), and what
    is in the file (tempo, bars, channels, rate, format, samples)."""
    out = _jsonable({**loop.metadata, **(extra or {})})
    out.update({
        "file": wav_path.name,
        "bpm": loop.bpm,
        "bars": loop.bars,
        "beats_per_bar": loop.beats_per_bar,
        "channels": loop.channels,
        "file_sample_rate": settings.sample_rate,
        "sample_format": settings.sample_format,
        "samples": round(loop.beats * 60.0 / loop.bpm * settings.sample_rate),
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return out


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"


def write_loop_file(path: str | os.PathLike[str], loop: Loop,
                    settings: WavSettings | None = None) -> Path:
    """Write ``loop`` to the WAV ``path`` and its sidecar beside it (same name, ``.json``),
    atomically and together; return the WAV's path. `riffbridge render out.wav` uses this."""
    settings = settings or WavSettings()
    wav_path = Path(path)
    _write([(wav_path.with_suffix(".json"), _json_bytes(sidecar(loop, settings, wav_path))),
            (wav_path, wav_bytes(loop, settings))])
    return wav_path


@dataclass(frozen=True)
class WrittenLoop:
    """A loop whose own files landed: its WAV's path, the WAV's bytes and its sidecar."""

    path: Path
    wav: bytes = field(repr=False)
    sidecar: Mapping[str, Any] = field(repr=False)


class OutputFolder:
    """Where one run's loops go. ``write(loop)`` is the one call the engine and
    ``riffbridge render`` make; it returns the WAV's path. Thread-safe."""

    def __init__(self, root: str | os.PathLike[str], settings: WavSettings | None = None,
                 run_start: dt.datetime | None = None, update_latest: bool = True) -> None:
        # Absolute from the start: every path handed out (``/rb/clip``, the index) must open
        # from another program's working folder too (Max, Pd, a DAW resolve a relative path
        # against their own search path and find nothing).
        self.root = Path(root).expanduser().absolute()
        self.settings = settings or WavSettings()
        self.update_latest = update_latest
        started = run_start or dt.datetime.now()
        self.run_dir = self._make_run_dir(started.strftime(RUN_FORMAT))
        self._lock = threading.Lock()
        self._next = 1 + max((int(m.group(1)) for p in self.run_dir.iterdir()
                              if (m := NAME_RE.match(p.name))), default=0)

    def _make_run_dir(self, name: str) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create output folder {self.root}: {exc.strerror}; choose a folder you "
                "can write to (serve: --out-dir; render: the output argument)") from None
        if not self.root.is_dir():
            raise OutputError(f"output path {self.root} is a file, not a folder")
        candidate, n = self.root / name, 1
        while candidate.exists():
            n += 1
            candidate = self.root / f"{name}-{n}"
        try:
            candidate.mkdir()
        except OSError as exc:
            raise OutputError(_describe(exc, candidate)) from None
        return candidate

    @property
    def index_path(self) -> Path:
        return self.run_dir / "index.jsonl"

    def write(self, loop: Loop, extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``loop`` (WAV + sidecar), add it to the index, update latest; return the WAV.

        ``extra`` adds sidecar fields on top of the loop's metadata. When the loop's own files
        land but latest cannot be updated, the ``OutputError`` says that the loop was written.
        """
        written = self.write_loop(loop, extra)
        if self.update_latest:
            try:
                self.write_latest(written)
            except OutputError as exc:
                raise OutputError(f"wrote {written.path}, but {exc}") from None
        return written.path

    def write_loop(self, loop: Loop, extra: Mapping[str, Any] | None = None) -> WrittenLoop:
        """Write the loop's own files: its WAV and sidecar, and its line in the index, together
        (all or none). ``OutputError`` when they cannot be written."""
        meta = {**loop.metadata, **(extra or {})}
        with self._lock:
            number = self._next
            wav_path = self.run_dir / loop_filename(number, _prompt_of(meta), loop.bpm,
                                                    loop.bars)
            while wav_path.exists():  # never overwrite an existing loop
                number += 1
                wav_path = self.run_dir / loop_filename(number, _prompt_of(meta), loop.bpm,
                                                        loop.bars)
            data = wav_bytes(loop, self.settings)
            meta_out = {**sidecar(loop, self.settings, wav_path, extra),
                        "number": number, "run": self.run_dir.name}
            text = _json_bytes(meta_out)
            json_path = wav_path.with_suffix(".json")
            index_line = json.dumps(meta_out, sort_keys=True) + "\n"
            old_index = self.index_path.read_bytes() if self.index_path.exists() else b""
            _write([(json_path, text), (wav_path, data),
                    (self.index_path, old_index + index_line.encode())])
            self._next = number + 1
        logger.info("wrote %s", wav_path)
        return WrittenLoop(wav_path, data, meta_out)

    def write_latest(self, written: WrittenLoop) -> None:
        """Point ``latest.wav`` / ``latest.json`` at a written loop; ``OutputError`` naming
        latest when they cannot be written (the loop's own files stay as they are)."""
        latest = {**written.sidecar, "path": f"{self.run_dir.name}/{written.path.name}"}
        try:
            _write([(self.root / "latest.wav", written.wav),
                    (self.root / "latest.json", _json_bytes(latest))])
        except OutputError as exc:
            raise OutputError(f"latest.wav was not updated: {exc}") from None
