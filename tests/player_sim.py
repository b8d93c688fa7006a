"""A message-level simulation (pure Python, in frames) of the objects riffbridge's players use,
and of the two ways of wiring them:

- ``PendingSlotPlayer``: what the Pd player (max_patches/riffbridge-player.pd) is wired to do,
  box for box: a clip loads into the slot that is not sounding (``soundfiler`` / ``buffer~``),
  waits there (``rb-pend``), and a beat tick of the transport (``delay`` / ``metro @quantize``)
  switches to it on the quantum with two ramps (``vline~`` / ``line~``); a stop ramps both out.
- ``FlipOnArrivalPlayer``: the earlier Max player's wiring (``counter 1 2`` flipped by every
  arriving clip, ``gate 2`` into two ``buffer~``, a ``metro 1n`` that restarts both ``groove~`` and
  flips a ``selector~`` once a buffer bangs, ``sig~ 1`` playing all the time). The tests run it to
  show the checks catch what it did wrong.

The objects: ``Files`` (what ``buffer~ replace`` / ``soundfiler read`` find), ``Buffer`` (refuses a
relative or missing path, and says so on the player's error list), ``Ramp`` (a gain: ramps to a
target over a number of frames), ``Transport`` (running or not, beat ticks at its tempo). The
``Probe`` watches every load and every gain change and keeps the facts the tests check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

RATE = 44100


@dataclass
class Files:
    paths: set[str] = field(default_factory=set)


@dataclass
class Probe:
    """Facts seen during a run."""

    loads: list[tuple[int, int, str, float]] = field(default_factory=list)  # frame, slot, path,
    # that slot's gain at that frame
    switches: list[tuple[int, int, str]] = field(default_factory=list)  # frame, slot, path
    errors: list[str] = field(default_factory=list)


class Ramp:
    """A gain that ramps linearly to a target (``line~``/``vline~``); 0 frames: a jump."""

    def __init__(self) -> None:
        self.start_frame, self.start, self.target, self.frames = 0, 0.0, 0.0, 0

    def at(self, frame: int) -> float:
        if self.frames <= 0 or frame >= self.start_frame + self.frames:
            return self.target
        t = (frame - self.start_frame) / self.frames
        return self.start + (self.target - self.start) * max(0.0, t)

    def go(self, frame: int, target: float, frames: int, start: float | None = None) -> None:
        self.start = self.at(frame) if start is None else start
        self.start_frame, self.target, self.frames = frame, target, frames


def refusal(files: Files, path: str) -> str:
    """Why a clip's path cannot load (the Pd player's ``list fromsymbol``/``== 47`` and
    ``file isfile`` boxes), or ""."""
    if not (path.startswith("/") or path[1:3] in (":/", ":\\")):
        return f"refused /rb/clip: relative path {path}"
    if path not in files.paths:
        return f"refused /rb/clip: no such file {path}"
    return ""


class Buffer:
    """``buffer~`` / a Pd array pair: holds the file last loaded into it."""

    def __init__(self, files: Files, probe: Probe, slot: int) -> None:
        self.files, self.probe, self.slot = files, probe, slot
        self.path: str | None = None

    def load(self, frame: int, path: str, gain_now: float) -> bool:
        problem = refusal(self.files, path)
        if problem:
            self.probe.errors.append(problem)
            return False
        self.probe.loads.append((frame, self.slot, path, gain_now))
        self.path = path
        return True


class Transport:
    """Live's (or the player's own) transport: beat ticks at ``bpm`` while running."""

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4) -> None:
        self.bpm, self.beats_per_bar = bpm, beats_per_bar
        self.running = False
        self.started_at = 0

    @property
    def beat_frames(self) -> int:
        return round(60.0 * RATE / self.bpm)


class Player(ABC):
    """What both wirings share: two buffers, two gains, a transport, an xfade, a quantum."""

    def __init__(self, files: Files, xfade_frames: int = round(0.05 * RATE),
                 quantum: str = "bar") -> None:
        self.probe = Probe()
        self.buffers = [Buffer(files, self.probe, 0), Buffer(files, self.probe, 1)]
        self.gains = [Ramp(), Ramp()]
        self.transport = Transport()
        self.xfade = xfade_frames
        self.quantum = quantum

    # the messages a player takes: each wiring (PendingSlotPlayer, FlipOnArrivalPlayer) says
    # what it does with them
    @abstractmethod
    def clip(self, frame: int, path: str, bars: int = 2) -> None: ...

    @abstractmethod
    def run(self, frame: int, on: bool) -> None: ...

    @abstractmethod
    def tick(self, frame: int, beat: int) -> None: ...

    def sounding(self, frame: int) -> dict[str, float]:
        """The files audible at ``frame`` and their gains."""
        out: dict[str, float] = {}
        for buf, gain in zip(self.buffers, self.gains, strict=True):
            g = gain.at(frame)
            if g > 0 and buf.path is not None:
                out[buf.path] = out.get(buf.path, 0.0) + g
        return out

    def quantum_beats(self, bars: int) -> int:
        per_bar = self.transport.beats_per_bar
        return {"beat": 1, "bar": per_bar, "loop": per_bar * bars}[self.quantum]


class PendingSlotPlayer(Player):
    """The Pd player's wiring (and the one the Max files follow)."""

    def __init__(self, files: Files, **kw: object) -> None:
        super().__init__(files, **kw)  # type: ignore[arg-type]
        self.playing = -1
        self.pending = False
        self.want: tuple[str, int] | None = None
        self.fading_until = -1
        self.bars = [2, 2]
        self.resume = False

    def idle(self) -> int:
        return 1 if self.playing == 0 else 0

    def clip(self, frame: int, path: str, bars: int = 2) -> None:
        problem = refusal(self.buffers[0].files, path)  # checked on arrival
        if problem:
            self.probe.errors.append(problem)
            return
        self.want = (path, bars)
        self.try_load(frame)

    def try_load(self, frame: int) -> None:
        if self.want is None or frame < self.fading_until:
            return  # during a crossfade the idle slot still sounds: wait for its end
        path, bars = self.want
        self.want = None
        slot = self.idle()
        self.pending = False
        if self.buffers[slot].load(frame, path, self.gains[slot].at(frame)):
            self.bars[slot] = bars
            self.pending = True

    def run(self, frame: int, on: bool) -> None:
        t = self.transport
        if on and not t.running:
            t.running, t.started_at = True, frame
            self.resume = self.playing >= 0
            self.tick(frame, 0)  # the Pd player's start: beat 0 now (start_t -> s rb-tick)
        elif not on and t.running:
            t.running = False
            for gain in self.gains:
                gain.go(frame, 0.0, self.xfade)

    def tick(self, frame: int, beat: int) -> None:
        if self.resume:
            self.resume = False
            self.gains[self.playing].go(frame, 1.0, self.xfade, start=0.0)
        bars = self.bars[self.idle()]
        if self.pending and beat % self.quantum_beats(bars) == 0:
            new, old = self.idle(), self.playing
            self.gains[new].go(frame, 1.0, self.xfade, start=0.0)
            if old >= 0:
                self.gains[old].go(frame, 0.0, self.xfade)
            self.playing, self.pending = new, False
            self.fading_until = frame + self.xfade
            path = self.buffers[new].path
            assert path is not None
            self.probe.switches.append((frame, new, path))

    def after(self, frame: int) -> None:
        """What the end of a crossfade (a ``delay``) does: let a waiting clip load."""
        if self.want is not None and frame >= self.fading_until:
            self.try_load(frame)


class FlipOnArrivalPlayer(Player):
    """The earlier Max player, box for box: every clip flips ``counter 1 2`` and loads into the
    buffer it points at; the buffer's bang arms ``gate 1``; the next ``metro 1n`` bar restarts the
    grooves and flips ``selector~`` to the counter's value; ``sig~ 1`` never stops them."""

    def __init__(self, files: Files, **kw: object) -> None:
        super().__init__(files, **kw)  # type: ignore[arg-type]
        self.counter = 1  # counter 1 2 starts at 1 and the first clip makes it 2: buffer B
        self.pending_slot = 0  # the [i] that feeds selector~
        self.selected = -1  # selector~ 2 starts at 0: silence
        self.armed = False

    def clip(self, frame: int, path: str, bars: int = 2) -> None:
        self.counter = 2 if self.counter == 1 else 1  # t s b: the bang flips first
        slot = self.counter - 1
        self.pending_slot = slot
        if self.buffers[slot].load(frame, path, self.gains[slot].at(frame)):
            self.armed = True

    def run(self, frame: int, on: bool) -> None:
        self.transport.running = on  # metro @active 1 follows it; the grooves do not

    def tick(self, frame: int, beat: int) -> None:
        if beat % self.transport.beats_per_bar == 0 and self.armed:  # metro 1n
            self.armed = False
            for k, gain in enumerate(self.gains):  # selector~: an unramped switch
                gain.go(frame, 1.0 if k == self.pending_slot else 0.0, 0)
            self.selected = self.pending_slot
            path = self.buffers[self.pending_slot].path
            assert path is not None
            self.probe.switches.append((frame, self.pending_slot, path))

    def after(self, frame: int) -> None:
        pass


Event = tuple[int, str, tuple[object, ...]]  # frame, "clip" | "run", args


def simulate(player: Player, events: list[Event], until: int,
             listen: tuple[int, ...] = ()) -> dict[int, dict[str, float]]:
    """Drive ``player``: messages at their frames, beat ticks while the transport runs (ticks
    come first when both fall on one frame, as a scheduler's clock does before network input),
    the end of each crossfade. Returns what sounds at each frame in ``listen``."""
    pending = sorted(events, key=lambda e: e[0])
    heard: dict[int, dict[str, float]] = {}
    ears = sorted(set(listen))
    frame = 0
    t = player.transport
    while frame <= until:
        if t.running:
            since = frame - t.started_at
            if since % t.beat_frames == 0:
                player.tick(frame, since // t.beat_frames)
        while pending and pending[0][0] == frame:
            _, what, args = pending.pop(0)
            if what == "clip":
                player.clip(frame, *args)  # type: ignore[arg-type]
            elif what == "run":
                player.run(frame, bool(args[0]))
        if isinstance(player, PendingSlotPlayer):
            player.after(frame)
        while ears and ears[0] == frame:
            heard[ears.pop(0)] = player.sounding(frame)
        # jump to the next thing that can happen
        nxt = [until + 1]
        if pending:
            nxt.append(pending[0][0])
        if ears:
            nxt.append(ears[0])
        if t.running:
            since = frame - t.started_at
            nxt.append(frame + t.beat_frames - since % t.beat_frames)
        if isinstance(player, PendingSlotPlayer) and player.fading_until > frame:
            nxt.append(player.fading_until)
        frame = min(nxt)
    return heard
