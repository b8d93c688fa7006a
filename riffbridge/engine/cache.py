"""The loop cache: rendered loops by ``LoopKey``, least recently used first out, bounded in MB.

Owned by the engine thread (no lock): no other thread may read it; others see its figures in
the engine's status snapshot. A loop entry keeps the pipeline's ``Loop`` at its own rate
(``loop.sample_rate``, for files and metadata) and the same loop at the device rate as a
(frames, channels) float32 buffer (for the player); both count against the bound.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from riffbridge.engine.plan import LoopKey
from riffbridge.errors import ConfigError
from riffbridge.loops.types import Loop


@dataclass(frozen=True, eq=False)
class CachedLoop:
    key: LoopKey
    loop: Loop
    frames: np.ndarray  # (frames, channels) float32 at the device rate, read-only

    @property
    def nbytes(self) -> int:
        return int(self.loop.audio.nbytes + self.frames.nbytes)


class LoopCache:
    def __init__(self, max_mb: float = 512.0) -> None:
        if not max_mb > 0:
            raise ConfigError(f"cache size must be a positive number of MB, got {max_mb}")
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._items: OrderedDict[LoopKey, CachedLoop] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        self.version = 0  # rises whenever the cache's contents change

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: LoopKey) -> CachedLoop | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, item: CachedLoop, keep: frozenset[LoopKey] = frozenset()) -> None:
        """Add ``item``; evict least recently used loops (never those in ``keep``, the ones
        playing) until the total fits. One loop larger than the bound is still kept alone."""
        self.version += 1
        old = self._items.pop(item.key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._items[item.key] = item
        self._bytes += item.nbytes
        for key in list(self._items):
            if self._bytes <= self.max_bytes or len(self._items) == 1:
                break
            if key in keep or key == item.key:
                continue
            self._bytes -= self._items.pop(key).nbytes
            self.evictions += 1
