"""`riffbridge doctor`: check what `serve` needs (torch and the GPU, the model, the audio device,
MIDI, the output folder, Ableton Link) and say what to fix. Exit 1 when a check failed.

Nothing is downloaded, no weights are loaded and nothing is left behind in the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from riffbridge.cli.devices import MIDI_APIS, midi_report

Status = Literal["ok", "warn", "fail"]
DEFAULT_OUT_DIR = "out"
TINY_FIX = "--model tiny for a plumbing check with random weights"
TORCH_FIX = "pip install torch (a CUDA build: https://pytorch.org/get-started/locally/)"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def add_parser(sub: argparse._SubParsersAction) -> None:
    from riffbridge.params import DEFAULT_MODEL

    p = sub.add_parser(
        "doctor", help="check torch, the GPU, the model, audio, MIDI and the output folder",
        description="Check what `riffbridge serve` needs and say what to fix. Downloads nothing "
        "and loads no weights. Exit code 1 when a check failed.")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="hub id, diffusers folder, .ckpt/.safetensors file, or tiny")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--audio-out", default=None, metavar="NAME|INDEX|none",
                   help="audio device to check (default: the system default); none = files only")
    p.add_argument("--midi-api", default="auto", choices=MIDI_APIS,
                   help="MIDI backend: auto (JACK when a server runs, else the system's), "
                   "jack or default")
    p.add_argument("--out-dir", type=Path, default=Path(DEFAULT_OUT_DIR),
                   help=f"output folder to check (default: ./{DEFAULT_OUT_DIR}); none = no files")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = run_checks(model=args.model, device=args.device, audio_out=args.audio_out,
                        midi_api=args.midi_api, out_dir=args.out_dir)
    failed = sum(c.status == "fail" for c in checks)
    if args.json:
        print(json.dumps({"ok": failed == 0, "checks": [asdict(c) for c in checks]}, indent=1))
    else:
        for c in checks:
            print(f"{c.status:<5} {c.name:<12} {c.detail}")
            if c.fix and c.status != "ok":
                print(f"      fix: {c.fix}")
        warned = sum(c.status == "warn" for c in checks)
        print(f"{failed} failed, {warned} warning{'s' * (warned != 1)}")
    return 1 if failed else 0


def run_checks(*, model: str, device: str = "auto", audio_out: str | None = None,
               midi_api: str = "auto", out_dir: Path = Path(DEFAULT_OUT_DIR)) -> list[Check]:
    steps: list[Callable[[], Check]] = [
        check_python, check_torch, lambda: check_device(device), lambda: check_model(model),
        lambda: check_audio(audio_out), lambda: check_midi(midi_api),
        lambda: check_out_dir(out_dir), check_link]
    return [step() for step in steps]


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("python", "ok", f"{version} ({sys.executable})")


def check_torch() -> Check:
    try:
        import torch
    except ImportError as exc:
        return Check("torch", "fail", f"cannot import torch ({exc})", TORCH_FIX)
    return Check("torch", "ok", str(torch.__version__))


def check_device(name: str) -> Check:
    from riffbridge.errors import RiffbridgeError

    try:
        import torch

        from riffbridge.torch_device import resolve_device

        device = resolve_device(name)
    except ImportError:
        return Check("device", "fail", "torch is not installed", TORCH_FIX)
    except RiffbridgeError as exc:
        return Check("device", "fail", f"--device {name}: {exc}",
                     "use --device auto, or install a torch build for that device")
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return Check("device", "ok", f"cuda:{index} {props.name}, "
                     f"{props.total_memory / 2**30:.1f} GiB (CUDA {torch.version.cuda})")
    if device.type == "mps":
        return Check("device", "ok", "mps (Apple GPU)")
    return Check("device", "warn", "CPU only: rendering will be slow; a CUDA GPU is recommended",
                 "run on a machine with an NVIDIA GPU and a CUDA build of torch "
                 f"(https://pytorch.org/get-started/locally/), or use {TINY_FIX}")


def _model_fix(model: str) -> str:
    from riffbridge.params import DEFAULT_MODEL

    hub_id = model if _looks_like_hub_id(model) else DEFAULT_MODEL
    offline = ("unset HF_HUB_OFFLINE and " if os.environ.get("HF_HUB_OFFLINE", "")
               not in ("", "0") else "")
    return (f"{offline}run once with internet to download it (`huggingface-cli download "
            f"{hub_id}`, about 4 GB), or pass --model PATH (a diffusers folder or a single "
            f".ckpt/.safetensors file), or {TINY_FIX}")


def _looks_like_hub_id(model: str) -> bool:
    # the same rule as render/model.py's load_components
    return not (model.startswith((".", "/", "~")) or (os.sep in model and model.count("/") != 1))


def _folder_missing(folder: Path) -> list[str]:
    """What ``_load_folder`` needs and ``folder`` lacks."""
    missing = [f"{sub}/ weights" for sub in ("unet", "vae", "text_encoder")
               if not any((folder / sub).glob("*.safetensors"))
               and not any((folder / sub).glob("*.bin"))]
    if not (folder / "tokenizer").is_dir():
        missing.append("tokenizer/")
    if not (folder / "scheduler" / "scheduler_config.json").is_file():
        missing.append("scheduler/scheduler_config.json")
    return missing


def _cached_snapshot(repo: str, patterns: list[str]) -> Path | None:
    """The Hugging Face cache folder of ``repo``, without any network access."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError and kin: not in the cache
        return None


def check_model(model: str) -> Check:
    from riffbridge.render.model import TOKENIZER_FIX, _hf_cache_dir, find_tokenizer

    if model in ("tiny", "sd15-random"):
        return Check("model", "ok", f"{model}: random weights, built in (makes noise, not music)")
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix.lower() not in (".ckpt", ".safetensors"):
            return Check("model", "fail", f"{path} is not a .ckpt or .safetensors file",
                         _model_fix(model))
        if find_tokenizer(path) is None:
            return Check("model", "fail", f"{path}: a single checkpoint file carries no "
                         f"tokenizer, and none is next to it ({path.parent / 'tokenizer'}) or "
                         f"cached in {_hf_cache_dir()}", TOKENIZER_FIX)
        return Check("model", "ok", f"{path} ({path.stat().st_size / 2**30:.1f} GiB)")
    if path.is_dir():
        missing = _folder_missing(path)
        if missing:
            return Check("model", "fail", f"{path} is not a diffusers model folder (no "
                         f"{', '.join(missing)})", _model_fix(model))
        return Check("model", "ok", f"{path} (diffusers folder)")
    if not _looks_like_hub_id(model):
        return Check("model", "fail", f"{model}: no such file or folder", _model_fix(model))
    snapshot = _cached_snapshot(model, ["*.json", "*.txt", "unet/*.safetensors",
                                        "vae/*.safetensors", "text_encoder/*.safetensors"])
    if snapshot is None:
        return Check("model", "fail", f"{model} is not in the Hugging Face cache "
                     f"({_hf_cache_dir()})", _model_fix(model))
    missing = _folder_missing(snapshot)
    if missing:
        return Check("model", "fail", f"{model} is only partly cached in {snapshot} (no "
                     f"{', '.join(missing)})", _model_fix(model))
    return Check("model", "ok", f"{model} (cached in {snapshot})")


def check_audio(spec: str | None) -> Check:
    from riffbridge.errors import DeviceError
    from riffbridge.outputs.devices import INSTALL_PORTAUDIO, PORTAUDIO_MISSING, find_output

    if spec is not None and spec.strip().lower() == "none":
        return Check("audio-out", "ok", "none: file output only")
    try:
        device = find_output(spec)
    except DeviceError as exc:
        if str(exc).startswith(PORTAUDIO_MISSING):
            return Check("audio-out", "fail", "the PortAudio library cannot load",
                         INSTALL_PORTAUDIO)
        return Check("audio-out", "fail", str(exc), "pass --audio-out INDEX or NAME from "
                     "`riffbridge devices`, or --audio-out none to write files only")
    return Check("audio-out", "ok", f"{device.label()}, {device.max_output_channels} ch, "
                 f"{device.default_samplerate:g} Hz{' (default)' * device.is_default}")


def check_midi(api: str) -> Check:
    report = midi_report(api)
    if report["error"]:
        return Check("midi", "warn", f"unavailable ({report['error']})", report["fix"])
    inputs = report["inputs"]
    return Check("midi", "ok", f"{len(inputs)} input{'s' * (len(inputs) != 1)}"
                 + (f": {', '.join(inputs)}" if inputs else " (a virtual input still works)"))


def _writable(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (and is removed again), else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".riffbridge-doctor-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(name)
    return None


def check_out_dir(out_dir: Path) -> Check:
    if str(out_dir).lower() == "none":  # serve --out-dir none: audio only, no files
        return Check("out-dir", "ok", "none: no files written")
    path = out_dir.expanduser()
    fix = "pass --out-dir a folder you can write to"
    if path.exists() and not path.is_dir():
        return Check("out-dir", "fail", f"{path} exists but is not a folder",
                     f"{fix}, or move {path} out of the way")
    if path.is_dir():
        existing, note = path, "exists"
    else:
        existing = path.absolute().parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            return Check("out-dir", "fail", f"{path} cannot be created: {existing} is a file",
                         fix)
        note = f"will be created (in {existing})"
    problem = _writable(existing)
    if problem is not None:
        return Check("out-dir", "fail", f"{path}: cannot write in {existing} ({problem})",
                     f"{fix}, or fix the permissions of {existing}")
    free_gib = shutil.disk_usage(existing).free / 2**30
    if free_gib < 1:
        return Check("out-dir", "warn", f"{path} {note}, only {free_gib:.2f} GiB free",
                     "free some space: each loop is a few MB")
    return Check("out-dir", "ok", f"{path} {note}, writable, {free_gib:.0f} GiB free")


def check_link() -> Check:
    from importlib.metadata import PackageNotFoundError, version

    try:
        import aalink  # noqa: F401
    except ImportError:
        return Check("link", "warn", "aalink not installed: no Ableton Link tempo sync",
                     "optional: pip install 'riffbridge[link]'")
    try:
        return Check("link", "ok", f"aalink {version('aalink')} (Ableton Link)")
    except PackageNotFoundError:
        return Check("link", "ok", "aalink (Ableton Link)")
