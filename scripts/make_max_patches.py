"""Write max_patches/ (the Max files and the Pure Data player) from the OSC table
(riffbridge/control/osc_spec.py) and the parameter table (riffbridge/params.py: each widget's
address, type and range).

    .venv/bin/python scripts/make_max_patches.py          # write the files
    .venv/bin/python scripts/make_max_patches.py --check  # exit 1 if a committed file differs

The output is deterministic, and tests/test_max_patches.py checks the committed files equal it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from riffbridge.daw.amxd import pack_amxd
from riffbridge.daw.patches import PATCHES, device_controls_table, device_patch
from riffbridge.daw.pd_player import player_pd
from riffbridge.daw.render import dumps

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "max_patches"
QUICKSTART = ROOT / "docs" / "quickstart.md"
BEGIN, END = "<!-- device-controls:begin -->\n", "<!-- device-controls:end -->"


def quickstart(text: str) -> str:
    """docs/quickstart.md with the device's control table regenerated between its markers."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + device_controls_table() + END + tail


def generated() -> dict[str, bytes]:
    files = {name: dumps(build()).encode("utf-8") for name, build in PATCHES.items()}
    files["riffbridge.amxd"] = pack_amxd(dumps(device_patch()))
    files["riffbridge-player.pd"] = player_pd().encode("utf-8")  # the Pure Data player
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    stale = []
    for name, data in generated().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
            continue
        OUT.mkdir(exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)} ({len(data)} bytes)")
    doc = QUICKSTART.read_text(encoding="utf-8")
    if quickstart(doc) != doc:
        if args.check:
            stale.append("docs/quickstart.md")
        else:
            QUICKSTART.write_text(quickstart(doc), encoding="utf-8")
            print(f"wrote {QUICKSTART.relative_to(ROOT)} (the device's control table)")
    if stale:
        print(f"out of date: {', '.join(stale)}; run scripts/make_max_patches.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
