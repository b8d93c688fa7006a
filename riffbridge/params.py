"""Every parameter of riffbridge, declared once. Pure: no I/O, no transport, no torch.

Each ``Param`` says what a value is (type, default, range or choices, unit, help), whether it
changes the sound (then it is part of the loop's cache key and its sidecar), and how the outside
world names it: its OSC address, its config-file key and its ``serve`` flag. Everything else is a
view of this table:

- ``riffbridge.state.EngineState`` holds the ``live`` params (plus the transport flag);
- ``riffbridge.config.ServeConfig`` holds every param that has a config key, keyed by it;
- ``riffbridge.cli.serve`` builds its flags from ``flag``/``help``;
- ``riffbridge.control.osc_spec`` lists the params that have an ``osc`` address;
- ``riffbridge.engine.plan.LoopKey`` holds the ``sound`` params, rounded to ``digits``;
- the sidecar of every loop names the ``sound`` params by their config keys;
- the MIDI map's knob targets are the numeric and choice ``live`` params;
- docs/osc.md, docs/configuration.md and the Max patches are generated from it.

Adding a parameter is one entry here plus the code that uses its value. An indexed family (the
style slots' prompt, seed and weight) is one template entry, expanded per slot by ``per_slot``:
its ``{n}`` placeholders become the slot number, and each expanded param knows its ``family`` and
``index``, so the views can show the family once (``/rb/slot/N/weight``) or each member.

The style blend (``riffbridge.styles``): the ``blend`` params (alpha, the XY point, the slots'
prompts, seeds and weights, how many slots play and the ``mix`` mode) together name one mix of
prompts and seeds; the loop key names that mix, not the params that made it.

Number rules (the same for OSC, MIDI, presets, the config file and flags): ints are accepted for
float params; floats are accepted for int params only when they hold an integral value (Max,
TouchOSC and Pure Data send floats by default, ``4.0`` means 4 and ``4.5`` is an error); bools
are never numbers; NaN and infinity are refused.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from riffbridge.errors import ControlError

Kind = Literal["str", "int", "float", "bool", "pairs"]
# How a string is checked beyond its type: free text (a prompt), a name or path inside the seed
# folder (a pattern), a torch device name, or a path/name on this machine (not checked here).
# A host to listen on (not empty), and a list of sender networks (an allow-list) are checked too.
Text = Literal["prompt", "pattern", "device", "host", "networks", "plain"]

DEFAULT_MODEL = "riffusion/riffusion-model-v1"
MAX_PROMPT_CHARS = 500
MAX_NAME_CHARS = 200  # preset and pattern names
MAX_SEED = 2**31 - 1  # OSC int32
MAX_SLOTS = 8  # style slots: 1 and 2 are A and B, 1..4 the XY surface's corners
# Slots 3..8 start with styles of their own, so that a surface or a mix sounds out of the box.
SLOT_PROMPTS = {3: "ambient pads, slow strings", 4: "drum and bass, fast breakbeat",
                5: "dub reggae, deep bass", 6: "acid house, 303 bassline",
                7: "bossa nova guitar, shaker", 8: "lo-fi hip hop, dusty keys"}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# A pattern that ends in one of these, or holds a path separator, names a seed file; anything
# else is a groove name. The one rule, for the hub, the CLI and the render pipeline.
SEED_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SEED_AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff")
SEED_FILE_SUFFIXES = (*SEED_IMAGE_SUFFIXES, *SEED_AUDIO_SUFFIXES)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str, label: str = "osc_allow") -> tuple[Network, ...]:
    """A comma-separated list of IP addresses and CIDR networks ("127.0.0.1,192.168.1.0/24")."""
    networks = []
    for part in text.split(","):
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ControlError(f"{label} must be a comma-separated list of IP addresses or "
                               f"networks such as 127.0.0.1,192.168.1.0/24, got "
                               f"{part.strip()[:60]!r} in {text[:200]!r}") from None
    return tuple(networks)


def is_seed_file(pattern: str) -> bool:
    return pattern.lower().endswith(SEED_FILE_SUFFIXES) or "/" in pattern or "\\" in pattern


@dataclass(frozen=True)
class Param:
    name: str  # the field name in EngineState / the engine's code
    kind: Kind
    default: Any
    help: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False  # part of the engine state: set over OSC/MIDI, stored in presets
    sound: bool = False  # changes the rendered audio: part of the loop key and the sidecar
    side: str | None = None  # "a"/"b": plays no part at the other end of the A-B path
    digits: int | None = None  # rounding in the loop key (float noise must not split the cache)
    osc: str | None = None  # OSC address, for live params that OSC may set
    config: str | None = None  # config-file key; None: the name; "" : not a setting
    flag: str | None = None  # `serve` flag; None: derived from the config key; "": file only
    metavar: str | None = None
    text: Text = "plain"
    family: str | None = None  # an indexed family ("prompt", "seed", "weight"): slot ``index``
    index: int | None = None
    aliases: tuple[str, ...] = ()  # further OSC addresses of the param (/rb/slot/1/prompt)
    blend: bool = False  # an input of the style blend: the loop key names the mix instead

    @property
    def key(self) -> str:
        """The config-file key ("" when the param is not a start-up setting)."""
        return self.name if self.config is None else self.config

    @property
    def cli_flag(self) -> str:
        """The `serve` flag ("" when there is none)."""
        if self.flag is not None:
            return self.flag
        return "--" + self.key.replace("_", "-") if self.key else ""

    @property
    def python_type(self) -> type:
        return {"str": str, "int": int, "float": float, "bool": bool, "pairs": tuple}[self.kind]

    def range_text(self) -> str:
        def text(x: float) -> str:
            return str(int(x)) if self.kind == "int" else f"{x:g}"

        lo = "-inf" if self.minimum is None else text(self.minimum)
        hi = "inf" if self.maximum is None else text(self.maximum)
        return f"[{lo}, {hi}]"


def _live(name: str, kind: Kind, default: Any, help: str, osc: str, **kw: Any) -> Param:
    return Param(name, kind, default, help, live=True, osc=osc, **kw)


def _sound(name: str, kind: Kind, default: Any, help: str, osc: str, **kw: Any) -> Param:
    return Param(name, kind, default, help, live=True, sound=True, osc=osc, **kw)


def per_slot(template: Param, first: int = 1,
             default: Callable[[int], Any] | None = None) -> tuple[Param, ...]:
    """The members ``first``..``MAX_SLOTS`` of an indexed family: ``template`` with ``{n}`` in its
    name, help and OSC address replaced by the slot number (and ``default(n)`` its default)."""
    return tuple(replace(template, name=template.name.format(n=n), help=template.help.format(n=n),
                         osc=template.osc.format(n=n) if template.osc else None,
                         default=template.default if default is None else default(n), index=n)
                 for n in range(first, MAX_SLOTS + 1))


def slot_address(n: int, family: str) -> str:
    return f"/rb/slot/{n}/{family}"


def _slot(name: str, kind: Kind, default: Any, help: str, family: str, n: int,
          **kw: Any) -> Param:
    """A slot member declared by hand (slots 1 and 2 are A and B, with their old addresses)."""
    return Param(name, kind, default, help, live=True, sound=True, blend=True, family=family,
                 index=n, aliases=(slot_address(n, family),), **kw)


PARAMS: tuple[Param, ...] = (
    # ---- live and sounding: the loop key ----
    _slot("prompt_a", "str", "funk drum groove, slap bass", "prompt of style A (at alpha 0; "
          "style slot 1)", "prompt", 1, osc="/rb/prompt/a", side="a", config="prompt",
          metavar="TEXT", text="prompt"),
    _slot("prompt_b", "str", "jazz piano trio, brushed drums", "prompt of style B (at alpha 1; "
          "style slot 2)", "prompt", 2, osc="/rb/prompt/b", side="b", metavar="TEXT",
          text="prompt"),
    *per_slot(Param("prompt_{n}", "str", "", "prompt of style slot {n}", live=True, sound=True,
                    blend=True, family="prompt", osc="/rb/slot/{n}/prompt", flag="",
                    metavar="TEXT", text="prompt"), 3, SLOT_PROMPTS.__getitem__),
    _slot("seed_a", "int", 42, "noise seed of style A (style slot 1)", "seed", 1,
          osc="/rb/seed/a", side="a", minimum=0, maximum=MAX_SEED, config="seed", metavar="N"),
    _slot("seed_b", "int", 43, "noise seed of style B (style slot 2)", "seed", 2,
          osc="/rb/seed/b", side="b", minimum=0, maximum=MAX_SEED, metavar="N"),
    *per_slot(Param("seed_{n}", "int", 0, "noise seed of style slot {n}", live=True, sound=True,
                    blend=True, family="seed", osc="/rb/slot/{n}/seed", minimum=0,
                    maximum=MAX_SEED, flag="", metavar="N"), 3, lambda n: 41 + n),
    *per_slot(Param("weight_{n}", "float", 0.0, "weight of style slot {n} in the mix (the "
                    "weights are normalised; setting one makes the mix the weights')",
                    live=True, sound=True, blend=True, family="weight",
                    osc="/rb/slot/{n}/weight", minimum=0.0, maximum=1.0, digits=6, flag=""),
              1, lambda n: 1.0 if n == 1 else 0.0),
    _sound("slots", "int", 2, "how many style slots play (slots 1..N); setting it makes the "
           "mix the weights'; /rb/alpha makes it 2, /rb/xy 4", "/rb/slots", minimum=2,
           maximum=MAX_SLOTS, blend=True, flag="", metavar="N"),
    _sound("mix", "str", "ab", "what sets the style mix: ab (alpha between slots 1 and 2), xy "
           "(the XY surface over slots 1..4) or weights (the slots' weights); the last control "
           "moved sets it", "/rb/mix", choices=("ab", "xy", "weights"), blend=True, flag=""),
    _sound("x", "float", 0.0, "XY surface, left (slots 1, 3) to right (slots 2, 4)", "/rb/x",
           minimum=0.0, maximum=1.0, blend=True, digits=3, flag=""),
    _sound("y", "float", 0.0, "XY surface, bottom (slots 1, 2) to top (slots 3, 4)", "/rb/y",
           minimum=0.0, maximum=1.0, blend=True, digits=3, flag=""),
    _sound("negative", "str", "", "negative prompt", "/rb/negative", metavar="TEXT",
           text="prompt"),
    _sound("alpha", "float", 0.0, "position between A (0) and B (1)", "/rb/alpha",
           minimum=0.0, maximum=1.0, blend=True),
    _sound("denoise", "float", 0.75, "img2img strength: how far the render may move from the "
           "seed", "/rb/denoise", minimum=0.0, maximum=1.0, digits=6),
    _sound("guidance", "float", 7.0, "classifier-free guidance", "/rb/guidance", minimum=0.0,
           maximum=30.0, digits=6),
    _sound("steps", "int", 50, "diffusion steps", "/rb/steps", minimum=1, maximum=500,
           metavar="N"),
    # bars defaults to 2: at 120 BPM in 4/4 two bars last 4.0 s, which fits inside one
    # 512-column render (5.12 s), the width the model was trained at, so the default loop needs
    # neither a wider (slower, less stable) render nor stitching.
    _sound("bpm", "float", 120.0, "tempo in BPM (set by hand when the clock is internal)",
           "/rb/bpm", unit="BPM", minimum=40.0, maximum=240.0, digits=4),
    _sound("bars", "int", 2, "loop length in bars", "/rb/bars", unit="bars", minimum=1,
           maximum=16, metavar="N"),
    _sound("beats_per_bar", "int", 4, "beats per bar", "/rb/beats", minimum=1, maximum=16,
           metavar="N"),
    _sound("pattern", "str", "four-on-the-floor",
           "seed pattern name (riffbridge seed --list), or a seed image or sound file inside "
           "the seed folder", "/rb/pattern", metavar="NAME", text="pattern"),
    # ---- live, not sounding: how and when it plays ----
    _live("quantum", "str", "bar", "where switches land", "/rb/quantum",
          choices=("beat", "bar", "loop")),
    _live("xfade", "float", 0.05, "switch crossfade", "/rb/xfade", unit="s", minimum=0.0,
          maximum=10.0, metavar="SECONDS"),
    _live("auto", "float", 0.0, "auto walk: alpha change per loop (on the XY surface: turns of "
          "a circle through it per loop), 0 = off", "/rb/auto",
          minimum=-1.0, maximum=1.0, metavar="STEP"),
    _live("gain_db", "float", 0.0, "output gain", "/rb/gain", unit="dB", minimum=-60.0,
          maximum=12.0, flag="--gain", metavar="DB"),
    _live("clock", "str", "internal", "tempo source: internal, midi (MIDI clock on the MIDI "
          "input) or link (Ableton Link)", "/rb/clock", choices=("internal", "midi", "link")),
    # ---- start-up settings of `riffbridge serve` ----
    Param("model", "str", DEFAULT_MODEL, "hub id, diffusers folder, .ckpt/.safetensors file, "
          "or tiny (random weights, for plumbing checks)", metavar="NAME|PATH"),
    Param("device", "str", "auto", "auto, cuda, cuda:N, mps or cpu", text="device"),
    Param("dtype", "str", "auto", "weights' precision", choices=("auto", "fp16", "bf16", "fp32")),
    Param("cuda_graphs", "bool", True, "replay each UNet step as a CUDA graph (on CUDA; "
          "does not apply on the CPU or MPS)", flag="--no-cuda-graphs"),
    Param("compile", "bool", True, "torch.compile the UNet in the background while the "
          "uncompiled path plays, then switch (on CUDA with Triton; does not apply on the CPU "
          "or MPS)", flag="--no-compile"),
    Param("compile_cache", "str", "", "folder of the compiled code kept between starts; "
          "empty: riffbridge/inductor under the user cache dir", metavar="DIR"),
    Param("width_buckets", "str", "auto", "render loops at a few bucketed widths and keep the "
          "loop's exact columns, so a tempo change brings no new graph or compile; auto: on "
          "when CUDA graphs or compile run", choices=("auto", "on", "off")),
    Param("render_batch", "int", 0, "planned loops one render may carry: the knob's neighbours "
          "(or XY lattice points) of the same tempo, length and steps, in one UNet batch; the "
          "point the knob is on renders alone first; 0: auto, 4 on CUDA and 1 on the CPU or "
          "MPS (there a batch takes as long as its loops one by one)", minimum=0, maximum=16,
          metavar="N"),
    Param("step_cache", "int", 1, "step caching in the spirit of DeepCache: the whole UNet "
          "every N steps, the shallow branch with its deep features reused between; faster "
          "per step but changes the output (1: off; turns CUDA graphs and compile off)",
          minimum=1, maximum=5, metavar="N"),
    Param("audio_out", "str", "default", "audio output name or index, 'default', or 'none' "
          "(files only)", metavar="NAME|INDEX"),
    Param("out_dir", "str", "out", "folder for the loop WAVs, or 'none'", metavar="DIR"),
    Param("osc_host", "str", "127.0.0.1", "address to listen for OSC on (0.0.0.0: the LAN)",
          metavar="HOST", text="host"),
    Param("osc_allow", "str", "127.0.0.0/8", "senders OSC is taken from: comma-separated IP "
          "addresses or networks (127.0.0.1,192.168.1.0/24); packets from others are dropped "
          "unanswered", metavar="NETS", text="networks"),
    Param("max_subscribers", "int", 16, "most OSC subscribers at once; /rb/subscribe beyond "
          "it is refused", minimum=1, maximum=1024, metavar="N"),
    Param("subscriber_ttl", "float", 300.0, "a subscriber that sends nothing for this long is "
          "dropped: clients re-send /rb/subscribe (or anything) more often than this",
          unit="s", minimum=1.0, maximum=604_800.0, metavar="SECONDS"),
    Param("osc_port", "int", 9000, "UDP port to listen for OSC on", minimum=1, maximum=65535,
          metavar="PORT"),
    Param("reply_port", "int", 9001, "UDP port answers go to, on the sender's address",
          minimum=1, maximum=65535, metavar="PORT"),
    Param("web", "bool", True, "serve the browser page (docs/web.md)", flag="--no-web"),
    Param("web_host", "str", "127.0.0.1", "address to serve the page on (not loopback: the page "
          "needs the token)", metavar="HOST", text="host"),
    Param("web_port", "int", 8080, "TCP port of the page", minimum=1, maximum=65535,
          metavar="PORT"),
    Param("web_token", "str", "", "token the page asks for (?token=...); empty: none on "
          "loopback, a fresh one printed at start otherwise", metavar="TOKEN"),
    Param("midi_in", "str", "", "MIDI input (any part of its name), or 'virtual'; empty: no "
          "MIDI", metavar="NAME"),
    Param("midi_api", "str", "auto", "MIDI backend", choices=("auto", "jack", "default")),
    Param("midi_map", "str", "", "MIDI map TOML file (empty: the built-in map)",
          metavar="FILE"),
    Param("presets", "str", "", "presets TOML file (read and written)", metavar="FILE"),
    Param("seed_dir", "str", "", "folder of seed images/sounds that the pattern may name",
          metavar="DIR"),
    Param("record", "str", "", "record the master output to this .wav or .flac file from the "
          "start, with a log of the set (.jsonl) beside it for `riffbridge replay`; empty: off "
          "(/rb/record/start records later)", metavar="FILE"),
    Param("cue_out", "str", "", "audio output for the cue bus (headphones): name or index; "
          "empty: no cue bus, or --cue-channels", metavar="NAME|INDEX"),
    Param("cue_channels", "str", "", "two channels of the audio output for the cue bus, such "
          "as 3,4 (the master plays on 1,2); empty: none", metavar="A,B"),
    Param("cache_mb", "float", 512.0, "loop cache bound", unit="MB", minimum=16.0,
          maximum=1_000_000.0),
    Param("quality", "str", "fast", "spectrogram-to-audio (Griffin-Lim) quality",
          choices=("fast", "high")),
    Param("blocksize", "int", 512, "audio block", unit="frames", minimum=32, maximum=8192,
          metavar="FRAMES"),
    Param("audio_ahead", "float", 150.0, "audio queued ahead of the device, played by a C "
          "callback that never waits for Python (0: fill from a Python callback, the least "
          "latency but it underruns when a busy machine holds Python up)", unit="ms",
          minimum=0.0, maximum=2000.0, metavar="MS"),
    Param("autoplay", "bool", True, "sound as soon as a loop is ready (false: wait for "
          "/rb/play)", flag="--no-autoplay"),
    Param("grid", "int", 8, "alpha points rendered per unit: 8 renders 0, 1/8, ... 1",
          minimum=1, maximum=64, flag=""),
    Param("xy_grid", "int", 4, "XY lattice points per unit on each axis: 4 renders a 5x5 "
          "lattice of the surface around the point", minimum=1, maximum=32, flag=""),
    Param("render_timeout", "float", 300.0, "a render with no progress for this long counts "
          "as hung; the worker is restarted", unit="s", minimum=5.0, maximum=86_400.0, flag=""),
    Param("setlist", "pairs", (), "pairs of prompts [a, b] for the auto walk", flag=""),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
# the slots' members by family and slot number: SLOT["weight"][3] is "weight_3"
SLOT: dict[str, dict[int, str]] = {}
for _p in PARAMS:
    if _p.family is not None and _p.index is not None:
        SLOT.setdefault(_p.family, {})[_p.index] = _p.name
LIVE: tuple[Param, ...] = tuple(p for p in PARAMS if p.live)
SOUND: tuple[Param, ...] = tuple(p for p in PARAMS if p.sound)
SETTINGS: tuple[Param, ...] = tuple(p for p in PARAMS if p.key)
BY_KEY: dict[str, Param] = {p.key: p for p in SETTINGS}


def get(name: str) -> Param:
    """The live param ``name``; ``ControlError`` naming the known ones otherwise."""
    param = BY_NAME.get(name)
    if param is None or not param.live:
        raise ControlError(f"unknown parameter {name!r}; known: "
                           f"{', '.join(sorted(p.name for p in LIVE))}")
    return param


# ---- checking one value ------------------------------------------------------------------------

def _number(param: Param, value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "an int" if param.kind == "int" else "a float"
        raise ControlError(f"{label} must be {what} in {param.range_text()}, "
                           f"got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ControlError(f"{label} must be a finite number in {param.range_text()}, "
                           f"got {value!r}")
    if (param.minimum is not None and value < param.minimum) or (
            param.maximum is not None and value > param.maximum):
        raise ControlError(f"{label} must be in {param.range_text()}, got {value!r}")
    return float(value)


# Control characters: C0 (with DEL) and C1. A name may hold none of them; a prompt may hold tab,
# newline and carriage return (a prompt typed or pasted over several lines) and none of the rest,
# which TOML (the presets file) and most displays cannot carry as they are.
_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PROMPT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _no_control(what: str, value: str, pattern: re.Pattern[str], allowed: str = "") -> None:
    found = pattern.search(value)
    if found:
        shown = f"{value!r}" if len(value) <= 60 else f"{value[:60]!r}..."
        raise ControlError(f"{what} must not contain control characters{allowed}, got "
                           f"{found[0]!r} at position {found.start()} of {shown}")


def check_name(what: str, value: str) -> str:
    """A preset or pattern name: not empty, short, no control characters (C0, DEL or C1)."""
    if not value.strip():
        raise ControlError(f"{what} must not be empty, got {value!r}")
    if len(value) > MAX_NAME_CHARS:
        raise ControlError(f"{what} must be at most {MAX_NAME_CHARS} characters, "
                           f"got {len(value)}")
    _no_control(what, value, _NAME_CONTROL)
    return value


def _check_pattern(value: str, label: str) -> str:
    """A pattern is a groove name or a file path relative to the seed folder, never outside it.
    Whether the name or the file exists is the hub's question (it may look at the disk)."""
    check_name(label, value)
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or value.startswith("~"):
        raise ControlError(f"{label} must be a name or a path inside the seed folder, "
                           f"got the absolute path {value!r}")
    if ".." in posix.parts or ".." in windows.parts:
        raise ControlError(f"{label} must stay inside the seed folder, got {value!r}")
    return value


def _pairs(value: Any, label: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, (list, tuple)):
        raise ControlError(f"{label} must be a list of [prompt_a, prompt_b] pairs, "
                           f"got {value!r}")
    pairs = []
    for i, pair in enumerate(value):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(p, str) and p.strip() for p in pair)):
            raise ControlError(f"{label} entry {i + 1} must be a pair of prompts "
                               f"[\"a\", \"b\"], got {pair!r}")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _string(param: Param, value: str, label: str) -> str:
    if param.choices:
        if value not in param.choices:
            raise ControlError(f"{label} must be one of {', '.join(param.choices)}, "
                               f"got {value!r}")
        return value
    if param.text == "pattern":
        return _check_pattern(value, label)
    if param.text == "host" and not value.strip():
        raise ControlError(f"{label} must not be empty, got {value!r}; use 0.0.0.0 to listen on "
                           f"every interface, 127.0.0.1 for this machine only")
    if param.text == "networks":
        parse_networks(value, label)
    if param.text == "device" and not _DEVICE.fullmatch(value):
        raise ControlError(f"{label} must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    if param.text == "prompt":
        if len(value) > MAX_PROMPT_CHARS:
            raise ControlError(f"{label} must be at most {MAX_PROMPT_CHARS} characters, "
                               f"got {len(value)}")
        _no_control(label, value, _PROMPT_CONTROL, " (tab and newline are fine)")
    return value


def check(param: Param, value: Any, label: str | None = None) -> Any:
    """``value`` checked for ``param`` and returned in the param's own type, or ``ControlError``
    naming ``label`` (default: the param's name), the value and what is allowed."""
    label = label or param.name
    if param.kind == "pairs":
        return _pairs(value, label)
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise ControlError(f"{label} must be true or false, got {value!r}")
        return value
    if param.kind == "str":
        if not isinstance(value, str):
            raise ControlError(f"{label} must be a string, got {type(value).__name__} {value!r}")
        return _string(param, value, label)
    number = _number(param, value, label)
    if param.kind == "int":
        if not number.is_integer():
            raise ControlError(f"{label} must be a whole number in {param.range_text()}, "
                               f"got {value!r}")
        return int(number)
    return number


# ---- records: immutable values whose fields are a slice of the table ----------------------------

class Record:
    """An immutable value with one attribute per param of ``FIELDS`` (defaults from the table).

    Subclasses set ``FIELDS`` and ``ATTR`` (how each param is named on this record: its name or
    its config key). The values live in the instance's ``__dict__``, so reading one is a plain
    attribute read (the hub and the engine read them on every message and turn). Equality,
    hashing and pickling go by the values, so records can be cache keys and cross process
    boundaries."""

    FIELDS: ClassVar[tuple[Param, ...]] = ()
    ATTR: ClassVar[str] = "name"  # "name" or "key": which name of a Param is the attribute
    _DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._DEFAULTS = {getattr(p, cls.ATTR): p.default for p in cls.FIELDS}

    def __init__(self, **values: Any) -> None:
        unknown = values.keys() - self._DEFAULTS.keys()
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(sorted(unknown))}")
        fields = self.__dict__
        fields.update(self._DEFAULTS)
        fields.update(values)

    if TYPE_CHECKING:  # the fields, as the type checker sees them
        def __getattr__(self, name: str) -> Any: ...

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(cls._DEFAULTS)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .replace()")

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), dict(self.__dict__))

    def replace(self, **changes: Any) -> Any:
        return type(self)(**{**self.__dict__, **changes})

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def changed(self, other: Record) -> list[str]:
        """The fields whose values differ from ``other``'s, in table order."""
        theirs = other.__dict__
        return [name for name, value in self.__dict__.items() if theirs[name] != value]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({inner})"


def _rebuild(cls: type[Record], values: dict[str, Any]) -> Record:
    return cls(**values)
