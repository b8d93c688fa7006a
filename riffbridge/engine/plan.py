"""The render-ahead plan: which loops to render, in which order, and what to play now. Pure.

Every loop is named by a ``LoopKey``: all the parameters that change its sound, with alpha on a
grid (eighths by default). The planner orders keys so that the point the knob is on renders
first, then its neighbours in the direction the knob last moved, then the rest of the path to the
target (the auto walk's next points). Anything not in the plan is stale and is never rendered.
What to play is a ``Choice``: the exact render of the current grid point when it is cached, else
a blend of the two nearest rendered grid points around alpha (the shell mixes it with a
level-keeping law), else nothing new.

On the XY surface (``mix`` "xy", ``riffbridge.styles``) the exact point is (x, y) itself (to
three decimals), and the render-ahead runs on a lattice of ``xy_grid`` steps per axis: the
corners of the lattice cell around the point, nearest first, then those of the cells it is
heading into (the way it last moved), then the auto walk's next points. While the exact point
renders, the two nearest rendered lattice points around it sound as a blend (weighted by
closeness). A mix set by
the slots' weights has no path: its exact render plays when it is ready, and until then what
plays keeps playing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from riffbridge import styles
from riffbridge.params import BY_NAME, SOUND, Param, Record
from riffbridge.state import EngineState

DEFAULT_GRID: int = BY_NAME["grid"].default  # alpha steps per unit: eighths
DEFAULT_XY_GRID: int = BY_NAME["xy_grid"].default  # XY lattice steps per axis: a 5x5 lattice
LOOKAHEAD = 3  # grid points planned past the current one in the knob's direction
Direction = tuple[float, float]  # the way the XY point last moved (dx, dy)


class LoopKey(Record):
    """Everything that makes a loop sound the way it does (the table's ``sound`` params, alpha
    on the grid). The render cache key, and the loop's sidecar."""

    FIELDS: ClassVar[tuple[Param, ...]] = SOUND
    __slots__ = ("_identity",)  # computed once: keys are hashed on every cache lookup
    _identity: tuple[object, ...]

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # The identity names the style mix that sounds (prompt, seed and normalised weight of
        # each slot above weight 0), not the controls that made it: a slot at weight 0 (B at
        # alpha 0, a far corner of the surface) has no part in the sound, so a new prompt there
        # keeps the loop that plays and its cache entry; and alpha 0.25 is the same loop as
        # weights (3, 1). The fields stay, so neighbours (``at``, ``at_xy``) keep every slot.
        fields = self.__dict__
        identity = (*(fields[p.name] for p in SOUND if not p.blend), styles.styles(fields))
        object.__setattr__(self, "_identity", identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoopKey) and self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def at(self, alpha: float) -> LoopKey:
        return self.replace(alpha=alpha)

    def at_xy(self, x: float, y: float) -> LoopKey:
        return self.replace(x=x, y=y)

    @property
    def styles(self) -> tuple[styles.Style, ...]:
        """The mix that sounds: (prompt, seed, normalised weight) per slot above weight 0."""
        mix: tuple[styles.Style, ...] = self._identity[-1]  # type: ignore[assignment]
        return mix

    @property
    def point(self) -> tuple[float, float]:
        return float(self.x), float(self.y)

    def sidecar(self) -> dict[str, Any]:
        """The values as a loop's sidecar names them: by their config keys."""
        return {p.key: getattr(self, p.name) for p in SOUND}


def snap(alpha: float, grid: int = DEFAULT_GRID) -> float:
    """The grid point nearest to ``alpha`` (halves round up, so 1/16 -> 1/8)."""
    return min(1.0, max(0.0, math.floor(alpha * grid + 0.5) / grid))


def key_for(state: EngineState, alpha: float | None = None, grid: int = DEFAULT_GRID) -> LoopKey:
    """The loop key of ``state``: on the A/B path alpha snaps to the grid; on the XY surface the
    point is kept (to three decimals)."""
    values = {p.name: getattr(state, p.name) if p.digits is None
              else round(getattr(state, p.name), p.digits) for p in SOUND}
    values["alpha"] = snap(state.alpha if alpha is None else alpha, grid)
    return LoopKey(**values)


def lattice(v: float, grid: int) -> float:
    """The lattice coordinate nearest to ``v`` (halves round up)."""
    return min(1.0, max(0.0, math.floor(v * grid + 0.5) / grid))


def _cell(x: float, y: float, grid: int) -> list[tuple[float, float]]:
    """The corners of the lattice cell that holds (x, y), nearest first."""
    x0, y0 = min(math.floor(x * grid), grid - 1) / grid, min(math.floor(y * grid), grid - 1) / grid
    step = 1.0 / grid
    corners = [(x0, y0), (x0 + step, y0), (x0, y0 + step), (x0 + step, y0 + step)]
    corners = [(round(cx, 9), round(cy, 9)) for cx, cy in corners]
    return sorted(corners, key=lambda c: (math.dist(c, (x, y)), c))


def xy_walk(x: float, y: float, turns: float) -> tuple[float, float]:
    """The auto walk's next point on the surface: ``turns`` of a turn round the circle through
    the surface's middle that passes the point (radius at least 1/4, at most 1/2)."""
    dx, dy = x - 0.5, y - 0.5
    radius = min(0.5, max(0.25, math.hypot(dx, dy)))
    angle = math.atan2(dy, dx) + 2 * math.pi * turns
    nx, ny = 0.5 + radius * math.cos(angle), 0.5 + radius * math.sin(angle)
    return (round(min(1.0, max(0.0, nx)), 3), round(min(1.0, max(0.0, ny)), 3))


def plan_xy(state: EngineState, direction: Direction, xy_grid: int = DEFAULT_XY_GRID,
            lookahead: int = LOOKAHEAD, grid: int = DEFAULT_GRID) -> list[LoopKey]:
    """Keys to have rendered on the XY surface, most urgent first: the exact point; the corners
    of its lattice cell, nearest first; the corners of the cells up to ``lookahead`` lattice
    steps on along ``direction`` (the way the point last moved); with auto on, the walk's next
    points."""
    exact = key_for(state, None, grid)
    x, y = exact.point
    points: list[tuple[float, float]] = [(x, y), *_cell(x, y, xy_grid)]
    dx, dy = direction
    norm = math.hypot(dx, dy)
    if norm > 0:
        step = 1.0 / xy_grid
        for k in range(1, lookahead + 1):  # the cells the point is heading into
            px, py = x + dx / norm * step * k, y + dy / norm * step * k
            if not (0.0 <= px <= 1.0 and 0.0 <= py <= 1.0):
                break
            points += _cell(px, py, xy_grid)
    if state.auto:
        wx, wy = x, y
        for _ in range(xy_grid + 1):
            wx, wy = xy_walk(wx, wy, state.auto)
            points.append((lattice(wx, xy_grid), lattice(wy, xy_grid)))
    keys: list[LoopKey] = []
    seen: set[tuple[float, float]] = set()
    for p in points:
        if p not in seen:
            seen.add(p)
            keys.append(exact.at_xy(*p))
    return keys


def choose_xy(state: EngineState, is_rendered: Callable[[LoopKey], bool],
              xy_grid: int = DEFAULT_XY_GRID, grid: int = DEFAULT_GRID) -> Choice | None:
    """The exact point when rendered, else a blend of the two nearest rendered lattice points
    within a cell and a half (weighted by closeness), else the one there is, else None."""
    exact = key_for(state, None, grid)
    if is_rendered(exact):
        return Choice(exact)
    x, y = exact.point
    cx, cy = math.floor(x * xy_grid), math.floor(y * xy_grid)
    near = []
    for i in range(cx - 1, cx + 3):
        for j in range(cy - 1, cy + 3):
            if 0 <= i <= xy_grid and 0 <= j <= xy_grid:
                p = (i / xy_grid, j / xy_grid)
                key = exact.at_xy(*p)
                if is_rendered(key):
                    near.append((math.dist(p, (x, y)), p, key))
    if not near:
        return None
    near.sort(key=lambda n: (n[0], n[1]))
    if len(near) == 1 or near[0][0] == 0.0:
        return Choice(near[0][2])
    (d1, _, k1), (d2, _, k2) = near[0], near[1]
    return Choice(k1, k2, d1 / (d1 + d2))


def _points(grid: int) -> list[float]:
    return [i / grid for i in range(grid + 1)]


def plan(state: EngineState, direction: int, grid: int = DEFAULT_GRID,
         lookahead: int = LOOKAHEAD, *, xy_direction: Direction = (0.0, 0.0),
         xy_grid: int = DEFAULT_XY_GRID) -> list[LoopKey]:
    """Keys to have rendered, most urgent first.

    ``direction`` is +1 or -1, the way the knob last moved (or the auto walk goes). The list is:
    the current point; then up to ``lookahead`` points in ``direction``; then the point behind;
    with auto mode on, the next points of the walk (to the end of the path). On the XY surface
    it is ``plan_xy``'s; for a mix of the slots' weights, the exact mix alone.
    """
    if state.mix == "xy":
        return plan_xy(state, xy_direction, xy_grid, lookahead, grid)
    if state.mix == "weights":
        return [key_for(state, None, grid)]
    here = snap(state.alpha, grid)
    step = 1.0 / grid
    sign = 1 if direction >= 0 else -1
    order = [here]
    order += [here + sign * step * i for i in range(1, lookahead + 1)]
    order.append(here - sign * step)
    if state.auto:
        walk = state.alpha
        for _ in range(grid + 1):
            walk = walk + state.auto
            if not 0.0 <= walk <= 1.0:
                break
            order.append(snap(walk, grid))
    base = key_for(state, here, grid)
    seen: set[float] = set()
    keys = []
    for alpha in order:
        alpha = round(alpha, 9)
        if 0.0 <= alpha <= 1.0 and alpha not in seen:
            seen.add(alpha)
            keys.append(base.at(snap(alpha, grid)))
    return keys


def schedule_shape(key: LoopKey) -> tuple[object, ...]:
    """What loops must share to render in one UNet batch: the render's width (tempo, bars,
    beats per bar), its steps and where img2img starts (denoise). Prompts, seeds, the mix and
    the seed pattern may differ: each job of a batch has its own."""
    return (key.bpm, key.bars, key.beats_per_bar, key.steps, key.denoise)


def batch(first: LoopKey, rest: Iterable[LoopKey], limit: int) -> tuple[LoopKey, ...]:
    """``first`` and, in their order, up to ``limit - 1`` of ``rest`` that share its schedule
    shape (``schedule_shape``), each once: the loops one render may carry."""
    shape = schedule_shape(first)
    chosen = [first]
    for key in rest:
        if len(chosen) >= limit:
            break
        if key not in chosen and schedule_shape(key) == shape:
            chosen.append(key)
    return tuple(chosen)


@dataclass(frozen=True)
class Choice:
    """What should sound: one key (weight 0), or a blend of ``low`` and ``high`` at ``weight``."""

    low: LoopKey
    high: LoopKey | None = None
    weight: float = 0.0  # 0 = all low, 1 = all high

    @property
    def exact(self) -> bool:
        return self.high is None


def choose(state: EngineState, is_rendered: Callable[[LoopKey], bool],
           grid: int = DEFAULT_GRID, xy_grid: int = DEFAULT_XY_GRID) -> Choice | None:
    """The best thing to play for ``state`` from what is rendered, or None if nothing fits."""
    if state.mix == "xy":
        return choose_xy(state, is_rendered, xy_grid, grid)
    exact = key_for(state, None, grid)
    if is_rendered(exact):
        return Choice(exact)
    if state.mix == "weights":
        return None  # no path to blend along: keep what plays until the mix is rendered
    alpha = state.alpha
    below = [p for p in _points(grid) if p <= alpha and is_rendered(exact.at(p))]
    above = [p for p in _points(grid) if p >= alpha and is_rendered(exact.at(p))]
    if below and above:
        lo, hi = max(below), min(above)
        if hi == lo:
            return Choice(exact.at(lo))
        return Choice(exact.at(lo), exact.at(hi), (alpha - lo) / (hi - lo))
    if below or above:
        nearest = max(below) if below else min(above)
        return Choice(exact.at(nearest))
    return None


def blend_gains(weight: float) -> tuple[float, float]:
    """Equal-power gains (low, high) for a blend at ``weight``."""
    theta = min(1.0, max(0.0, weight)) * math.pi / 2
    return math.cos(theta), math.sin(theta)


def auto_step(alpha: float, amount: float) -> float:
    """The next alpha of the auto walk: it bounces at 0 and 1 (a seamless back-and-forth)."""
    nxt = alpha + amount
    if nxt > 1.0:
        nxt = 2.0 - nxt
    elif nxt < 0.0:
        nxt = -nxt
    return min(1.0, max(0.0, nxt))
