"""OSC routing: address + arguments -> what to do, or a ``ControlError``. Pure, no sockets.

The table is ``osc_spec.OSC_SPEC``. A param address with one argument sets it, with none asks for
it; commands take exactly their arguments (``optional`` ones may be left out). The values are
checked here by ``riffbridge.state.coerce``, so a refused message never reaches the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from riffbridge import params as P
from riffbridge.control.osc_spec import SLOT_ADDRESS, OscAddress, by_address
from riffbridge.errors import ControlError
from riffbridge.state import (
    Command,
    CueAlpha,
    CueCommit,
    CueWeights,
    CueXY,
    MidiLearn,
    Play,
    RecallPreset,
    Render,
    SavePreset,
    SetMany,
    SetParam,
    SetSeedFile,
    StartRecording,
    Stop,
    StopRecording,
    coerce,
    cue_weights,
)


@dataclass(frozen=True)
class Query:
    """Answer ``address`` with the current value of ``param``."""

    param: str
    address: str


@dataclass(frozen=True)
class QueryGroup:
    """Answer ``address`` with the current values of ``params`` (``/rb/xy`` -> x y)."""

    params: tuple[str, ...]
    address: str


@dataclass(frozen=True)
class Do:
    """Apply ``command`` to the state (through the hub)."""

    command: Command


@dataclass(frozen=True)
class Subscribe:
    port: int | None  # None: the reply port


@dataclass(frozen=True)
class Unsubscribe:
    port: int | None


@dataclass(frozen=True)
class StatusRequest:
    pass


@dataclass(frozen=True)
class PingRequest:
    pass


Route = Query | QueryGroup | Do | Subscribe | Unsubscribe | StatusRequest | PingRequest

_TYPE_WORDS = {"s": "a string", "i": "an int", "f": "a float"}


def _describe(args: tuple[Any, ...]) -> str:
    return ", ".join(f"{type(a).__name__} {a!r}"[:80] for a in args) or "none"


def _expect(entry: OscAddress, args: tuple[Any, ...]) -> None:
    want = len(entry.args)
    if len(args) == want or (entry.optional and not args):
        return
    if entry.most is not None and want <= len(args) <= entry.most:
        return
    wanted = " ".join(_TYPE_WORDS.get(t, t) for t in entry.args) or "no argument"
    if entry.optional:
        wanted += " or nothing"
    if entry.most is not None:
        wanted = f"{want} to {entry.most} floats (one per style slot from slot 1)"
    raise ControlError(f"{entry.address} takes {wanted}, got {len(args)} argument(s): "
                       f"{_describe(args)}")


def _string(entry: OscAddress, value: Any) -> str:
    if not isinstance(value, str):
        raise ControlError(f"{entry.address} takes a string, got {_describe((value,))}")
    return value


def _port(entry: OscAddress, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ControlError(f"{entry.address} takes a UDP port in [1, 65535], "
                           f"got {_describe((value,))}")
    return value


def route(address: Any, args: tuple[Any, ...] | list[Any]) -> Route:
    """What the message ``address args`` asks for. Raises ``ControlError`` when it is refused."""
    args = tuple(args)
    if not isinstance(address, str):
        raise ControlError(f"OSC address must be a string, got {address!r}")
    entry = by_address(address)
    if entry is None:
        _unknown_slot(address)
        raise ControlError(f"unknown address {address[:100]!r}; run `riffbridge osc-spec` "
                           f"for the list")
    if entry.kind == "param" and entry.params:
        if not args:
            return QueryGroup(entry.params, address)
        _expect(entry, args)
        return Do(SetMany(tuple((name, coerce(name, value))
                                for name, value in zip(entry.params, args, strict=True))))
    if entry.kind == "param":
        assert entry.param is not None
        if not args:
            return Query(entry.param, address)
        _expect(entry, args)
        return Do(SetParam(entry.param, coerce(entry.param, args[0])))
    _expect(entry, args)
    if address == "/rb/render":
        return Do(Render())
    if address == "/rb/play":
        return Do(Play())
    if address == "/rb/stop":
        return Do(Stop())
    if address == "/rb/preset":
        return Do(RecallPreset(_string(entry, args[0])))
    if address == "/rb/preset/save":
        return Do(SavePreset(_string(entry, args[0])))
    if address == "/rb/record/start":
        return Do(StartRecording(_string(entry, args[0])))
    if address == "/rb/record/stop":
        return Do(StopRecording())
    if address == "/rb/cue/alpha":
        return Do(CueAlpha(coerce("alpha", args[0])))
    if address == "/rb/cue/xy":
        return Do(CueXY(*(P.check(P.BY_NAME[name], value, f"{address} {name}")
                          for name, value in zip(("x", "y"), args, strict=True))))
    if address == "/rb/cue/weights":
        return Do(CueWeights(cue_weights(args, address)))
    if address == "/rb/cue/commit":
        return Do(CueCommit())
    if address == "/rb/seed/audio":
        return Do(SetSeedFile("audio", _string(entry, args[0])))
    if address == "/rb/seed/image":
        return Do(SetSeedFile("image", _string(entry, args[0])))
    if address == "/rb/midi/learn":
        return Do(MidiLearn(_string(entry, args[0])))
    if address == "/rb/subscribe":
        return Subscribe(_port(entry, args[0]) if args else None)
    if address == "/rb/unsubscribe":
        return Unsubscribe(_port(entry, args[0]) if args else None)
    if address == "/rb/status":
        return StatusRequest()
    if address == "/rb/ping":
        return PingRequest()
    raise ControlError(f"{address} is in the OSC table but has no route; please report this")


def _unknown_slot(address: str) -> None:
    """A slot address the table lacks: name the slot number or the member that is wrong."""
    match = SLOT_ADDRESS.fullmatch(address)
    if match is None:
        return
    number, member = match.groups()
    if not (number.isdigit() and 1 <= int(number) <= P.MAX_SLOTS):
        raise ControlError(f"slot {number[:20]!r} is out of range: style slots are 1 to "
                           f"{P.MAX_SLOTS} (/rb/slot/N/{member[:20]})")
    raise ControlError(f"a style slot has no {member[:40]!r}; /rb/slot/{number}/ takes "
                       f"{', '.join(sorted(P.SLOT))}")


def coalesce(names: Sequence[str]) -> list[list[int]]:
    """How to apply a run of plain param sets, given their params' names in arrival order.

    One list per param, in the order of each param's latest set: the indices of its values,
    latest first. The server applies the first; only when that one is refused (answered with
    /rb/error) does it try the next, and so on, so coalescing never drops a value that would
    apply (``/rb/pattern breakbeat`` then ``/rb/pattern nosuch`` leaves breakbeat). Values older
    than the one that applies are dropped unchecked, as any coalesced value is."""
    chains: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        chains.setdefault(name, []).append(index)
    order = sorted(chains.values(), key=lambda chain: chain[-1])
    return [chain[::-1] for chain in order]
