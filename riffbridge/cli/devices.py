"""`riffbridge devices`: the audio outputs and MIDI inputs riffbridge can use, a table or --json.

A missing PortAudio or MIDI backend is a line in the output, not a failure: the point of the
command is to show what is there.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

MIDI_APIS = ("auto", "jack", "default")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "devices", help="list audio outputs and MIDI inputs",
        description="List the audio output devices PortAudio sees (pass one to --audio-out by "
        "index or name) and the MIDI inputs (pass any part of a name to --midi-in).")
    p.add_argument("--midi-api", default="auto", choices=MIDI_APIS,
                   help="MIDI backend: auto (JACK when a server runs, else the system's), "
                   "jack or default")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def audio_report() -> dict[str, Any]:
    """{"outputs": [AudioDevice as dict...], "error": None or why none could be listed}."""
    from riffbridge.errors import DeviceError
    from riffbridge.outputs.devices import list_outputs

    try:
        return {"outputs": [asdict(d) for d in list_outputs()], "error": None}
    except DeviceError as exc:
        return {"outputs": [], "error": str(exc)}


def midi_report(api: str = "auto") -> dict[str, Any]:
    """{"inputs": [names], "error": None or why, "fix": None or what to try}."""
    from riffbridge.control.midi_port import input_names

    try:
        return {"inputs": input_names(api), "error": None, "fix": None}
    except Exception as exc:  # rtmidi raises its own SystemError when a backend cannot open
        reason = " ".join(str(exc).split()) or type(exc).__name__
        # midi_port's DeviceError ends with its own advice ("...; start jackd or ..."): the
        # advice goes in "fix" below, once
        reason = reason.split("; ")[0]
        fix = ("try --midi-api jack with a running JACK server" if api != "jack"
               else "start jackd, or use --midi-api default")
        return {"inputs": [], "error": reason, "fix": fix}


def run(args: argparse.Namespace) -> int:
    audio = audio_report()
    midi = midi_report(args.midi_api)
    if args.json:
        print(json.dumps({"audio": audio, "midi": {"api": args.midi_api, **midi}}, indent=1))
        return 0
    print("Audio outputs (--audio-out INDEX or NAME; * = default):")
    if audio["error"]:
        print(f"  unavailable: {audio['error']}")
    elif not audio["outputs"]:
        print("  none found: use --audio-out none to write files only")
    else:
        rows = [("", "index", "name", "host API", "channels", "default rate")]
        rows += [("*" if d["is_default"] else "", str(d["index"]), d["name"], d["hostapi"],
                  str(d["max_output_channels"]), f"{d['default_samplerate']:g} Hz")
                 for d in audio["outputs"]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"MIDI inputs (--midi-in NAME, api {args.midi_api}):")
    if midi["error"]:
        print(f"  MIDI: unavailable ({midi['error']}) — {midi['fix']}")
    elif not midi["inputs"]:
        print("  none found")
    else:
        for name in midi["inputs"]:
            print(f"  {name}")
    return 0
