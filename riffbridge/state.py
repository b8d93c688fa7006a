"""The engine state and the commands that change it. Pure: no I/O, no threads, no torch.

``EngineState`` holds every value the OSC params name (``param=`` in
``riffbridge.control.osc_spec``) plus the transport flag. Commands are frozen dataclasses, so they
can cross threads. ``apply(state, command)`` returns the new state or raises ``ControlError``
naming the value and what is allowed; the old state is untouched either way.

Number rules (the same for OSC and MIDI): ints are accepted for float params; floats are accepted
for int params only when they hold an integral value (Max, TouchOSC and Pure Data send floats by
default, ``4.0`` means 4 and ``4.5`` is an error); bools are never numbers; NaN and infinity are
refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from riffbridge.control.osc_spec import MAX_PROMPT_CHARS, OSC_SPEC
from riffbridge.errors import ControlError

__all__ = [
    "MAX_PROMPT_CHARS",
    "PARAMS",
    "ApplyPreset",
    "ClockTempo",
    "Command",
    "ControlError",
    "EngineState",
    "MidiLearn",
    "Ping",
    "Play",
    "RecallPreset",
    "Render",
    "SavePreset",
    "SetParam",
    "Stop",
    "apply",
    "changed_params",
    "coerce",
]

MAX_SEED = 2**31 - 1  # OSC int32
MAX_NAME_CHARS = 200  # preset and pattern names


@dataclass(frozen=True)
class EngineState:
    """Everything the control surface can set. Defaults give a sound patch out of the box.

    ``bars`` defaults to 2: at 120 BPM in 4/4 two bars last 4.0 s, which fits inside one
    512-column render (5.12 s), the width the model was trained at, so the default loop needs
    neither a wider (slower, less stable) render nor stitching.
    """

    prompt_a: str = "funk drum groove, slap bass"
    prompt_b: str = "jazz piano trio, brushed drums"
    seed_a: int = 42
    seed_b: int = 43
    negative: str = ""
    alpha: float = 0.0
    denoise: float = 0.75
    guidance: float = 7.0
    steps: int = 50
    bpm: float = 120.0
    bars: int = 2
    beats_per_bar: int = 4
    pattern: str = "four-on-the-floor"
    quantum: str = "bar"
    xfade: float = 0.05
    auto: float = 0.0
    gain_db: float = 0.0
    clock: str = "internal"
    playing: bool = False

    def params(self) -> dict[str, Any]:
        """The settable values (everything but the transport flag), by state field name."""
        return {name: getattr(self, name) for name in PARAMS}


@dataclass(frozen=True)
class ParamSpec:
    """How one state field is checked: derived from the OSC table."""

    name: str
    address: str
    type: str  # "s", "i" or "f"
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...]


def _param_specs() -> dict[str, ParamSpec]:
    specs: dict[str, ParamSpec] = {}
    for entry in OSC_SPEC:
        if entry.kind == "param" and entry.param:
            specs[entry.param] = ParamSpec(entry.param, entry.address, entry.args, entry.minimum,
                                           entry.maximum, entry.choices)
    seed_max = float(MAX_SEED)
    for seed in ("seed_a", "seed_b"):
        if seed in specs and specs[seed].maximum is None:
            specs[seed] = replace(specs[seed], maximum=seed_max)
    return specs


PARAMS: dict[str, ParamSpec] = _param_specs()

_state_fields = {f.name for f in fields(EngineState)}
_missing = set(PARAMS) - _state_fields
if _missing:  # the OSC table and the state must agree; fail at import, not at the first message
    raise RuntimeError(f"osc_spec names params that EngineState lacks: {sorted(_missing)}")


# ---- commands ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetParam:
    name: str
    value: Any


@dataclass(frozen=True)
class ApplyPreset:
    """Set several params at once (all or nothing): what a recalled preset becomes."""

    name: str
    values: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Render:
    """Render the current point now (the engine acts; the state does not change)."""


@dataclass(frozen=True)
class Play:
    pass


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class RecallPreset:
    """Recall a preset by name: the hub looks it up and applies it as ``ApplyPreset``."""

    name: str


@dataclass(frozen=True)
class SavePreset:
    name: str


@dataclass(frozen=True)
class MidiLearn:
    """Map the next MIDI CC moved to this param."""

    param: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class ClockTempo:
    """The tempo measured from an external clock (MIDI, Link): allowed whatever ``clock`` is."""

    bpm: float


Command = (SetParam | ApplyPreset | Render | Play | Stop | RecallPreset | SavePreset | MidiLearn
           | Ping | ClockTempo)


# ---- validation -------------------------------------------------------------------------------

def _range_text(spec: ParamSpec) -> str:
    lo = "-inf" if spec.minimum is None else f"{spec.minimum:g}"
    hi = "inf" if spec.maximum is None else f"{spec.maximum:g}"
    return f"[{lo}, {hi}]"


def _number(spec: ParamSpec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an int" if spec.type == "i" else "a float"
        raise ControlError(f"{spec.name} must be {kind} in {_range_text(spec)}, "
                           f"got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ControlError(f"{spec.name} must be a finite number in {_range_text(spec)}, "
                           f"got {value!r}")
    if (spec.minimum is not None and value < spec.minimum) or (
            spec.maximum is not None and value > spec.maximum):
        raise ControlError(f"{spec.name} must be in {_range_text(spec)}, got {value!r}")
    return float(value)


def _check_name(what: str, value: str) -> str:
    if not value.strip():
        raise ControlError(f"{what} must not be empty, got {value!r}")
    if len(value) > MAX_NAME_CHARS:
        raise ControlError(f"{what} must be at most {MAX_NAME_CHARS} characters, "
                           f"got {len(value)}")
    if any(ord(c) < 32 for c in value):
        raise ControlError(f"{what} must not contain control characters, got {value!r}")
    return value


def _check_pattern(value: str) -> str:
    """A pattern is a groove name or a file path relative to the seed folder, never outside it.

    Whether the name or the file exists is the hub's question (it may look at the disk)."""
    _check_name("pattern", value)
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or value.startswith("~"):
        raise ControlError(f"pattern must be a name or a path inside the seed folder, "
                           f"got the absolute path {value!r}")
    if ".." in posix.parts or ".." in windows.parts:
        raise ControlError(f"pattern must stay inside the seed folder, got {value!r}")
    return value


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` for param ``name`` and return it in the state's own type."""
    spec = PARAMS.get(name)
    if spec is None:
        raise ControlError(f"unknown parameter {name!r}; known: {', '.join(sorted(PARAMS))}")
    if spec.type == "s":
        if not isinstance(value, str):
            raise ControlError(f"{name} must be a string, got {type(value).__name__} {value!r}")
        if spec.choices:
            if value not in spec.choices:
                raise ControlError(f"{name} must be one of {', '.join(spec.choices)}, "
                                   f"got {value!r}")
            return value
        if name == "pattern":
            return _check_pattern(value)
        if len(value) > MAX_PROMPT_CHARS:
            raise ControlError(f"{name} must be at most {MAX_PROMPT_CHARS} characters, "
                               f"got {len(value)}")
        if "\x00" in value:
            raise ControlError(f"{name} must not contain NUL characters")
        return value
    number = _number(spec, value)
    if spec.type == "i":
        if not number.is_integer():
            raise ControlError(f"{name} must be a whole number in {_range_text(spec)}, "
                               f"got {value!r}")
        return int(number)
    return number


def _check_bpm_clock(state: EngineState, name: str) -> None:
    if name == "bpm" and state.clock != "internal":
        raise ControlError(f"bpm follows the {state.clock} clock; set /rb/clock internal "
                           f"to set the tempo by hand")


def apply(state: EngineState, command: Command) -> EngineState:
    """The state after ``command``. Raises ``ControlError`` (state unchanged) on bad input."""
    if isinstance(command, SetParam):
        value = coerce(command.name, command.value)
        _check_bpm_clock(state, command.name)
        return replace(state, **{command.name: value})
    if isinstance(command, ApplyPreset):
        values: dict[str, Any] = {}
        for name, raw in command.values:
            try:
                values[name] = coerce(name, raw)
            except ControlError as exc:
                raise ControlError(f"preset {command.name!r}: {exc}") from None
        return replace(state, **values)
    if isinstance(command, ClockTempo):
        return replace(state, bpm=coerce("bpm", command.bpm))
    if isinstance(command, Play):
        return replace(state, playing=True)
    if isinstance(command, Stop):
        return replace(state, playing=False)
    if isinstance(command, (RecallPreset, SavePreset)):
        _check_name("preset name", command.name)
        return state
    if isinstance(command, MidiLearn):
        if command.param not in PARAMS:
            raise ControlError(f"cannot learn unknown parameter {command.param!r}; known: "
                               f"{', '.join(sorted(PARAMS))}")
        return state
    if isinstance(command, (Render, Ping)):
        return state
    raise ControlError(f"unknown command {command!r}")


def changed_params(old: EngineState, new: EngineState) -> list[str]:
    """Names of the state fields (params and ``playing``) that differ, in field order."""
    return [f.name for f in fields(EngineState) if getattr(old, f.name) != getattr(new, f.name)]
