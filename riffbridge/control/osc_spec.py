"""The OSC namespace as data: the one table that the server, the docs and the Max patches derive
from. Its params are a view of the parameter table (``riffbridge.params``); the commands and
pushes are the transport's own. `riffbridge osc-spec` prints it as JSON.

Type tags follow OSC: ``s`` string, ``i`` int32, ``f`` float32. An empty ``args`` string means the
address takes no argument. ``kind`` says what a message does:

- ``param``: ``/rb/<param> value`` sets the parameter; ``/rb/<param>`` with no argument asks, and
  the answer comes back on the same address with the current value. A param may answer on more
  than one address (style A is also style slot 1: ``/rb/prompt/a`` and ``/rb/slot/1/prompt``),
  and a group address sets several params at once (``/rb/xy x y``: its ``params``).
- ``command``: does something; ``args`` may be optional (``optional=True``).
- ``push``: sent by riffbridge to the requester or to subscribers, never received.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Literal

from riffbridge import params as P

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
    params: tuple[str, ...] = ()  # for a group param address: the state fields, in arg order
    family: str | None = None  # for a style slot's member: its family ("prompt", ...)
    index: int | None = None  # and slot number
    most: int | None = None  # the last tag repeats: at most this many args in all (``args``
    # gives the fewest): ``/rb/cue/weights`` takes one weight per slot


PREFIX = "/rb"


def _param_addresses(param: P.Param) -> tuple[OscAddress, ...]:
    """The param's address and its aliases, each a full entry."""
    assert param.osc is not None
    tag = {"str": "s", "int": "i", "float": "f"}[param.kind]
    unit = f" ({param.unit})" if param.unit and param.unit not in param.help else ""
    return tuple(OscAddress(address, tag, "param", param.help + unit, param=param.name,
                            minimum=param.minimum, maximum=param.maximum, choices=param.choices,
                            family=param.family, index=param.index)
                 for address in (param.osc, *param.aliases))


SLOT_ADDRESS = re.compile(r"/rb/slot/([^/]*)/(\w+)")

OSC_SPEC: tuple[OscAddress, ...] = (
    # The params: a view of the parameter table.
    *(a for p in P.LIVE if p.osc for a in _param_addresses(p)),
    OscAddress("/rb/xy", "ff", "param", "the XY surface's point (x, y), each 0..1: bilinear "
               "weights of the corner slots 1 (0,0), 2 (1,0), 3 (0,1), 4 (1,1); makes the mix "
               "the surface's", minimum=0.0, maximum=1.0, params=("x", "y")),
    OscAddress("/rb/render", "", "command", "render the current point now"),
    OscAddress("/rb/seed/audio", "s", "command",
               "make a WAV, AIFF or FLAC file the img2img seed, stretched to the loop's bars at "
               "the tempo (a path inside the seed folder; relative to it when relative); "
               "denoise says how far the render may move from it"),
    OscAddress("/rb/seed/image", "s", "command",
               "make a spectrogram PNG the img2img seed (a path inside the seed folder)"),
    OscAddress("/rb/play", "", "command", "start playback (from the next quantum)"),
    OscAddress("/rb/stop", "", "command", "stop playback (at the next quantum)"),
    OscAddress("/rb/preset", "s", "command", "recall a preset by name"),
    OscAddress("/rb/preset/save", "s", "command", "store the current settings as a preset"),
    OscAddress("/rb/subscribe", "i", "command",
               "add the sender as a subscriber (at port, default the reply port): a new one "
               "gets every param, the status and the sounding clip at once; send it again "
               "within the subscriber TTL to stay subscribed (each refresh is answered with "
               "/rb/pong at that port)", optional=True),
    OscAddress("/rb/unsubscribe", "i", "command",
               "remove the sender as a subscriber (at port, default the reply port)",
               optional=True),
    OscAddress("/rb/status", "", "command",
               "ask for the status; answered on /rb/status", reply="/rb/status sffiii"),
    OscAddress("/rb/ping", "", "command", "liveness check; answered on /rb/pong",
               reply="/rb/pong"),
    OscAddress("/rb/midi/learn", "s", "command",
               "map the next MIDI CC moved to the named parameter"),
    OscAddress("/rb/record/start", "s", "command",
               "record the master output to this .wav or .flac path on the engine's machine, "
               "with a log of the set (.jsonl) beside it"),
    OscAddress("/rb/record/stop", "", "command", "end the recording (the files stay whole)"),
    OscAddress("/rb/cue/alpha", "f", "command",
               "audition this alpha on the cue bus (--cue-out / --cue-channels), in time with "
               "the master, without changing what sounds; whatever the master's mix, commit "
               "moves it there as /rb/alpha would", minimum=0.0, maximum=1.0),
    OscAddress("/rb/cue/xy", "ff", "command",
               "audition this point (x, y) of the XY surface on the cue bus, in time with the "
               "master, without changing what sounds (a blend of rendered lattice neighbours "
               "at once, the exact point when it renders); whatever the master's mix, commit "
               "moves it there as /rb/xy would", minimum=0.0, maximum=1.0),
    OscAddress("/rb/cue/weights", "ff", "command",
               f"audition the mix of slots 1..N at these weights (one per slot from slot 1, "
               f"2 to {P.MAX_SLOTS}, each 0..1, not all 0) on the cue bus; commit sets them and "
               f"/rb/slots N, as /rb/slot/N/weight would", minimum=0.0, maximum=1.0,
               most=P.MAX_SLOTS),
    OscAddress("/rb/cue/commit", "", "command",
               "make what the cue bus plays the next loop, from the next quantum (the master's "
               "alpha, x/y or weights follow, pushed to subscribers)"),
    # Pushed by riffbridge.
    OscAddress("/rb/status", "sffiii", "push",
               "state, bpm, alpha, queued renders, cached loops, audio underruns"),
    OscAddress("/rb/pong", "", "push", "answer to /rb/ping"),
    OscAddress("/rb/clip", "sffi", "push",
               "the loop to play from the next quantum, as a file: path, alpha, bpm, bars"),
    OscAddress("/rb/playing", "fi", "push",
               "the engine switched loops: the alpha that sounds (a blend's in-between), bar"),
    OscAddress("/rb/progress", "f", "push", "progress of the render in flight, 0..1"),
    OscAddress("/rb/cue/playing", "f", "push",
               "the cue bus plays a new candidate: the alpha it stands for"),
    OscAddress("/rb/cue/playing/xy", "ff", "push",
               "the cue bus plays a new XY candidate: the point it stands for (a blend's "
               "in-between until the exact point renders)"),
    OscAddress("/rb/cue/playing/weights", "ff", "push",
               "the cue bus plays a new weights candidate: the slots' normalised weights, "
               "slot 1 first", most=P.MAX_SLOTS),
    OscAddress("/rb/error", "ss", "push",
               "a message was refused (its address, the reason), or the engine's news of a "
               "failure (render, worker, files, engine or auto, the reason)"),
)

MAX_PROMPT_CHARS = P.MAX_PROMPT_CHARS


def incoming() -> tuple[OscAddress, ...]:
    """The addresses riffbridge accepts."""
    return tuple(a for a in OSC_SPEC if a.kind != "push")


_INCOMING: dict[str, OscAddress] = {}
for _entry in OSC_SPEC:
    if _entry.kind != "push":
        _INCOMING.setdefault(_entry.address, _entry)


def by_address(address: str) -> OscAddress | None:
    """The accepted entry for an address, or None if riffbridge does not take it."""
    return _INCOMING.get(address)


def addresses_of(param: str) -> tuple[str, ...]:
    """Every address that answers for ``param``: its own, its aliases, then its groups."""
    return tuple(e.address for e in OSC_SPEC if e.kind == "param"
                 and (e.param == param or param in e.params))


def spec_as_json() -> str:
    return json.dumps(
        {"prefix": PREFIX, "max_prompt_chars": MAX_PROMPT_CHARS,
         "addresses": [asdict(a) for a in OSC_SPEC]},
        indent=2,
    )
