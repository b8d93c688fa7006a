"""Max patcher JSON as data: the object classes riffbridge's patches use, with their inlets and
outlets, and a small builder that writes boxes and patchlines in Max's .maxpat layout.

Pure: no files, no Max. The generator script and the tests both use it, so a patch cannot name a
class or an outlet that this table does not know.

Where the counts come from: each row names its source. "maxpat" means public .maxpat files on
GitHub saved by Max 7-9 (searched by the exact box text, e.g. ``"text" : "transport"``), which
store ``numinlets``, ``numoutlets`` and ``outlettype`` as Max itself computed them; "ref" means
the Cycling '74 reference page of the object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from riffbridge.errors import ConfigError


@dataclass(frozen=True)
class BoxIO:
    numinlets: int
    numoutlets: int
    outlettype: tuple[str, ...]


def _fixed(inlets: int, outlettype: tuple[str, ...]) -> Callable[[list[str]], BoxIO]:
    return lambda _args: BoxIO(inlets, len(outlettype), outlettype)


def _route(args: list[str]) -> BoxIO:
    # maxpat (Max 7+): one inlet per argument (the right ones replace that argument) plus the
    # left one, one outlet per argument plus the reject outlet: "route text" -> 2 in, 2 out;
    # "route /pitch /gatedpitch /amplitude /quality" -> 5 in, 5 out; "route /quat_viz /quat
    # /lin_accel /gyro /stability /activity /steps" -> 8 in, 8 out (public Max-saved .maxpat
    # files, found by their box text). Max 5 files wrote 1 inlet; Max 8 reads ours as Max 7+.
    n = len(args) + 1
    return BoxIO(n, n, ("",) * n)


def _select(args: list[str]) -> BoxIO:
    # CPU Reporter.amxd (Ableton/maxdevtools, saved by Max 8): "sel 0" -> 2 in, ["bang", ""];
    # "sel 0 1" -> 3 in, ["bang", "bang", ""]; "sel 0 1 2 3" -> 5 in, 5 out.
    n = len(args) + 1
    return BoxIO(n, n, ("bang",) * len(args) + ("",))


# The js scripts riffbridge ships, with the inlets and outlets each declares (``inlets = N;``,
# ``outlets = N;``): Max sizes a js box from its script (Test.amxd, Ableton/maxdevtools:
# "js TestScript" -> 1 in, 1 out, [""]). tests/test_max_patches.py reads the declarations.
JS_IO: dict[str, tuple[int, int]] = {"riffbridge-player.js": (1, 8)}


def _js(args: list[str]) -> BoxIO:
    if not args or args[0] not in JS_IO:
        raise ConfigError(f"js {' '.join(args)}: not a script riffbridge ships (JS_IO)")
    inlets, outlets = JS_IO[args[0]]
    return BoxIO(inlets, outlets, ("",) * outlets)


_UNPACK_TYPES = {"s": "", "f": "float", "i": "int", "l": ""}


def _unpack(args: list[str]) -> BoxIO:
    # maxpat: "unpack s f f i" -> 1 inlet, outlettype ["", "float", "float", "int"].
    return BoxIO(1, len(args), tuple(_UNPACK_TYPES[a] for a in args))


_TRIGGER_TYPES = {"b": "bang", "s": "", "i": "int", "f": "float", "l": ""}


def _trigger(args: list[str]) -> BoxIO:
    # maxpat: "t b" -> 1 inlet, outlettype ["bang"]; one outlet per argument.
    return BoxIO(1, len(args), tuple(_TRIGGER_TYPES[a] for a in args))


def _gate(args: list[str]) -> BoxIO:
    # maxpat: "gate 1" -> 2 inlets (control, data), 1 outlet [""]; N outlets for "gate N".
    n = int(args[0]) if args else 1
    return BoxIO(2, n, ("",) * n)


def _groove(args: list[str]) -> BoxIO:
    # maxpat: "groove~ name" -> 3 inlets, ["signal", "signal"]; "groove~ name 2" -> 3 signal
    # outlets: one per channel plus the sync outlet.
    # ref (groove~): a signal in the left inlet is the speed, a float there the position in ms.
    channels = int(args[1]) if len(args) > 1 and args[1].isdigit() else 1
    return BoxIO(3, channels + 1, ("signal",) * (channels + 1))


def _selector(args: list[str]) -> BoxIO:
    # maxpat: "selector~ 2" -> 3 inlets (control + 2 signals), 1 outlet ["signal"].
    n = int(args[0])
    return BoxIO(n + 1, 1, ("signal",))


def _divide(args: list[str]) -> BoxIO:
    # ref (/): left and right operand inlets, one outlet; a float argument makes float output.
    return BoxIO(2, 1, ("float",) if args and "." in args[0] else ("int",))


def _multiply(args: list[str]) -> BoxIO:
    # maxpat: "* 1000." -> 2 in, ["float"] (Max-saved patches, also "* -1."); ref (*): an int
    # argument (or none) makes int output.
    return BoxIO(2, 1, ("float",) if args and "." in args[0] else ("int",))


def _pack(args: list[str]) -> BoxIO:
    # maxpat: "pack 0. 0." -> 2 in, 1 out [""]; "pack i i" -> 2 in, [""]: one inlet per
    # argument (two without arguments), one list outlet.
    return BoxIO(max(len(args), 2), 1, ("",))


# Object boxes (maxclass "newobj"), by the first word of their text.
NEWOBJ: dict[str, Callable[[list[str]], BoxIO]] = {
    "udpsend": _fixed(1, ()),  # maxpat: "udpsend 127.0.0.1 7000" -> 1 in, 0 out
    "udpreceive": _fixed(1, ("",)),  # maxpat: "udpreceive 9001" -> 1 in, [""]
    "route": _route,
    "tosymbol": _fixed(1, ("",)),  # maxpat: "tosymbol" -> 1 in, [""]
    "prepend": _fixed(1, ("",)),  # maxpat: "prepend set" -> 1 in, [""]
    "unpack": _unpack,
    "t": _trigger,
    "loadbang": _fixed(1, ("bang",)),  # ref: one inlet (bang), one bang outlet
    # ref (metro): on/off + interval inlets, one bang outlet; with a note-value interval and
    # @active 1 it follows the transport (Live's, inside a device), @quantize snaps to its grid.
    "metro": _fixed(2, ("bang",)),
    # maxpat: "transport" -> 2 in, 9 out; outlet 4 is the tempo (float).
    "transport": _fixed(2, ("int", "int", "float", "float", "float", "", "int", "float", "")),
    "change": _fixed(1, ("", "int", "int")),  # maxpat: "change" -> 1 in, ["", "int", "int"]
    "counter": _fixed(5, ("int", "", "", "int")),  # maxpat: "counter 1 2" -> 5 in, 4 out
    "gate": _gate,
    "i": _fixed(2, ("int",)),  # ref (int): bang/int left, cold right inlet; one int outlet
    "/": _divide,
    "*": _multiply,
    "pack": _pack,
    # maxpat: "buffer~ name 2000" -> 1 in, 2 out; the right outlet bangs when a read finishes.
    "buffer~": _fixed(1, ("float", "bang")),
    "groove~": _groove,
    "sig~": _fixed(1, ("signal",)),  # maxpat: "sig~ 1" -> 1 in, ["signal"]
    "selector~": _selector,
    "dac~": _fixed(2, ()),  # maxpat: "dac~" -> 2 in, 0 out
    "sel": _select,
    "js": _js,
    # CPU Reporter.amxd (Ableton/maxdevtools): "qmetro 100" -> 2 in, ["bang"]; "del 1000" ->
    # 2 in, ["bang"]; "live.banks" -> 1 in, [""].
    "qmetro": _fixed(2, ("bang",)),
    "del": _fixed(2, ("bang",)),
    "live.banks": _fixed(1, ("",)),
    "pattr": _fixed(1, ("", "", "")),  # Test.amxd (Ableton/maxdevtools): "pattr test" -> 1, 3
    "line~": _fixed(2, ("signal", "bang")),  # maxpat (Max 7+): "line~" -> 2 in, 2 out
    "*~": _fixed(2, ("signal",)),  # maxpat (Max 7+): "*~" -> 2 in, ["signal"]
    "plugin~": _fixed(2, ("signal", "signal")),  # maxpat: "plugin~" -> 2 in, 2 signal out
    "plugout~": _fixed(2, ("signal", "signal")),  # maxpat: "plugout~" -> 2 in, 2 signal out
    # maxpat: "live.thisdevice" -> 1 in, ["bang", "int", "int"]; outlet 0 bangs when ready.
    "live.thisdevice": _fixed(1, ("bang", "int", "int")),
}

# User-interface boxes, by maxclass.
UI: dict[str, BoxIO] = {
    "message": BoxIO(2, 1, ("",)),  # maxpat: message -> 2 in, [""]
    "comment": BoxIO(1, 0, ()),  # maxpat: comment -> 1 in, 0 out
    "textedit": BoxIO(1, 4, ("", "int", "", "")),  # maxpat: textedit -> 1 in, 4 out
    "dial": BoxIO(1, 1, ("float",)),  # maxpat: dial -> 1 in, ["float"]
    "flonum": BoxIO(1, 2, ("", "bang")),  # maxpat (Max 8+): flonum -> ["", "bang"]
    "number": BoxIO(1, 2, ("", "bang")),  # maxpat (Max 8+): number -> ["", "bang"]
    "toggle": BoxIO(1, 1, ("int",)),  # maxpat: toggle -> 1 in, ["int"]
    # maxpat (Max 6-8, also pictslider.maxhelp): pictslider -> 2 in, ["int", "int"]: the
    # horizontal value out of the left outlet, the vertical out of the right; its range is
    # leftvalue/rightvalue and bottomvalue/topvalue. help: "set" (left inlet: one or both
    # values, right inlet: the vertical) moves the knob without output.
    "pictslider": BoxIO(2, 2, ("int", "int")),
    "live.dial": BoxIO(1, 2, ("", "float")),  # maxpat: live.dial -> 1 in, ["", "float"]
    # Test.amxd (Ableton/maxdevtools, Max 8): live.numbox -> 1 in, ["", "float"]; live.menu ->
    # 1 in, ["", "", "float"]; live.text -> 1 in, ["", ""].
    "live.numbox": BoxIO(1, 2, ("", "float")),
    "live.menu": BoxIO(1, 3, ("", "", "float")),
    "live.text": BoxIO(1, 2, ("", "")),
    # maxpat (Max 8 devices): stereo live.gain~ -> 2 in, ["signal", "signal", "", "float",
    # "list"] (the last two: the gain in dB, the meter levels)
    "live.gain~": BoxIO(2, 5, ("signal", "signal", "", "float", "list")),
}


def box_io(maxclass: str, text: str = "") -> BoxIO:
    """The inlets and outlets Max gives a box of this class (and, for objects, this text)."""
    if maxclass == "newobj":
        words = text.split()
        if not words or words[0] not in NEWOBJ:
            raise ConfigError(f"unknown Max object {text!r}: add it to NEWOBJ with its source")
        # Attribute values (after @name) are not positional arguments.
        positional: list[str] = []
        skip = False
        for w in words[1:]:
            if w.startswith("@"):
                skip = True
                continue
            if skip:
                skip = False
                continue
            positional.append(w)
        return NEWOBJ[words[0]](positional)
    if maxclass not in UI:
        raise ConfigError(f"unknown Max box class {maxclass!r}: add it to UI with its source")
    return UI[maxclass]


APPVERSION = {"major": 8, "minor": 6, "revision": 0, "architecture": "x64", "modernui": 1}


class Patcher:
    """Builds one patcher: boxes with ids obj-1, obj-2, ... in creation order, and patchlines."""

    def __init__(self, rect: tuple[float, float, float, float] = (40.0, 80.0, 1200.0, 760.0),
                 **patcher_attrs: Any) -> None:
        self.rect = rect
        self.attrs = patcher_attrs
        self.boxes: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self._io: dict[str, BoxIO] = {}

    def add(self, maxclass: str, xy: tuple[float, float], text: str = "",
            width: float = 0.0, height: float = 22.0, **attrs: Any) -> str:
        io = box_io(maxclass, text)
        box_id = f"obj-{len(self.boxes) + 1}"
        if not width:
            width = max(40.0, 7.0 * len(text) + 16.0)
        box: dict[str, Any] = {
            "id": box_id,
            "maxclass": maxclass,
            "numinlets": io.numinlets,
            "numoutlets": io.numoutlets,
        }
        if io.numoutlets:
            box["outlettype"] = list(io.outlettype)
        box["patching_rect"] = [float(xy[0]), float(xy[1]), float(width), float(height)]
        if text or maxclass in ("newobj", "message", "comment"):
            box["text"] = text
        box.update(attrs)
        self.boxes.append({"box": box})
        self._io[box_id] = io
        return box_id

    def obj(self, text: str, xy: tuple[float, float], **attrs: Any) -> str:
        return self.add("newobj", xy, text, **attrs)

    def msg(self, text: str, xy: tuple[float, float], **attrs: Any) -> str:
        return self.add("message", xy, text, **attrs)

    def comment(self, text: str, xy: tuple[float, float], **attrs: Any) -> str:
        return self.add("comment", xy, text, **attrs)

    def connect(self, source: str, outlet: int, destination: str, inlet: int = 0) -> None:
        if outlet >= self._io[source].numoutlets:
            raise ConfigError(f"{source} has no outlet {outlet}")
        if inlet >= self._io[destination].numinlets:
            raise ConfigError(f"{destination} has no inlet {inlet}")
        self.lines.append(
            {"patchline": {"source": [source, outlet], "destination": [destination, inlet]}}
        )

    def to_dict(self) -> dict[str, Any]:
        patcher: dict[str, Any] = {
            "fileversion": 1,
            "appversion": dict(APPVERSION),
            "classnamespace": "box",
            "rect": list(self.rect),
            "default_fontsize": 12.0,
            "default_fontname": "Arial",
        }
        patcher.update(self.attrs)
        patcher["boxes"] = self.boxes
        patcher["lines"] = self.lines
        return {"patcher": patcher}
