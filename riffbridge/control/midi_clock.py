"""MIDI clock input: 24 pulses per quarter note, start/stop/continue, song position. Pure.

``MidiClock.feed(msg, t)`` takes a mido message and its arrival time (seconds, monotonic) and
returns ``ClockEvent``s for the engine's clock. The tempo estimate is robust to the jitter of USB
MIDI and OS scheduling and to pulses that arrive in bursts: over the last
``window`` pulses (two beats by default) it takes the median, over all pairs of pulses at least half
a window apart, of (time between them) / (pulses between them), a Theil-Sen slope. A gap longer
than a pulse at 20 BPM (the clock paused) starts a new window.
It is reported only once a full window has arrived, and again whenever it moves by more than
``min_change_bpm``, so a steady clock does not flood the engine with tiny tempo changes.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from riffbridge.errors import ConfigError

PPQN = 24
MIN_BPM, MAX_BPM = 20.0, 300.0

EventKind = Literal["tempo", "start", "stop", "continue", "position"]


@dataclass(frozen=True)
class ClockEvent:
    kind: EventKind
    bpm: float | None = None  # for "tempo"
    pulse: int = 0  # position in clock pulses since the song's start (24 per quarter note)
    time: float = 0.0

    @property
    def beat(self) -> float:
        return self.pulse / PPQN


class MidiClock:
    def __init__(self, window: int = 2 * PPQN, min_change_bpm: float = 0.2) -> None:
        if window < 2:
            raise ConfigError(f"MIDI clock window must be at least 2 pulses, got {window}")
        self.window = window
        self.min_change_bpm = min_change_bpm
        self._ticks: deque[float] = deque(maxlen=window + 1)
        self._reported: float | None = None
        self.pulse = 0
        self.running = False

    @property
    def reported_bpm(self) -> float | None:
        """The tempo last reported in a "tempo" event (None before the first)."""
        return self._reported

    @property
    def bpm(self) -> float | None:
        """The current tempo estimate, or None before a full window of pulses."""
        ticks = list(self._ticks)
        if len(ticks) <= self.window:
            return None
        n, half = len(ticks), self.window // 2
        period = statistics.median((ticks[j] - ticks[i]) / (j - i)
                                   for i in range(n) for j in range(i + half, n))
        if period <= 0:
            return None
        bpm = 60.0 / (period * PPQN)
        return bpm if MIN_BPM <= bpm <= MAX_BPM else None

    def feed(self, msg: Any, t: float) -> list[ClockEvent]:
        kind = getattr(msg, "type", None)
        if kind == "clock":
            return self._tick(t)
        if kind == "start":
            self.pulse, self.running = 0, True
            return [ClockEvent("start", pulse=0, time=t)]
        if kind == "continue":
            self.running = True
            return [ClockEvent("continue", pulse=self.pulse, time=t)]
        if kind == "stop":
            self.running = False
            return [ClockEvent("stop", pulse=self.pulse, time=t)]
        if kind == "songpos":  # in MIDI beats (sixteenth notes) = 6 pulses
            self.pulse = int(msg.pos) * 6
            return [ClockEvent("position", pulse=self.pulse, time=t)]
        return []

    def _tick(self, t: float) -> list[ClockEvent]:
        events: list[ClockEvent] = []
        # A gap longer than a pulse at MIN_BPM: the clock paused; that gap is not a tempo.
        if self._ticks and not 0 <= t - self._ticks[-1] < 60.0 / (MIN_BPM * PPQN):
            self._ticks.clear()
        self._ticks.append(t)
        if self.running:
            self.pulse += 1
        bpm = self.bpm
        if bpm is not None and (self._reported is None
                                or abs(bpm - self._reported) > self.min_change_bpm):
            self._reported = bpm
            events.append(ClockEvent("tempo", bpm=bpm, pulse=self.pulse, time=t))
        return events
