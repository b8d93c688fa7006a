"""The one atomic writer: whole files or none, readable by others, errors that name the file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from riffbridge import fsutil
from riffbridge.fsutil import atomic_write, atomic_write_all


def test_writes_replaces_and_leaves_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    assert atomic_write(path, b"first") == path
    assert atomic_write(str(path), b"second") == path
    assert path.read_bytes() == b"second"
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's owner-only mode
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_names_the_final_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    seen: list[str] = []

    def full(fd: int, data: bytes) -> None:
        seen.extend(p.name for p in tmp_path.iterdir() if p.name != "a.bin")
        os.write(fd, data[:2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil, "_write_all", full)
    with pytest.raises(OSError) as info:
        atomic_write(path, b"new data")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert seen and seen[0].startswith(".a.bin.")  # the temporary file sits beside the target
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_several_files_are_all_staged_before_any_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"old a")
    real = fsutil._write_all

    def second_fails(fd: int, data: bytes) -> None:
        if data == b"new b":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        real(fd, data)

    monkeypatch.setattr(fsutil, "_write_all", second_fails)
    with pytest.raises(PermissionError) as info:
        atomic_write_all([(a, b"new a"), (b, b"new b")])
    assert info.value.filename == str(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and a.read_bytes() == b"old a"
    monkeypatch.undo()
    assert atomic_write_all([(a, b"new a"), (b, b"new b")]) == [a, b]
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"new b")


def test_a_missing_folder_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        atomic_write(tmp_path / "nope" / "a.bin", b"x")
    assert info.value.filename == str(tmp_path / "nope" / "a.bin")
