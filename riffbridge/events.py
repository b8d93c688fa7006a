"""What the engine tells the world, as frozen values. Pure.

The engine shell puts these on its outbox; the control side (``riffbridge.control.feedback``)
turns each into its own messages (OSC pushes, the status line, later the browser and MIDI
feedback). Nothing in ``riffbridge.engine`` knows an OSC address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from riffbridge.state import Command, EngineState

ErrorSource = Literal["render", "worker", "files", "engine", "auto", "record"]


@dataclass(frozen=True)
class LoopReady:
    """A loop landed in the cache (its file may come later: ``ClipCued``)."""

    alpha: float
    bpm: float
    bars: int
    seconds: float  # the render's wall time


@dataclass(frozen=True)
class ClipCued:
    """The file of the exact loop cued to sound from the next quantum (once per switch)."""

    path: str
    alpha: float
    bpm: float
    bars: int


@dataclass(frozen=True)
class Switched:
    """The player applied a switch: what sounds now, from which bar."""

    alpha: float  # of what sounds: the rendered point, or the point a blend stands for
    bar: int
    label: str


@dataclass(frozen=True)
class CuePlaying:
    """The cue bus plays a new candidate (``/rb/cue/alpha``, ``/rb/cue/xy``, ``/rb/cue/weights``):
    what it stands for, in the candidate's own form (``mix``): the alpha on the A/B path (a
    blend's in-between), the XY point on the surface, or the slots' normalised weights."""

    alpha: float
    label: str
    mix: str = "ab"  # "ab", "xy" or "weights": which of the fields below say what plays
    point: tuple[float, float] | None = None  # mix "xy": the point (a blend's in-between)
    weights: tuple[float, ...] = ()  # mix "weights": slot 1 first, normalised


@dataclass(frozen=True)
class Progress:
    """Progress of the render in flight, 0..1."""

    fraction: float


@dataclass(frozen=True)
class EngineError:
    """Something the performer should know went wrong; the engine goes on."""

    source: ErrorSource
    message: str


@dataclass(frozen=True)
class Request:
    """The engine asks for a state change (the auto walk, the setlist): the control side submits
    it to the hub, which owns the state, like any other command."""

    command: Command


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot, published every turn; readers on any thread get an immutable value."""

    state: EngineState
    sounding: str
    queued: int
    cached: int
    cache_mb: float
    underruns: int
    worker: str  # starting, idle, rendering, failed
    renders: int
    last_render_s: float
    errors: int
    last_error: str
    # For a face on the engine (the browser page): the style map's points, as alphas.
    rendered: tuple[float, ...] = ()  # grid points of the current settings in the cache
    wanted: tuple[float, ...] = ()  # planned points not rendered yet, most urgent first
    rendering: float | None = None  # the point of the render in flight
    # ... and on the XY surface (mix "xy"): lattice points as (x, y)
    rendered_xy: tuple[tuple[float, float], ...] = ()
    wanted_xy: tuple[tuple[float, float], ...] = ()
    rendering_xy: tuple[float, float] | None = None


Event = LoopReady | ClipCued | Switched | Progress | EngineError | Request | CuePlaying
