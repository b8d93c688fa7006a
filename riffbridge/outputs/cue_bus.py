"""Where the cue bus plays: two more channels of the master's device (``--cue-channels 3,4``), or a
device of its own (``--cue-out``, a second stream that calls ``Player.fill_cue``).

``ChannelSplit`` is the callback for the first case: the master's two channels and the cue bus's
two, from one device callback, through preallocated buffers (it only copies, like the player).
"""

from __future__ import annotations

import numpy as np

from riffbridge.engine.player import Player
from riffbridge.errors import ConfigError

MAX_BLOCK = 8192  # the largest block a device may ask for (the blocksize param's maximum)


def parse_cue_channels(text: str) -> tuple[int, int]:
    """``"3,4"`` -> (3, 4): two distinct output channels above the master's 1 and 2."""
    parts = [p.strip() for p in text.split(",")]
    try:
        pair = tuple(int(p) for p in parts)
    except ValueError:
        pair = ()
    if len(pair) != 2 or pair[0] == pair[1] or min(pair) < 3 or max(pair) > 64:
        raise ConfigError(f"cue_channels must be two different output channels from 3 to 64 "
                          f"(1 and 2 are the master), such as 3,4; got {text!r}")
    return pair[0], pair[1]


class ChannelSplit:
    """A device callback for ``channels`` outputs: master on 1-2, the cue bus on ``cue``."""

    def __init__(self, player: Player, cue: tuple[int, int]) -> None:
        self.player = player
        self.cue = (cue[0] - 1, cue[1] - 1)
        self.channels = max(cue)
        self._master = np.zeros((MAX_BLOCK, 2), dtype=np.float32)
        self._bus = np.zeros((MAX_BLOCK, 2), dtype=np.float32)

    def __call__(self, out: np.ndarray, now: float, underrun: bool) -> None:
        n = out.shape[0]
        master, bus = self._master[:n], self._bus[:n]
        self.player.fill_cue(bus, now, frame=self.player.frame)
        self.player.fill(master, now, underrun)
        out[:] = 0.0
        out[:, 0:2] = master
        out[:, self.cue[0]] = bus[:, 0]
        out[:, self.cue[1]] = bus[:, 1]
