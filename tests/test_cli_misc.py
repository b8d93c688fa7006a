"""The command line's paper cuts: a reader that leaves early, one-line argument errors, and no
diffusers noise at start."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from riffbridge import cli


def _closed_pipe_run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run riffbridge with stdout on a pipe whose reader is already gone (`| head` that quit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "riffbridge", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [("osc-spec",), ("osc-spec", "--json"), ("serve", "--help")])
def test_a_reader_that_leaves_early_ends_the_command_quietly(args: tuple[str, ...]) -> None:
    result = _closed_pipe_run(*args)
    assert result.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert result.returncode in (0, cli.BROKEN_PIPE_EXIT)
    if args[-1] != "--help":  # argparse's help exits 0 before main sees the pipe
        assert result.returncode == cli.BROKEN_PIPE_EXIT


def test_osc_spec_into_head_prints_its_first_lines() -> None:
    head = subprocess.run(f"'{sys.executable}' -m riffbridge osc-spec | head -n 2",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert head.stdout.splitlines()[0].startswith("address")
    assert len(head.stdout.splitlines()) == 2 and "Traceback" not in head.stderr


@pytest.mark.parametrize(("argv", "words"), [
    (["serve", "--osc-port", "abc"],
     ["--osc-port must be a whole number in [1, 65535], got 'abc'", "riffbridge serve --help"]),
    (["serve", "--bpm", "fast"], ["--bpm must be a number in [40, 240], got 'fast'"]),
    (["serve", "--for-seconds", "x"], ["--for-seconds must be a number, got 'x'"]),
    (["serve", "--bpm"], ["--bpm: expected one argument"]),
    (["bench", "--dtype", "fp8"], ["--dtype", "'fp8'", "fp16", "riffbridge bench --help"]),
    (["render"], ["required: output", "riffbridge render --help"]),
    (["no-such-command"], ["'no-such-command'", "serve", "riffbridge --help"]),
    (["serve", "--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
])
def test_argument_errors_are_one_line_naming_the_flag_and_value(
        argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("riffbridge: error: ") and "usage:" not in captured.err
    for word in words:
        assert word in lines[0], lines[0]
    assert captured.out == ""


def test_a_bad_flag_through_the_real_command_exits_2_with_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "riffbridge", "serve", "--osc-port", "abc"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "riffbridge: error: --osc-port must be a whole number in [1, 65535], got 'abc'; see "
        "`riffbridge serve --help`"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_casting_the_model_prints_no_empty_float32_warning(
        capfd: pytest.CaptureFixture[str]) -> None:
    import torch

    from riffbridge.render import components
    from riffbridge.render.tiny import build_tiny

    # diffusers' loggers do not propagate to the root: listen on the one that warns.
    modeling = logging.getLogger(components._DIFFUSERS_MODELING)
    records = _Records()
    modeling.addHandler(records)
    try:
        parts = build_tiny()
        parts.to("cpu", torch.bfloat16)  # a real cast, as on a GPU with fp16
        parts.to("cpu", torch.float32)
        assert parts.unet.dtype == torch.float32
        assert not [m for m in records.messages if "kept in float32" in m]
        assert "should be kept in float32" not in capfd.readouterr().err
        # Narrow: a model that does keep modules in fp32 still warns, and only while casting.
        with components._quiet_empty_fp32_warning():
            modeling.warning("There are modules in X that should be kept in float32: ['norm'].")
        assert any("['norm']" in m for m in records.messages)
        assert components._not_the_empty_fp32_warning not in modeling.filters
    finally:
        modeling.removeHandler(records)


def test_render_with_the_tiny_model_prints_no_diffusers_warning(tmp_path: Path) -> None:
    out = tmp_path / "loop.wav"
    result = subprocess.run(
        [sys.executable, "-m", "riffbridge", "render", str(out), "--model", "tiny", "--device",
         "cpu", "--steps", "1", "--width", "64"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "kept in float32" not in result.stderr + result.stdout
    assert out.exists()
