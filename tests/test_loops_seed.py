"""Seed patterns: grooves on a sample-exact grid, seed images of the render width, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riffbridge.cli import main
from riffbridge.errors import ConfigError
from riffbridge.loops.drums import render_pattern, voice
from riffbridge.loops.patterns import (
    GROOVES,
    Pattern,
    custom_pattern,
    get_pattern,
    parse_steps,
)
from riffbridge.loops.seam import measure_seam
from riffbridge.loops.seed import audio_seed, pattern_seed
from riffbridge.loops.shape import SEAM_LIMIT, ShapeSettings, shape_image
from riffbridge.loops.tempo import loop_frames, loop_samples, render_width
from riffbridge.spectrogram import read_params


def test_named_grooves_exist_and_parse() -> None:
    for name in ("four-on-the-floor", "breakbeat", "half-time", "boom-bap", "two-step",
                 "shuffle"):
        pattern = get_pattern(name)
        assert "kick" in pattern.steps and all(len(v) > 0 for v in pattern.steps.values())
    assert get_pattern(" Breakbeat ").name == "breakbeat"
    with pytest.raises(ConfigError, match=r"unknown pattern 'polka'.*four-on-the-floor"):
        get_pattern("polka")


def test_step_strings() -> None:
    assert parse_steps("x.X.|o-__") == (0.8, 0.0, 1.0, 0.0, 0.45, 0.0, 0.0, 0.0)
    pattern = custom_pattern(["kick=x...", "hat=.x.x"], get_pattern("half-time"))
    assert pattern.steps["kick"] == (0.8, 0.0, 0.0, 0.0)
    assert pattern.steps["snare"] == get_pattern("half-time").steps["snare"]
    for bad, word in (("kick", "kick=x"), ("cowbell=x...", "unknown instrument"),
                      ("kick=x..q", "'q'"), ("kick=", "at least one step")):
        with pytest.raises(ConfigError, match=word):
            custom_pattern([bad])


def test_bad_voices_and_seam_modes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no drum voice 'cowbell'; use one of kick, snare"):
        voice("cowbell")
    with pytest.raises(ConfigError, match="seam must be 'auto', 'circular' or 'plain', got 'x'"):
        ShapeSettings(seam="x")


@pytest.mark.parametrize(("bpm", "bars"), [(128.0, 2), (97.3, 3), (174.0, 1)])
def test_hits_start_on_the_exact_sample_of_their_step(bpm: float, bars: int) -> None:
    n = loop_samples(bpm, bars)
    for step in (1, 4, 7, 10):  # (tails of later steps would wrap into bar 0 at 174 bpm)
        row = "".join("x" if k == step else "." for k in range(16))
        audio = render_pattern(Pattern("one", {"snare": parse_steps(row)}), n, bars)[0]
        assert audio.shape == (n,)
        onsets = np.flatnonzero(np.abs(audio[: round(n / bars)]) > 0)
        # Step k of bar 0, sample-exact: the 1 ms attack rises from 0 at the step's sample.
        assert onsets[0] - 1 == round(step / 16 * n / bars)
        # ...and the same hit in every later bar.
        for bar in range(1, bars):
            at = round((bar + step / 16) * n / bars)
            assert np.abs(audio[at:at + 200]).max() > 0.05


def test_tails_wrap_round_so_the_pattern_loops_seamlessly() -> None:
    pattern = Pattern("late", {"kick": parse_steps("...............x")})
    n = loop_samples(120.0, 1)
    audio = render_pattern(pattern, n, 1)[0]
    assert np.abs(audio[:2000]).max() > 0.1  # the last step's kick rings on into the start
    # The wrap is no bigger a step than the waveform takes anywhere else.
    assert abs(audio[0] - audio[-1]) <= np.abs(np.diff(audio)).max()


@pytest.mark.parametrize(("bpm", "bars", "beats"), [(128.0, 4, 4), (90.0, 2, 3), (61.0, 1, 4)])
def test_seed_image_covers_the_loop_at_the_render_width(bpm: float, bars: int,
                                                         beats: int) -> None:
    seed = pattern_seed(get_pattern("breakbeat"), bpm, bars, beats)
    frames = loop_frames(bpm, bars, beats)
    assert seed.frames == frames
    assert seed.image.size == (render_width(frames), 512)
    assert seed.image.width % 8 == 0
    assert seed.audio.shape == (1, loop_samples(bpm, bars, beats))
    assert read_params(seed.image).sample_rate == 44100


def test_seed_image_shapes_back_into_an_exact_seamless_loop_on_the_grid(tmp_path: Path) -> None:
    bpm, bars = 128.0, 2
    seed = pattern_seed(get_pattern("four-on-the-floor"), bpm, bars)
    loop = shape_image(seed.image, bpm, bars, settings=ShapeSettings(seam="circular"))
    assert loop.num_samples == loop_samples(bpm, bars)
    x = loop.audio[0]
    # The kicks (the loudest low-frequency onsets) land on the beats counted from sample 0.
    beat = loop.num_samples / (bars * 4)
    energy = np.convolve(x ** 2, np.ones(441) / 441, mode="same")
    for k in range(0, bars * 4, 2):
        at = round(k * beat)
        window = energy[max(0, at - 2205):at + 4410]
        assert np.argmax(window) - min(at, 2205) < 4410
    # The seam is the downbeat kick: no more abrupt than the loop's other accented kicks (the
    # crossfade, which would smear it, is not triggered), and the waveform runs on without a
    # step bigger than the kick's own.
    assert loop.metadata["seam"]["seam_ratio"] <= 1.0 < SEAM_LIMIT
    x = loop.audio[0]
    assert abs(float(x[0]) - float(x[-1])) <= np.abs(np.diff(x)).max() / 4


def test_a_wav_seed_is_stretched_to_the_bars(clips: list[Path]) -> None:
    from riffbridge.audio_io import read_audio

    audio, rate = read_audio(clips[1])
    seed = audio_seed(audio, rate, 90.0, 2, source=clips[1].name)
    frames = loop_frames(90.0, 2)
    assert seed.image.width == render_width(frames)
    assert seed.audio.shape[-1] == loop_samples(90.0, 2)
    assert measure_seam(seed.audio, 44100).seam_ratio <= 1.0


def read_chunks(path: Path) -> dict[bytes, bytes]:
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        chunks[tag] = data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    return chunks


def test_cli_writes_the_seed_image_and_audio(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed.png"
    assert main(["seed", "--bpm", "128", "--bars", "4", "--pattern", "breakbeat", "-o",
                 str(out), "--wav", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["width"] == render_width(loop_frames(128.0, 4)) == 752
    with Image.open(out) as image:
        assert image.size == (752, 512)
    chunks = read_chunks(tmp_path / "seed.wav")
    assert b"acid" in chunks and b"smpl" in chunks
    assert len(chunks[b"data"]) == loop_samples(128.0, 4) * 3  # mono 24-bit


def test_cli_custom_steps_from_wav_and_errors(tmp_path: Path, clips: list[Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "custom.png"
    assert main(["seed", "--bpm", "100", "--bars", "1", "--beats", "3", "--steps",
                 "kick=x.....", "--steps", "hat=.x.x.x", "-o", str(out)]) == 0
    with Image.open(out) as image:
        assert image.width == render_width(loop_frames(100.0, 1, 3))
    wav_out = tmp_path / "fromwav.png"
    assert main(["seed", "--from-wav", str(clips[0]), "--bpm", "80", "--bars", "2", "-o",
                 str(wav_out)]) == 0
    assert wav_out.exists()
    capsys.readouterr()
    assert main(["seed", "--bpm", "300", "-o", str(tmp_path / "x.png")]) == 2
    assert "bpm must be in [40, 240], got 300" in capsys.readouterr().err
    assert main(["seed", "--pattern", "polka", "-o", str(tmp_path / "x.png")]) == 2
    assert main(["seed", "-o", str(tmp_path / "x.jpg")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_cli_lists_grooves_in_a_subprocess() -> None:
    result = subprocess.run([sys.executable, "-m", "riffbridge", "seed", "--list", "--json"],
                            capture_output=True, text=True, check=True)
    assert set(json.loads(result.stdout)) == set(GROOVES)


def test_default_seed_png_round_trip_shapes_an_exact_loop(tmp_path: Path) -> None:
    import io

    from riffbridge.loops.seed import DEFAULT_PATTERN, default_seed

    seed = default_seed(140.0, 1, 4)
    assert seed.source == DEFAULT_PATTERN
    buf = io.BytesIO()
    seed.image.save(buf, format="PNG", exif=seed.image.info["exif"])
    buf.seek(0)
    with Image.open(buf) as image:
        image.load()
        loop = shape_image(image, 140.0, 1, settings=ShapeSettings(iters=8))
    assert loop.num_samples == loop_samples(140.0, 1)
    assert loop.metadata["source_columns"] == seed.width
    assert loop.metadata["frames"] == seed.frames
