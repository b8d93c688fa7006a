"""Presets in TOML (read back with the standard library's own parser), recalled over OSC, by a
program change, and refused cleanly; the seed-folder rule for pattern files; `osc-spec`."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from pythonosc.udp_client import SimpleUDPClient

from riffbridge import fsutil
from riffbridge.control.hub import Hub
from riffbridge.control.midi_map import MidiMapper, parse_map
from riffbridge.control.midi_port import MidiControl
from riffbridge.control.osc_server import OscServer, decode
from riffbridge.control.osc_spec import OSC_SPEC
from riffbridge.control.presets import PresetStore, tomllib  # tomli on Python 3.10
from riffbridge.errors import ConfigError, ControlError
from riffbridge.state import EngineState, RecallPreset, SavePreset, SetParam


def test_save_writes_toml_that_recall_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "presets.toml"
    hub = Hub(presets=PresetStore(path))
    prompt = 'dusty "funk" break\nwith a newline, ünïcode'
    hub.submit(SetParam("prompt_a", prompt))
    hub.submit(SetParam("alpha", 0.3))
    hub.submit(SavePreset("dusty funk"))
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["presets"]["dusty funk"]["prompt_a"] == prompt
    assert data["presets"]["dusty funk"]["alpha"] == 0.3
    hub.submit(SetParam("alpha", 0.9))
    hub.submit(SetParam("prompt_a", "something else"))
    hub.submit(RecallPreset("dusty funk"))
    assert hub.state.alpha == 0.3 and hub.state.prompt_a.startswith('dusty "funk"')
    # a fresh store (another run) reads the same file
    assert PresetStore(path).get("dusty funk")["alpha"] == 0.3


def test_a_failed_save_names_the_preset_and_file_and_keeps_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "presets.toml"
    store = PresetStore(path)
    store.save("keep", EngineState(alpha=0.2))
    before = path.read_bytes()

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil, "_write_all", full)
    with pytest.raises(ControlError, match=rf"cannot save preset 'new' to {path}: No space"):
        store.save("new", EngineState(alpha=0.7))
    assert path.read_bytes() == before  # the old file, whole; no temporary file beside it
    assert [p.name for p in tmp_path.iterdir()] == ["presets.toml"]
    assert store.names() == ["keep"]
    monkeypatch.undo()
    store.save("new", EngineState(alpha=0.7))
    assert PresetStore(path).get("new")["alpha"] == 0.7
    (tmp_path / "file").write_text("")
    with pytest.raises(ControlError, match=r"cannot save preset 'x' to .*file/p\.toml: "):
        PresetStore(tmp_path / "file" / "p.toml").save("x", EngineState())


def test_a_partial_preset_keeps_the_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[presets.house]\nprompt_b = "deep house"\nbpm = 124\n', encoding="utf-8")
    hub = Hub(EngineState(alpha=0.4), presets=PresetStore(path))
    hub.submit(RecallPreset("house"))
    assert (hub.state.prompt_b, hub.state.bpm, hub.state.alpha) == ("deep house", 124.0, 0.4)
    with pytest.raises(ControlError, match="no preset named 'techno'; known: house"):
        hub.submit(RecallPreset("techno"))


@pytest.mark.parametrize(("text", "fragment"), [
    ("[presets.x]\nalpha = 3.0\n", "alpha must be in [0, 1], got 3.0"),
    ("[presets.x]\nvolume = 3\n", "unknown parameter 'volume'"),
    ("presets = 3\n", "must be a table"),
    ("[presets\n", "cannot read presets"),
])
def test_a_bad_preset_file_is_refused_at_load(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        PresetStore(path)
    assert fragment in str(info.value)


def test_recall_by_osc_and_by_program_change(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[presets.dub]\nprompt_a = "dub techno"\nalpha = 0.5\n', encoding="utf-8")
    hub = Hub(presets=PresetStore(path))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    with OscServer(hub, port=0, reply_port=rx.getsockname()[1]) as server:
        client = SimpleUDPClient(*server.address)
        client.send_message("/rb/preset", "dub")
        client.send_message("/rb/alpha", [])
        [answer], _ = decode(rx.recv(65536))
        assert (answer.address, answer.params) == ("/rb/alpha", [0.5])
        client.send_message("/rb/preset", "nope")
        [error], _ = decode(rx.recv(65536))
        assert error.address == "/rb/error" and "no preset named 'nope'" in error.params[1]
    rx.close()
    hub.submit(SetParam("alpha", 0.0))
    control = MidiControl(hub, MidiMapper(parse_map({"program": [{"program": 5,
                                                                  "preset": "dub"}]})))
    control(mido.Message("program_change", program=5), 0.0)
    assert hub.state.alpha == 0.5


def test_pattern_files_must_lie_inside_the_seed_folder(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    (seeds / "kits").mkdir(parents=True)
    (seeds / "kits" / "groove.png").write_bytes(b"png")
    (tmp_path / "outside.png").write_bytes(b"png")
    (seeds / "escape.png").symlink_to(tmp_path / "outside.png")
    hub = Hub(seed_dir=seeds, pattern_names=["four-on-the-floor"])
    hub.submit(SetParam("pattern", "kits/groove.png"))
    assert hub.state.pattern == "kits/groove.png"
    for bad, fragment in [("escape.png", "outside the seed folder"),
                          ("missing.png", "not found"), ("../outside.png", "inside the seed"),
                          ("polka", "unknown pattern")]:
        with pytest.raises(ControlError, match=fragment):
            hub.submit(SetParam("pattern", bad))
    assert hub.state.pattern == "kits/groove.png"


def test_osc_spec_cli_prints_the_table_as_json_and_text() -> None:
    run = [sys.executable, "-m", "riffbridge", "osc-spec"]
    data = json.loads(subprocess.run([*run, "--json"], check=True, capture_output=True,
                                     text=True, timeout=60).stdout)
    assert data["max_prompt_chars"] == 500
    assert [a["address"] for a in data["addresses"]] == [a.address for a in OSC_SPEC]
    table = subprocess.run(run, check=True, capture_output=True, text=True, timeout=60).stdout
    assert "/rb/alpha" in table and "0..1" in table and "beat | bar | loop" in table
