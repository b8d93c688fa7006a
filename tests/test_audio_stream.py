"""The buffered stream's feeder, against a stand-in for rtmixer's C side.

The ring is rtmixer's own (PortAudio's lock-free ring); the stand-in plays the C callback's part:
it reads a period from the ring, and, as rtmixer does, ends the ring's playback when the ring
holds less than a period. The JACK tests play the real thing (tests/test_engine_jack.py).
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from riffbridge.engine.player import Player
from riffbridge.errors import DeviceError
from riffbridge.outputs.audio_stream import AHEAD_S, DeviceStream, _Feeder

rtmixer = pytest.importorskip("rtmixer", reason="rtmixer is a dependency: pip install -e .")

RATE = 44100
BLOCK = 256


class StandIn:
    """What the feeder asks of ``rtmixer.Mixer``; ``period()`` is one callback of the C side."""

    def __init__(self) -> None:
        self.ring: Any = None
        self.playing: object | None = None
        self.started = False
        self.pending_stats: list[SimpleNamespace] = []
        self.underflows_to_report = 0

    @property
    def actions(self) -> list[object]:
        """The actions the C side still holds: the ring's playback, unanswered stats."""
        self.pending_stats = [a for a in self.pending_stats if not a.fetched]
        return [*([self.playing] if self.playing is not None else []), *self.pending_stats]

    def start(self) -> None:
        self.started = True

    def play_ringbuffer(self, ring: Any) -> object:
        self.ring = ring
        self.playing = object()
        return self.playing

    def fetch_and_reset_stats(self) -> SimpleNamespace:
        action = SimpleNamespace(fetched=False, stats=SimpleNamespace(output_underflows=0))
        self.pending_stats.append(action)
        return action

    def period(self, frames: int = BLOCK) -> np.ndarray:
        """One callback: ``frames`` from the ring (zeros where it has none)."""
        out = np.zeros((frames, 2), np.float32)
        if self.playing is None:
            return out
        have = min(frames, self.ring.read_available)
        out[:have] = np.frombuffer(self.ring.read(have), np.float32).reshape(-1, 2)
        if have < frames:  # rtmixer removes a ring action that comes up short
            self.playing = None
        for action in self.pending_stats:
            action.stats.output_underflows = self.underflows_to_report
            action.fetched = True
        self.underflows_to_report = 0
        return out


def counting_fill(calls: list[tuple[float, bool]]) -> Any:
    state = {"n": 0}

    def fill(out: np.ndarray, now: float, underrun: bool) -> None:
        out[:] = np.arange(state["n"], state["n"] + out.shape[0])[:, None] / 1e6
        state["n"] += out.shape[0]
        calls.append((now, underrun))

    return fill


def playing_feeder(ahead_s: float) -> tuple[list[tuple[float, bool]], StandIn, _Feeder]:
    """A feeder with a full ring that the stand-in's C side plays (no thread: tests turn it)."""
    calls: list[tuple[float, bool]] = []
    mixer = StandIn()
    feeder = _Feeder(mixer, counting_fill(calls), RATE, 2, BLOCK, ahead_s)
    feeder._top_up()
    mixer.start()
    feeder._action = mixer.play_ringbuffer(feeder.ring)
    return calls, mixer, feeder


def test_the_feeder_fills_the_ring_ahead_and_stamps_each_block_when_it_will_play():
    calls: list[tuple[float, bool]] = []
    mixer = StandIn()
    feeder = _Feeder(mixer, counting_fill(calls), RATE, 2, BLOCK, 0.05)
    before = time.monotonic()
    feeder._top_up()
    target = round(0.05 * RATE)
    assert feeder.ring.read_available == (target // BLOCK) * BLOCK  # whole blocks, <= target
    # block k is stamped k blocks after the first: it reaches the callback after those
    queued = [now - before for now, _ in calls]
    for k, q in enumerate(queued):
        assert k * BLOCK / RATE <= q < k * BLOCK / RATE + 0.05
    assert not any(late for _, late in calls)


def test_what_the_callback_plays_is_every_filled_frame_in_order():
    _, mixer, feeder = playing_feeder(0.03)
    played = []
    for _ in range(40):
        played.append(mixer.period(200))  # a device period unlike the fill's block
        feeder._top_up()
    audio = np.concatenate(played)[:, 0]
    assert np.array_equal(np.round(audio * 1e6), np.arange(audio.shape[0]))


def test_a_dry_ring_is_counted_told_to_the_next_fill_and_played_again():
    calls, mixer, feeder = playing_feeder(0.02)
    while mixer.playing is not None:  # the feeder is held up: the callback drains the ring
        mixer.period()
    first = feeder._action
    n = len(calls)
    feeder.turn()
    assert feeder.dry == 1
    assert calls[n][1] is True and not any(late for _, late in calls[n + 1:])
    assert feeder._action is not first and mixer.playing is feeder._action
    assert feeder.ring.read_available > 0


def test_the_feeder_thread_restarts_a_dry_ring_on_its_own():
    calls: list[tuple[float, bool]] = []
    mixer = StandIn()
    feeder = _Feeder(mixer, counting_fill(calls), RATE, 2, BLOCK, 0.02)
    feeder.start()
    try:
        assert mixer.started and mixer.playing is not None
        mixer.ring.read(mixer.ring.read_available)  # the C side drains the ring and,
        mixer.playing = None  # as rtmixer does when the ring comes up short, ends playing it
        deadline = time.monotonic() + 5
        while feeder.dry == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert feeder.dry == 1
        deadline = time.monotonic() + 5
        while mixer.playing is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert mixer.playing is not None
        deadline = time.monotonic() + 5  # the C side plays on; the next fill hears of it
        while not any(late for _, late in calls) and time.monotonic() < deadline:
            mixer.period()
            time.sleep(0.005)
    finally:
        feeder.close()
    assert any(late for _, late in calls)


def test_portaudios_own_underflows_reach_the_next_fill():
    calls, mixer, feeder = playing_feeder(0.02)
    feeder.turn()  # asks the C side for its stats
    mixer.underflows_to_report = 3
    mixer.period()  # the C side answers
    feeder.turn()
    assert feeder.underflows == 3
    n = len(calls)
    mixer.period()
    feeder._top_up()
    assert len(calls) > n and calls[n][1] is True


def test_a_negative_ahead_is_refused_with_the_fix():
    with pytest.raises(DeviceError, match=r"audio_ahead must be 0 \(direct\) or more"):
        DeviceStream(None, RATE, Player().fill, ahead_s=-0.1)


def test_the_default_stream_is_buffered_and_zero_ahead_is_direct():
    assert AHEAD_S > 0
    assert DeviceStream(None, RATE, Player().fill).mode == "buffered"
    assert DeviceStream(None, RATE, Player().fill, ahead_s=0).mode == "direct"


def test_a_fill_that_raises_is_logged_and_the_feeder_carries_on(caplog):
    calls: list[tuple[float, bool]] = []
    good = counting_fill(calls)
    state = {"n": 0}

    def flaky(out: np.ndarray, now: float, underrun: bool) -> None:
        state["n"] += 1
        if state["n"] == 6:  # after the first fill of the ring, in the thread
            raise RuntimeError("a bug in a fill")
        good(out, now, underrun)

    mixer = StandIn()
    feeder = _Feeder(mixer, flaky, RATE, 2, BLOCK, 0.02)
    with caplog.at_level("ERROR", logger="riffbridge.outputs.audio_stream"):
        feeder.start()
        try:
            deadline = time.monotonic() + 5
            while state["n"] < 10 and time.monotonic() < deadline:
                mixer.period()
                time.sleep(0.005)
        finally:
            feeder.close()
    assert state["n"] >= 10, "the feeder stopped after the failing fill"
    assert "the audio feeder failed (1 times)" in caplog.text
