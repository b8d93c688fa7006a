"""`riffbridge convert` as a user runs it: real files, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image


def riffbridge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riffbridge", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_wav_to_png_to_wav(clips: list[Path], tmp_path: Path) -> None:
    png, wav = tmp_path / "clip.png", tmp_path / "back.wav"
    r = riffbridge("convert", clips[0], png, "--seconds", "2")
    assert r.returncode == 0, r.stderr
    image = Image.open(png)
    assert image.size == (201, 512) and image.getexif()[11000] == 44100
    r = riffbridge("convert", png, wav, "--iters", "8")
    assert r.returncode == 0, r.stderr
    data, rate = sf.read(wav)
    assert rate == 44100 and len(data) == 200 * 441


def test_stereo_flag(clips: list[Path], tmp_path: Path) -> None:
    png, wav = tmp_path / "s.png", tmp_path / "s.wav"
    assert riffbridge("convert", clips[1], png, "--stereo", "--seconds", "1").returncode == 0
    assert Image.open(png).getexif()[11005] == 1
    assert riffbridge("convert", png, wav, "--iters", "4").returncode == 0
    assert sf.info(wav).channels == 2


def one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_input(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    one_line_error(riffbridge("convert", tmp_path / "nope.wav", out), "not found", "nope.wav")
    assert not out.exists()


def test_not_audio(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not a sound file")
    out = tmp_path / "x.png"
    one_line_error(riffbridge("convert", bad, out), "cannot read", "bad.wav")
    assert not out.exists()


def test_not_an_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    out = tmp_path / "x.wav"
    one_line_error(riffbridge("convert", bad, out), "cannot read", "bad.png")
    assert not out.exists()


def test_image_of_wrong_height(tmp_path: Path) -> None:
    png = tmp_path / "small.png"
    Image.new("RGB", (40, 256), "white").save(png)
    out = tmp_path / "x.wav"
    one_line_error(riffbridge("convert", png, out), "512 pixels high", "256")
    assert not out.exists()


def test_unknown_direction(tmp_path: Path, clips: list[Path]) -> None:
    one_line_error(riffbridge("convert", clips[0], tmp_path / "x.mp4"), ".wav", ".mp4")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_as_user(tmp_path: Path, clips: list[Path]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    one_line_error(riffbridge("convert", clips[0], folder / "x.png", "--seconds", "1"),
                   "cannot write")
    assert list(folder.iterdir()) == []


def test_unwritable_output(tmp_path: Path, clips: list[Path]) -> None:
    """A folder that does not exist, and a path below a file: nothing written, one line."""
    one_line_error(riffbridge("convert", clips[0], tmp_path / "no" / "x.png", "--seconds", "1"),
                   "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("")
    one_line_error(riffbridge("convert", clips[0], blocker / "x.png", "--seconds", "1"),
                   "x.png", "not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_write_failure_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Disk full in the middle of a write: an OutputError and no file under either name."""
    import errno

    from riffbridge import fsutil
    from riffbridge.audio_io import write_audio
    from riffbridge.errors import OutputError

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil, "_write_all", full)
    with pytest.raises(OutputError, match=r"cannot write .*x\.wav: No space left"):
        write_audio(tmp_path / "x.wav", np.zeros((1, 100), dtype=np.float32), 44100)
    assert list(tmp_path.iterdir()) == []


def test_written_files_are_readable_by_others(clips: list[Path], tmp_path: Path) -> None:
    """Not the owner-only mode a temporary file is made with."""
    png, wav = tmp_path / "clip.png", tmp_path / "back.wav"
    assert riffbridge("convert", clips[0], png, "--seconds", "1").returncode == 0
    assert riffbridge("convert", png, wav, "--iters", "2").returncode == 0
    assert (png.stat().st_mode & 0o777) == (wav.stat().st_mode & 0o777) == 0o644


# --- many files in one call ---------------------------------------------------------------

def test_many_images_in_one_call_equal_one_by_one(clips: list[Path], tmp_path: Path) -> None:
    from riffbridge.audio_io import read_audio
    from riffbridge.spectrogram import audio_to_image

    images = []
    for i, clip in enumerate(clips[:3]):
        audio, rate = read_audio(clip)
        image = audio_to_image(audio[:, : rate * (i + 1)], rate)  # 1, 2 and 3 s
        images.append(tmp_path / f"clip{i}.png")
        image.save(images[-1], format="PNG", exif=image.info["exif"])
    out = tmp_path / "out"
    out.mkdir()
    r = riffbridge("convert", *images, "-o", out, "--iters", "4")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip0.wav", "clip1.wav", "clip2.wav"]
    for i, image_path in enumerate(images):
        single = tmp_path / f"single{i}.wav"
        assert riffbridge("convert", image_path, single, "--iters", "4").returncode == 0
        batch, rate = sf.read(out / f"clip{i}.wav")
        alone, alone_rate = sf.read(single)
        assert rate == alone_rate == 44100 and len(batch) == (i + 1) * 44100
        np.testing.assert_array_equal(batch, alone)
        assert np.abs(batch).max() > 0.5


def test_many_audio_files_to_images_next_to_them(clips: list[Path], tmp_path: Path) -> None:
    copies = []
    for i, clip in enumerate(clips[:2]):
        copies.append(tmp_path / f"c{i}.wav")
        copies[-1].write_bytes(clip.read_bytes())
    r = riffbridge("convert", *copies, "--to", "png", "--seconds", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"wrote {tmp_path / 'c0.png'}", f"wrote {tmp_path / 'c1.png'}"]
    for i in range(2):
        assert Image.open(tmp_path / f"c{i}.png").size == (101, 512)


def test_a_bad_file_among_many_is_named_and_nothing_runs_before_checks(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 512), "white").save(good)
    r = riffbridge("convert", good, tmp_path / "missing.png", "-o", tmp_path)
    one_line_error(r, "not found", "missing.png")
    assert not (tmp_path / "good.wav").exists()  # checked before the first conversion
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 256), "white").save(small)
    r = riffbridge("convert", good, small, "--to", "wav", "--iters", "1")
    one_line_error(r, "small.png", "512 pixels high")


@pytest.mark.parametrize(("argv", "words"), [
    (["a.png", "b.png", "c.png"], ["IN OUT", "-o DIR", "got 3 paths"]),
    (["a.png"], ["IN OUT", "got 1 path "]),
    (["a.png", "--to", "mp3"], ["--to must be one of png, wav, flac, ogg", "'mp3'"]),
    (["a.png", "-o", "nowhere"], ["output folder nowhere", "create it first"]),
    (["x/a.png", "y/a.png", "-o", "."], ["x/a.png and y/a.png", "a.wav"]),
    (["a.wav", "--to", "wav"], ["cannot convert .wav -> .wav", "a.wav -> a.wav"]),
])
def test_plan_refuses_unclear_command_lines(argv: list[str], words: list[str],
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    from riffbridge.cli import build_parser
    from riffbridge.cli.convert import plan
    from riffbridge.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["convert", *argv])
    with pytest.raises(ConfigError) as info:
        plan(args.paths, args.out_dir, args.to)
    for word in words:
        assert word in str(info.value)


def test_plan_pairs_each_input_with_its_output(tmp_path: Path) -> None:
    from riffbridge.cli.convert import plan

    inputs = [tmp_path / "a.png", tmp_path / "b.wav", tmp_path / "c.FLAC"]
    for p in inputs:
        p.write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    assert plan(inputs, out) == [(inputs[0], out / "a.wav"), (inputs[1], out / "b.png"),
                                 (inputs[2], out / "c.png")]
    assert plan(inputs[:1], to=".FLAC") == [(inputs[0], tmp_path / "a.flac")]
    assert plan([inputs[1], tmp_path / "x.png"]) == [(inputs[1], tmp_path / "x.png")]


def test_convert_imports_no_scipy() -> None:
    """scipy.signal took ~1 s of the 2.4 s a convert process spent importing; nothing on the
    convert path resamples unless the audio's rate differs, so it is imported only then."""
    code = ("import sys, riffbridge.cli, riffbridge.cli.convert, riffbridge.spectrogram, "
            "riffbridge.audio_io; print(sorted(m for m in sys.modules if m.startswith('scipy')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
