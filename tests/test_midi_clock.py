"""The MIDI clock's tempo: literal mido clock messages at synthetic, jittered arrival times.

Each "tempo" event makes the engine render new loops, so what matters is how many distinct
tempos a clock produces (ClockTempo submissions through MidiControl), their values and when.
"""

from __future__ import annotations

import random

import mido
import numpy as np
import pytest

from riffbridge.control.hub import Hub
from riffbridge.control.midi_clock import PPQN, MidiClock, fit_period, settle
from riffbridge.control.midi_port import MidiControl
from riffbridge.errors import ControlError
from riffbridge.state import ClockTempo, SetParam

CLOCK = mido.Message("clock")


def pulses(tempos: list[tuple[float, int]], jitter: float, seed: int
           ) -> list[tuple[float, float, float]]:
    """(nominal time, arrival time, bpm) of each pulse: ``beats`` at each ``bpm`` in turn, each
    arrival moved by uniform jitter of +-``jitter`` seconds (never before the previous)."""
    rng = random.Random(seed)
    out: list[tuple[float, float, float]] = []
    start = 0.0
    for bpm, beats in tempos:
        period = 60.0 / (bpm * PPQN)
        for k in range(beats * PPQN):
            nominal = start + k * period
            arrival = max(nominal + rng.uniform(-jitter, jitter), out[-1][1] if out else 0.0)
            out.append((nominal, arrival, bpm))
        start += beats * PPQN * period
    return out


class RecordingHub(Hub):
    """A real hub that keeps every command it accepted."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted: list[tuple[float, object]] = []
        self.now = 0.0

    def submit(self, command, source="api"):  # type: ignore[no-untyped-def,override]
        result = super().submit(command, source=source)
        self.accepted.append((self.now, command))
        return result


def drive(tempos: list[tuple[float, int]], jitter: float, seed: int
          ) -> list[tuple[float, ClockTempo]]:
    """Feed the clock through MidiControl with the hub's clock on "midi": the ClockTempo
    commands the hub received, with the nominal time each arrived at."""
    hub = RecordingHub()
    hub.submit(SetParam("clock", "midi"))
    control = MidiControl(hub)
    control(mido.Message("start"), 0.0)
    for nominal, arrival, _ in pulses(tempos, jitter, seed):
        hub.now = nominal
        control(CLOCK, arrival)
    return [(t, c) for t, c in hub.accepted if isinstance(c, ClockTempo)]


def test_a_jittery_steady_clock_reads_as_one_tempo() -> None:
    """The issue's case: 105 BPM, +-2 ms per pulse, 30 s. Before: 45 tempos in 25 s."""
    reported = drive([(105.0, 53)], jitter=0.002, seed=17)  # 53 beats at 105 BPM: 30.3 s
    assert [c.bpm for _, c in reported] == [105.0]
    assert reported[0][0] < 8 * 60 / 105  # settled within two bars


def test_pulses_delivered_once_per_jack_period_read_as_one_tempo() -> None:
    """Pulses read at the end of each 1024-frame JACK period at 48 kHz (21.3 ms, about one
    pulse): arrivals off by up to a period. Before: 216 tempo reports in 25 s, 104.85/105.06."""
    clock = MidiClock()
    jack_period = 1024 / 48000
    tempos = []
    for nominal, _, _ in pulses([(105.0, 44)], jitter=0.0, seed=0):
        arrival = np.ceil(nominal / jack_period) * jack_period
        tempos += [e.bpm for e in clock.feed(CLOCK, float(arrival)) if e.kind == "tempo"]
    assert tempos == [105.0]


@pytest.mark.parametrize("seed", range(5))
def test_a_steady_clock_reads_as_one_tempo_for_any_seed(seed: int) -> None:
    assert [c.bpm for _, c in drive([(105.0, 53)], jitter=0.002, seed=seed)] == [105.0]


def test_a_tempo_between_round_values_reads_to_the_hundredth() -> None:
    reported = drive([(123.45, 40)], jitter=0.0005, seed=3)
    assert [c.bpm for _, c in reported] == [123.45]


def test_a_tempo_change_is_followed_once_within_a_bar_and_two_beats() -> None:
    """105 -> 120: one report of each, the second within 6 beats of the step (4 for a fit
    over a bar of the new tempo to settle, 2 more), never a value on the way."""
    step = 16 * 60 / 105
    reported = drive([(105.0, 16), (120.0, 16)], jitter=0.001, seed=5)
    assert [c.bpm for _, c in reported] == [105.0, 120.0]
    assert step < reported[1][0] < step + 6 * 60 / 120


def test_a_small_tempo_change_does_not_pass_through_values_in_between() -> None:
    """140.5 -> 139.5 with +-2 ms: a fit across the change would read 140.0 on the way."""
    reported = drive([(140.5, 20), (139.5, 20)], jitter=0.002, seed=1)
    assert [c.bpm for _, c in reported] == [140.5, 139.5]


def test_a_pause_keeps_the_tempo_and_starts_a_new_fit() -> None:
    clock = MidiClock()
    events = []
    for _, arrival, _ in pulses([(100.0, 8)], jitter=0.0, seed=0):
        events += clock.feed(CLOCK, arrival)
    assert [e.bpm for e in events if e.kind == "tempo"] == [100.0]
    # 10 s later the clock runs again, at the same tempo: no new report, a fresh fit.
    events = []
    for _, arrival, _ in pulses([(100.0, 8)], jitter=0.0, seed=0):
        events += clock.feed(CLOCK, 100.0 + arrival)
    assert events == [] and clock.reported_bpm == 100.0
    assert clock.bpm == pytest.approx(100.0)


@pytest.mark.parametrize(("measured", "meant"), [
    (105.0, 105.0), (104.97, 105.0), (105.039, 105.0), (105.05, 105.05), (104.94, 104.94),
    (123.45, 123.45), (123.46, 123.5), (99.5312, 99.5), (128.374, 128.37), (140.456, 140.46),
])
def test_settle_prefers_whole_and_half_bpm_within_0_04(measured: float, meant: float) -> None:
    assert settle(measured) == meant


def test_a_clock_faster_than_the_tempo_range_is_refused_once_not_on_every_pulse() -> None:
    class CountingHub(Hub):
        refused = 0

        def submit(self, command, source="api"):  # type: ignore[no-untyped-def,override]
            try:
                return super().submit(command, source=source)
            except ControlError:
                self.refused += 1
                raise

    hub = CountingHub()
    hub.submit(SetParam("clock", "midi"))
    control = MidiControl(hub)
    control(mido.Message("start"), 0.0)
    for _, arrival, _ in pulses([(300.0, 32), (100.0, 16)], jitter=0.0, seed=1):
        control(CLOCK, arrival)
    assert hub.refused == 1  # 300 BPM is over the range: one refusal, not one per pulse
    assert hub.state.bpm == 100.0  # then a tempo in range is taken


def test_fit_period_is_ordinary_least_squares() -> None:
    rng = np.random.default_rng(0)
    times = 5.0 + 0.02 * np.arange(100) + rng.uniform(-0.002, 0.002, 100)
    period, offset, error, scatter = fit_period(times)
    (slope, intercept), cov = np.polyfit(np.arange(100), times - times[0], 1, cov=True)
    assert period == pytest.approx(slope, rel=1e-12)
    assert offset == pytest.approx(intercept, abs=1e-12)
    assert error == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-9)
    assert scatter == pytest.approx(0.004 / np.sqrt(12), rel=0.15)  # uniform +-2 ms


def test_bad_clock_settings_are_config_errors() -> None:
    from riffbridge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"min_pulses must be in \[4, window=24\], got 72"):
        MidiClock(window=24)
    with pytest.raises(ConfigError, match="hold must be >= 1 pulse and confidence > 0, got 0"):
        MidiClock(hold=0)
