"""Atomic file writes: the one writer every layer that saves a file uses.

A file is written to a hidden temporary name in its own folder, flushed to disk, and renamed
into place with ``os.replace``; it is never opened for writing under its final name, so a
reader sees the old file or the new one, never half of one. On failure the temporary file is
removed and the ``OSError`` is raised again with the final path as its ``filename``: each
caller turns it into its own error (OutputError, ControlError) with its own advice.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

# mkstemp makes owner-only files; what we write (loops, images, presets) is for the DAW, other
# users and other tools to read.
FILE_MODE = 0o644


def _write_all(fd: int, data: bytes) -> None:
    """The low-level write (one place, so tests can inject a failure)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _naming(exc: OSError, final: Path) -> OSError:
    """``exc`` with the final path as its filename (not the temporary one or none)."""
    return OSError(exc.errno, exc.strerror or str(exc), str(final))


def _stage(final: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``final``, flushed to disk; return its path."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as exc:
        raise _naming(exc, final) from exc
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _naming(exc, final) from exc
    return Path(tmp)


def atomic_write_all(files: Iterable[tuple[str | os.PathLike[str], bytes]]) -> list[Path]:
    """Write each ``(path, data)`` atomically: all are staged first, then renamed in order.

    A failure while staging leaves every final path as it was. A failed rename (rare: the
    folder vanished) leaves the files renamed before it in place and removes the rest.
    """
    staged: list[tuple[Path, Path]] = []
    renamed = 0
    try:
        for path, data in files:
            final = Path(path)
            staged.append((_stage(final, data), final))
        for tmp, final in staged:
            try:
                os.replace(tmp, final)
            except OSError as exc:
                raise _naming(exc, final) from exc
            renamed += 1
    except BaseException:
        for tmp, _ in staged[renamed:]:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return [final for _, final in staged]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary name beside it, fsync, rename)."""
    return atomic_write_all([(path, data)])[0]
