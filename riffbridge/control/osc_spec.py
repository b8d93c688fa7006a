"""The OSC namespace as data: the one table that the server, the docs and the Max patches derive
from. `riffbridge osc-spec` prints it as JSON.

Type tags follow OSC: ``s`` string, ``i`` int32, ``f`` float32. An empty ``args`` string means the
address takes no argument. ``kind`` says what a message does:

- ``param``: ``/rb/<param> value`` sets the parameter; ``/rb/<param>`` with no argument asks, and
  the answer comes back on the same address with the current value.
- ``command``: does something; ``args`` may be optional (``optional=True``).
- ``push``: sent by riffbridge to the requester or to subscribers, never received.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["param", "command", "push"]


@dataclass(frozen=True)
class OscAddress:
    address: str
    args: str
    kind: Kind
    meaning: str
    param: str | None = None  # name of the state field for kind="param"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # for commands: the arguments may be left out
    reply: str | None = None  # for commands that answer: the address and args of the answer


PREFIX = "/rb"

OSC_SPEC: tuple[OscAddress, ...] = (
    OscAddress("/rb/prompt/a", "s", "param", "prompt of style A (at alpha 0)", param="prompt_a"),
    OscAddress("/rb/prompt/b", "s", "param", "prompt of style B (at alpha 1)", param="prompt_b"),
    OscAddress("/rb/seed/a", "i", "param", "noise seed of style A", param="seed_a", minimum=0),
    OscAddress("/rb/seed/b", "i", "param", "noise seed of style B", param="seed_b", minimum=0),
    OscAddress("/rb/negative", "s", "param", "negative prompt", param="negative"),
    OscAddress("/rb/alpha", "f", "param", "position between A (0) and B (1)", param="alpha",
               minimum=0.0, maximum=1.0),
    OscAddress("/rb/denoise", "f", "param", "img2img strength (default 0.75)", param="denoise",
               minimum=0.0, maximum=1.0),
    OscAddress("/rb/guidance", "f", "param", "classifier-free guidance (default 7)",
               param="guidance", minimum=0.0, maximum=30.0),
    OscAddress("/rb/steps", "i", "param", "diffusion steps", param="steps", minimum=1,
               maximum=500),
    OscAddress("/rb/bpm", "f", "param", "tempo when the clock is internal", param="bpm",
               minimum=40.0, maximum=240.0),
    OscAddress("/rb/bars", "i", "param", "loop length in bars", param="bars", minimum=1,
               maximum=16),
    OscAddress("/rb/beats", "i", "param", "beats per bar", param="beats_per_bar", minimum=1,
               maximum=16),
    OscAddress("/rb/pattern", "s", "param",
               "seed pattern name, or a seed image file inside the seed folder", param="pattern"),
    OscAddress("/rb/quantum", "s", "param", "where switches land", param="quantum",
               choices=("beat", "bar", "loop")),
    OscAddress("/rb/xfade", "f", "param", "switch crossfade in seconds", param="xfade",
               minimum=0.0, maximum=10.0),
    OscAddress("/rb/auto", "f", "param", "alpha change per loop, 0 = off", param="auto",
               minimum=-1.0, maximum=1.0),
    OscAddress("/rb/gain", "f", "param", "output gain in dB", param="gain_db", minimum=-60.0,
               maximum=12.0),
    OscAddress("/rb/clock", "s", "param", "tempo source", param="clock",
               choices=("internal", "midi", "link")),
    OscAddress("/rb/render", "", "command", "render the current point now"),
    OscAddress("/rb/play", "", "command", "start playback (from the next quantum)"),
    OscAddress("/rb/stop", "", "command", "stop playback (at the next quantum)"),
    OscAddress("/rb/preset", "s", "command", "recall a preset by name"),
    OscAddress("/rb/preset/save", "s", "command", "store the current settings as a preset"),
    OscAddress("/rb/subscribe", "i", "command",
               "add the sender as a subscriber (at port, default the reply port)", optional=True),
    OscAddress("/rb/unsubscribe", "i", "command",
               "remove the sender as a subscriber (at port, default the reply port)",
               optional=True),
    OscAddress("/rb/status", "", "command",
               "ask for the status; answered on /rb/status", reply="/rb/status sffiii"),
    OscAddress("/rb/ping", "", "command", "liveness check; answered on /rb/pong",
               reply="/rb/pong"),
    OscAddress("/rb/midi/learn", "s", "command",
               "map the next MIDI CC moved to the named parameter"),
    # Pushed by riffbridge.
    OscAddress("/rb/status", "sffiii", "push",
               "state, bpm, alpha, queued renders, cached loops, audio underruns"),
    OscAddress("/rb/pong", "", "push", "answer to /rb/ping"),
    OscAddress("/rb/clip", "sffi", "push",
               "the loop to play from the next quantum, as a file: path, alpha, bpm, bars"),
    OscAddress("/rb/playing", "fi", "push", "the engine switched loops: alpha, bar"),
    OscAddress("/rb/progress", "f", "push", "progress of the render in flight, 0..1"),
    OscAddress("/rb/error", "ss", "push",
               "a message was refused (its address, the reason), or a render or file error "
               "(render or files, the reason)"),
)

MAX_PROMPT_CHARS = 500


def incoming() -> tuple[OscAddress, ...]:
    """The addresses riffbridge accepts."""
    return tuple(a for a in OSC_SPEC if a.kind != "push")


def outgoing() -> tuple[OscAddress, ...]:
    """The addresses riffbridge sends: pushes, plus each param (the answer to a query)."""
    return tuple(a for a in OSC_SPEC if a.kind in ("push", "param"))


def by_address(address: str) -> OscAddress | None:
    """The accepted entry for an address, or None if riffbridge does not take it."""
    for entry in incoming():
        if entry.address == address:
            return entry
    return None


def spec_as_json() -> str:
    return json.dumps(
        {"prefix": PREFIX, "max_prompt_chars": MAX_PROMPT_CHARS,
         "addresses": [asdict(a) for a in OSC_SPEC]},
        indent=2,
    )
