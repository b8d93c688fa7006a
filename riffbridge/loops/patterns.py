"""Named grooves and custom step strings: which drum hits fall on which step of a bar.

A step string is one bar: each character is one equal step ('x' hit, 'X' accent, 'o' soft hit,
'.' or '-' rest; '|' and spaces are ignored for readability), so 16 characters are sixteenth
notes in 4/4, 12 are eighth-note triplets. The bar repeats for every bar of the loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from riffbridge.errors import ConfigError

INSTRUMENTS = ("kick", "snare", "clap", "hat", "openhat", "rim")
VELOCITY = {"x": 0.8, "X": 1.0, "o": 0.45}
REST = ".-_"


@dataclass(frozen=True)
class Pattern:
    """A groove: for each instrument, per-step velocities (0 = rest) across one bar."""

    name: str
    steps: Mapping[str, tuple[float, ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", MappingProxyType(dict(self.steps)))

    def describe(self) -> dict[str, str]:
        """Back to step strings, for sidecars and listings."""
        out = {}
        for name, vel in self.steps.items():
            out[name] = "".join("X" if v >= 1.0 else "x" if v >= 0.6 else "o" if v > 0 else "."
                                for v in vel)
        return out


def parse_steps(text: str) -> tuple[float, ...]:
    """'x...x...' -> velocities per step."""
    cleaned = text.replace("|", "").replace(" ", "")
    if not cleaned:
        raise ConfigError("a step string needs at least one step, e.g. 'x...x...x...x...'")
    out = []
    for ch in cleaned:
        if ch in VELOCITY:
            out.append(VELOCITY[ch])
        elif ch in REST:
            out.append(0.0)
        else:
            raise ConfigError(
                f"step strings use x (hit), X (accent), o (soft) and . (rest), got {ch!r} in "
                f"{text!r}")
    return tuple(out)


def parse_assignment(text: str) -> tuple[str, tuple[float, ...]]:
    """'kick=x...x...' -> ('kick', velocities)."""
    name, sep, steps = text.partition("=")
    name = name.strip().lower()
    if not sep:
        raise ConfigError(f"a step assignment looks like 'kick=x...x...', got {text!r}")
    if name not in INSTRUMENTS:
        raise ConfigError(f"unknown instrument {name!r}; use one of {', '.join(INSTRUMENTS)}")
    return name, parse_steps(steps)


def custom_pattern(assignments: Sequence[str], base: Pattern | None = None) -> Pattern:
    """A pattern from 'instrument=steps' strings, optionally overriding a named groove."""
    steps: dict[str, tuple[float, ...]] = dict(base.steps) if base else {}
    for text in assignments:
        name, vel = parse_assignment(text)
        steps[name] = vel
    label = (base.name + "+" if base else "") + "custom"
    return Pattern(label, steps)


def _p(name: str, **rows: str) -> Pattern:
    return Pattern(name, {k: parse_steps(v) for k, v in rows.items()})


GROOVES: dict[str, Pattern] = {
    p.name: p for p in (
        _p("four-on-the-floor", kick="X...x...X...x...", clap="....x.......x...",
           hat="..x...x...x...x.", openhat="..............o."),
        _p("breakbeat", kick="X.........x.....", snare="....X.......X...",
           hat="x.x.x.x.x.x.x.x.", rim="..........o....o"),
        _p("half-time", kick="X.....x.........", snare="........X.......",
           hat="x.x.x.x.x.x.x.x."),
        _p("boom-bap", kick="X......x..x.....", snare="....X.......X...",
           hat="x.x.x.x.x.x.x.xo"),
        _p("two-step", kick="X.........x.....", snare="....X.......X..o",
           hat="x.xox.x.x.xox.x."),
        _p("shuffle", kick="X.....x.....", snare="...X.....X..", hat="x.xx.xx.xx.x"),
    )
}


def get_pattern(name: str) -> Pattern:
    """A named groove; ConfigError naming the choices for an unknown name."""
    key = name.strip().lower()
    if key not in GROOVES:
        raise ConfigError(f"unknown pattern {name!r}; choose one of {', '.join(GROOVES)}")
    return GROOVES[key]
