"""`riffbridge convert`: audio <-> spectrogram image, one file or many in one process.

    riffbridge convert IN OUT                      one file; the direction follows the suffixes
    riffbridge convert IN... --to FORMAT [-o DIR]  each IN -> DIR/<stem>.FORMAT
    riffbridge convert IN... -o DIR                FORMAT: png for audio, wav for an image

Many files in one call pay the imports (torch) and the mel pseudo-inverse once. Every pair is
checked before the first is converted, so a typo in the tenth name costs no work.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from riffbridge.errors import AudioFileError, ConfigError, RiffbridgeError
from riffbridge.params import BY_NAME

IMAGE_SUFFIXES = (".png",)
AUDIO_IN = (".wav", ".flac", ".ogg", ".aiff", ".aif")
AUDIO_OUT = (".wav", ".flac", ".ogg")
FORMATS = tuple(s[1:] for s in IMAGE_SUFFIXES + AUDIO_OUT)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert audio to a Riffusion spectrogram image or back",
        description="Audio (wav/flac/ogg) -> spectrogram PNG, or PNG -> audio. With two paths "
        "and no -o/--to: IN OUT, the direction from the suffixes. With -o DIR or --to FORMAT: "
        "every path is an input, written as DIR/<stem>.FORMAT (DIR: next to each input; "
        "FORMAT: png for audio, wav for an image). Images carry their parameters as EXIF tags.",
    )
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="IN OUT, or the inputs (audio files or spectrogram PNGs) with -o/--to")
    p.add_argument("-o", "--out-dir", type=Path, default=None, metavar="DIR",
                   help="write each input's conversion into this existing folder")
    p.add_argument("--to", default=None, metavar="FORMAT",
                   help=f"format to write for each input: {', '.join(FORMATS)}")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    p.add_argument("--quality", choices=BY_NAME["quality"].choices, default="fast",
                   help="image -> audio: fast (default) or high (more Griffin-Lim iterations)")
    p.add_argument("--iters", type=int, default=None,
                   help="image -> audio: Griffin-Lim iterations (overrides --quality's count)")
    p.add_argument("--stereo", action="store_true",
                   help="audio -> image: keep left/right in the G/B channels")
    p.add_argument("--seconds", type=float, default=None,
                   help="use only the first N seconds (of the audio, or of the rebuilt audio)")
    p.add_argument("--circular", action="store_true",
                   help="image -> audio: reconstruct as a seamless loop")
    p.set_defaults(func=run)


def _direction(src: Path, dst: Path) -> str:
    s_in, s_out = src.suffix.lower(), dst.suffix.lower()
    if s_in in AUDIO_IN and s_out in IMAGE_SUFFIXES:
        return "image"
    if s_in in IMAGE_SUFFIXES and s_out in AUDIO_OUT:
        return "audio"
    raise ConfigError(
        f"cannot convert {s_in or 'no suffix'} -> {s_out or 'no suffix'} ({src.name} -> "
        f"{dst.name}): give an audio file ({', '.join(AUDIO_IN)}) and a .png, in either order")


def plan(paths: list[Path], out_dir: Path | None = None, to: str | None = None
         ) -> list[tuple[Path, Path]]:
    """The (input, output) pairs a command line asks for, checked; raises ConfigError."""
    if out_dir is None and to is None:
        if len(paths) != 2:
            raise ConfigError(
                f"give IN OUT for one file, or IN... with -o DIR and/or --to FORMAT for many; "
                f"got {len(paths)} path{'s' if len(paths) != 1 else ''} and neither option")
        pairs = [(paths[0], paths[1])]
    else:
        suffix = None
        if to is not None:
            suffix = "." + to.lower().lstrip(".")
            if suffix[1:] not in FORMATS:
                raise ConfigError(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
        if out_dir is not None and not out_dir.is_dir():
            raise ConfigError(f"output folder {out_dir} does not exist or is not a folder; "
                              f"create it first")
        pairs = []
        for src in paths:
            own = suffix or (".wav" if src.suffix.lower() in IMAGE_SUFFIXES else ".png")
            pairs.append((src, (out_dir or src.parent) / (src.stem + own)))
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        _direction(src, dst)
        if dst in seen:
            raise ConfigError(f"{seen[dst]} and {src} would both be written to {dst}; convert "
                              f"them into different folders")
        seen[dst] = src
    for src, _ in pairs:
        if not src.exists():
            raise AudioFileError(f"input not found: {src}")
    return pairs


def run(args: argparse.Namespace) -> int:
    if args.iters is not None and args.iters < 0:
        raise ConfigError(f"--iters must be >= 0, got {args.iters}")
    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError(f"--seconds must be positive, got {args.seconds}")
    pairs = plan(list(args.paths), args.out_dir, args.to)
    if len(pairs) == 1:
        convert(args, *pairs[0])
        print(f"wrote {pairs[0][1]}")
        return 0
    from tqdm import tqdm

    with tqdm(pairs, desc="convert", unit="file", disable=None, leave=False) as bar:
        for src, dst in bar:
            try:
                convert(args, src, dst)
            except RiffbridgeError as exc:
                if str(src) in str(exc):
                    raise
                raise type(exc)(f"{src}: {exc}") from None
            bar.write(f"wrote {dst}")
    return 0


def convert(args: argparse.Namespace, src: Path, dst: Path) -> None:
    """Convert one file with the options in ``args`` (device, quality, iters, ...)."""
    if _direction(src, dst) == "image":
        _audio_to_image(args, src, dst)
    else:
        _image_to_audio(args, src, dst)


def _audio_to_image(args: argparse.Namespace, src: Path, dst: Path) -> None:
    from riffbridge.audio_io import read_audio, write_file
    from riffbridge.spectrogram import SpectrogramParams, audio_to_image

    audio, rate = read_audio(src)
    if args.seconds is not None:
        audio = audio[:, : round(args.seconds * rate)]
    image = audio_to_image(audio, rate, SpectrogramParams(stereo=args.stereo), device=args.device)
    png = io.BytesIO()
    image.save(png, format="PNG", exif=image.info["exif"])
    write_file(dst, png.getvalue())


def _image_to_audio(args: argparse.Namespace, src: Path, dst: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    from riffbridge.audio_io import write_audio
    from riffbridge.spectrogram import image_to_audio

    try:
        with Image.open(src) as opened:
            opened.load()
            image = opened.copy()
            image.info["exif"] = opened.info.get("exif", b"")
    except (UnidentifiedImageError, OSError) as exc:
        raise AudioFileError(f"cannot read {src} as an image ({exc})") from None
    audio, rate = image_to_audio(image, device=args.device, quality=args.quality,
                                 iters=args.iters, circular=args.circular)
    if args.seconds is not None:
        audio = audio[:, : round(args.seconds * rate)]
    write_audio(dst, audio, rate)
