"""The engine state and the commands that change it. Pure: no I/O, no threads, no torch.

``EngineState`` holds every live param of the table (``riffbridge.params``) plus the transport
flag. Commands are frozen dataclasses, so they can cross threads. ``apply(state, command)``
returns the new state or raises ``ControlError`` naming the value and what is allowed; the old
state is untouched either way. The number rules are the table's (``riffbridge.params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from riffbridge import params as P
from riffbridge import styles
from riffbridge.errors import ControlError

__all__ = [
    "ApplyPreset",
    "ClockTempo",
    "Command",
    "ControlError",
    "CueAlpha",
    "CueCommit",
    "CueWeights",
    "CueXY",
    "EngineState",
    "MidiLearn",
    "Play",
    "RecallPreset",
    "Render",
    "SavePreset",
    "SetMany",
    "SetParam",
    "SetSeedFile",
    "Stop",
    "apply",
    "changed_params",
    "coerce",
    "cue_command",
]

PLAYING = P.Param("playing", "bool", False, "the transport: sounding or stopped")


class EngineState(P.Record):
    """Everything the control surface can set (the table's live params) and the transport flag.
    Defaults give a sound patch out of the box. Immutable; ``replace`` makes a changed copy."""

    FIELDS: ClassVar[tuple[P.Param, ...]] = (*P.LIVE, PLAYING)

    def params(self) -> dict[str, Any]:
        """The settable values (everything but the transport flag), by name."""
        values = self.as_dict()
        del values["playing"]
        return values


# ---- commands ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetParam:
    name: str
    value: Any


@dataclass(frozen=True)
class SetMany:
    """Set several params at once, all or nothing (``/rb/xy x y``, a step of the XY walk)."""

    values: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class SetSeedFile:
    """Make a sound file (``kind`` "audio") or a spectrogram image ("image") the img2img seed:
    the hub checks the file and turns this into the ``pattern`` that names it."""

    kind: str
    path: str


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
class ClockTempo:
    """The tempo measured from an external clock (MIDI, Link): allowed whatever ``clock`` is."""

    bpm: float


@dataclass(frozen=True)
class StartRecording:
    """Record the master output to ``path`` (.wav or .flac) and the set's log beside it (the
    engine opens the files; the state does not change)."""

    path: str


@dataclass(frozen=True)
class StopRecording:
    """End the recording (the engine finishes the files; the state does not change)."""


@dataclass(frozen=True)
class CueAlpha:
    """Audition ``alpha`` on the cue bus (what sounds does not change; the state neither)."""

    alpha: float


@dataclass(frozen=True)
class CueXY:
    """Audition the XY surface's point ``(x, y)`` on the cue bus (what sounds does not change;
    the state neither). Whatever the master's mix: commit moves the master there as ``/rb/xy``
    would, which makes its mix the surface's."""

    x: float
    y: float


@dataclass(frozen=True)
class CueWeights:
    """Audition the mix of slots 1..N at these weights (N = how many) on the cue bus; commit
    sets them, and ``slots`` N, as ``/rb/slots`` and ``/rb/slot/n/weight`` would."""

    weights: tuple[float, ...]


@dataclass(frozen=True)
class CueCommit:
    """Make what the cue bus plays the next loop: the engine asks for its point."""


CueCandidate = CueAlpha | CueXY | CueWeights
Command = (SetParam | SetMany | SetSeedFile | ApplyPreset | Render | Play | Stop | RecallPreset
           | SavePreset | MidiLearn | ClockTempo | StartRecording | StopRecording | CueAlpha
           | CueXY | CueWeights | CueCommit)


def cue_weights(values: tuple[float, ...] | list[float], label: str = "/rb/cue/weights"
                ) -> tuple[float, ...]:
    """The weights of a ``/rb/cue/weights`` candidate, checked: one per slot from slot 1, 2 to
    ``MAX_SLOTS`` of them, each a slot weight's (0..1), not all 0."""
    least = int(P.BY_NAME["slots"].minimum or 2)
    if not least <= len(values) <= P.MAX_SLOTS:
        raise ControlError(f"{label} takes one weight per style slot from slot 1, {least} to "
                           f"{P.MAX_SLOTS} of them, got {len(values)}: {list(values)[:10]}")
    weights = tuple(P.check(P.BY_NAME[P.SLOT["weight"][n]], w, f"{label} weight {n} (slot {n})")
                    for n, w in enumerate(values, 1))
    if not any(w > 0 for w in weights):
        raise ControlError(f"{label}: the weights must not all be 0, got {list(weights)}; give "
                           f"at least one slot a weight above 0")
    return weights


def cue_command(candidate: CueCandidate) -> SetParam | SetMany:
    """The master's command that a cue candidate stands for: what ``/rb/cue/commit`` sends, and
    what the cue bus auditions (the state after it)."""
    if isinstance(candidate, CueAlpha):
        return SetParam("alpha", candidate.alpha)
    if isinstance(candidate, CueXY):
        return SetMany((("x", candidate.x), ("y", candidate.y)))
    weights = tuple((P.SLOT["weight"][n], w) for n, w in enumerate(candidate.weights, 1))
    return SetMany((("slots", len(candidate.weights)), *weights))


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` for the live param ``name`` and return it in the state's own type."""
    return P.check(P.get(name), value)


def _check_bpm_clock(state: EngineState, name: str) -> None:
    if name == "bpm" and state.clock != "internal":
        raise ControlError(f"bpm follows the {state.clock} clock; set /rb/clock internal "
                           f"to set the tempo by hand")


def _set(state: EngineState, values: dict[str, Any]) -> EngineState:
    """``state`` with ``values`` (checked) set, the style mix's mode rules followed
    (``riffbridge.styles.settle``) and a mix that cannot sound (all weights 0) refused."""
    names = list(values)
    if not any(P.BY_NAME[n].blend for n in names):
        return state.replace(**values)
    new = {**state.as_dict(), **values}
    styles.settle(state.as_dict(), names, new)
    styles.check_mix(new)
    return state.replace(**new)


def apply(state: EngineState, command: Command) -> EngineState:
    """The state after ``command``. Raises ``ControlError`` (state unchanged) on bad input."""
    if isinstance(command, SetParam):
        value = coerce(command.name, command.value)
        _check_bpm_clock(state, command.name)
        return _set(state, {command.name: value})
    if isinstance(command, SetMany):
        many = {name: coerce(name, raw) for name, raw in command.values}
        for name in many:
            _check_bpm_clock(state, name)
        return _set(state, many)
    if isinstance(command, ApplyPreset):
        values: dict[str, Any] = {}
        for name, raw in command.values:
            try:
                values[name] = coerce(name, raw)
            except ControlError as exc:
                raise ControlError(f"preset {command.name!r}: {exc}") from None
        try:
            return _set(state, values)
        except ControlError as exc:
            raise ControlError(f"preset {command.name!r}: {exc}") from None
    if isinstance(command, ClockTempo):
        return state.replace(bpm=coerce("bpm", command.bpm))
    if isinstance(command, Play):
        return state.replace(playing=True)
    if isinstance(command, Stop):
        return state.replace(playing=False)
    if isinstance(command, (RecallPreset, SavePreset)):
        P.check_name("preset name", command.name)
        return state
    if isinstance(command, MidiLearn):
        if command.param not in P.BY_NAME or not P.BY_NAME[command.param].live:
            raise ControlError(f"cannot learn unknown parameter {command.param!r}; known: "
                               f"{', '.join(sorted(p.name for p in P.LIVE))}")
        return state
    if isinstance(command, (Render, StopRecording, CueCommit)):
        return state
    if isinstance(command, CueAlpha):
        coerce("alpha", command.alpha)
        return state
    if isinstance(command, CueXY):
        for name, value in (("x", command.x), ("y", command.y)):
            P.check(P.BY_NAME[name], value, f"/rb/cue/xy {name}")
        return state
    if isinstance(command, CueWeights):
        cue_weights(command.weights)
        return state
    if isinstance(command, StartRecording):
        if not command.path.strip() or not command.path.lower().endswith((".wav", ".flac")):
            raise ControlError(f"record path must be a .wav or .flac file, got "
                               f"{command.path[:200]!r}")
        return state
    if isinstance(command, SetSeedFile):
        raise ControlError(f"a seed file is set through the hub, which checks it: {command!r}")
    raise ControlError(f"unknown command {command!r}")


def changed_params(old: EngineState, new: EngineState) -> list[str]:
    """Names of the state fields (params and ``playing``) that differ, in table order."""
    return new.changed(old)
