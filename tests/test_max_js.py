"""The Max players' switching logic (max_patches/riffbridge-player.js) run under node with a
small stand-in for Max's js API (outlet, post, File, Task, a settable clock): the same checks as
the message-level simulation (tests/test_player_sim.py), on the script the device ships."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "max_patches" / "riffbridge-player.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the script runs in "
                                "Max; node only checks its logic here (.ci/run installs nodejs)")

HARNESS = r"""
const fs = require('fs');
let now = 0, tasks = [], out = [], step = -1;
global.post = () => {};
global.outlet = (...a) => out.push([step, ...a]);
global.File = function (p) { this.isopen = EXISTING.includes(p); this.close = () => {}; };
global.Task = function (f) { this.schedule = (ms) => tasks.push([now + ms, f]); };
global.arrayfromargs = (a) => Array.from(a);
Date.now = () => now;
const EXISTING = JSON.parse(process.argv[3]);
const ops = JSON.parse(process.argv[4]);
(0, eval)(fs.readFileSync(process.argv[2], 'utf8'));  // global, as Max loads it
function advance(ms) {
  const until = now + ms;
  tasks.sort((a, b) => a[0] - b[0]);
  while (tasks.length && tasks[0][0] <= until) { const [t, f] = tasks.shift(); now = t; f(); }
  now = until;
}
ops.forEach((op, i) => {
  step = i;
  const [name, ...args] = op;
  if (name === 'advance') { advance(args[0]); }
  else if (name === 'quantum' || name === 'xfade') { global.messagename = name; anything(...args); }
  else { global[name](...args); }
});
console.log(JSON.stringify(out));
"""

FILES = ["/loops/A.wav", "/loops/B.wav", "/loops/C.wav", "/loops/D.wav"]


def run(ops: list[list[Any]], tmp: Path) -> list[list[Any]]:
    assert NODE is not None
    harness = tmp / "harness.js"
    harness.write_text(HARNESS)
    done = subprocess.run([NODE, str(harness), str(SCRIPT), json.dumps(FILES), json.dumps(ops)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def at(out: list[list[Any]], step: int) -> list[list[Any]]:
    return [o[1:] for o in out if o[0] == step]


def ticks(first_bar: int, bars: int) -> list[list[Any]]:
    """The transport's quarter notes in 4/4: timesig, beat, then bar (the tick)."""
    ops: list[list[Any]] = []
    for b in range(first_bar, first_bar + bars):
        for beat in range(1, 5):
            ops += [["timesig", 4, 4], ["beat", beat], ["bar", b], ["advance", 500]]
    return ops


def test_two_clips_in_one_bar_load_only_the_idle_buffer_and_the_last_sounds_on_the_bar(
        tmp_path: Path) -> None:
    ops: list[list[Any]] = [["clip", "/loops/A.wav", 0.0, 120.0, 2], ["loaded", 0]]
    ops += ticks(1, 1)
    ops += [["clip", "/loops/B.wav", 0.5, 120.0, 2], ["loaded", 1],
            ["clip", "/loops/C.wav", 1.0, 120.0, 2], ["loaded", 1]]
    ops += ticks(2, 1)
    out = run(ops, tmp_path)
    loads = [(o[1], o[3]) for o in out if o[1] in (0, 1) and o[2] == "replace"]
    assert loads == [(0, "/loops/A.wav"), (1, "/loops/B.wav"), (1, "/loops/C.wav")]
    # switches: a ramp up on one line~ (outlet 4/5) and down on the other, only on bar lines
    ups = [o for o in out if o[1] in (4, 5) and len(o) == 6]
    assert [(ops[o[0]], o[1]) for o in ups] == [(["bar", 1], 4), (["bar", 2], 5)]
    assert all(o[2:] == [0, 0, 1, 50] for o in ups)  # from 0 to 1 in the xfade
    downs = [o for o in out if o[1] in (4, 5) and len(o) == 4]
    assert [(ops[o[0]], o[1], o[2:]) for o in downs] == [(["bar", 2], 4, [0, 50])]
    # the sounding loop follows the transport: beat b of a two-bar loop plays from b mod 8
    positions = [o[2] for o in out if o[1] == 2]
    assert positions[:4] == [0, 500, 1000, 1500]
    assert [o[2] for o in out if o[1] == 3][:1] == [2000]  # C starts at bar 2: beat 4 of 8


def test_quantum_loop_waits_for_the_loop_boundary(tmp_path: Path) -> None:
    ops: list[list[Any]] = [["quantum", "loop"], ["clip", "/loops/A.wav", 0.0, 120.0, 2],
                            ["loaded", 0]]
    ops += ticks(1, 1)
    ops += [["clip", "/loops/B.wav", 0.5, 120.0, 2], ["loaded", 1]]
    ops += ticks(2, 3)
    out = run(ops, tmp_path)
    ups = [ops[o[0]] for o in out if o[1] in (4, 5) and len(o) == 6]
    assert ups == [["bar", 1], ["bar", 3]]  # bar 2 is inside A's two-bar loop


def test_a_clip_during_the_crossfade_waits_for_its_end(tmp_path: Path) -> None:
    ops: list[list[Any]] = [["clip", "/loops/A.wav", 0.0, 120.0, 2], ["loaded", 0]]
    ops += ticks(1, 1)
    ops += [["clip", "/loops/B.wav", 0.5, 120.0, 2], ["loaded", 1],
            ["timesig", 4, 4], ["beat", 1], ["bar", 2], ["advance", 10],
            ["clip", "/loops/C.wav", 1.0, 120.0, 2], ["advance", 30], ["advance", 30]]
    out = run(ops, tmp_path)
    loads = [(ops[o[0]][0], o[1], o[3]) for o in out if o[1] in (0, 1) and o[2] == "replace"]
    assert loads[-1] == ("advance", 0, "/loops/C.wav")  # loaded once A's fade-out had ended
    assert ("clip", 0, "/loops/C.wav") not in loads


def test_transport_stop_ramps_both_out_and_start_fades_the_loop_back_in(tmp_path: Path) -> None:
    ops: list[list[Any]] = [["clip", "/loops/A.wav", 0.0, 120.0, 2], ["loaded", 0]]
    ops += ticks(1, 1)
    ops += [["run", 0]]
    stop = len(ops) - 1
    ops += ticks(5, 1)
    out = run(ops, tmp_path)
    assert at(out, stop) == [[4, 0, 50], [5, 0, 50]]
    again = [ops[o[0]] for o in out if o[1] == 4 and len(o) == 6]
    assert again == [["bar", 1], ["bar", 5]]


def test_relative_and_missing_paths_are_refused_and_shown(tmp_path: Path) -> None:
    out = run([["clip", "out/2026-11-30/0001.wav", 0.0, 120.0, 2],
               ["clip", "/loops/missing.wav", 0.0, 120.0, 2]], tmp_path)
    shown = [o[3] for o in out if o[1] == 6]
    assert shown[0].startswith("refused /rb/clip: relative path out/2026-11-30/0001.wav")
    assert shown[1] == "refused /rb/clip: no such file /loops/missing.wav"
    assert not [o for o in out if o[1] in (0, 1)]
