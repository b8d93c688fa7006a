"""Settings of `serve` that only make sense together are refused at the start, one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from riffbridge import cli
from riffbridge.config import build
from riffbridge.errors import ConfigError


def test_a_midi_map_that_does_not_exist_is_refused_even_without_a_midi_input(
        tmp_path: Path) -> None:
    missing = tmp_path / "my-map.toml"
    with pytest.raises(ConfigError, match=rf"^--midi-map {missing} not found; give a MIDI map "
                                          r"TOML file \(docs/midi.md\), or leave it out"):
        build(flags={"midi_map": str(missing)})
    with pytest.raises(ConfigError, match=r"--midi-map .* is a folder, not a file"):
        build(flags={"midi_map": str(tmp_path), "midi_in": "virtual"})
    config = tmp_path / "riffbridge.toml"
    config.write_text(f'midi_map = "{missing}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^config file {config}: midi_map {missing} not "
                                          r"found"):
        build(config)
    missing.write_text("", encoding="utf-8")
    assert build(config).midi_map == str(missing)
    assert build(flags={"midi_map": ""}).midi_map == ""  # empty: the built-in map


def test_clock_midi_needs_a_midi_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--clock midi needs --midi-in NAME: the MIDI clock "
                                          r"comes in on a MIDI input"):
        build(flags={"clock": "midi"})
    config = tmp_path / "riffbridge.toml"
    config.write_text('clock = "midi"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^config file {config}: clock midi needs --midi-in"):
        build(config)
    assert build(config, {"midi_in": "virtual"}).clock == "midi"
    assert build(flags={"clock": "link"}).clock == "link"


def test_serve_stops_with_one_line_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for flags, words in ((["--midi-map", str(tmp_path / "nope.toml")], ["nope.toml not found"]),
                         (["--clock", "midi"], ["--clock midi needs --midi-in NAME"])):
        code = cli.main(["serve", "--model", "tiny", "--audio-out", "none", "--out-dir",
                         str(out), *flags])
        err = capsys.readouterr().err.splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("riffbridge: error: ")
        for word in words:
            assert word in err[0]
    assert not out.exists()


def test_a_presets_file_in_a_folder_not_made_yet_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "later" / "presets.toml"
    assert build(flags={"presets": str(path)}).presets == str(path)
