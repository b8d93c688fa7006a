"""The DAW's audio (or a spectrogram image) as the img2img seed: /rb/seed/audio and /rb/seed/image,
the refusals, and capture -> seed -> render end to end with the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from riffbridge.control.hub import Hub
from riffbridge.control.routes import Do, route
from riffbridge.engine.plan import key_for
from riffbridge.errors import ControlError
from riffbridge.state import EngineState, SetSeedFile

RATE = 44100


def groove(seconds: float = 2.0, level: float = 0.5, seed: int = 0) -> np.ndarray:
    """A kick on every beat at 120 BPM plus a little noise: something to vary."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal(n).astype(np.float32) * 0.02
    t = np.arange(int(0.1 * RATE)) / RATE
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-t * 30)
    for start in range(0, n - len(kick), RATE // 2):
        audio[start:start + len(kick)] += kick.astype(np.float32)
    return audio * level


@pytest.fixture()
def seeds(tmp_path: Path) -> Path:
    folder = tmp_path / "seeds"
    folder.mkdir()
    soundfile.write(str(folder / "capture.wav"), groove(), RATE)
    soundfile.write(str(folder / "take.flac"), groove(seed=1), RATE)
    soundfile.write(str(folder / "take.aiff"), groove(seed=2), RATE, format="AIFF")
    soundfile.write(str(folder / "silent.wav"), np.zeros(RATE, np.float32), RATE)
    soundfile.write(str(folder / "blip.wav"), groove(0.05), RATE)
    (folder / "notes.wav").write_text("not audio at all")
    (folder / "picture.png").write_text("not a png")
    (tmp_path / "outside.wav").write_bytes((folder / "capture.wav").read_bytes())
    return folder


def submit(hub: Hub, address: str, path: str) -> None:
    routed = route(address, [path])
    assert isinstance(routed, Do)
    hub.submit(routed.command)


@pytest.mark.parametrize("name", ["capture.wav", "take.flac", "take.aiff"])
def test_a_recorded_file_becomes_the_seed(seeds: Path, name: str) -> None:
    hub = Hub(EngineState(), seed_dir=seeds)
    submit(hub, "/rb/seed/audio", name)
    assert hub.state.pattern == name
    # an absolute path inside the seed folder names the same file
    hub.submit(SetSeedFile("audio", "capture.wav"))
    submit(hub, "/rb/seed/audio", str(seeds / name))
    assert hub.state.pattern == name


@pytest.mark.parametrize(("path", "words"), [
    ("silent.wav", "'silent.wav' is silent (peak -inf dBFS)"),
    ("blip.wav", "'blip.wav' is 50 ms long; a seed needs at least 100 ms"),
    ("notes.wav", "'notes.wav' is not audio"),
    ("../outside.wav", "'../outside.wav' is outside the seed folder"),
    ("/etc/passwd", "is outside the seed folder"),
    ("missing.wav", "'missing.wav' not found in the seed folder"),
    ("capture.mp3", "must end in .wav, .flac, .aif, .aiff"),
])
def test_bad_seed_sounds_are_refused_and_nothing_changes(seeds: Path, path: str, words: str
                                                         ) -> None:
    hub = Hub(EngineState(), seed_dir=seeds)
    submit(hub, "/rb/seed/audio", "capture.wav")
    before = hub.state
    with pytest.raises(ControlError) as err:
        submit(hub, "/rb/seed/audio", path)
    assert words in str(err.value)
    assert hub.state == before


def test_outside_files_are_never_opened(seeds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    hub = Hub(EngineState(), seed_dir=seeds, seed_check=lambda p, k: opened.append(p))
    with pytest.raises(ControlError):
        submit(hub, "/rb/seed/audio", str(seeds.parent / "outside.wav"))
    assert opened == []
    with pytest.raises(ControlError, match="no seed folder is set"):
        Hub(EngineState()).submit(SetSeedFile("audio", "capture.wav"))


def test_a_spectrogram_png_becomes_the_seed(seeds: Path) -> None:
    from riffbridge.loops.seed import wav_seed

    wav_seed(seeds / "capture.wav", 120.0, 2).image.save(seeds / "spec.png")
    hub = Hub(EngineState(), seed_dir=seeds)
    submit(hub, "/rb/seed/image", "spec.png")
    assert hub.state.pattern == "spec.png"
    with pytest.raises(ControlError, match=r"'picture\.png' is not an image"):
        submit(hub, "/rb/seed/image", "picture.png")
    with pytest.raises(ControlError, match=r"must end in \.png"):
        submit(hub, "/rb/seed/image", "capture.wav")


def test_capture_seed_render_end_to_end(seeds: Path) -> None:
    """A capture written into the seed folder, sent as /rb/seed/audio, is the seed of the next
    render: stretched to the loop's bars at the tempo, and the loop follows it."""
    from riffbridge.loops.seed import wav_seed
    from riffbridge.loops.tempo import loop_frames, render_width
    from riffbridge.pipeline import LoopRequest, make_loop, seed_image
    from riffbridge.render.riffuse import Renderer

    hub = Hub(EngineState(steps=2, bars=1, bpm=100.0, denoise=0.5), seed_dir=seeds)
    renderer = Renderer("tiny", device="cpu")
    before = make_loop(renderer, LoopRequest(key_for(hub.state), seed_dir=str(seeds)))
    soundfile.write(str(seeds / "capture-0001.wav"), groove(seconds=3.0, seed=5), RATE)
    submit(hub, "/rb/seed/audio", "capture-0001.wav")
    key = key_for(hub.state)
    assert key.pattern == "capture-0001.wav" and key != key_for(hub.state.replace(
        pattern="four-on-the-floor"))
    image = seed_image(key, str(seeds))
    assert image.size[0] == render_width(loop_frames(100.0, 1, 4))  # one loop at 100 BPM
    assert np.array_equal(np.asarray(image),
                          np.asarray(wav_seed(seeds / "capture-0001.wav", 100.0, 1).image))
    loop = make_loop(renderer, LoopRequest(key, seed_dir=str(seeds)))
    assert loop.num_samples == before.num_samples  # the same bars at the same tempo
    assert not np.array_equal(loop.audio, before.audio)  # but from the capture
    again = make_loop(renderer, LoopRequest(key, seed_dir=str(seeds)))
    assert again.audio.tobytes() == loop.audio.tobytes()
    assert loop.metadata["pattern"] == "capture-0001.wav"
