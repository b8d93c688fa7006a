"""The style mix: which prompts and seeds sound, at which weights. Pure: no torch, no I/O.

Three ways set the mix, and the last control moved says which one counts (the ``mix`` param):

- ``ab``: alpha between slot 1 (A) and slot 2 (B): weights ``(1 - alpha, alpha)``. The two-slot
  case, exactly today's riffuse; ``/rb/alpha`` selects it (and sets ``slots`` to 2).
- ``xy``: the point ``(x, y)`` on the surface whose corners are slots 1 (0, 0), 2 (1, 0),
  3 (0, 1) and 4 (1, 1): bilinear weights. ``/rb/xy`` (or ``/rb/x``, ``/rb/y``) selects it (and
  sets ``slots`` to 4).
- ``weights``: the weights of slots 1..``slots`` as set. ``/rb/slot/N/weight`` or ``/rb/slots``
  selects it, starting from the weights that sound at that moment, so nothing jumps.

Weights are normalised (they need not sum to 1); a slot at weight 0 takes no part. A mix whose
weights are all 0 is refused. ``styles`` gives the mix as the renderer takes it: (prompt, seed,
weight) of each slot that sounds, weights normalised and rounded so float noise cannot split the
loop cache.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from riffbridge import params as P
from riffbridge.errors import ControlError

WEIGHT_DIGITS = 6
Style = tuple[str, int, float]


def bilinear(x: float, y: float) -> tuple[float, float, float, float]:
    """The four corner weights of the point (x, y): slots 1 (0,0), 2 (1,0), 3 (0,1), 4 (1,1)."""
    return ((1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y)


def active_count(values: Mapping[str, Any]) -> int:
    mix = values["mix"]
    return 2 if mix == "ab" else 4 if mix == "xy" else int(values["slots"])


def weights(values: Mapping[str, Any]) -> tuple[float, ...]:
    """The raw weights of the slots that play (slot 1 first), as the mix mode says."""
    mix = values["mix"]
    if mix == "ab":
        alpha = float(values["alpha"])
        return (1 - alpha, alpha)
    if mix == "xy":
        return bilinear(float(values["x"]), float(values["y"]))
    return tuple(float(values[P.SLOT["weight"][n]]) for n in range(1, int(values["slots"]) + 1))


def normalised(raw: Sequence[float]) -> tuple[float, ...]:
    """``raw`` scaled to sum to 1; (1 - a, a) comes back exactly as it is."""
    total = math.fsum(raw)
    if not total > 0:
        raise ControlError(f"the style weights must not all be 0, got {list(raw)}; set at "
                           f"least one /rb/slot/N/weight above 0")
    return tuple(w / total for w in raw)


def styles(values: Mapping[str, Any]) -> tuple[Style, ...]:
    """(prompt, seed, weight) of each slot that sounds (weight > 0), weights normalised and
    rounded to ``WEIGHT_DIGITS``. Raises ``ControlError`` when every weight is 0."""
    out = []
    for n, w in enumerate(normalised(weights(values)), 1):
        w = round(w, WEIGHT_DIGITS)
        if w > 0:
            out.append((str(values[P.SLOT["prompt"][n]]), int(values[P.SLOT["seed"][n]]), w))
    return tuple(out)


def check_mix(values: Mapping[str, Any]) -> None:
    """Refuse a mix that cannot sound (every weight 0)."""
    styles(values)


# Which controls select which mode: setting one of these makes the mix that mode's.
def mode_of(name: str) -> str | None:
    if name == "alpha":
        return "ab"
    if name in ("x", "y"):
        return "xy"
    if name == "slots" or P.BY_NAME[name].family == "weight":
        return "weights"
    return None


def settle(old: Mapping[str, Any], names: Sequence[str], new: dict[str, Any]) -> None:
    """Follow the mode rules for a command that set ``names`` (``new`` holds the values after
    it, and is updated in place): the last mode-selecting control sets ``mix`` (unless the
    command sets ``mix`` itself, as a preset does), alpha makes ``slots`` 2 and the surface 4,
    and entering ``weights`` starts from the weights that sounded (those not set here)."""
    if "mix" in names:
        return
    modes = [m for m in (mode_of(n) for n in names) if m is not None]
    if not modes:
        return
    mode = modes[-1]
    if mode == "ab" and "slots" not in names:
        new["slots"] = 2
    elif mode == "xy" and "slots" not in names:
        new["slots"] = 4
    elif mode == "weights":
        count = int(new["slots"])
        if old["mix"] != "weights":
            sounding = weights(old)
            for n, w in enumerate(sounding, 1):
                name = P.SLOT["weight"][n]
                if name not in names:
                    new[name] = round(w, WEIGHT_DIGITS)
            count = max(count, len(sounding))
        if "slots" not in names:  # a weight set for slot N makes slots 1..N play
            count = max([count, *(P.BY_NAME[n].index or 0 for n in names
                                  if P.BY_NAME[n].family == "weight")])
            new["slots"] = count
    new["mix"] = mode
