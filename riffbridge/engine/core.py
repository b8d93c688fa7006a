"""The engine's decisions, as a pure core: what to render next, what should sound, when to switch,
how the beat grid moves, when the auto walk steps and when a clip is announced.

Contract: ``EngineCore`` has no thread, no queue, no clock and no audio. The engine shell
(``riffbridge.engine.engine``) owns one and is its only caller, on the engine thread. Every input
is an argument: the hub's ``Change``, an external clock's ``ClockSync``, the playhead frame,
``time.monotonic()`` as ``now``, and what the loop cache holds (an ``is_cached`` predicate). Every
output is a frozen value: a ``LoopKey`` to render, a ``CueDecision`` for the shell to turn into a
prepared cue, or an outbound event (``riffbridge.events``). Tests drive it directly.

The rules, in one place:

- render: the planner's order (the knob's point, its neighbours the way it moves, the auto
  walk's path); a forced render (``/rb/render``) first; cached loops skipped; a loop that failed
  waits 1, 2, 4 ... 60 s before it is tried again. A render in flight that nothing current
  could play (another tempo, length, prompt, seed ...; not merely another alpha, which a blend
  can use) is cancelled (``useless``). A render may carry several planned loops in one UNet batch
  (``next_renders``, up to the worker's batch): the loop the performer waits on (forced, the
  cue's candidate, the knob's point) renders alone; the neighbours after it go together, in the
  planner's order, when they share one schedule shape (tempo, length, steps, denoise).
- sound: the exact render of the knob's point, else a blend of the rendered neighbours around
  it (equal-power gains, which the shell rescales by the loops' correlation), else keep what
  plays. A new choice is cued on the next quantum boundary at least one audio block, a margin
  and the shell's cue preparation time (the slowest recent one) ahead of the playhead; it
  replaces a cue that has not sounded yet, unless that cue is about to sound (then it waits for
  the next turn after it). A switch that sounded is reported (``Switched``) with the alpha of
  what sounds, not the knob's.
- tempo: with the internal clock the grid takes the new tempo at the switch to the loop that has
  it (the old loop plays on at the old tempo until then); an external clock re-anchors the grid
  at once on a bpm change; Link's phase is followed only when it drifts by more than 5 ms or its
  tempo differs.
- auto walk: one step per loop, ``AUTO_LEAD_S`` before the loop boundary, as a ``Request``; at an
  end of the path with a setlist, the next pair of prompts. On the XY surface the walk goes
  round a circle through the surface (``plan.xy_walk``), ``auto`` turns per loop.
- XY surface: the planner renders the exact point, its lattice cell and the lattice ahead the way
  the point last moved (``plan.plan_xy``); until the exact point is rendered the two nearest
  rendered lattice points sound as a blend.
- clips: ``ClipCued`` once per switch, for exact renders only (a blend has no file), as soon as
  both the cue and the loop's file exist.
- the cue bus: ``/rb/cue/alpha``, ``/rb/cue/xy`` or ``/rb/cue/weights`` names a candidate: the
  master's command it stands for (``state.cue_command``: alpha, the XY point, the slots'
  weights), and the state that command would give now (the mix's mode rules followed, so an XY
  candidate on an A/B master auditions the surface). Its exact point renders first (after a
  forced render), and the cue bus plays it, or meanwhile what the master would play for that
  state (a blend of its rendered neighbours on the A/B path or the XY lattice; a weights mix
  has none), from the next block, at the master grid's phase, so it is in time; what sounds on
  the master does not change. ``/rb/cue/commit`` asks for that command (a ``Request``), so the
  master takes it on the next quantum like any control move, and the cue bus goes quiet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from riffbridge import styles
from riffbridge.control.clocks import ClockSync
from riffbridge.engine.clock import Grid, quantum_beats
from riffbridge.engine.plan import (
    DEFAULT_GRID,
    DEFAULT_XY_GRID,
    LOOKAHEAD,
    Choice,
    LoopKey,
    auto_step,
    batch,
    blend_gains,
    choose,
    key_for,
    lattice,
    plan,
    xy_walk,
)
from riffbridge.errors import ControlError
from riffbridge.events import ClipCued, CuePlaying, EngineError, ErrorSource, Request, Switched
from riffbridge.state import (
    ApplyPreset,
    Command,
    CueAlpha,
    CueCommit,
    CueWeights,
    CueXY,
    EngineState,
    Render,
    SetMany,
    SetParam,
    apply,
    cue_command,
)

if TYPE_CHECKING:
    from riffbridge.control.hub import Change

AUTO_LEAD_S = 0.25  # the auto walk moves alpha this long before the loop boundary
RETRY_MAX_S = 60.0  # the longest wait before a failing loop is tried again
LINK_DRIFT_S = 0.005  # Link's phase is followed when the grid is off by more than this
PATHS_KEPT = 256  # file paths remembered before those of evicted loops are forgotten

IsCached = Callable[[LoopKey], bool]


@dataclass(frozen=True)
class CueDecision:
    """A switch to cue: from frame ``at`` (a quantum boundary), ``choice`` sounds (None: silence),
    crossfaded over ``fade`` frames. The shell mixes ``choice.low``/``choice.high`` at ``gains``
    times ``level`` and starts the loop ``phase`` of the way in, so it is bar-aligned."""

    token: int  # rises with every cue; the player reports the one it applied
    at: int
    fade: int
    choice: Choice | None
    gains: tuple[float, float]  # equal-power (low, high), (1, 0) for an exact render; the
    # shell rescales a blend's by the two loops' correlation, to keep its level
    level: float  # the linear output gain (gain_db)
    phase: float  # where in the loop frame ``at`` falls, 0..1
    label: str  # what sounds, for the status line and ``Switched``
    quantum: int  # beats
    replaces: bool  # it replaces a cue that has not sounded: fade from what plays before that
    grid: Grid  # the beat grid from this decision on


@dataclass(frozen=True)
class _Sound:
    """What a cue plays, to tell whether a new choice changes anything."""

    low: LoopKey
    high: LoopKey | None
    weight: float
    gain_db: float


def _where(key: LoopKey) -> str:
    if key.mix == "xy":
        return f"xy {key.x:g},{key.y:g}"
    if key.mix == "weights":
        return "mix " + "/".join(f"{w:g}" for _, _, w in key.styles)
    return f"alpha {key.alpha:g}"


def alpha_of(choice: Choice) -> float:
    """The alpha that sounds: the rendered point's, or for a blend the point between its two
    neighbours that the blend stands for (not the knob's, which may sit between grid points)."""
    low = float(choice.low.alpha)
    if choice.high is None:
        return low
    return low + choice.weight * (float(choice.high.alpha) - low)


def point_of(choice: Choice) -> tuple[float, float]:
    """The XY point that sounds: the rendered point's, or the point between a blend's two."""
    x, y = choice.low.point
    if choice.high is None:
        return x, y
    hx, hy = choice.high.point
    w = choice.weight
    return round(x + w * (hx - x), 6), round(y + w * (hy - y), 6)


def label_of(choice: Choice | None) -> str:
    if choice is None:
        return "silence"
    if choice.high is None:
        return _where(choice.low)
    if choice.low.mix == "xy":
        return f"blend {_where(choice.low)}|{choice.high.x:g},{choice.high.y:g} " \
               f"@{choice.weight:.2f}"
    return f"blend {choice.low.alpha:g}|{choice.high.alpha:g} @{choice.weight:.2f}"


class EngineCore:
    """The engine's state of mind. See the module docstring for the rules and the contract."""

    def __init__(self, state: EngineState, rate: int, *, alpha_grid: int = DEFAULT_GRID,
                 lookahead: int = LOOKAHEAD, block: int = 512, margin_s: float = 0.005,
                 setlist: tuple[tuple[str, str], ...] = (),
                 xy_grid: int = DEFAULT_XY_GRID) -> None:
        self.rate = int(rate)
        self.alpha_grid = alpha_grid
        self.xy_grid = xy_grid
        self._xy_direction: tuple[float, float] = (0.0, 0.0)
        self.lookahead = lookahead
        self.block = block
        self.margin_s = margin_s
        self.setlist = setlist
        self._state = state
        self._grid = Grid(self.rate, state.bpm)
        self._direction = 1
        self._wanted: tuple[LoopKey, ...] | None = None  # the plan for state and direction
        self._forced: LoopKey | None = None
        self._retry: dict[LoopKey, tuple[int, float]] = {}  # failures, not before (now)
        self._token = 0
        self._pending: tuple[int, int] | None = None  # (token, at) of the last cue
        self._sound: _Sound | None = None  # what the last cue plays
        self._label = "silence"
        self._labels: dict[int, tuple[float, str]] = {}  # token -> (alpha, label), last cues
        self._sounds: dict[int, _Sound | None] = {0: None}  # token -> what it plays, last cues
        self._reported = 0  # the last applied token reported as Switched
        self._paths: dict[LoopKey, str] = {}
        self._announced: LoopKey | None = None
        self._next_auto: int | None = None
        self._setlist_index = 0
        # the candidate on the cue bus: the master's command it stands for, and the state
        # that command gives now (followed as the master's state changes)
        self._cue_command: SetParam | SetMany | None = None
        self._cue_state: EngineState | None = None
        self._cue_key: LoopKey | None = None  # its exact point (looked up every turn)
        self._cue_sound: _Sound | None = None  # what the cue bus plays
        self._commit = False

    # -- read-only views ------------------------------------------------------------------------
    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def grid(self) -> Grid:
        return self._grid

    @property
    def direction(self) -> int:
        """+1 or -1: the way alpha last moved (the planner renders ahead that way)."""
        return self._direction

    @property
    def sounding(self) -> str:
        """The label of what the last cue plays."""
        return self._label

    @property
    def playing_keys(self) -> frozenset[LoopKey]:
        """The loops the last cue plays (the cache keeps them)."""
        if self._sound is None:
            return frozenset()
        return frozenset(k for k in (self._sound.low, self._sound.high) if k is not None)

    def wanted(self) -> tuple[LoopKey, ...]:
        """The planner's keys for the state and direction, most urgent first."""
        if self._wanted is None:  # planned once per change, not on every turn
            self._wanted = tuple(plan(self._state, self._direction, self.alpha_grid,
                                      self.lookahead, xy_direction=self._xy_direction,
                                      xy_grid=self.xy_grid))
        return self._wanted

    def queued(self, is_cached: IsCached) -> int:
        """How many planned loops are not rendered yet."""
        return sum(1 for k in self.wanted() if not is_cached(k))

    # -- inputs ---------------------------------------------------------------------------------
    def on_change(self, change: Change, frame: int) -> None:
        """The hub applied a command; ``frame`` is the playhead now."""
        old, self._state = self._state, change.state
        state = self._state
        self._wanted = None
        if "alpha" in change.changed and state.alpha != old.alpha:
            self._direction = 1 if state.alpha > old.alpha else -1
        if ("x" in change.changed or "y" in change.changed) and state.mix == "xy":
            self._xy_direction = (state.x - old.x, state.y - old.y)
        if isinstance(change.command, Render):
            self._forced = key_for(state, None, self.alpha_grid)
        if isinstance(change.command, (CueAlpha, CueXY, CueWeights)):
            self._cue_command = cue_command(change.command)
        if isinstance(change.command, CueCommit):
            self._commit = True
        self._cue_state = self._candidate_state()
        self._cue_key = None if self._cue_state is None else key_for(self._cue_state, None,
                                                                     self.alpha_grid)
        if "bpm" in change.changed and state.clock != "internal":
            # An external clock sets the grid now; the loop playing keeps its own length until
            # the loop at the new tempo lands (the internal clock moves the grid with that loop).
            self._grid = self._grid.with_tempo(state.bpm, frame)

    def on_clock(self, sync: ClockSync, frame: int) -> bool:
        """An external clock says beat ``sync.beat`` falls on ``frame``. Whether the grid moved."""
        grid = self._grid
        if sync.source == "link":  # a continuous phase: follow it only when it drifts
            drift = abs(grid.beat_at(frame) - sync.beat) * grid.frames_per_beat
            if drift < LINK_DRIFT_S * self.rate and (sync.bpm is None or sync.bpm == grid.bpm):
                return False
        self._grid = grid.align(sync.beat, frame, sync.bpm)
        return True

    def on_rendered(self, key: LoopKey) -> None:
        self._retry.pop(key, None)

    def on_failed(self, key: LoopKey | None, message: str, source: ErrorSource,
                  now: float, also: tuple[LoopKey, ...] = ()) -> EngineError:
        """A render failed, or the worker died with ``key`` in flight (and ``also``, the rest of
        its batch not yet delivered): back off those loops. One error for the whole batch."""
        for failed in (key, *also):
            if failed is not None:
                count = self._retry.get(failed, (0, 0.0))[0] + 1
                self._retry[failed] = (count, now + min(RETRY_MAX_S, 2.0 ** (count - 1)))
        return EngineError(source, message)

    def on_file(self, key: LoopKey, path: str, is_cached: IsCached) -> ClipCued | None:
        """The loop ``key`` was written to ``path``."""
        self._paths[key] = path
        if len(self._paths) > PATHS_KEPT:  # forget the files of evicted loops
            self._paths = {k: p for k, p in self._paths.items() if is_cached(k)}
        return self.clip()

    # -- rendering ------------------------------------------------------------------------------
    def next_render(self, is_cached: IsCached, worker_idle: bool, now: float) -> LoopKey | None:
        """The loop the idle worker should render now, or None."""
        if not worker_idle:
            return None
        if self._forced is not None:
            key, self._forced = self._forced, None
            return key
        cue = self.cue_key()
        wanted = self.wanted() if cue is None else (cue, *self.wanted())
        for key in wanted:
            if not is_cached(key) and self._retry.get(key, (0, 0.0))[1] <= now:
                return key
        return None

    def next_renders(self, is_cached: IsCached, worker_idle: bool, now: float,
                     limit: int = 1) -> tuple[LoopKey, ...]:
        """The loops the idle worker should render now, in one render (one UNet batch), most
        urgent first; empty when there is none. The first is ``next_render``'s. When it is a
        loop the performer waits on (a forced render, the cue bus's candidate, the point the
        knob is on) it renders alone, as soon as it can; otherwise (a neighbour of the plan)
        up to ``limit - 1`` more of the plan's loops follow it in the planner's order, those
        not rendered and not waiting to be retried that share its schedule shape
        (``plan.schedule_shape``: tempo, length, steps, denoise)."""
        forced = self._forced
        first = self.next_render(is_cached, worker_idle, now)
        if first is None:
            return ()
        wanted = self.wanted()
        if limit <= 1 or first == forced or first == self.cue_key() or \
                (wanted and first == wanted[0]):
            return (first,)
        rest = (k for k in wanted
                if not is_cached(k) and self._retry.get(k, (0, 0.0))[1] <= now)
        return batch(first, rest, limit)

    def useless(self, key: LoopKey) -> bool:
        """Whether the render of ``key`` in flight should be cancelled: nothing the current state
        could play would use it. It is neither planned, forced nor the cue bus's candidate, and
        no blend could use it: on the A/B path any point of the same path (same slots, tempo,
        length, steps ...) is a neighbour a blend can use; on the XY surface only a lattice
        point of the same surface is (an exact point left behind is not); a mix set by the
        slots' weights plays its exact render only."""
        wanted = self.wanted()
        if key in wanted or key == self._forced or key == self.cue_key() or not wanted:
            return False
        here = wanted[0]
        if key.mix != here.mix:
            return True
        if here.mix == "ab":
            return key.at(0.5) != here.at(0.5)  # mid-path: both sides count
        if here.mix == "xy":
            on_lattice = all(lattice(v, self.xy_grid) == v for v in key.point)
            return not on_lattice or key.at_xy(0.5, 0.5) != here.at_xy(0.5, 0.5)
        return True

    # -- playback -------------------------------------------------------------------------------
    def playback(self, is_cached: IsCached, frame: int, applied_token: int,
                 prepare_s: float = 0.0) -> CueDecision | None:
        """A switch to cue now, or None. ``applied_token``: the last cue the player applied;
        ``prepare_s``: how long the shell may take to prepare the cue's audio (a loud blend takes
        several milliseconds): the boundary is chosen that much further ahead, so that the cue
        reaches the player before its frame and its crossfade plays whole."""
        state = self._state
        choice = (choose(state, is_cached, self.alpha_grid, self.xy_grid) if state.playing
                  else None)
        if state.playing and choice is None:
            return None  # nothing rendered for this sound yet: keep what plays
        sound = None if choice is None else _Sound(choice.low, choice.high,
                                                    round(choice.weight, 4), state.gain_db)
        if sound == self._sound:
            return None
        earliest = frame + self.block + int((self.margin_s + prepare_s) * self.rate)
        pending = self._pending
        replaces = pending is not None and pending[0] > applied_token
        if replaces and pending is not None and pending[1] <= earliest:
            return None  # the pending switch is about to sound: cue the next one after it
        if choice is not None:
            bpm, bars, beats = choice.low.bpm, choice.low.bars, choice.low.beats_per_bar
        else:
            bpm, bars, beats = self._grid.bpm, state.bars, state.beats_per_bar
        quantum = quantum_beats(state.quantum, bars, beats)
        at, _ = self._grid.next_boundary(earliest, quantum)
        if state.clock == "internal" and bpm != self._grid.bpm:
            self._grid = self._grid.with_tempo(bpm, at)  # the new tempo starts with its loop
        loop_beats = bars * beats
        phase = (round(self._grid.beat_at(at), 6) % loop_beats) / loop_beats
        self._token += 1
        self._pending = (self._token, at)
        self._sound = sound
        self._label = label_of(choice)
        self._labels = {t: s for t, s in self._labels.items() if t > self._token - 4}
        self._sounds = {t: s for t, s in self._sounds.items() if t > self._token - 8}
        self._sounds[self._token] = sound
        # silence has no alpha of its own: it reports the knob's
        self._labels[self._token] = (state.alpha if choice is None else alpha_of(choice),
                                     self._label)
        gains = (1.0, 0.0) if choice is None or choice.high is None else blend_gains(choice.weight)
        return CueDecision(self._token, at, max(1, round(state.xfade * self.rate)), choice,
                           gains, 10 ** (state.gain_db / 20), phase, self._label, quantum,
                           replaces, self._grid)

    def clip(self) -> ClipCued | None:
        """The file of the exact loop the last cue plays, once per switch, when both exist."""
        sound = self._sound
        if sound is None or sound.high is not None:
            return None
        path = self._paths.get(sound.low)
        if path is None or sound.low == self._announced:
            return None
        self._announced = key = sound.low
        return ClipCued(path, float(key.alpha), float(key.bpm), int(key.bars))

    def on_dropped(self, token: int, applied_token: int, applied_at: int) -> None:
        """The player dropped cue ``token``: the switch it replaced had sounded first
        (``applied_token``, at ``applied_at``), so its fade was prepared from other audio.
        What plays is that switch's sound; the next ``playback`` cues again from there."""
        if self._pending is None or self._pending[0] != token:
            return
        self._pending = (applied_token, applied_at)
        self._sound = self._sounds.get(applied_token)
        self._label = self._labels.get(applied_token, (0.0, "silence"))[1]

    def on_applied(self, token: int, applied_at: int) -> Switched | None:
        """The player's last applied cue; a ``Switched`` the first time a token is seen."""
        if token == self._reported:
            return None
        self._reported = token
        bar = math.floor(self._grid.beat_at(applied_at) / max(1, self._state.beats_per_bar)
                         + 1e-6)
        alpha, label = self._labels.get(token, (self._state.alpha, ""))
        return Switched(float(alpha), int(bar), label)

    # -- the cue bus ----------------------------------------------------------------------------
    def _candidate_state(self) -> EngineState | None:
        """The state the cue's command gives from the master's state now, or None."""
        if self._cue_command is None:
            return None
        try:
            return apply(self._state, self._cue_command)
        except ControlError:  # checked when it came; the master's state has moved since
            self._cue_command = None
            return None

    def cue_key(self) -> LoopKey | None:
        """The exact point of the candidate on the cue bus, or None."""
        return self._cue_key

    def cue_playback(self, is_cached: IsCached, frame: int) -> CueDecision | None:
        """What the cue bus should play from the next block, when that changes (``choice``
        None: silence), or None. Never touches what the master plays."""
        choice = None
        if self._cue_state is not None:
            choice = choose(self._cue_state, is_cached, self.alpha_grid, self.xy_grid)
            if choice is None or (choice.high is None and choice.low != self.cue_key()):
                # not rendered yet (a far neighbour is no audition): keep what the bus plays
                return None
        state = self._state
        sound = None if choice is None else _Sound(choice.low, choice.high,
                                                    round(choice.weight, 4), state.gain_db)
        if sound == self._cue_sound:
            return None
        self._cue_sound = sound
        at = frame + self.block + int(self.margin_s * self.rate)
        bars, beats = (state.bars, state.beats_per_bar) if choice is None else (
            choice.low.bars, choice.low.beats_per_bar)
        loop_beats = bars * beats
        phase = (round(self._grid.beat_at(at), 6) % loop_beats) / loop_beats
        gains = (1.0, 0.0) if choice is None or choice.high is None else blend_gains(choice.weight)
        return CueDecision(0, at, 1, choice, gains, 10 ** (state.gain_db / 20), phase,
                           label_of(choice), quantum_beats(state.quantum, bars, beats), False,
                           self._grid)

    def cue_news(self, decision: CueDecision) -> CuePlaying | None:
        """What the cue bus now plays, for ``/rb/cue/playing`` (and its XY and weights forms)."""
        choice = decision.choice
        if choice is None:
            return None
        key = choice.low
        if key.mix == "xy":
            return CuePlaying(alpha_of(choice), decision.label, "xy", point_of(choice))
        if key.mix == "weights":
            return CuePlaying(alpha_of(choice), decision.label, "weights",
                              weights=tuple(round(w, 6) for w in
                                            styles.normalised(styles.weights(key.as_dict()))))
        return CuePlaying(alpha_of(choice), decision.label)

    def commit(self) -> Request | EngineError | None:
        """``/rb/cue/commit``: the candidate's command for the master (its next quantum), once."""
        if not self._commit:
            return None
        self._commit = False
        command, self._cue_command = self._cue_command, None
        self._cue_state = self._cue_key = None
        if command is None:
            return EngineError("engine", "/rb/cue/commit: nothing is on the cue bus; send "
                               "/rb/cue/alpha first (or /rb/cue/xy, /rb/cue/weights)")
        return Request(command)

    # -- the auto walk --------------------------------------------------------------------------
    def auto(self, frame: int) -> Request | EngineError | None:
        """The auto walk's step, once per loop, ``AUTO_LEAD_S`` before the loop boundary."""
        state = self._state
        if not state.auto or not state.playing or self._sound is None:
            self._next_auto = None
            return None
        loop_beats = state.bars * state.beats_per_bar
        lead = int(AUTO_LEAD_S * self.rate)
        if self._next_auto is None:
            self._next_auto, _ = self._grid.next_boundary(frame + lead, loop_beats)
            return None
        if frame < self._next_auto - lead:
            return None
        self._next_auto, _ = self._grid.next_boundary(self._next_auto + 1, loop_beats)
        command = self._auto_command(state)
        try:
            apply(state, command)  # the hub's own check: a refused step is reported here
        except ControlError as exc:
            return EngineError("auto", f"auto walk: {exc}")
        return Request(command)

    def _auto_command(self, state: EngineState) -> Command:
        if state.mix == "xy":
            x, y = xy_walk(state.x, state.y, state.auto)
            return SetMany((("x", x), ("y", y)))
        if self.setlist and not 0.0 <= state.alpha + state.auto <= 1.0:
            self._setlist_index = (self._setlist_index + 1) % len(self.setlist)
            a, b = self.setlist[self._setlist_index]
            start = 0.0 if state.auto > 0 else 1.0
            return ApplyPreset("setlist", (("prompt_a", a), ("prompt_b", b), ("alpha", start)))
        return SetParam("alpha", round(auto_step(state.alpha, state.auto), 6))
