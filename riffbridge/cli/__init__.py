"""The `riffbridge` command. Each subcommand lives in its own module of this package.

A module here defines ``add_parser(subparsers)``, which adds its subparser and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Heavy imports (torch, diffusers)
happen inside those callables, so ``riffbridge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from riffbridge import __version__
from riffbridge.errors import RiffbridgeError

BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what `cat` and friends return when the reader leaves
_INVALID = re.compile(r"argument (?P<flag>[^:]+): invalid (?P<type>int|float) value: "
                      r"(?P<value>.+)")


def _allowed(flag: str, kind: str) -> str:
    """What a flag takes, from the parameter table when the flag is one of its params."""
    from riffbridge import params as P

    what = "a whole number" if kind == "int" else "a number"
    for param in P.PARAMS:
        if (param.cli_flag and param.cli_flag in flag.split("/")
                and (param.minimum is not None or param.maximum is not None)):
            return f"{what} in {param.range_text()}"
    return what


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``riffbridge: error: WHAT; see riffbridge CMD --help``,
    exit 2, instead of the whole usage block."""

    def error(self, message: str) -> NoReturn:
        found = _INVALID.fullmatch(message)
        if found:
            message = (f"{found['flag']} must be {_allowed(found['flag'], found['type'])}, "
                       f"got {found['value']}")
        self.exit(2, f"riffbridge: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, not at exit: a reader that left is seen in the try
    except BrokenPipeError:
        # The reader went away (`riffbridge osc-spec | head`): stop quietly, as cat does. Point
        # stdout at devnull so that the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE_EXIT


def _main(argv: Sequence[str] | None) -> int:
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
