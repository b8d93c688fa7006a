"""`riffbridge replay LOG --out set.wav`: render a recorded set again, offline.

Every loop the log names is rendered again through the one pipeline (``make_loop``), with the
same seeds, so with the same model and settings the same loops, or with more ``--steps``,
``--quality high`` or another ``--model`` the same set at studio quality; then the set is
assembled on the original samples with the same switches and crossfades
(``riffbridge.outputs.setlog.assemble``, the player's own code). Each rendered loop is kept
beside the output (``set.wav.loops/``), so a replay that is stopped resumes where it stopped.
Writes a plain 24-bit WAV (a set is not a loop: no loop chunks) and a cue sheet of the switches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riffbridge.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from riffbridge.engine.plan import LoopKey
    from riffbridge.outputs.setlog import SetLog

log = logging.getLogger("riffbridge.replay")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from riffbridge import params as P

    p = sub.add_parser("replay", help="render a recorded set again (serve --record's log)",
                       description="Render every loop of a recorded set again and assemble the "
                       "set on its original samples, with the same switches and crossfades.")
    p.add_argument("log", type=Path, help="the set log (the recording's path with .jsonl)")
    p.add_argument("--out", type=Path, required=True, help="the set's WAV file")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="diffusion steps for every loop (default: as recorded)")
    p.add_argument("--quality", choices=P.BY_NAME["quality"].choices, default=None,
                   help="spectrogram-to-audio quality (default: as recorded)")
    p.add_argument("--model", default=None, metavar="NAME|PATH",
                   help="model (default: the one recorded)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--dtype", default="auto", choices=P.BY_NAME["dtype"].choices)
    p.add_argument("--seed-dir", default=None, metavar="DIR",
                   help="seed folder for file patterns (default: as recorded)")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    from riffbridge import params as P

    if args.out.suffix.lower() != ".wav":
        raise ConfigError(f"--out must be a .wav file, got {str(args.out)!r}")
    if not args.out.parent.is_dir():
        raise ConfigError(f"the folder of {args.out} does not exist; create it first")
    if args.steps is not None:
        param = P.BY_NAME["steps"]
        if not param.minimum <= args.steps <= param.maximum:
            raise ConfigError(f"--steps must be in {param.range_text()}, got {args.steps}")


def loops_folder(out: Path) -> Path:
    return out.with_name(out.name + ".loops")


def _loop_id(key: LoopKey, how: dict[str, Any]) -> str:
    text = json.dumps({"key": key.sidecar(), **how}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from riffbridge.audio_io import write_audio
    from riffbridge.fsutil import atomic_write
    from riffbridge.outputs.setlog import assemble, cue_sheet, read_log

    _check(args)
    setlog = read_log(args.log)
    for warning in setlog.warnings:
        print(f"riffbridge: {warning}")
    header = setlog.header
    model = args.model or header.get("model") or _default_model()
    quality = args.quality or header.get("quality") or "fast"
    scheduler = header.get("scheduler") or "default"
    seed_dir = args.seed_dir if args.seed_dir is not None else header.get("seed_dir")
    how = {"model": model, "quality": quality, "scheduler": scheduler, "rate": setlog.rate}
    folder = loops_folder(args.out)
    folder.mkdir(exist_ok=True)

    keys = _keys(setlog, args.steps)
    frames: dict[LoopKey, np.ndarray] = {}
    todo = []
    for key in keys:
        cached = folder / f"{_loop_id(key, how)}.npy"
        if cached.is_file():
            frames[key] = _load(cached)
        else:
            todo.append((key, cached))
    print(f"riffbridge: {len(setlog.switches)} switches, {len(keys)} loops "
          f"({len(keys) - len(todo)} already rendered in {folder}), "
          f"{setlog.samples / setlog.rate:.1f} s")
    if todo:
        renderer = _renderer(model, args.device, args.dtype)
        from riffbridge.engine.worker import device_frames
        from riffbridge.pipeline import LoopRequest, make_loop

        with tqdm(total=len(todo), desc="replay", unit="loop", disable=None) as bar:
            for key, cached in todo:
                loop = make_loop(renderer, LoopRequest(key, quality, seed_dir, scheduler))
                data = device_frames(loop, setlog.rate)
                data.flags.writeable = False
                frames[key] = data
                atomic_write(cached, _npy_bytes(data))
                bar.update(1)

    def frames_of(key: LoopKey) -> np.ndarray:
        return frames[_with_steps(key, args.steps)]

    audio = assemble(setlog, frames_of)
    write_audio(args.out, audio.T, setlog.rate, "PCM_24")
    cue = args.out.with_suffix(".cue")
    atomic_write(cue, cue_sheet(setlog, args.out.name).encode())
    print(f"wrote {args.out} ({setlog.samples / setlog.rate:.1f} s) and {cue}")
    return 0


def _default_model() -> str:
    from riffbridge.params import DEFAULT_MODEL

    return DEFAULT_MODEL


def _with_steps(key: LoopKey, steps: int | None) -> LoopKey:
    return key if steps is None else key.replace(steps=steps)


def _keys(setlog: SetLog, steps: int | None) -> list[LoopKey]:
    seen: dict[LoopKey, None] = {}
    for switch in setlog.switches:
        for key in switch.loop_keys():
            seen.setdefault(_with_steps(key, steps), None)
    return list(seen)


def _renderer(model: str, device: str, dtype: str) -> Any:
    from riffbridge.render.riffuse import Renderer

    return Renderer(model, device=device, dtype=dtype)


def _npy_bytes(data: np.ndarray) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, data, allow_pickle=False)
    return buffer.getvalue()


def _load(path: Path) -> np.ndarray:
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the rendered loop {path} ({exc}); delete it and replay "
                          f"again to render it anew") from None
    data = np.ascontiguousarray(data, dtype=np.float32)
    data.flags.writeable = False
    return data
