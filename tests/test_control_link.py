"""The Ableton Link clock. With aalink installed (the optional extra riffbridge[link], GPL, not
in the dev extras) these run a real Link session on this machine; without it they skip, and the
missing-package error is still checked."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import sys
import threading
import time
from collections.abc import Callable

import pytest

from riffbridge.control.link import LinkClock, LinkState, link_available
from riffbridge.errors import ConfigError

needs_aalink = pytest.mark.skipif(not link_available(),
                                  reason="aalink not installed (optional extra riffbridge[link])")


class States:
    """Collects the states a clock reports (on its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[LinkState] = []

    def __call__(self, state: LinkState) -> None:
        with self._lock:
            self._items.append(state)

    @property
    def items(self) -> list[LinkState]:
        with self._lock:
            return list(self._items)

    def wait_for(self, test: Callable[[LinkState], bool], timeout: float) -> LinkState | None:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            items = self.items
            for state in items[seen:]:
                if test(state):
                    return state
            seen = len(items)
            time.sleep(0.01)
        return None


def test_missing_aalink_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aalink", None)  # makes `import aalink` fail
    assert not link_available()
    clock = LinkClock(120, lambda state: None)
    with pytest.raises(ConfigError) as info:
        clock.start()
    assert str(info.value) == ("Ableton Link needs the optional aalink package: "
                               "pip install 'riffbridge[link]' (GPL-3.0)")
    clock.close()
    clock.close()


@pytest.mark.parametrize(("kw", "word"), [
    (dict(bpm=0.0), "got 0.0"), (dict(bpm=float("nan")), "got nan"),
    (dict(bpm=1200.0), "Link tempo must be in [20, 999] bpm"),
    (dict(quantum=0.0), "quantum"), (dict(poll_s=-1.0), "poll_s"),
])
def test_bad_values_name_the_value(kw: dict[str, float], word: str) -> None:
    args: dict[str, float] = {"bpm": 120.0, **kw}
    bpm = args.pop("bpm")
    with pytest.raises(ConfigError, match=re.escape(word)):
        LinkClock(bpm, lambda state: None, **args)


def test_set_tempo_checks_the_value() -> None:
    clock = LinkClock(120, lambda state: None)
    with pytest.raises(ConfigError, match=r"Link tempo must be in .* got 5"):
        clock.set_tempo(5)
    clock.close()
    clock.set_tempo(128)  # closed: ignored, no error during shutdown


def test_state_is_frozen() -> None:
    state = LinkState(bpm=120.0, beat=1.5, time=10.0, peers=0, playing=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.bpm = 90.0  # type: ignore[misc]


@needs_aalink
def test_real_link_clock_reports_tempo_and_beat() -> None:
    states = States()
    clock = LinkClock(120, states, quantum=4, poll_s=0.02)
    with clock:
        assert clock.start() is clock  # a second start is a no-op
        time.sleep(1.0)
        first_second = states.items
        clock.set_tempo(100)
        assert states.wait_for(lambda s: s.bpm == pytest.approx(100.0), 1.0) is not None
        later = states.items[len(first_second):]
    clock.close()
    clock.close()
    assert len(first_second) >= 3
    beats = [s.beat for s in first_second]
    assert all(b1 > b0 for b0, b1 in itertools.pairwise(beats))
    a, b = first_second[0], first_second[-1]
    assert b.time - a.time > 0.5
    slope = (b.beat - a.beat) / (b.time - a.time)
    assert slope == pytest.approx(120 / 60, rel=0.05)
    assert all(s.bpm == 120.0 for s in first_second)
    assert later[-1].bpm == pytest.approx(100.0)
    assert all(isinstance(s.peers, int) and isinstance(s.playing, bool) for s in first_second)
    count = len(states.items)
    time.sleep(0.1)
    assert len(states.items) == count  # closed: no more states


@needs_aalink
def test_set_tempo_before_start_is_the_first_tempo() -> None:
    states = States()
    clock = LinkClock(120, states)
    clock.set_tempo(130)
    with clock:
        first = states.wait_for(lambda s: True, 1.0)
    assert first is not None and first.bpm == pytest.approx(130.0)


@needs_aalink
def test_a_failing_handler_is_logged_and_the_clock_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken(state: LinkState) -> None:
        calls.append(state)
        raise ValueError("handler bug")

    with caplog.at_level(logging.ERROR, logger="riffbridge.control.link"), \
            LinkClock(120, broken, poll_s=0.01):
        time.sleep(0.3)
    assert len(calls) >= 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "the clock goes on" in errors[0].getMessage()
    assert len(errors) <= 2  # rate-limited, not one line per poll


@needs_aalink
def test_two_clocks_in_one_process_are_peers_and_share_the_tempo() -> None:
    a_states, b_states = States(), States()
    with LinkClock(120, a_states) as a, LinkClock(120, b_states):
        found = (a_states.wait_for(lambda s: s.peers >= 1, 5.0),
                 b_states.wait_for(lambda s: s.peers >= 1, 5.0))
        assert all(found), ("no Link peer seen within 5 s: Link discovers peers by UDP "
                            "multicast, which this machine's network must allow")
        a.set_tempo(90)
        assert b_states.wait_for(lambda s: s.bpm == pytest.approx(90.0), 3.0) is not None
