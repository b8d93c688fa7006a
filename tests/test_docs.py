"""The generated docs: docs/osc.md and the marked sections of docs/configuration.md and
docs/midi.md equal what scripts/make_docs.py makes from the parameter table now, every setting
and every `serve` flag is in the configuration tables, and the page's examples are real."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from riffbridge import config
from riffbridge import params as P
from riffbridge.cli import serve
from riffbridge.control.midi_map import parse_map
from riffbridge.control.osc_spec import OSC_SPEC
from riffbridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = ROOT / "docs" / "configuration.md"
MIDI = ROOT / "docs" / "midi.md"


def _load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


DOCS = _load_script("make_docs")


def _section(path: Path, name: str) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"<!-- BEGIN GENERATED: {name}\b.*?-->\n(.*?)<!-- END GENERATED: {name} -->",
                      text, re.DOTALL)
    assert match, f"{path.name} has no generated section {name}"
    return match.group(1)


def _rows(section: str) -> dict[str, list[str]]:
    """A Markdown table's rows by their first cell (without backticks); `\\|` stays in a cell."""
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0].strip("`")] = cells
    return rows


@pytest.mark.parametrize("path", sorted(DOCS.generated()))
def test_committed_docs_equal_the_generator_output(path: str) -> None:
    assert (ROOT / path).read_text(encoding="utf-8") == DOCS.generated()[path], (
        f"{path} is stale: run .venv/bin/python scripts/make_docs.py")


def test_osc_docs_list_every_address_and_name_the_parameter_table() -> None:
    text = DOCS.osc_md()
    assert "riffbridge/params.py" in text.split("-->")[0]
    for entry in OSC_SPEC:
        assert f"`{entry.address}`" in text
    rows = _rows(text.split("## Commands")[0])
    for param in P.LIVE:
        assert param.osc in rows, param.name


def test_every_setting_with_a_flag_is_in_the_flags_table_with_its_key_and_default() -> None:
    table = _rows(_section(CONFIGURATION, "flags"))
    rows = {flag.split()[0]: cells for flag, cells in table.items()}
    with_flag = [p for p in P.SETTINGS if p.cli_flag]
    assert with_flag and {p.cli_flag for p in with_flag} <= set(rows)
    for param in with_flag:
        flag, key, default, *_ = rows[param.cli_flag]
        assert key == f"`{param.key}`", param.name
        if param.kind in ("int", "float"):
            assert float(default.split()[0]) == param.default, param.name
        elif param.kind == "str" and param.default:
            assert default == f"`{param.default}`", param.name
        if param.kind != "bool":
            assert flag == f"`{param.cli_flag} {param.metavar or param.key.upper()}`".replace(
                "|", "\\|")


def test_every_config_only_setting_is_in_the_file_keys_table_and_no_other() -> None:
    rows = _rows(_section(CONFIGURATION, "file-keys"))
    assert set(rows) == {p.key for p in P.SETTINGS if not p.cli_flag}
    assert rows  # grid, render_timeout, setlist today


def test_every_serve_flag_is_documented_and_every_documented_flag_exists() -> None:
    """The real `serve` parser's flags, the two that are not params included."""
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {o for a in action.choices["serve"]._actions for o in a.option_strings
               if o.startswith("--") and o != "--help"}
    documented = {flag.split()[0] for flag in _rows(_section(CONFIGURATION, "flags"))}
    assert options == documented
    assert {"--config", "--for-seconds"} == options - {p.cli_flag for p in P.SETTINGS}


def test_every_live_param_is_in_the_params_table_with_its_address_and_key() -> None:
    rows = _rows(_section(CONFIGURATION, "params"))
    assert set(rows) == {p.name for p in P.LIVE}
    for param in P.LIVE:
        _, osc, names, *_rest, sound = rows[param.name]
        assert osc == f"`{param.osc}`"
        assert f"`{param.key}`" in names
        assert not param.cli_flag or f"`{param.cli_flag}`" in names  # slot params: file only
        assert (sound == "yes") == param.sound


def test_the_key_names_paragraph_names_every_renamed_key() -> None:
    text = " ".join(_section(CONFIGURATION, "keys").split())
    for param in P.SETTINGS:
        if param.cli_flag and param.cli_flag != "--" + param.key.replace("_", "-"):
            assert f"`{param.key}` (`{param.cli_flag}`" in text, param.name
    for param in P.LIVE:
        if param.key != param.name:
            assert f"`{param.name}`" in text and f"`{param.key}`" in text


def test_knob_targets_are_the_numeric_and_choice_live_params_and_a_map_takes_each() -> None:
    rows = _rows(_section(MIDI, "knob-targets"))
    expected = {p.name for p in P.LIVE if p.kind in ("int", "float") or p.choices}
    assert set(rows) == expected
    midi_map = parse_map({"cc": [{"control": n, "param": name}
                                 for n, name in enumerate(sorted(rows))]})
    assert {target.param for _, _, target in midi_map.cc} == expected
    for param in P.LIVE:
        if param.name not in expected:
            with pytest.raises(ConfigError, match="text"):
                parse_map({"cc": [{"control": 1, "param": param.name}]})


def test_notes_name_params_of_the_table() -> None:
    assert set(DOCS.NOTES) <= set(P.BY_NAME)


def test_the_example_config_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    example = re.search(r"```toml\n(# riffbridge.toml\n.*?)```", text, re.DOTALL)
    assert example
    (tmp_path / "riffbridge.toml").write_text(example.group(1), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    conf = config.build("riffbridge.toml")
    assert conf.bars == 4 and conf.auto == 0.125 and len(conf.setlist) == 2


def test_the_error_examples_are_what_riffbridge_says(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    shown = [line.removeprefix("riffbridge: error: ").removesuffix("...")
             for line in text.splitlines() if line.startswith("riffbridge: error: ")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "riffbridge.toml").write_text("bmp = 96\n", encoding="utf-8")
    said = []
    for attempt in (lambda: config.build(None, {"quantum": "bars"}),
                    lambda: config.build("riffbridge.toml")):
        with pytest.raises(ConfigError) as exc:
            attempt()
        said.append(str(exc.value))
    assert len(shown) == len(said)
    for line, message in zip(shown, said, strict=True):
        assert message.startswith(line), (line, message)


def test_check_finds_a_stale_page_and_a_run_repairs_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    monkeypatch.setattr(DOCS, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["make_docs.py", "--check"])
    assert DOCS.main() == 0
    page = tmp_path / "docs" / "configuration.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `--bars N` |", "| `--bar N` |"),
                    encoding="utf-8")
    assert DOCS.main() == 1
    assert "docs/configuration.md" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["make_docs.py"])
    assert DOCS.main() == 0
    monkeypatch.setattr(sys, "argv", ["make_docs.py", "--check"])
    assert DOCS.main() == 0


def test_a_page_without_its_markers_is_refused() -> None:
    with pytest.raises(SystemExit, match="flags"):
        DOCS.fill("# Configuration\n\nno markers here\n",
                  DOCS.SECTIONS["docs/configuration.md"], "docs/configuration.md")
