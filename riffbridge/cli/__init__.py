"""The `riffbridge` command. Each subcommand lives in its own module of this package.

A module here defines ``add_parser(subparsers)``, which adds its subparser and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Heavy imports (torch, diffusers)
happen inside those callables, so ``riffbridge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from riffbridge import __version__
from riffbridge.errors import RiffbridgeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riffbridge",
        description="Play the Riffusion model like an instrument.",
    )
    parser.add_argument("--version", action="version", version=f"riffbridge {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.DEBUG if args.verbose > 1
               else logging.INFO if args.verbose else logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RiffbridgeError as exc:
        print(f"riffbridge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("riffbridge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
