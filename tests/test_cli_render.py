"""`riffbridge render --bpm --bars`: a finished loop from the tiny model, read back with
soundfile and an independent RIFF reader; bad values end in one line and exit 2."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import soundfile
from PIL import Image

from riffbridge.cli import main
from riffbridge.loops.tempo import loop_frames, loop_samples, render_width

TINY = ["--model", "tiny", "--device", "cpu", "--steps", "2"]


def riff_chunks(data: bytes) -> dict[str, bytes]:
    """Chunk id -> body of a RIFF/WAVE file, read without riffbridge's writer."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        cid, size = struct.unpack("<4sI", data[pos:pos + 8])
        chunks[cid.decode("ascii")] = data[pos + 8:pos + 8 + size]
        pos += 8 + size + size % 2
    return chunks


def test_loop_wav_is_exactly_the_bars_with_tempo_chunks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "loop.wav", tmp_path / "loop.png"
    rc = main(["render", str(out), *TINY, "--prompt", "jazz", "--prompt-b", "rock",
               "--alpha", "0.5", "--bpm", "120", "--bars", "1", "--image", str(png)])
    assert rc == 0, capsys.readouterr().err
    samples = loop_samples(120, 1)
    audio, rate = soundfile.read(str(out), always_2d=True)
    assert rate == 44100 and audio.shape[0] == samples == 88200
    assert soundfile.info(str(out)).subtype == "PCM_24"
    chunks = riff_chunks(out.read_bytes())
    _flags, _root, _, _, beats, _denom, numer, tempo = struct.unpack("<IHHfIHHf",
                                                                      chunks["acid"])
    assert (beats, numer) == (4, 4) and tempo == pytest.approx(120.0)
    _cue, _kind, start, end, _frac, _count = struct.unpack("<6I", chunks["smpl"][36:60])
    assert (start, end) == (0, samples - 1)
    # The render covers one period of the loop: the seed's width, a multiple of 8 columns.
    assert Image.open(png).size == (render_width(loop_frames(120, 1)), 512)
    assert f"{samples} samples" in capsys.readouterr().out


def test_loop_into_a_folder_gets_a_run_folder_with_wav_and_sidecar(tmp_path: Path) -> None:
    rc = main(["render", str(tmp_path / "loops"), *TINY, "--prompt", "dusty funk",
               "--seed", "7", "--bpm", "90", "--bars", "1", "--beats-per-bar", "3",
               "--pattern", "shuffle"])
    assert rc == 0
    runs = [p for p in (tmp_path / "loops").iterdir() if p.is_dir()]
    assert len(runs) == 1
    wavs = sorted(runs[0].glob("*.wav"))
    assert [w.name for w in wavs] == ["0001_dusty-funk_90bpm_1bars.wav"]
    sidecar = json.loads(wavs[0].with_suffix(".json").read_text())
    assert soundfile.info(str(wavs[0])).frames == loop_samples(90, 1, 3) == sidecar["samples"]
    assert sidecar["bpm"] == 90 and sidecar["bars"] == 1 and sidecar["beats_per_bar"] == 3
    assert sidecar["pattern"] == "shuffle" and sidecar["model"] == "tiny"
    assert sidecar["prompt"] == "dusty funk" and (sidecar["seed"], sidecar["seed_b"]) == (7, 7)
    assert sidecar["steps"] == 2 and sidecar["seam"]["method"].startswith("circular")
    assert (runs[0] / "index.jsonl").read_text().count("\n") == 1
    assert (tmp_path / "loops" / "latest.wav").read_bytes() == wavs[0].read_bytes()


def test_render_and_the_engine_make_the_same_loop_through_one_pipeline(tmp_path: Path) -> None:
    """`render out.wav` writes a sidecar too, named by the same keys as the engine's, and its
    audio is the loop the engine's pipeline makes for the same key."""
    from riffbridge.engine.plan import key_for
    from riffbridge.pipeline import LoopRequest, make_loop
    from riffbridge.render.riffuse import Renderer
    from riffbridge.state import EngineState

    out = tmp_path / "loop.wav"
    assert main(["render", str(out), *TINY, "--prompt", "jazz", "--prompt-b", "rock",
                 "--seed", "3", "--seed-b", "4", "--alpha", "0.5", "--bpm", "100",
                 "--bars", "1"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    state = EngineState(prompt_a="jazz", prompt_b="rock", seed_a=3, seed_b=4, alpha=0.5,
                        bpm=100.0, bars=1, steps=2)
    key = key_for(state)
    assert {k: sidecar[k] for k in key.sidecar()} == key.sidecar()
    loop = make_loop(Renderer("tiny", device="cpu"), LoopRequest(key))
    written, rate = soundfile.read(str(out), always_2d=True, dtype="float32")
    assert rate == loop.sample_rate and written.shape[0] == loop.num_samples
    assert float(abs(written.T - loop.audio).max()) < 1e-4  # 24-bit quantisation only


@pytest.mark.parametrize(("flags", "message"), [
    (["--bpm", "120", "--bars", "0"], "bars must be a whole number in [1, 16], got 0"),
    (["--bpm", "-3", "--bars", "2"], "bpm must be in [40, 240], got -3.0"),
    (["--bpm", "120"], "--bpm 120 needs --bars"),
    (["--bars", "2"], "--bars 2 needs --bpm"),
    (["--bpm", "120", "--bars", "2", "--beats-per-bar", "0"], "beats per bar"),
    (["--bpm", "120", "--bars", "2", "--pattern", "polka"], "unknown pattern 'polka'"),
    (["--bpm", "120", "--bars", "2", "--width", "64"], "--width 64"),
    (["--pattern", "shuffle"], "--pattern shapes a loop and needs --bpm and --bars"),
])
def test_bad_loop_values_exit_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        message: str) -> None:
    rc = main(["render", str(tmp_path / "x.wav"), *TINY, *flags])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and message in err
    assert not list(tmp_path.iterdir())


def test_loop_output_must_be_a_wav_or_a_folder(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["render", str(tmp_path / "x.mp3"), *TINY, "--bpm", "120", "--bars", "1"])
    assert rc == 2 and "a .wav file or a folder" in capsys.readouterr().err
