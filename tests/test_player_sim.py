"""The message-level simulation of the players (tests/player_sim.py): the wiring the Pd player
uses keeps the playing buffer untouched, switches on the quantum with a ramp and stops with the
transport; the earlier Max player's wiring fails the same checks (so they can fail)."""

from __future__ import annotations

import random

import pytest
from player_sim import (
    RATE,
    Event,
    Files,
    FlipOnArrivalPlayer,
    PendingSlotPlayer,
    Player,
    simulate,
)

BEAT = RATE // 2  # 120 BPM
BAR = 4 * BEAT
XFADE = round(0.05 * RATE)
FILES = Files({f"/loops/{n}.wav" for n in "ABCDEFGH"})


def touched_while_sounding(player: Player) -> list[tuple[int, int, str, float]]:
    """Loads into a buffer whose gain was not 0: a click, or a file sounding mid-bar."""
    return [load for load in player.probe.loads if load[3] > 0]


def three_clips_in_two_bars() -> list[Event]:
    # A sounds from bar 1; B and C arrive inside bar 2 (the engine sends several when the knob
    # moves fast): C must sound from bar 3, B never, and A until then.
    return [(0, "run", (1,)), (1000, "clip", ("/loops/A.wav",)),
            (BAR + 10_000, "clip", ("/loops/B.wav",)),
            (BAR + 30_000, "clip", ("/loops/C.wav",))]


def test_two_clips_within_one_bar_never_touch_the_playing_buffer() -> None:
    player = PendingSlotPlayer(FILES)
    heard = simulate(player, three_clips_in_two_bars(), 4 * BAR,
                     listen=(BAR + 40_000, 2 * BAR + XFADE))
    assert touched_while_sounding(player) == []
    assert [(f, p) for f, _, p in player.probe.switches] == [(BAR, "/loops/A.wav"),
                                                               (2 * BAR, "/loops/C.wav")]
    assert heard[BAR + 40_000] == {"/loops/A.wav": 1.0}  # mid-bar: still A
    assert heard[2 * BAR + XFADE] == {"/loops/C.wav": 1.0}


def test_the_old_flip_on_arrival_wiring_fails_the_same_check() -> None:
    player = FlipOnArrivalPlayer(FILES)
    heard = simulate(player, three_clips_in_two_bars(), 4 * BAR, listen=(BAR + 30_001,))
    touched = touched_while_sounding(player)
    assert [(frame, path) for frame, _, path, _ in touched] == [(BAR + 30_000, "/loops/C.wav")]
    assert heard[BAR + 30_001] == {"/loops/C.wav": 1.0}  # C sounds at once, mid-bar
    assert "/loops/B.wav" not in {p for _, _, p in player.probe.switches}


@pytest.mark.parametrize("quantum,beats", [("beat", 1), ("bar", 4), ("loop", 8)])
def test_switches_land_on_the_quantum(quantum: str, beats: int) -> None:
    rng = random.Random(quantum)
    events: list[Event] = [(0, "run", (1,))]
    frame = 0
    for name in "ABCDEFGH":
        frame += rng.randrange(1, 3 * BAR)
        events.append((frame, "clip", (f"/loops/{name}.wav",)))
    player = PendingSlotPlayer(FILES, quantum=quantum)
    simulate(player, events, frame + 4 * BAR)
    assert len(player.probe.switches) >= 3
    for at, _, _ in player.probe.switches:
        assert at % (beats * BEAT) == 0, f"a switch at frame {at}, off the {quantum}"
    assert touched_while_sounding(player) == []


def test_a_switch_is_a_ramp_and_a_clip_during_it_waits_for_its_end() -> None:
    player = PendingSlotPlayer(FILES)
    events: list[Event] = [(0, "run", (1,)), (100, "clip", ("/loops/A.wav",)),
                           (BAR + 100, "clip", ("/loops/B.wav",)),
                           (2 * BAR + 10, "clip", ("/loops/C.wav",))]  # inside B's crossfade
    heard = simulate(player, events, 4 * BAR, listen=(2 * BAR + XFADE // 2,))
    half = heard[2 * BAR + XFADE // 2]
    assert set(half) == {"/loops/A.wav", "/loops/B.wav"}
    assert sum(half.values()) == pytest.approx(1.0)
    assert all(0.4 < g < 0.6 for g in half.values()), half
    loads = {path: frame for frame, _, path, _ in player.probe.loads}
    assert loads["/loops/C.wav"] == 2 * BAR + XFADE, "C waited for the crossfade to end"
    assert touched_while_sounding(player) == []
    # the old wiring jumps (selector~): no frame has both
    old = FlipOnArrivalPlayer(FILES)
    heard = simulate(old, events, 4 * BAR, listen=(2 * BAR + XFADE // 2,))
    assert len(heard[2 * BAR + XFADE // 2]) == 1


def test_transport_stop_stops_the_sound_and_start_resumes_on_the_beat() -> None:
    events: list[Event] = [(0, "run", (1,)), (100, "clip", ("/loops/A.wav",)),
                           (2 * BAR + 5000, "run", (0,)), (4 * BAR + 777, "run", (1,))]
    ears = (2 * BAR + 4999, 2 * BAR + 5000 + XFADE, 4 * BAR, 4 * BAR + 777 + XFADE)
    heard = simulate(PendingSlotPlayer(FILES), events, 6 * BAR, listen=ears)
    assert [heard[f] for f in ears] == [{"/loops/A.wav": 1.0}, {}, {}, {"/loops/A.wav": 1.0}]
    heard = simulate(FlipOnArrivalPlayer(FILES), events, 6 * BAR, listen=(3 * BAR,))
    assert heard[3 * BAR] == {"/loops/A.wav": 1.0}, "the old wiring played on"


def test_a_relative_or_missing_path_is_refused_visibly_and_the_loop_plays_on() -> None:
    player = PendingSlotPlayer(FILES)
    events: list[Event] = [(0, "run", (1,)), (100, "clip", ("/loops/A.wav",)),
                           (BAR + 100, "clip", ("out/2026-11-30/0001.wav",)),
                           (BAR + 200, "clip", ("/loops/missing.wav",))]
    heard = simulate(player, events, 3 * BAR, listen=(3 * BAR,))
    assert player.probe.errors == ["refused /rb/clip: relative path out/2026-11-30/0001.wav",
                                   "refused /rb/clip: no such file /loops/missing.wav"]
    assert [p for _, _, p in player.probe.switches] == ["/loops/A.wav"]
    assert heard[3 * BAR] == {"/loops/A.wav": 1.0}
