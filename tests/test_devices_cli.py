"""`riffbridge devices` and `riffbridge doctor`, and the audio-device lookup under them, through
real PortAudio (JACK devices when a JACK server runs), real MIDI backends, a real Hugging Face
cache layout and real folders."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jack_check import NO_JACK, jack_running

from riffbridge.cli import main
from riffbridge.errors import DeviceError
from riffbridge.outputs.devices import AudioDevice, find_output, list_outputs

ROOT = Path(__file__).resolve().parents[1]




def _portaudio_loads() -> bool:
    try:
        list_outputs()
    except DeviceError:
        return False
    return True


JACK = jack_running()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def _doctor_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code, out = _run(capsys, "doctor", "--json", *argv)
    report = json.loads(out)
    return code, {c["name"]: c for c in report["checks"]} | {"ok": report["ok"]}


# --- the audio-device boundary ---------------------------------------------------------------

@pytest.mark.skipif(_portaudio_loads(), reason="PortAudio is installed here")
def test_without_portaudio_the_error_says_what_to_install() -> None:
    with pytest.raises(DeviceError, match="libportaudio2") as info:
        find_output(None)
    assert "brew install portaudio" in str(info.value)


@pytest.mark.skipif(not _portaudio_loads() or JACK,
                    reason="needs PortAudio and no JACK server (a machine without outputs)")
def test_no_outputs_at_all_suggests_file_only_output() -> None:
    if list_outputs():
        pytest.skip("this machine has audio outputs")
    with pytest.raises(DeviceError, match="--audio-out none"):
        find_output("anything")


@pytest.mark.jack
@pytest.mark.skipif(not JACK, reason=NO_JACK)
def test_jack_outputs_are_listed_as_frozen_values() -> None:
    outputs = list_outputs()
    assert outputs and all(isinstance(d, AudioDevice) for d in outputs)
    assert all(d.max_output_channels > 0 and d.default_samplerate > 0 for d in outputs)
    assert sum(d.is_default for d in outputs) <= 1
    assert any("JACK" in d.hostapi for d in outputs)
    with pytest.raises(AttributeError):
        outputs[0].name = "x"  # type: ignore[misc]


@pytest.mark.jack
@pytest.mark.skipif(not JACK, reason=NO_JACK)
def test_find_output_by_default_index_digits_and_name() -> None:
    default = find_output(None)
    assert default.is_default and find_output("default") == default
    jack = next(d for d in list_outputs() if "JACK" in d.hostapi)
    assert find_output(jack.index) == jack
    assert find_output(str(jack.index)) == jack
    assert find_output(jack.name) == jack
    assert find_output(jack.name.upper()) == jack


@pytest.mark.jack
@pytest.mark.skipif(not JACK, reason=NO_JACK)
def test_unknown_name_and_index_name_the_value_and_list_the_outputs() -> None:
    names = [d.name for d in list_outputs()]
    with pytest.raises(DeviceError) as info:
        find_output("no-such-device-xyz")
    message = str(info.value)
    assert "'no-such-device-xyz'" in message and "riffbridge devices" in message
    assert all(repr(n) in message for n in names)
    with pytest.raises(DeviceError, match="index 9999"):
        find_output(9999)
    with pytest.raises(DeviceError, match="index 9999"):
        find_output("9999")


@contextlib.contextmanager
def _jack_clients(*names: str) -> Iterator[None]:
    """JACK clients with two audio input ports each: PortAudio shows them as output devices."""
    procs = [subprocess.Popen(["jack_thru", name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for name in names]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ports = subprocess.run(["jack_lsp"], capture_output=True, text=True).stdout
            if all(f"{n}:input_1" in ports for n in names):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"jack_thru clients {names} did not appear: {ports}")
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.jack
@pytest.mark.skipif(not JACK or not shutil.which("jack_thru"),
                    reason="needs a running JACK server and jack_thru (Debian jackd2)")
def test_substring_matches_one_device_and_an_ambiguous_one_lists_the_candidates() -> None:
    prefix = f"rbtest{os.getpid()}"
    # PortAudio reads the device list at start, so a fresh process sees the new clients
    script = ("import json, sys\nfrom riffbridge.errors import DeviceError\n"
              "from riffbridge.outputs.devices import find_output\n"
              "for spec in sys.argv[1:]:\n"
              "    try: print(json.dumps({'name': find_output(spec).name}))\n"
              "    except DeviceError as e: print(json.dumps({'error': str(e)}))\n")
    with _jack_clients(f"{prefix}-alpha", f"{prefix}-beta"):
        result = subprocess.run(
            [sys.executable, "-c", script, f"{prefix.upper()}-ALP", prefix],
            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    one, ambiguous = (json.loads(line) for line in result.stdout.splitlines())
    assert one == {"name": f"{prefix}-alpha"}
    assert "ambiguous" in ambiguous["error"] and f"'{prefix}'" in ambiguous["error"]
    assert f"{prefix}-alpha" in ambiguous["error"] and f"{prefix}-beta" in ambiguous["error"]


# --- riffbridge devices ------------------------------------------------------------------------

def test_devices_json_has_audio_outputs_and_midi_inputs(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    code, out = _run(capsys, "devices", "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"audio", "midi"}
    assert isinstance(report["audio"]["outputs"], list)
    if report["audio"]["error"] is None:
        assert [AudioDevice(**d) for d in report["audio"]["outputs"]] == list_outputs()
    else:
        assert "PortAudio" in report["audio"]["error"]
    midi = report["midi"]
    assert midi["api"] == "auto" and isinstance(midi["inputs"], list)
    assert (midi["error"] is None) == (midi["fix"] is None)


def test_devices_table_reports_a_midi_backend_that_cannot_open(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "devices", "--midi-api", "jack")
    assert code == 0
    assert "Audio outputs" in out and "MIDI inputs (--midi-in NAME, api jack)" in out
    if not JACK:
        assert "MIDI: unavailable (no JACK server for MIDI" in out
        assert "start jackd" in out


@pytest.mark.jack
@pytest.mark.skipif(not JACK, reason=NO_JACK)
def test_devices_table_shows_the_jack_output_and_a_jack_midi_source(
        capsys: pytest.CaptureFixture[str]) -> None:
    import mido

    from riffbridge.control.midi_port import JACK_BACKEND

    name = f"rbtest-src-{os.getpid()}"
    with mido.Backend(JACK_BACKEND, load=True).open_output(name, virtual=True):
        code, out = _run(capsys, "devices", "--midi-api", "jack")
        json_code, json_out = _run(capsys, "devices", "--midi-api", "jack", "--json")
    assert code == json_code == 0
    default = find_output(None)
    row = next(line for line in out.splitlines() if line.strip().startswith("*"))
    assert default.name in row and "JACK" in row and "Hz" in row
    assert any(name in line for line in out.splitlines()[out.splitlines().index(
        "MIDI inputs (--midi-in NAME, api jack):"):])
    assert any(name in n for n in json.loads(json_out)["midi"]["inputs"])


def test_devices_json_from_a_separate_process() -> None:
    result = subprocess.run([sys.executable, "-m", "riffbridge", "devices", "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"outputs", "error"} <= set(report["audio"])
    assert {"inputs", "error", "fix"} <= set(report["midi"])


# --- riffbridge doctor -------------------------------------------------------------------------

def test_doctor_with_a_missing_model_fails_and_says_what_to_pass(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = _run(capsys, "doctor", "--model", "/nonexistent", "--audio-out", "none",
                     "--out-dir", str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    model = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["model"])
    assert lines[model].startswith("fail  model        /nonexistent")
    fix = lines[model + 1]
    assert fix.startswith("      fix: ") and "--model tiny" in fix and "--model PATH" in fix
    assert lines[-1].startswith("1 failed")


def test_doctor_passes_the_tiny_model_file_output_and_a_tmp_folder(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, checks = _doctor_json(capsys, "--model", "tiny", "--audio-out", "none",
                                "--out-dir", str(tmp_path))
    assert code == 0 and checks.pop("ok") is True
    assert list(checks) == ["python", "torch", "device", "model", "audio-out", "midi",
                            "out-dir", "link"]
    for name in ("python", "torch", "model", "audio-out", "out-dir"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["audio-out"]["detail"] == "none: file output only"
    for check in checks.values():
        assert check["status"] in ("ok", "warn")
        assert (check["fix"] is not None) == (check["status"] != "ok"), check
    assert list(tmp_path.iterdir()) == []  # the write test left nothing behind


def test_doctor_out_dir_that_is_a_file_fails_with_a_fix(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("not a folder")
    code, checks = _doctor_json(capsys, "--model", "tiny", "--audio-out", "none",
                                "--out-dir", str(target))
    assert code == 1 and checks["ok"] is False
    assert checks["out-dir"]["status"] == "fail"
    assert "is not a folder" in checks["out-dir"]["detail"]
    assert "--out-dir" in checks["out-dir"]["fix"] and str(target) in checks["out-dir"]["fix"]
    code, checks = _doctor_json(capsys, "--model", "tiny", "--audio-out", "none",
                                "--out-dir", str(target / "below"))
    assert code == 1 and "is a file" in checks["out-dir"]["detail"]


def test_doctor_does_not_create_a_missing_out_dir(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    code, checks = _doctor_json(capsys, "--model", "tiny", "--audio-out", "none",
                                "--out-dir", str(target))
    assert code == 0 and checks["out-dir"]["status"] == "ok"
    assert f"will be created (in {tmp_path})" in checks["out-dir"]["detail"]
    assert list(tmp_path.iterdir()) == []
    _, checks = _doctor_json(capsys, "--model", "tiny", "--audio-out", "none", "--out-dir", "none")
    assert checks["out-dir"] == {"name": "out-dir", "status": "ok",
                                 "detail": "none: no files written", "fix": None}


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root (or no POSIX permissions) can write anywhere")
def test_doctor_out_dir_without_write_permission_fails(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        code, checks = _doctor_json(capsys, "--model", "tiny", "--audio-out", "none",
                                    "--out-dir", str(locked / "out"))
    finally:
        locked.chmod(0o700)
    assert code == 1 and "cannot write in" in checks["out-dir"]["detail"]
    assert "permissions" in checks["out-dir"]["fix"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from riffbridge.render.tiny import build_tiny

    return build_tiny().save(tmp_path_factory.mktemp("tiny") / "model")


def test_doctor_model_folder_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       tiny_folder: Path) -> None:
    args = ("--audio-out", "none", "--out-dir", str(tmp_path))
    _, checks = _doctor_json(capsys, "--model", str(tiny_folder), *args)
    assert checks["model"]["status"] == "ok" and "diffusers folder" in checks["model"]["detail"]
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, checks = _doctor_json(capsys, "--model", str(empty), *args)
    assert code == 1 and "unet/ weights" in checks["model"]["detail"]
    assert "--model tiny" in checks["model"]["fix"]
    text = tmp_path / "weights.txt"
    text.write_text("x")
    _, checks = _doctor_json(capsys, "--model", str(text), *args)
    assert "not a .ckpt or .safetensors" in checks["model"]["detail"]


def test_doctor_finds_a_hub_model_in_the_cache_without_downloading(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_folder: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    commit = "0" * 40
    repo = cache / "models--rbtest--tiny-model"
    shutil.copytree(tiny_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any network access would fail the check
    args = ("--audio-out", "none", "--out-dir", str(tmp_path))
    _, checks = _doctor_json(capsys, "--model", "rbtest/tiny-model", *args)
    assert checks["model"]["status"] == "ok", checks["model"]
    assert str(cache) in checks["model"]["detail"]
    code, checks = _doctor_json(capsys, "--model", "rbtest/not-downloaded", *args)
    assert code == 1 and "not in the Hugging Face cache" in checks["model"]["detail"]
    fix = checks["model"]["fix"]
    assert "unset HF_HUB_OFFLINE" in fix and "huggingface-cli download rbtest/not-downloaded" in fix


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_doctor_device_cuda_without_cuda_fails(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    code, checks = _doctor_json(capsys, "--model", "tiny", "--device", "cuda",
                                "--audio-out", "none", "--out-dir", str(tmp_path))
    assert code == 1 and checks["device"]["status"] == "fail"
    assert "CUDA is not available" in checks["device"]["detail"]


def test_doctor_audio_out_unknown_device_fails(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    code, checks = _doctor_json(capsys, "--model", "tiny", "--audio-out", "no-such-device-xyz",
                                "--out-dir", str(tmp_path))
    assert code == 1 and checks["audio-out"]["status"] == "fail"
    if JACK:
        assert "'no-such-device-xyz'" in checks["audio-out"]["detail"]
        assert "--audio-out none" in checks["audio-out"]["fix"]
