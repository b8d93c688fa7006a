"""The render-ahead plan: which loops to render, in which order, and what to play now. Pure.

Every loop is named by a ``LoopKey``: all the parameters that change its sound, with alpha on a
grid (eighths by default). The planner orders keys so that the point the knob is on renders
first, then its neighbours in the direction the knob last moved, then the rest of the path to the
target (the auto walk's next points). Anything not in the plan is stale and is never rendered.
What to play is a ``Choice``: the exact render of the current grid point when it is cached, else
a blend of the two nearest rendered grid points around alpha (the shell mixes it with a
level-keeping law), else nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from riffbridge.params import SOUND, Param, Record
from riffbridge.state import EngineState

DEFAULT_GRID = 8  # alpha steps per unit: eighths
LOOKAHEAD = 3  # grid points planned past the current one in the knob's direction


class LoopKey(Record):
    """Everything that makes a loop sound the way it does (the table's ``sound`` params, alpha
    on the grid). The render cache key, and the loop's sidecar."""

    FIELDS: ClassVar[tuple[Param, ...]] = SOUND
    __slots__ = ("_identity",)  # computed once: keys are hashed on every cache lookup
    _identity: tuple[object, ...]

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        # At the ends of the path one side has no part in the sound (the embeddings' lerp and
        # the noise's slerp give exactly A at 0 and exactly B at 1), so it is left out of the
        # identity: a new prompt B while alpha sits at 0 keeps the loop that plays, and its
        # cache entry. The fields stay, so neighbours (``at``) keep both sides.
        fields = self.__dict__
        silent = "a" if fields["alpha"] == 1.0 else "b" if fields["alpha"] == 0.0 else None
        identity = tuple(None if p.side is not None and p.side == silent else fields[p.name]
                         for p in SOUND)
        object.__setattr__(self, "_identity", identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoopKey) and self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def at(self, alpha: float) -> LoopKey:
        return self.replace(alpha=alpha)

    def sidecar(self) -> dict[str, Any]:
        """The values as a loop's sidecar names them: by their config keys."""
        return {p.key: getattr(self, p.name) for p in SOUND}


def snap(alpha: float, grid: int = DEFAULT_GRID) -> float:
    """The grid point nearest to ``alpha`` (halves round up, so 1/16 -> 1/8)."""
    return min(1.0, max(0.0, math.floor(alpha * grid + 0.5) / grid))


def key_for(state: EngineState, alpha: float | None = None, grid: int = DEFAULT_GRID) -> LoopKey:
    values = {p.name: getattr(state, p.name) if p.digits is None
              else round(getattr(state, p.name), p.digits) for p in SOUND}
    values["alpha"] = snap(state.alpha if alpha is None else alpha, grid)
    return LoopKey(**values)


def _points(grid: int) -> list[float]:
    return [i / grid for i in range(grid + 1)]


def plan(state: EngineState, direction: int, grid: int = DEFAULT_GRID,
         lookahead: int = LOOKAHEAD) -> list[LoopKey]:
    """Keys to have rendered, most urgent first.

    ``direction`` is +1 or -1, the way the knob last moved (or the auto walk goes). The list is:
    the current point; then up to ``lookahead`` points in ``direction``; then the point behind;
    with auto mode on, the next points of the walk (to the end of the path).
    """
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
           grid: int = DEFAULT_GRID) -> Choice | None:
    """The best thing to play for ``state`` from what is rendered, or None if nothing fits."""
    exact = key_for(state, None, grid)
    if is_rendered(exact):
        return Choice(exact)
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
