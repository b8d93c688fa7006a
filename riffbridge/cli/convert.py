"""`riffbridge convert IN OUT`: audio <-> spectrogram image, direction from the file types."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from riffbridge.errors import AudioFileError, ConfigError
from riffbridge.params import BY_NAME

IMAGE_SUFFIXES = (".png",)
AUDIO_IN = (".wav", ".flac", ".ogg", ".aiff", ".aif")
AUDIO_OUT = (".wav", ".flac", ".ogg")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert audio to a Riffusion spectrogram image or back",
        description="Audio (wav/flac/ogg) -> spectrogram PNG, or PNG -> audio. The direction "
        "follows the file suffixes. Images carry their parameters as EXIF tags.",
    )
    p.add_argument("input", type=Path, help="audio file or spectrogram PNG")
    p.add_argument("output", type=Path, help="spectrogram PNG or audio file to write")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps")
    p.add_argument("--quality", choices=BY_NAME["quality"].choices, default="fast",
                   help="image -> audio: fast (default) or high (more Griffin-Lim iterations)")
    p.add_argument("--iters", type=int, default=None,
                   help="image -> audio: Griffin-Lim iterations (overrides --quality's count)")
    p.add_argument("--stereo", action="store_true",
                   help="audio -> image: keep left/right in the G/B channels")
    p.add_argument("--seconds", type=float, default=None,
                   help="audio -> image: use only the first N seconds")
    p.add_argument("--circular", action="store_true",
                   help="image -> audio: reconstruct as a seamless loop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    src: Path = args.input
    dst: Path = args.output
    if not src.exists():
        raise AudioFileError(f"input not found: {src}")
    s_in, s_out = src.suffix.lower(), dst.suffix.lower()
    if s_in in AUDIO_IN and s_out in IMAGE_SUFFIXES:
        _audio_to_image(args, src, dst)
    elif s_in in IMAGE_SUFFIXES and s_out in AUDIO_OUT:
        _image_to_audio(args, src, dst)
    else:
        raise ConfigError(
            f"cannot convert {s_in or 'no suffix'} -> {s_out or 'no suffix'}: give an audio file "
            f"({', '.join(AUDIO_IN)}) and a .png, in either order")
    print(f"wrote {dst}")
    return 0


def _audio_to_image(args: argparse.Namespace, src: Path, dst: Path) -> None:
    from riffbridge.audio_io import read_audio, write_file
    from riffbridge.spectrogram import SpectrogramParams, audio_to_image

    audio, rate = read_audio(src)
    if args.seconds is not None:
        if args.seconds <= 0:
            raise ConfigError(f"--seconds must be positive, got {args.seconds}")
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
    if args.iters is not None and args.iters < 0:
        raise ConfigError(f"--iters must be >= 0, got {args.iters}")
    audio, rate = image_to_audio(image, device=args.device, quality=args.quality,
                                 iters=args.iters, circular=args.circular)
    if args.seconds is not None:
        audio = audio[:, : round(args.seconds * rate)]
    write_audio(dst, audio, rate)
