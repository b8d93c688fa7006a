"""`riffbridge seed`: a seed image (drum pattern or a user WAV) for N bars at a tempo."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from riffbridge.errors import ConfigError
from riffbridge.params import BY_NAME

DEFAULT_PATTERN: str = BY_NAME["pattern"].default


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "seed",
        help="make a seed spectrogram image: a drum pattern or a WAV, N bars at a tempo",
        description="Synthesise a drum groove (or stretch a WAV) to exactly N bars at BPM and "
        "write its spectrogram image. The image covers one period of the loop and is a "
        "multiple of 8 columns wide (the loop's 10 ms frames stretched over the render width).",
        epilog="Step strings: one bar per string, one character per equal step: x hit, X accent, "
        "o soft, . rest (16 characters = sixteenths in 4/4). Instruments: kick, snare, clap, "
        "hat, openhat, rim. Example: --steps 'kick=x...x...x...x...' "
        "--steps 'hat=..x...x...x...x.'",
    )
    p.add_argument("-o", "--output", type=Path, help="seed image to write (.png)")
    p.add_argument("--bpm", type=float, default=120.0, help="tempo, 40-240 (default 120)")
    p.add_argument("--bars", type=int, default=4, help="loop length in bars, 1-16 (default 4)")
    p.add_argument("--beats", type=int, default=4, help="beats per bar (default 4)")
    p.add_argument("--pattern", default=None,
                   help=f"named groove (default {DEFAULT_PATTERN}); see --list")
    p.add_argument("--steps", action="append", default=[], metavar="INSTRUMENT=STEPS",
                   help="custom step string, repeatable; on top of --pattern when both are given")
    p.add_argument("--from-wav", type=Path, default=None, metavar="FILE",
                   help="use this sound file, stretched to BARS bars at BPM, instead of drums")
    p.add_argument("--wav", nargs="?", const="", default=None, metavar="PATH",
                   help="also write the seed audio (default: the image's name with .wav)")
    p.add_argument("--list", action="store_true", help="list the named grooves and exit")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from riffbridge.loops.patterns import GROOVES, custom_pattern, get_pattern

    if args.list:
        return _list(GROOVES, args.json)
    if args.output is None:
        raise ConfigError("give the seed image to write with -o FILE.png")
    if args.output.suffix.lower() != ".png":
        raise ConfigError(f"the seed image must be a .png, got {args.output.name!r}")
    if args.from_wav is not None and (args.pattern or args.steps):
        raise ConfigError("use either --from-wav or a drum pattern (--pattern/--steps), not both")
    from riffbridge.loops.tempo import check_tempo

    check_tempo(args.bpm, args.bars, args.beats)
    from tqdm import tqdm

    from riffbridge.loops.seed import pattern_seed, wav_seed
    from riffbridge.outputs.files import atomic_write

    with tqdm(total=1, desc="seed", disable=None, leave=False) as bar:
        if args.from_wav is not None:
            seed = wav_seed(args.from_wav, args.bpm, args.bars, args.beats)
        else:
            if args.steps:
                base = get_pattern(args.pattern) if args.pattern else None
                pattern = custom_pattern(args.steps, base)
            else:
                pattern = get_pattern(args.pattern or DEFAULT_PATTERN)
            seed = pattern_seed(pattern, args.bpm, args.bars, args.beats)
        bar.update()
    buf = io.BytesIO()
    seed.image.save(buf, format="PNG", exif=seed.image.info["exif"])
    atomic_write(args.output, buf.getvalue())
    written = [str(args.output)]
    if args.wav is not None:
        written.append(str(_write_wav(seed, Path(args.wav) if args.wav else
                                      args.output.with_suffix(".wav"))))
    info = {**seed.describe(), "files": written}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"seed {seed.source}: {args.bars} bars at {args.bpm:g} bpm, "
              f"{info['samples']} samples, {seed.frames} frames -> {seed.width} columns")
        for path in written:
            print(f"wrote {path}")
    return 0


def _write_wav(seed: object, path: Path) -> Path:
    from riffbridge.loops.seed import Seed
    from riffbridge.loops.types import Loop
    from riffbridge.outputs.files import atomic_write
    from riffbridge.outputs.wav import wav_bytes

    assert isinstance(seed, Seed)
    if path.suffix.lower() != ".wav":
        raise ConfigError(f"--wav must name a .wav file, got {path.name!r}")
    loop = Loop(seed.audio, seed.sample_rate, seed.bpm, seed.bars, seed.beats_per_bar)
    return atomic_write(path, wav_bytes(loop))


def _list(grooves: dict, as_json: bool) -> int:
    table = {name: pattern.describe() for name, pattern in grooves.items()}
    if as_json:
        print(json.dumps(table, indent=2))
        return 0
    for name, rows in table.items():
        print(name)
        for inst, steps in rows.items():
            print(f"  {inst:8s} {steps}")
    return 0
