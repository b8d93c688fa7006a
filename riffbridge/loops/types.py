"""The finished loop: the value that loop shaping hands to the engine and the outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from riffbridge.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Loop:
    """A loop of exactly ``bars`` bars at ``bpm``: float32 audio (channels, samples).

    The audio array is read-only; ``metadata`` holds every parameter that made the loop
    (prompts, seeds, alpha, denoise, guidance, steps, model, seed pattern, render time, level,
    seam handling) as JSON-friendly values.
    """

    audio: np.ndarray
    sample_rate: int
    bpm: float
    bars: int
    beats_per_bar: int = 4
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.array(self.audio, dtype=np.float32, copy=True)
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2 or data.shape[1] == 0:
            raise ConfigError(f"loop audio must be (channels, samples), got {data.shape}")
        data.flags.writeable = False
        object.__setattr__(self, "audio", data)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.audio.shape[1])

    @property
    def beats(self) -> int:
        return self.bars * self.beats_per_bar

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    def with_metadata(self, **extra: Any) -> Loop:
        """A copy with more metadata (render parameters added by the engine, for instance)."""
        merged = {**self.metadata, **extra}
        return Loop(self.audio, self.sample_rate, self.bpm, self.bars, self.beats_per_bar, merged)
