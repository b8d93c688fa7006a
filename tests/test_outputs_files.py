"""The output folder: layout, sidecars, index, latest, and atomic writes under failure."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from riffbridge import fsutil
from riffbridge.errors import OutputError
from riffbridge.loops.types import Loop
from riffbridge.outputs.files import OutputFolder, slugify
from riffbridge.outputs.writer import LoopWriter

START = dt.datetime(2026, 11, 23, 5, 4, 3)


def make_loop(prompt: str = "Funky synth solo!", bpm: float = 128.0, bars: int = 4,
              seed: int = 7) -> Loop:
    n = round(bars * 4 * 60 / bpm * 44100)
    rng = np.random.default_rng(seed)
    meta = {"prompts": [prompt, "jazz"], "seeds": [seed, 8], "alpha": 0.25, "denoise": 0.75,
            "guidance": 7.0, "steps": 30, "model": "tiny", "seed_pattern": "breakbeat",
            "render_seconds": 1.5, "level": {"input_lufs": -20.0, "x": float("nan")},
            "array_value": np.float32(0.5)}
    return Loop(0.1 * rng.standard_normal((2, n)), 44100, bpm, bars, 4, meta)


def visible(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_layout_names_sidecar_index_and_latest(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path, run_start=START)
    first = out.write(make_loop())
    second = out.write(make_loop("Jazz / hip-hop", bpm=92.5, bars=2, seed=9),
                       extra={"render_seconds": 2.0})
    run = tmp_path / "2026-11-23_05-04-03"
    assert first == run / "0001_funky-synth-solo_128bpm_4bars.wav"
    assert second == run / "0002_jazz-hip-hop_92.5bpm_2bars.wav"
    side = json.loads(second.with_suffix(".json").read_text())
    for key, value in {"prompts": ["Jazz / hip-hop", "jazz"], "seeds": [9, 8], "alpha": 0.25,
                       "denoise": 0.75, "guidance": 7.0, "steps": 30, "model": "tiny",
                       "bpm": 92.5, "bars": 2, "seed_pattern": "breakbeat",
                       "render_seconds": 2.0, "file": second.name, "number": 2,
                       "array_value": 0.5, "sample_format": "pcm24"}.items():
        assert side[key] == value, key
    assert side["level"]["x"] is None  # NaN is not JSON
    lines = [json.loads(x) for x in (run / "index.jsonl").read_text().splitlines()]
    assert [x["file"] for x in lines] == [first.name, second.name]
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["path"] == f"{run.name}/{second.name}"
    assert (tmp_path / "latest.wav").read_bytes() == second.read_bytes()
    data, rate = sf.read(str(tmp_path / "latest.wav"))
    assert rate == 44100 and len(data) == round(2 * 4 * 60 / 92.5 * 44100)
    assert not [p for p in visible(tmp_path) if ".part" in p]


def test_a_second_run_in_the_same_second_gets_its_own_folder(tmp_path: Path) -> None:
    a = OutputFolder(tmp_path, run_start=START).write(make_loop())
    b = OutputFolder(tmp_path, run_start=START).write(make_loop())
    assert a.parent != b.parent and a.exists() and b.exists()


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path, run_start=START)
    path = out.write(make_loop())
    before = path.read_bytes()
    # Someone puts a file where the next number would go: the writer takes the one after.
    squatter = out.run_dir / "0002_funky-synth-solo_128bpm_4bars.wav"
    squatter.write_bytes(b"not mine")
    out._next = 2  # as a fresh OutputFolder racing another writer would see it
    third = out.write(make_loop())
    assert third.name.startswith("0003_")
    assert squatter.read_bytes() == b"not mine" and path.read_bytes() == before


def test_disk_full_leaves_no_partial_file(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = OutputFolder(tmp_path, run_start=START)
    good = out.write(make_loop())
    before = visible(tmp_path)
    latest = (tmp_path / "latest.wav").read_bytes()
    calls = {"n": 0}
    real = fsutil._write_all

    def failing(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the sidecar goes through; the WAV's write hits a full disk
            os.write(fd, data[: len(data) // 3])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(fsutil, "_write_all", failing)
    with pytest.raises(OutputError, match=r"disk full while writing .*0002_.*wav"):
        out.write(make_loop("next one"))
    assert visible(tmp_path) == before  # no partial WAV, no orphan sidecar, no temp file
    assert (tmp_path / "latest.wav").read_bytes() == latest
    assert len((out.run_dir / "index.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(fsutil, "_write_all", real)
    assert out.write(make_loop("next one")).name.startswith("0002_")  # recovers
    assert good.exists()


def test_permission_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = OutputFolder(tmp_path, run_start=START)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fsutil.tempfile, "mkstemp", denied)
    with pytest.raises(OutputError, match=r"no permission to write .*choose a writable"):
        out.write(make_loop())
    assert visible(tmp_path) == [out.run_dir.name]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores folder permissions, so a read-only folder cannot be "
                    "made here (the injected EACCES test above covers the path)")
def test_read_only_folder(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path, run_start=START)
    out.run_dir.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="no permission"):
            out.write(make_loop())
        assert list(out.run_dir.iterdir()) == []
    finally:
        out.run_dir.chmod(0o755)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(OutputError, match=r"no permission|cannot create"):
        OutputFolder(ro / "out")


def test_an_output_folder_that_cannot_be_made_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot create output folder .*file/out: .*; choose "
                       r"a folder you can write to \(serve: --out-dir; render: the output "):
        OutputFolder(tmp_path / "file" / "out")


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder"):
        OutputFolder(f)


def test_slug_and_acid_tempo_through_the_folder(tmp_path: Path) -> None:
    assert slugify("  ¡Hola!  Ñandú  ") == "hola-nandu"
    assert slugify("***") == "loop"
    assert len(slugify("a" * 200)) == 40
    path = OutputFolder(tmp_path, run_start=START).write(make_loop(bpm=140.0, bars=1))
    data = path.read_bytes()
    at = data.index(b"acid")
    tempo = struct.unpack("<f", data[at + 8 + 20:at + 8 + 24])[0]
    assert tempo == pytest.approx(140.0)


# ---- the name follows the sound; counts and announcements after disk trouble -------------------

def _keyed_loop(alpha: float, prompt_a: str = "funk", prompt_b: str = "ambient") -> Loop:
    """A loop whose metadata is what the engine and `render` give it: the loop key's sidecar."""
    from riffbridge.engine.plan import key_for
    from riffbridge.state import EngineState

    meta = key_for(EngineState(prompt_a=prompt_a, prompt_b=prompt_b, alpha=alpha)).sidecar()
    loop = make_loop(bars=1)
    return Loop(loop.audio, loop.sample_rate, loop.bpm, loop.bars, loop.beats_per_bar, meta)


@pytest.mark.parametrize(("alpha", "a", "b", "slug"), [
    (0.0, "funk", "ambient", "funk"), (0.375, "funk", "ambient", "funk"),
    (0.5, "funk", "ambient", "ambient"), (1.0, "funk", "ambient", "ambient"),
    (1.0, "funk", "", "funk"), (0.0, "", "ambient", "ambient"), (0.75, "", "", "loop"),
])
def test_a_loop_is_named_after_the_prompt_that_dominates_at_its_alpha(
        tmp_path: Path, alpha: float, a: str, b: str, slug: str) -> None:
    path = OutputFolder(tmp_path, run_start=START).write(_keyed_loop(alpha, a, b))
    assert path.name == f"0001_{slug}_128bpm_1bars.wav"
    side = json.loads(path.with_suffix(".json").read_text())
    assert (side["prompt"], side["prompt_b"], side["alpha"]) == (a, b, alpha)


def test_the_prompts_list_is_named_by_alpha_too(tmp_path: Path) -> None:
    loop = make_loop("Funky synth solo!")
    late = Loop(loop.audio, loop.sample_rate, loop.bpm, loop.bars, loop.beats_per_bar,
                {**loop.metadata, "alpha": 0.875})
    assert OutputFolder(tmp_path, run_start=START).write(late).name == "0001_jazz_128bpm_4bars.wav"


class _Disk:
    """fsutil's temporary files fail with ENOSPC for the final names that ``full`` picks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = fsutil.tempfile.mkstemp
        self.full = lambda name: False
        self.refused: list[str] = []
        monkeypatch.setattr(fsutil.tempfile, "mkstemp", self.mkstemp)

    def mkstemp(self, prefix: str = "", suffix: str = "",
                dir: str | None = None) -> tuple[int, str]:
        name = prefix.removeprefix(".").removesuffix(".")
        if self.full(name):
            self.refused.append(name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.real(prefix=prefix, suffix=suffix, dir=dir)


class _News:
    def __init__(self) -> None:
        self.written: list[tuple[str, object]] = []
        self.errors: list[str] = []

    def on_written(self, path: Path, loop: Loop, tag: object) -> None:
        self.written.append((path.name, tag))

    def on_error(self, message: str) -> None:
        self.errors.append(message)


def _writer(folder: OutputFolder, news: _News, delays: tuple[float, ...] = (0.2, 0.4)
            ) -> LoopWriter:
    return LoopWriter(folder, news.on_written, news.on_error, retry_delays=delays)


def test_a_loop_whose_latest_failed_is_counted_announced_and_on_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = _Disk(monkeypatch)
    disk.full = lambda name: name.startswith("latest.")
    folder, news = OutputFolder(tmp_path, run_start=START), _News()
    with _writer(folder, news) as writer:
        writer.submit(make_loop("first"), tag="k1")
        writer.submit(make_loop("second"), tag="k2")
    assert writer.written == 2 and writer.given_up == 0
    assert news.written == [("0001_first_128bpm_4bars.wav", "k1"),
                            ("0002_second_128bpm_4bars.wav", "k2")]
    assert len(news.errors) == 2
    assert news.errors[0].startswith("wrote 0001_first_128bpm_4bars.wav, but latest.wav was not "
                                     "updated: disk full while writing ")
    wavs = sorted(folder.run_dir.glob("*.wav"))
    assert [p.name for p in wavs] == [name for name, _ in news.written]
    for wav in wavs:
        assert sf.info(str(wav)).frames == round(4 * 4 * 60 / 128 * 44100)
    assert len((folder.run_dir / "index.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "latest.wav").exists()
    assert not [p for p in visible(tmp_path) if ".part" in p]


def test_write_reports_a_latest_failure_after_the_loop_landed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = _Disk(monkeypatch)
    disk.full = lambda name: name == "latest.json"
    out = OutputFolder(tmp_path, run_start=START)
    with pytest.raises(OutputError, match=r"^wrote .*0001_funky-synth-solo_128bpm_4bars\.wav, "
                                          r"but latest\.wav was not updated: disk full"):
        out.write(make_loop())
    assert sf.info(str(out.run_dir / "0001_funky-synth-solo_128bpm_4bars.wav")).frames > 0


def test_a_failed_loop_is_tried_again_while_newer_loops_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = _Disk(monkeypatch)
    fails = {"left": 2}

    def full(name: str) -> bool:  # the first loop's WAV meets a full disk twice, then room
        if "_first_" in name and name.endswith(".wav") and fails["left"]:
            fails["left"] -= 1
            return True
        return False

    disk.full = full
    folder, news = OutputFolder(tmp_path, run_start=START), _News()
    with _writer(folder, news) as writer:
        writer.submit(make_loop("first"), tag="k1")
        writer.submit(make_loop("second"), tag="k2")
    assert len(disk.refused) == 2
    assert writer.written == 2 and writer.given_up == 0 and news.errors == []
    # the newer loop landed while the first waited for its next try
    assert news.written == [("0001_second_128bpm_4bars.wav", "k2"),
                            ("0002_first_128bpm_4bars.wav", "k1")]
    index = [json.loads(x) for x in (folder.run_dir / "index.jsonl").read_text().splitlines()]
    assert [x["file"] for x in index] == [name for name, _ in news.written]
    for name, _ in news.written:
        data, rate = sf.read(str(folder.run_dir / name))
        assert rate == 44100 and len(data) == round(4 * 4 * 60 / 128 * 44100)
    assert json.loads((tmp_path / "latest.json").read_text())["file"] == news.written[-1][0]


def test_a_loop_that_never_lands_is_given_up_once_and_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = _Disk(monkeypatch)
    disk.full = lambda name: "_doomed_" in name
    folder, news = OutputFolder(tmp_path, run_start=START), _News()
    with _writer(folder, news, delays=(0.1, 0.1)) as writer:
        writer.submit(make_loop("doomed"), tag="k1")
        writer.submit(make_loop("fine"), tag="k2")
        writer.submit(make_loop("doomed"), tag="k3")
    assert len(disk.refused) == 6  # three tries each
    assert writer.written == 1 and writer.given_up == 2 and writer.pending == 0
    assert news.written == [("0001_fine_128bpm_4bars.wav", "k2")]
    assert len(news.errors) == 2
    assert news.errors[0].startswith("gave up writing a loop after 3 tries: disk full while "
                                     "writing ")
    assert news.errors[0].endswith("(1 loop not written this run)")
    assert news.errors[1].endswith("(2 loops not written this run)")
    assert [p.name for p in folder.run_dir.glob("*.wav")] == ["0001_fine_128bpm_4bars.wav"]
    assert not [p for p in visible(tmp_path) if ".part" in p]


def test_a_relative_output_folder_hands_out_absolute_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/rb/clip carries the written path: another program (Max, Pd, a DAW) resolves a relative
    one against its own folder and finds nothing, so the folder is made absolute at start."""
    monkeypatch.chdir(tmp_path)
    folder = OutputFolder("out")
    assert folder.root == tmp_path / "out" and folder.run_dir.is_absolute()
