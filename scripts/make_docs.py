"""Write the generated docs from the parameter table (riffbridge/params.py) and the OSC table
(riffbridge/control/osc_spec.py): all of docs/osc.md, and the marked sections of
docs/configuration.md and docs/midi.md.

    .venv/bin/python scripts/make_docs.py          # write the files
    .venv/bin/python scripts/make_docs.py --check  # exit 1 if a committed file differs

A generated section of a hand-written page lies between ``<!-- BEGIN GENERATED: NAME ... -->``
and ``<!-- END GENERATED: NAME -->``; the prose around it is kept as it is. A parameter added to
the table shows up in every section on the next run. tests/test_docs.py checks that the committed
files equal this output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from riffbridge import params as P
from riffbridge.config import PATH_KEYS
from riffbridge.control.midi_map import make_target
from riffbridge.control.osc_spec import MAX_PROMPT_CHARS, OSC_SPEC, PREFIX, OscAddress
from riffbridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "scripts/make_docs.py"
TYPE_NAMES = {"s": "string", "i": "int", "f": "float"}

# The two `serve` flags that are not params (riffbridge/cli/serve.py defines them):
# (flag with metavar, default, what it does).
FIXED_FLAGS_FIRST = (("--config FILE", "none", "read settings from a TOML file"),)
FIXED_FLAGS_LAST = (("--for-seconds S", "none (until stopped)",
                     "stop after S seconds (tests, installations on a timer)"),)

# Detail for the configuration page that is too long for a param's help, by param name. Only what
# the table cannot say: never a default, a range or a choice list (those come from the table).
NOTES: dict[str, str] = {
    "model": "a single `.ckpt`/`.safetensors` file is SD 1.x in the original layout and takes "
             "its CLIP tokenizer from a `tokenizer/` folder next to it or the Hugging Face "
             "cache, see [troubleshooting](troubleshooting.md#a-single-checkpoint-file)",
    "device": "`auto` picks CUDA, then MPS, then the CPU; an explicit device that is not there "
              "is an error, never a silent fallback",
    "dtype": "`auto` is fp16 on CUDA and MPS, fp32 on the CPU (fp16 on the CPU is refused)",
    "cuda_graphs": "one launch per step instead of about a thousand, which is what bounds an "
                   "eager step on a fast GPU; accepted and reported as not applying on the "
                   "CPU or MPS; the first render at each width and batch size records a graph "
                   "(a few steps' time); the start logs the `render path:` chosen; see "
                   "[benchmarks](benchmarks.md)",
    "compile": "the first start compiles for about a minute per width (off the critical path: "
               "loops render uncompiled until then); later starts read the compiled code from "
               "`compile_cache`",
    "compile_cache": "`$XDG_CACHE_HOME/riffbridge/inductor` or `~/.cache/riffbridge/inductor`; "
                     "torch inductor's cache dir and FX graph cache",
    "width_buckets": "the render is padded with the loop's own start to the bucket "
                     "(`riffbridge/render/buckets.py`) and the loop's columns are kept, so the "
                     "loop keeps its exact length and still loops",
    "render_batch": "the start logs the batch chosen after the `render path:`; a cancel or a "
                    "failure covers the loops of a batch not yet delivered; with CUDA graphs "
                    "each batch size (1 to N) records its own graph once per width; see "
                    "[architecture](architecture.md) and [benchmarks](benchmarks.md)",
    "step_cache": "off by default: the effect on the sound is unmeasured with the real weights "
                  "and the speed-up unmeasured on a GPU; cached steps run the first down block "
                  "and the last up block only (`riffbridge/render/stepcache.py`, "
                  "[architecture](architecture.md#step-caching))",
    "audio_out": "a name may be any unique part of it; `riffbridge devices` lists them",
    "out_dir": "the output folder (`OUT`, see [files](#files)), relative to where you start "
               "riffbridge",
    "bpm": "while the clock is `midi` or `link` the clock sets it (see [clocks](#clocks))",
    "auto": "see [the auto walk](#the-auto-walk-and-the-setlist)",
    "clock": "see [clocks](#clocks) and [Ableton Link](#ableton-link)",
    "osc_port": "answers go to `--reply-port`, not to the port a message came from",
    "midi_in": "`virtual` opens a virtual input called `riffbridge` that other programs "
               "connect to; see [MIDI](midi.md)",
    "midi_api": "`auto` is JACK when a server runs, else ALSA or CoreMIDI",
    "midi_map": "see [MIDI](midi.md)",
    "presets": "`/rb/preset` recalls, `/rb/preset/save` saves; see [presets](midi.md#presets)",
    "seed_dir": "seed files end in " + ", ".join(f"`{s}`" for s in P.SEED_FILE_SUFFIXES),
    "autoplay": "loops still render and are written while it waits",
    "setlist": "see [the auto walk](#the-auto-walk-and-the-setlist)",
}


# ---- cells ---------------------------------------------------------------------------------------

def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _unit(param: P.Param) -> str:
    return f" {param.unit}" if param.unit else ""


def _default(param: P.Param) -> str:
    value = param.default
    if param.kind == "pairs":
        return f"`{json.dumps([list(pair) for pair in value])}`"
    if param.kind == "bool":
        return "`true`" if value else "`false`"
    if param.kind == "str":
        return f"`{value}`" if value else "empty"
    return _num(value) + _unit(param)


def _limits(param: P.Param) -> str:
    """What values the param takes, from the table: its choices, range or length."""
    if param.choices:
        return "one of " + ", ".join(f"`{c}`" for c in param.choices)
    if param.kind in ("int", "float"):
        lo, hi = param.minimum, param.maximum
        if lo is not None and hi is not None:
            return f"{_num(lo)} to {_num(hi)}{_unit(param)}"
        if lo is not None:
            return f"at least {_num(lo)}{_unit(param)}"
        if hi is not None:
            return f"at most {_num(hi)}{_unit(param)}"
        return f"in {param.unit}" if param.unit else ""
    if param.text == "prompt":
        return f"up to {MAX_PROMPT_CHARS} characters"
    if param.text == "pattern":
        return f"up to {P.MAX_NAME_CHARS} characters"
    return ""


def _flag(param: P.Param) -> str:
    if param.kind == "bool":
        return f"`{param.cli_flag}`"
    # argparse shows the config key in capitals when the table names no metavar.
    return f"`{param.cli_flag} {_cell(param.metavar or param.key.upper())}`"


def _bool_flag(param: P.Param) -> str:
    """What a bool param's flag does: it sets the opposite of the default."""
    return f"the flag sets `{param.key} = {'false' if param.default else 'true'}`"


def _values(param: P.Param) -> str:
    if param.kind == "bool":
        return "`true`, `false`"
    return _cell(_limits(param)) or "-"


def _what(param: P.Param, flag: bool) -> str:
    """The help, what a bool's flag sets, and any longer note."""
    parts = [param.help, _bool_flag(param) if flag and param.kind == "bool" else "",
             NOTES.get(param.name, "")]
    return _cell("; ".join(p for p in parts if p))


def _table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(head)
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# ---- docs/configuration.md -----------------------------------------------------------------------

def flag_params() -> tuple[P.Param, ...]:
    """The settings that have a `serve` flag, in the table's order."""
    return tuple(p for p in P.SETTINGS if p.cli_flag)


def file_only_params() -> tuple[P.Param, ...]:
    """The settings that only the config file can give."""
    return tuple(p for p in P.SETTINGS if not p.cli_flag)


def flags_section() -> list[str]:
    def fixed(rows: tuple[tuple[str, str, str], ...]) -> list[tuple[str, ...]]:
        return [(f"`{_cell(flag)}`", "-", default, "-", what) for flag, default, what in rows]

    rows = fixed(FIXED_FLAGS_FIRST)
    rows += [(_flag(p), f"`{p.key}`", _default(p), _values(p), _what(p, flag=True))
             for p in flag_params()]
    rows += fixed(FIXED_FLAGS_LAST)
    return _table(("flag", "config key", "default", "values", "what it does"), rows)


def keys_section() -> list[str]:
    renamed = []
    for p in flag_params():
        if p.cli_flag == "--" + p.key.replace("_", "-"):
            continue
        how = f" sets it to `{'false' if p.default else 'true'}`" if p.kind == "bool" else ""
        renamed.append(f"`{p.key}` (`{p.cli_flag}`{how})")
    text = ("Every flag but `--config` and `--for-seconds` is also a key of the file, named in "
            "the *config key* column: the flag without its leading dashes, with `_` for `-`")
    text += f", except {_and(renamed)}." if renamed else "."
    live = [p for p in P.LIVE if p.key and p.key != p.name]
    if live:
        text += (" The live " + ("param " if len(live) == 1 else "params ")
                 + _and([f"`{p.name}`" for p in live]) + " start from the "
                 + ("key " if len(live) == 1 else "keys ") + _and([f"`{p.key}`" for p in live])
                 + "; every other live param's key is its name.")
    return _wrap(text)


def file_keys_section() -> list[str]:
    rows = [(f"`{p.key}`", _default(p), _values(p), _what(p, flag=False))
            for p in file_only_params()]
    return _table(("key", "default", "values", "what it does"), rows)


def paths_section() -> list[str]:
    keys = [f"`{k}`" for k in PATH_KEYS]
    return _wrap("Relative paths are taken from the folder you start riffbridge in, not the "
                 f"config file's folder; a leading `~` is expanded in {_and(keys)} only.")


def params_section() -> list[str]:
    rows = []
    for p in P.LIVE:
        names = [f"`{n}`" for n in (p.key, p.cli_flag) if n]
        rows.append((f"`{p.name}`", f"`{p.osc}`" if p.osc else "-",
                     ", ".join(names) or "-", _default(p), _values(p),
                     "yes" if p.sound else ""))
    return _table(("param", "OSC", "config key, flag", "default", "values", "sound"), rows)


# ---- docs/midi.md --------------------------------------------------------------------------------

def knob_params() -> tuple[P.Param, ...]:
    """The live params a knob may follow: those the MIDI map's loader takes as a target."""
    found = []
    for p in P.LIVE:
        try:
            make_target(p.name)
        except ConfigError:
            continue
        found.append(p)
    return tuple(found)


def knob_targets_section() -> list[str]:
    rows = []
    for p in knob_params():
        if p.choices:
            travel = "equal zones: " + ", ".join(f"`{c}`" for c in p.choices)
        else:
            target = make_target(p.name)
            travel = f"{_num(target.lo)} to {_num(target.hi)}{_unit(p)}"
        rows.append((f"`{p.name}`", f"`{p.osc}`" if p.osc else "-", p.kind, travel))
    return _table(("param", "OSC", "type", "knob's travel without min/max"), rows)


# ---- docs/osc.md ---------------------------------------------------------------------------------

OSC_HEAD = f"""# OSC reference

<!-- Generated by {SCRIPT}; do not edit: change the tables and run it.
The params come from the parameter table, riffbridge/params.py (through
riffbridge/control/osc_spec.py); the commands and pushes from the OSC table,
riffbridge/control/osc_spec.py. -->

riffbridge listens for OSC over UDP on `127.0.0.1:9000` (`--osc-host`, `--osc-port`) and answers
on port 9001 of the sender's address (`--reply-port`). Max's `udpsend` sends from a random port,
so answers never go to the source port: listen on the reply port (`udpreceive 9001`).

- Every address starts with `{PREFIX}`. Type tags: `s` string, `i` int32, `f` float32.
- A **param** address with a value sets it; with no argument it asks, and the answer comes back
  on the same address with the current value (so a TouchOSC control gets feedback on its own
  address).
- Every change, whoever made it (OSC, MIDI, auto mode), is pushed to subscribers
  (`/rb/subscribe`). At most `--max-subscribers` are kept (16 by default), and a subscriber that
  sends nothing for `--subscriber-ttl` seconds (300) is dropped: send `/rb/subscribe` again every
  minute or so.
- Bad input is answered with `/rb/error s address s reason` and changes nothing: unknown address,
  wrong type or count, data that does not match its type tags, out of range, NaN or infinity, a
  prompt over {MAX_PROMPT_CHARS} characters. Reasons are cut at 300 bytes, so no answer is much
  larger than a request.
- Packets from senders outside `--osc-allow` (loopback by default) are dropped unanswered.
- Every param here can also start at another value: its config key and `serve` flag are in
  [configuration](configuration.md#parameters-and-their-defaults).
- `riffbridge osc-spec --json` prints this table as JSON.
"""

OSC_EXAMPLES = """
## Examples

With liblo's command-line tools (Debian/Ubuntu: `liblo-tools`):

```sh
oscdump 9001 &                                  # watch the answers
oscsend localhost 9000 /rb/subscribe
oscsend localhost 9000 /rb/prompt/a s 'dusty funk drum break'
oscsend localhost 9000 /rb/alpha f 0.5
oscsend localhost 9000 /rb/alpha                # ask: answered on /rb/alpha
oscsend localhost 9000 /rb/status
```

In Max, a message box `/rb/alpha $1` fed by a float and connected to
`udpsend 127.0.0.1 9000` sets alpha; `max_patches/` has complete patches.
"""


def _osc_args(entry: OscAddress) -> str:
    if not entry.args:
        return "-"
    text = " ".join(f"`{t}` {TYPE_NAMES[t]}" for t in entry.args)
    if entry.most is not None:
        text += f" ... ({len(entry.args)} to {entry.most})"
    return f"[{text}] (optional)" if entry.optional else text


def _osc_range(entry: OscAddress) -> str:
    if entry.choices:
        return ", ".join(f"`{c}`" for c in entry.choices)
    lo, hi = entry.minimum, entry.maximum
    if lo is not None and hi is not None:
        return f"{_num(lo)} .. {_num(hi)}"
    if lo is not None:
        return f">= {_num(lo)}"
    return f"<= {_num(hi)}" if hi is not None else ""


def _osc_default(entry: OscAddress) -> str:
    param = P.BY_NAME[entry.param] if entry.param else None
    return _default(param) if param is not None else ""


def osc_md() -> str:
    params = [e for e in OSC_SPEC if e.kind == "param"]
    commands = [e for e in OSC_SPEC if e.kind == "command"]
    pushes = [e for e in OSC_SPEC if e.kind == "push"]
    lines = [OSC_HEAD, "## Parameters (set, or ask with no argument)", ""]
    lines += _table(("address", "args", "range", "default", "meaning"),
                    ((f"`{e.address}`", _osc_args(e), _osc_range(e), _osc_default(e),
                      _cell(e.meaning)) for e in params))
    lines += ["", "## Commands", ""]
    lines += _table(("address", "args", "meaning"),
                    ((f"`{e.address}`", _osc_args(e),
                      _cell(e.meaning + (f" (answer: `{e.reply}`)" if e.reply else "")))
                     for e in commands))
    lines += ["", "## Sent by riffbridge (to the asker and to subscribers)", ""]
    lines += _table(("address", "args", "meaning"),
                    ((f"`{e.address}`", _osc_args(e), _cell(e.meaning)) for e in pushes))
    return "\n".join(lines) + "\n" + OSC_EXAMPLES


# ---- filling the marked sections -----------------------------------------------------------------

SECTIONS: dict[str, dict[str, Callable[[], list[str]]]] = {
    "docs/configuration.md": {
        "flags": flags_section,
        "keys": keys_section,
        "file-keys": file_keys_section,
        "paths": paths_section,
        "params": params_section,
    },
    "docs/midi.md": {
        "knob-targets": knob_targets_section,
    },
}

_MARKED = re.compile(r"<!-- BEGIN GENERATED: (?P<name>[\w-]+)\b.*?-->\n.*?"
                     r"<!-- END GENERATED: (?P=name) -->", re.DOTALL)


def _wrap(text: str, width: int = 99) -> list[str]:
    """Prose wrapped at the project's line length (the hand-written pages' width)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def _block(name: str, body: list[str]) -> str:
    begin = (f"<!-- BEGIN GENERATED: {name} (by {SCRIPT} from riffbridge/params.py; "
             "do not edit) -->")
    return "\n".join([begin, "", *body, "", f"<!-- END GENERATED: {name} -->"])


def fill(text: str, sections: dict[str, Callable[[], list[str]]], where: str) -> str:
    """``text`` with each marked section replaced by what its function makes now."""
    found = [m.group("name") for m in _MARKED.finditer(text)]
    unknown = sorted(set(found) - set(sections))
    missing = sorted(set(sections) - set(found))
    if unknown or missing or len(found) != len(set(found)):
        raise SystemExit(f"{where}: the generated sections must be {', '.join(sorted(sections))}"
                         f", once each; found {', '.join(found) or 'none'} (each between "
                         "<!-- BEGIN GENERATED: NAME --> and <!-- END GENERATED: NAME -->)")
    return _MARKED.sub(lambda m: _block(m.group("name"), sections[m.group("name")]()), text)


def generated() -> dict[str, str]:
    """Each generated page, by its path from the repository root, as it should be now."""
    pages = {"docs/osc.md": osc_md()}
    for path, sections in SECTIONS.items():
        pages[path] = fill((ROOT / path).read_text(encoding="utf-8"), sections, path)
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    stale = []
    for path, text in generated().items():
        target = ROOT / path
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        if target.exists() and target.read_text(encoding="utf-8") == text:
            continue
        target.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run .venv/bin/python {SCRIPT}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
