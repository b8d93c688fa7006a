"""MIDI mapping: mido messages -> state commands. Pure (no ports); unit-tested with literal
messages.

A TOML map (``riffbridge/data/default_midi_map.toml`` is the default)::

    [[cc]]            # a 7-bit controller
    control = 1       # the mod wheel
    param = "alpha"
    min = 0.0         # optional: the param's range from the OSC table
    max = 1.0
    curve = "linear"  # linear | exp (geometric, for positive ranges) | square (fine at the low end)
    channel = 1       # optional, 1-16; left out = any channel

    [[cc14]]          # a 14-bit controller: MSB on `msb`, LSB on `lsb` (default msb + 32)
    msb = 16
    param = "bpm"

    [[note]]          # note on (velocity > 0)
    note = 36
    command = "render"   # render | play | stop | preset (then preset = "name")

    [[program]]       # program change; program left out = any program
    program = 0
    command = "preset"
    preset = "dusty funk"

14-bit pairs follow the MIDI spec: an MSB alone sets the value with LSB 0, the LSB that follows
refines it. String params with choices (quantum, clock) split the knob's travel into equal zones.
MIDI learn: ``learn(param)``, and the next controller moved is bound to ``param`` (7-bit).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from riffbridge import params as P
from riffbridge.errors import ConfigError, ControlError
from riffbridge.state import Command, Play, RecallPreset, Render, SetParam, Stop

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_MAP = Path(__file__).resolve().parents[1] / "data" / "default_midi_map.toml"
CURVES = ("linear", "exp", "square")
COMMANDS = ("render", "play", "stop", "preset")


@dataclass(frozen=True)
class Target:
    """A knob's destination: a param over [lo, hi] along a curve."""

    param: str
    lo: float
    hi: float
    curve: str = "linear"

    def value(self, x: float) -> Any:
        """The param value at knob position ``x`` in [0, 1]."""
        spec = P.BY_NAME[self.param]
        if spec.choices:
            index = min(int(x * len(spec.choices)), len(spec.choices) - 1)
            return spec.choices[index]
        if self.curve == "exp":
            y = self.lo * (self.hi / self.lo) ** x
        elif self.curve == "square":
            y = self.lo + (self.hi - self.lo) * x * x
        else:
            y = self.lo + (self.hi - self.lo) * x
        y = min(max(y, min(self.lo, self.hi)), max(self.lo, self.hi))
        return round(y) if spec.kind == "int" else float(y)


@dataclass(frozen=True)
class Action:
    """A note's or program change's command."""

    command: str
    preset: str | None = None

    def to_command(self) -> Command:
        if self.command == "render":
            return Render()
        if self.command == "play":
            return Play()
        if self.command == "stop":
            return Stop()
        assert self.preset is not None
        return RecallPreset(self.preset)


@dataclass(frozen=True)
class MidiMap:
    cc: tuple[tuple[int | None, int, Target], ...] = ()  # (channel 0-15 or None, control, target)
    cc14: tuple[tuple[int | None, int, int, Target], ...] = ()  # (channel, msb, lsb, target)
    notes: tuple[tuple[int | None, int, Action], ...] = ()
    programs: tuple[tuple[int | None, int | None, Action], ...] = ()


# ---- loading ----------------------------------------------------------------------------------

def _int(entry: dict[str, Any], key: str, lo: int, hi: int, where: str,
         default: int | None = None) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}: {key} must be an int in [{lo}, {hi}], got {value!r}")
    return value


def _channel(entry: dict[str, Any], where: str) -> int | None:
    if "channel" not in entry:
        return None
    return _int(entry, "channel", 1, 16, where) - 1


def make_target(param: Any, lo: Any = None, hi: Any = None, curve: Any = "linear",
                where: str = "MIDI map") -> Target:
    try:
        spec = P.get(param)
    except ControlError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if spec.kind == "str" and not spec.choices:
        raise ConfigError(f"{where}: {param} is text and cannot follow a knob; "
                          f"map it to a note or program change with a preset instead")
    lo = spec.minimum if lo is None else lo
    hi = spec.maximum if hi is None else hi
    if spec.choices:
        lo, hi = 0.0, 1.0
    for key, v in (("min", lo), ("max", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}: {param} needs a numeric {key} (the param has no "
                              f"default range), got {v!r}")
    if curve not in CURVES:
        raise ConfigError(f"{where}: curve must be one of {', '.join(CURVES)}, got {curve!r}")
    if curve == "exp" and (lo <= 0 or hi <= 0):
        raise ConfigError(f"{where}: curve exp needs min and max above 0, got {lo}, {hi}")
    return Target(param, float(lo), float(hi), curve)


def _action(entry: dict[str, Any], where: str) -> Action:
    command = entry.get("command", "preset" if "preset" in entry else None)
    if command not in COMMANDS:
        raise ConfigError(f"{where}: command must be one of {', '.join(COMMANDS)}, "
                          f"got {command!r}")
    preset = entry.get("preset")
    if command == "preset" and (not isinstance(preset, str) or not preset):
        raise ConfigError(f"{where}: command preset needs preset = \"name\", got {preset!r}")
    return Action(command, preset if command == "preset" else None)


def parse_map(data: dict[str, Any], where: str = "MIDI map") -> MidiMap:
    """A ``MidiMap`` from a parsed TOML document; ``ConfigError`` naming the bad entry."""
    unknown = set(data) - {"cc", "cc14", "note", "program"}
    if unknown:
        raise ConfigError(f"{where}: unknown sections {sorted(unknown)}; "
                          f"use cc, cc14, note, program")
    cc, cc14, notes, programs = [], [], [], []
    for n, e in enumerate(data.get("cc", [])):
        w = f"{where} [[cc]] #{n + 1}"
        cc.append((_channel(e, w), _int(e, "control", 0, 127, w),
                   make_target(e.get("param"), e.get("min"), e.get("max"),
                               e.get("curve", "linear"), w)))
    for n, e in enumerate(data.get("cc14", [])):
        w = f"{where} [[cc14]] #{n + 1}"
        msb = _int(e, "msb", 0, 31, w)
        cc14.append((_channel(e, w), msb, _int(e, "lsb", 0, 127, w, default=msb + 32),
                     make_target(e.get("param"), e.get("min"), e.get("max"),
                                 e.get("curve", "linear"), w)))
    for n, e in enumerate(data.get("note", [])):
        w = f"{where} [[note]] #{n + 1}"
        notes.append((_channel(e, w), _int(e, "note", 0, 127, w), _action(e, w)))
    for n, e in enumerate(data.get("program", [])):
        w = f"{where} [[program]] #{n + 1}"
        program = _int(e, "program", 0, 127, w) if "program" in e else None
        programs.append((_channel(e, w), program, _action(e, w)))
    return MidiMap(tuple(cc), tuple(cc14), tuple(notes), tuple(programs))


def load_map(path: str | Path = DEFAULT_MAP) -> MidiMap:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the MIDI map {path}: {exc}") from None
    return parse_map(data, str(path))


# ---- the mapper -------------------------------------------------------------------------------

def _matches(channel: int | None, msg_channel: int) -> bool:
    return channel is None or channel == msg_channel


class MidiMapper:
    """Turns mido messages into commands. Keeps the 14-bit pairing and learn state; thread-safe
    (the MIDI callback thread and the OSC thread both touch it)."""

    def __init__(self, midi_map: MidiMap | None = None) -> None:
        self.map = midi_map if midi_map is not None else MidiMap()
        self._msb: dict[tuple[int, int], int] = {}  # (channel, msb control) -> last MSB
        self._learning: str | None = None
        self._lock = threading.Lock()

    @property
    def learning(self) -> str | None:
        return self._learning

    def learn(self, param: str) -> None:
        """Bind the next controller moved to ``param`` (over its full range)."""
        try:
            make_target(param, where="MIDI learn")  # refuse text params now, not at the knob
        except ConfigError as exc:
            raise ControlError(str(exc)) from None
        with self._lock:
            self._learning = param

    def handle(self, msg: Any) -> list[Command]:
        """The commands a mido message asks for (often none)."""
        kind = getattr(msg, "type", None)
        with self._lock:
            if kind == "control_change":
                return self._control(msg.channel, msg.control, msg.value)
            if kind == "note_on" and msg.velocity > 0:
                return [a.to_command() for ch, note, a in self.map.notes
                        if note == msg.note and _matches(ch, msg.channel)]
            if kind == "program_change":
                return [a.to_command() for ch, prog, a in self.map.programs
                        if (prog is None or prog == msg.program) and _matches(ch, msg.channel)]
        return []

    def _learned(self, channel: int, control: int) -> None:
        assert self._learning is not None
        target = make_target(self._learning, where="MIDI learn")
        keep = tuple(b for b in self.map.cc if b[1] != control)
        keep14 = tuple(b for b in self.map.cc14 if control not in (b[1], b[2]))
        self.map = replace(self.map, cc=(*keep, (channel, control, target)), cc14=keep14)
        log.info("MIDI learn: CC %d on channel %d -> %s", control, channel + 1, self._learning)
        self._learning = None

    def _control(self, channel: int, control: int, value: int) -> list[Command]:
        if self._learning is not None:
            self._learned(channel, control)
        out: list[Command] = []
        for ch, number, target in self.map.cc:
            if number == control and _matches(ch, channel):
                out.append(SetParam(target.param, target.value(value / 127)))
        for ch, msb, lsb, target in self.map.cc14:
            if not _matches(ch, channel):
                continue
            if control == msb:
                self._msb[(channel, msb)] = value
                out.append(SetParam(target.param, target.value((value << 7) / 16383)))
            elif control == lsb and (channel, msb) in self._msb:
                full = (self._msb[(channel, msb)] << 7) | value
                out.append(SetParam(target.param, target.value(full / 16383)))
        return out
