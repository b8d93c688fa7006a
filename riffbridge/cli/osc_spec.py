"""`riffbridge osc-spec`: the OSC namespace, as a table or as JSON (the docs and Max patches are
checked against the JSON)."""

from __future__ import annotations

import argparse

from riffbridge.control.osc_spec import OSC_SPEC, OscAddress, spec_as_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "osc-spec",
        help="print the OSC namespace (addresses, arguments, ranges)",
        description="Print every OSC address riffbridge accepts or sends. A param address with a "
        "value sets it; without one it asks, and the answer comes on the same address.",
    )
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=run)


def _range(entry: OscAddress) -> str:
    if entry.choices:
        return " | ".join(entry.choices)
    if entry.minimum is None and entry.maximum is None:
        return ""
    lo = "" if entry.minimum is None else f"{entry.minimum:g}"
    hi = "" if entry.maximum is None else f"{entry.maximum:g}"
    return f"{lo}..{hi}"


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(spec_as_json())
        return 0
    rows = [("address", "args", "kind", "range", "meaning")]
    for e in OSC_SPEC:
        argtext = f"[{e.args}]" if e.optional else (e.args or "-")
        if e.most is not None:
            argtext += f"...({e.most})"
        rows.append((e.address, argtext, e.kind, _range(e), e.meaning))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)]
        print("  ".join([*cells, row[4]]))
    return 0
