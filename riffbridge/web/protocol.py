"""The page's messages: JSON over the WebSocket, to and from riffbridge's own values. Pure.

The page speaks the OSC grammar in JSON: ``{"address": "/rb/alpha", "args": [0.5]}``. Each
message is checked here for its shape (a JSON object, a string address, a short list of strings
and numbers) and then routed by ``riffbridge.control.routes.route``, the same function OSC
messages go through, so a value the page sends is refused or applied exactly as over OSC.

Out go JSON objects with a ``type``: ``hello`` (the parameter table, once), ``state`` (every live
param), ``status`` (the engine's numbers, the style map, the playhead) and ``event`` (the engine's
news: switched, ready, clip, cue (what the cue bus now plays), error). Nothing here names a file
outside the configured folders: a cued clip is shown by its file name only.
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

from riffbridge import params as P
from riffbridge.control.routes import Route, route
from riffbridge.errors import ControlError
from riffbridge.events import ClipCued, CuePlaying, EngineError, Event, LoopReady, Switched
from riffbridge.state import EngineState

MAX_MESSAGE_CHARS = 4096  # the longest message the page sends: a 500-character prompt, escaped
MAX_ARGS = 4


def param_table() -> list[dict[str, Any]]:
    """The live params the page can set, as the page builds its controls from them."""
    rows = []
    for p in P.LIVE:
        if p.osc is None:
            continue
        rows.append({"name": p.name, "kind": p.kind, "default": p.default, "help": p.help,
                     "unit": p.unit, "min": p.minimum, "max": p.maximum,
                     "choices": list(p.choices), "address": p.osc, "sound": p.sound})
    return rows


def hello(grid: int, xy_grid: int) -> dict[str, Any]:
    return {"type": "hello", "params": param_table(), "grid": grid, "xy_grid": xy_grid}


def state_message(state: EngineState) -> dict[str, Any]:
    values = {p.name: getattr(state, p.name) for p in P.LIVE}
    return {"type": "state", "state": values, "playing": bool(state.playing)}


def event_message(event: Event) -> dict[str, Any] | None:
    """The page's message for an engine event (progress travels in ``status``)."""
    if isinstance(event, Switched):
        return {"type": "event", "kind": "switched", "alpha": event.alpha, "bar": event.bar,
                "label": event.label}
    if isinstance(event, LoopReady):
        return {"type": "event", "kind": "ready", "alpha": event.alpha, "bpm": event.bpm,
                "bars": event.bars, "seconds": round(event.seconds, 3)}
    if isinstance(event, ClipCued):
        return {"type": "event", "kind": "clip", "file": PurePath(event.path).name,
                "alpha": event.alpha}
    if isinstance(event, CuePlaying):
        return {"type": "event", "kind": "cue", "mix": event.mix, "alpha": event.alpha,
                "point": None if event.point is None else list(event.point),
                "weights": list(event.weights), "label": event.label}
    if isinstance(event, EngineError):
        return error_message(event.source, event.message)
    return None


def error_message(source: str, message: str) -> dict[str, Any]:
    return {"type": "event", "kind": "error", "source": source, "message": message[:500]}


def _arg(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ControlError(f"message args must be strings or numbers, got "
                           f"{type(value).__name__} {json.dumps(value)[:60]}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ControlError(f"message args must be finite numbers, got {value!r}")
    return value


def parse(text: Any) -> Route:
    """The route for one message from the page; ``ControlError`` naming what is wrong."""
    if not isinstance(text, str):
        raise ControlError("the page sends JSON text frames, got a binary frame")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ControlError(f"message too long: {len(text)} characters, at most "
                           f"{MAX_MESSAGE_CHARS}")
    try:
        data = json.loads(text)
    except ValueError:
        raise ControlError(f"message is not JSON: {text[:60]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        raise ControlError(f'message must be {{"address": "/rb/...", "args": [...]}}, got '
                           f"{text[:60]!r}")
    args = data.get("args", [])
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise ControlError(f"args must be a list of at most {MAX_ARGS} values, got "
                           f"{json.dumps(args)[:60]}")
    return route(data["address"], tuple(_arg(a) for a in args))


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)
