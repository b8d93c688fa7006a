"""The beat grid in audio frames: tempo plus an anchor, and where the next quantum falls.

The player's frame counter is the engine's time. The grid maps frames to beats as a straight line
through an anchor (frame, beat) at ``bpm``; a tempo change re-anchors at the frame it happens so
the beat count stays continuous. An external clock (MIDI start/position, Link phase) moves the
anchor with ``align``. Owned by the engine thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from riffbridge.errors import ConfigError
from riffbridge.params import BY_NAME

QUANTA = BY_NAME["quantum"].choices


@dataclass(frozen=True)
class Grid:
    rate: int
    bpm: float
    anchor_frame: int = 0
    anchor_beat: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or not (math.isfinite(self.bpm) and self.bpm > 0):
            raise ConfigError(f"grid needs a positive rate and bpm, got {self.rate}, {self.bpm}")

    @property
    def frames_per_beat(self) -> float:
        return self.rate * 60.0 / self.bpm

    def beat_at(self, frame: float) -> float:
        return self.anchor_beat + (frame - self.anchor_frame) / self.frames_per_beat

    def frame_at(self, beat: float) -> int:
        return round(self.anchor_frame + (beat - self.anchor_beat) * self.frames_per_beat)

    def with_tempo(self, bpm: float, at_frame: int) -> Grid:
        """The same beat count up to ``at_frame``, ``bpm`` from there on."""
        return Grid(self.rate, bpm, at_frame, self.beat_at(at_frame))

    def align(self, beat: float, at_frame: int, bpm: float | None = None) -> Grid:
        """Make ``at_frame`` fall on ``beat`` (an external clock's phase)."""
        return Grid(self.rate, self.bpm if bpm is None else bpm, at_frame, beat)

    def next_boundary(self, frame: int, quantum_beats: float) -> tuple[int, float]:
        """The first (frame, beat) on a multiple of ``quantum_beats`` at or after ``frame``."""
        if quantum_beats <= 0:
            raise ConfigError(f"quantum must be positive, got {quantum_beats} beats")
        beat = self.beat_at(frame)
        index = math.ceil(beat / quantum_beats - 1e-9)
        target = index * quantum_beats
        return self.frame_at(target), target


def quantum_beats(quantum: str, bars: int, beats_per_bar: int) -> int:
    if quantum == "beat":
        return 1
    if quantum == "bar":
        return beats_per_bar
    if quantum == "loop":
        return bars * beats_per_bar
    raise ConfigError(f"quantum must be one of {', '.join(QUANTA)}, got {quantum!r}")
