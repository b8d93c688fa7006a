"""Presets in TOML (read back with the standard library's own parser), recalled over OSC, by a
program change, and refused cleanly; the seed-folder rule for pattern files; `osc-spec`."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from osc_helpers import Listener
from pythonosc.udp_client import SimpleUDPClient

from riffbridge import fsutil
from riffbridge.control.hub import Hub
from riffbridge.control.midi_map import MidiMapper, parse_map
from riffbridge.control.midi_port import MidiControl
from riffbridge.control.osc_server import OscServer
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


def test_recall_by_osc_and_by_program_change(tmp_path: Path, replies: Listener) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[presets.dub]\nprompt_a = "dub techno"\nalpha = 0.5\n', encoding="utf-8")
    hub = Hub(presets=PresetStore(path))
    with OscServer(hub, port=0, reply_port=replies.port) as server:
        client = SimpleUDPClient(*server.address)
        client.send_message("/rb/preset", "dub")
        client.send_message("/rb/alpha", [])
        assert replies.get() == ("/rb/alpha", [0.5])
        client.send_message("/rb/preset", "nope")
        address, args = replies.get()
        assert address == "/rb/error" and "no preset named 'nope'" in args[1]
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


# ---- hostile strings: the presets file must always be one the next start can read -------------

# Names and prompts that are allowed, and that a hand-made TOML writer gets wrong: quotes,
# backslashes, TOML syntax, Unicode line and paragraph separators, a BOM, C1-range letters that
# are not controls, astral characters, leading and trailing spaces, dots (a dotted key).
ALLOWED_NAMES = ['say "hi"', "back\\slash\\", "'''", '"""', "a.b.c", "[presets.x]", "k = 1",
                 "# not a comment", "line\u2028sep\u2029par", "\ufeffbom", "ünïcödé ½ ¡",
                 "emoji 🥁🎹", "  spaced  ", "presets", "x" * 200, "\u00a0nbsp", "tab-less"]
ALLOWED_PROMPTS = ["a\tb", "two\nlines", "crlf\r\nend", 'quote " and \\ and \'\'\'',
                   "\u2028\u2029\ufeff\u00a0", "🎷" * 100, "y" * 500, "=\n[presets.evil]\n"]


def test_hostile_but_allowed_strings_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "presets.toml"
    store = PresetStore(path)
    expected = {}
    for i, name in enumerate(ALLOWED_NAMES):
        state = EngineState(prompt_a=ALLOWED_PROMPTS[i % len(ALLOWED_PROMPTS)],
                            prompt_b=ALLOWED_PROMPTS[(i + 3) % len(ALLOWED_PROMPTS)],
                            negative=name, alpha=i / 100)
        store.save(name, state)
        expected[name] = state.params()
    # the standard library's own parser reads every preset back, byte for byte
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert set(data["presets"]) == set(ALLOWED_NAMES)
    for name, values in expected.items():
        assert data["presets"][name] == values, name
    # and a fresh store (the next start) reads the same
    fresh = PresetStore(path)
    assert sorted(fresh.names()) == sorted(ALLOWED_NAMES)
    for name, values in expected.items():
        assert fresh.get(name) == values, name


CONTROLS = [chr(c) for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_a_control_character_in_a_preset_name_is_refused_and_the_file_kept(
        tmp_path: Path, char: str) -> None:
    path = tmp_path / "presets.toml"
    hub = Hub(presets=PresetStore(path))
    hub.submit(SavePreset("good"))
    before = path.read_bytes()
    for name in (f"del{char}name", char):
        with pytest.raises(ControlError, match=r"preset name must not contain control "
                                               r"characters|preset name must not be empty"):
            hub.submit(SavePreset(name))
        with pytest.raises(ControlError, match=r"control characters|must not be empty"):
            hub.presets.save(name, EngineState())  # type: ignore[union-attr]
    assert path.read_bytes() == before
    assert PresetStore(path).names() == ["good"]


PROMPT_CONTROLS = [chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]]


@pytest.mark.parametrize("char", PROMPT_CONTROLS,
                         ids=[f"U+{ord(c):04X}" for c in PROMPT_CONTROLS])
def test_a_control_character_in_a_prompt_is_refused(tmp_path: Path, char: str) -> None:
    path = tmp_path / "presets.toml"
    hub = Hub(presets=PresetStore(path))
    for param in ("prompt_a", "prompt_b", "negative"):
        with pytest.raises(ControlError, match=rf"{param} must not contain control characters "
                                               r"\(tab and newline are fine\), got .* at "
                                               r"position 4"):
            hub.submit(SetParam(param, f"funk{char}groove"))
    hub.submit(SavePreset("after"))
    assert PresetStore(path).get("after")["prompt_a"] == EngineState().prompt_a


@pytest.mark.parametrize("bad", [
    {"prompt_a": "del\x7finside"},  # a value no check stopped: the store's own guard
    {"alpha": math.nan},
    {"negative": "lone \ud800 surrogate"},
])
def test_a_save_that_would_not_read_back_is_refused_before_the_rename(
        tmp_path: Path, bad: dict[str, object]) -> None:
    path = tmp_path / "presets.toml"
    store = PresetStore(path)
    store.save("keep", EngineState(alpha=0.25))
    before = path.read_bytes()
    with pytest.raises(ControlError, match=rf"cannot save preset 'new'.*{path} is unchanged"):
        store.save("new", EngineState(**bad))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["presets.toml"]
    assert store.names() == ["keep"] and PresetStore(path).names() == ["keep"]


def test_a_writer_that_changes_a_value_is_caught(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from riffbridge.control import presets as presets_module

    path = tmp_path / "presets.toml"
    store = PresetStore(path)
    store.save("keep", EngineState(alpha=0.25))
    before = path.read_bytes()
    real = presets_module.dump_presets
    monkeypatch.setattr(presets_module, "dump_presets",
                        lambda p: real(p).replace("alpha = 0.5", "alpha = 0.625"))
    with pytest.raises(ControlError, match=r"preset\(s\) 'new' would not read back the same"):
        store.save("new", EngineState(alpha=0.5))
    assert path.read_bytes() == before


def test_preset_not_found_is_short_however_many_presets_there_are(tmp_path: Path) -> None:
    import tomli_w

    path = tmp_path / "many.toml"
    names = [f"groove {i:04d}" for i in range(1500)]
    path.write_text(tomli_w.dumps({"presets": {n: {"alpha": 0.5} for n in names}}),
                    encoding="utf-8")
    hub = Hub(presets=PresetStore(path))
    with pytest.raises(ControlError) as info:
        hub.submit(RecallPreset("groove 12345"))
    message = str(info.value)
    assert len(message) < 300, message
    assert "no preset named 'groove 12345'" in message and "1500" in message
    assert str(path) in message and "; closest: " in message and "groove 1234," in message
    assert message.count("groove ") <= 6  # the asked name and at most 5 near ones
    with pytest.raises(ControlError, match=r"^no preset named 'zzz' among the 1500 in \S+$"):
        hub.submit(RecallPreset("zzz"))
    empty = Hub(presets=PresetStore(tmp_path / "none.toml"))
    with pytest.raises(ControlError, match=r"holds none yet; save one with /rb/preset/save"):
        empty.submit(RecallPreset("x"))
