"""The hub: the one owner of the engine state on the control side.

OSC, MIDI and the engine itself (auto mode, a measured clock) submit commands here. The hub checks
them, applies them to the state under one lock, and tells everyone:

- listeners (``add_listener``) get a ``Change`` for every applied command, in order; the engine
  takes them from ``events()`` (a queue) or a callback. Commands that do not alter the state
  (render, play on a playing engine) are still delivered, so the engine can act on them.
- sinks (``add_sink``, the OSC server) get ``(address, args)`` for each changed param, so every
  subscriber sees every change whoever made it, and whatever the feedback ``push``-es.

Locking: the state changes and the listeners' ``Change`` events happen under one lock, so every
listener sees the changes in the order they were applied (listeners must be quick: a queue put).
Sinks (sockets) and preset files are written after the lock is released, so a slow peer or disk
never holds up a knob. No torch, no audio, no sockets here.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from riffbridge import params as P
from riffbridge.control.osc_spec import OSC_SPEC
from riffbridge.control.presets import PresetStore
from riffbridge.errors import ControlError
from riffbridge.state import (
    ApplyPreset,
    Command,
    EngineState,
    MidiLearn,
    RecallPreset,
    SavePreset,
    SetParam,
    SetSeedFile,
    apply,
    changed_params,
)

log = logging.getLogger(__name__)

# every address a param answers on (A's prompt also as slot 1's), and the group addresses
ADDRESSES_OF_PARAM: dict[str, tuple[str, ...]] = {}
for _e in OSC_SPEC:
    if _e.kind == "param" and _e.param:
        ADDRESSES_OF_PARAM[_e.param] = (*ADDRESSES_OF_PARAM.get(_e.param, ()), _e.address)
ADDRESS_OF_PARAM = {name: addresses[0] for name, addresses in ADDRESSES_OF_PARAM.items()}
GROUPS = {e.address: e.params for e in OSC_SPEC if e.kind == "param" and e.params}

# Pushes a new subscriber is sent again (``snapshot``): the sounding clip and what plays.
REMEMBERED = ("/rb/clip", "/rb/playing")

Sink = Callable[[str, tuple[Any, ...]], None]


@dataclass(frozen=True)
class Change:
    """One applied command: the state after it, and which fields it changed."""

    command: Command
    state: EngineState
    changed: tuple[str, ...]
    source: str  # "osc", "midi", "engine", ...


class Learner(Protocol):
    def learn(self, param: str) -> None: ...


StatusNumbers = Callable[[], tuple[int, int, int]]  # queued renders, cached loops, underruns


def check_pattern_file(pattern: str, seed_dir: Path | None,
                       names: frozenset[str] | None) -> None:
    """Refuse a pattern that is neither a known groove nor a file inside ``seed_dir``."""
    if P.is_seed_file(pattern):
        if seed_dir is None:
            raise ControlError(f"pattern {pattern!r} names a file but no seed folder is set; "
                               f"start riffbridge with a seed folder")
        root = seed_dir.resolve()
        target = (root / pattern).resolve()
        if not target.is_relative_to(root):
            raise ControlError(f"pattern {pattern!r} is outside the seed folder {root}")
        if not target.is_file():
            raise ControlError(f"pattern file {pattern!r} not found in the seed folder {root}")
        return
    if names is not None and pattern not in names:
        raise ControlError(f"unknown pattern {pattern!r}; known: {', '.join(sorted(names))}, "
                           f"or a seed file inside the seed folder")


SeedCheck = Callable[[Path, str], None]  # (file, "audio" | "image"): ControlError if unusable


def seed_file_pattern(kind: str, path: str, seed_dir: Path | None,
                      check: SeedCheck | None = None) -> str:
    """The ``pattern`` naming seed file ``path`` (relative to ``seed_dir``, or absolute inside
    it), after the checks: inside the seed folder, an existing file of the right kind, and
    ``check`` (the file's content: audio, not silent, long enough) passed. Nothing outside the
    seed folder is opened."""
    P.check_name(f"/rb/seed/{kind} path", path)
    suffixes = P.SEED_IMAGE_SUFFIXES[:1] if kind == "image" else P.SEED_AUDIO_SUFFIXES
    if seed_dir is None:
        raise ControlError(f"/rb/seed/{kind} {path!r}: no seed folder is set; start riffbridge "
                           f"with --seed-dir DIR and record into it")
    root = seed_dir.resolve()
    target = (root / Path(path).expanduser()).resolve()
    if not target.is_relative_to(root):
        raise ControlError(f"/rb/seed/{kind} {path!r} is outside the seed folder {root}; "
                           f"only files inside it are read")
    if not target.name.lower().endswith(suffixes):
        raise ControlError(f"/rb/seed/{kind} {path!r} must end in {', '.join(suffixes)}")
    if not target.is_file():
        raise ControlError(f"/rb/seed/{kind} {path!r} not found in the seed folder {root}")
    if check is not None:
        check(target, kind)
    return target.relative_to(root).as_posix()


def check_seed_content(path: Path, kind: str) -> None:
    """The default content check: the audio-file boundary's (``riffbridge.audio_io``)."""
    from riffbridge.audio_io import check_seed_file

    check_seed_file(path, kind)


class Hub:
    """Owns the ``EngineState``; thread-safe."""

    def __init__(self, state: EngineState | None = None, *, presets: PresetStore | None = None,
                 seed_dir: str | Path | None = None,
                 pattern_names: Iterable[str] | None = None,
                 seed_check: SeedCheck | None = check_seed_content) -> None:
        self._state = state or EngineState()
        self._lock = threading.RLock()
        self._listeners: list[Callable[[Change], None]] = []
        self._sinks: list[Sink] = []
        self.presets = presets
        self.seed_dir = Path(seed_dir) if seed_dir is not None else None
        self.pattern_names = frozenset(pattern_names) if pattern_names is not None else None
        self.learner: Learner | None = None
        self.seed_check = seed_check
        self._status_numbers: StatusNumbers | None = None
        self._last_push: dict[str, tuple[Any, ...]] = {}  # the latest of each REMEMBERED push

    # ---- reading ----
    @property
    def state(self) -> EngineState:
        return self._state  # an immutable value: no lock needed to hand it out

    def value(self, param: str) -> Any:
        return getattr(self._state, P.get(param).name)

    def set_status_provider(self, numbers: StatusNumbers | None) -> None:
        """The engine's live numbers for /rb/status: (queued, cached, underruns), read from the
        engine's published snapshot."""
        self._status_numbers = numbers

    def status(self) -> tuple[str, float, float, int, int, int]:
        state = self._state
        queued = cached = underruns = 0
        if self._status_numbers is not None:
            try:
                queued, cached, underruns = (int(n) for n in self._status_numbers())
            except Exception:  # the engine's problem must not break the control surface
                log.exception("status provider failed")
        return ("playing" if state.playing else "stopped", float(state.bpm), float(state.alpha),
                queued, cached, underruns)

    def snapshot(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Everything a new subscriber needs at once, in the order to apply it: every param
        with an OSC address (the tempo among them), the status, then, while playing, the loop
        that sounds (its latest /rb/clip and /rb/playing)."""
        state = self._state
        messages: list[tuple[str, tuple[Any, ...]]] = [
            (address, (getattr(state, name),)) for name, address in ADDRESS_OF_PARAM.items()]
        messages.append(("/rb/status", self.status()))
        if state.playing:
            with self._lock:
                last = dict(self._last_push)
            messages.extend((address, last[address]) for address in REMEMBERED
                            if address in last)
        return messages

    # ---- wiring ----
    def add_listener(self, listener: Callable[[Change], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Change], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def events(self, maxsize: int = 0) -> queue.Queue[Change]:
        """A new queue that receives every ``Change`` from now on (for the engine's thread)."""
        q: queue.Queue[Change] = queue.Queue(maxsize)
        self.add_listener(q.put_nowait)
        return q

    def add_sink(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def push(self, address: str, *args: Any) -> None:
        """Send ``address args`` to every sink (subscribers). Thread-safe; for the engine's
        /rb/clip, /rb/playing, /rb/progress."""
        with self._lock:
            sinks = list(self._sinks)
            if address in REMEMBERED:
                self._last_push[address] = tuple(args)
        for sink in sinks:
            try:
                sink(address, tuple(args))
            except Exception:
                log.exception("push of %s failed", address)

    # ---- changing ----
    def submit(self, command: Command, source: str = "osc") -> EngineState:
        """Apply ``command``; raise ``ControlError`` (state unchanged) when it is refused."""
        command = self._read_seed_file(command)  # reads the disk: before the lock
        with self._lock:
            new, after = self._apply_locked(command, source)
        after()
        return new

    def submit_many(self, commands: Sequence[Command],
                    source: str = "osc") -> list[tuple[Command, ControlError]]:
        """Apply ``commands`` in order under one lock (an OSC bundle); a refused one is skipped
        and returned with its error, the rest still apply."""
        errors: list[tuple[Command, ControlError]] = []
        todo: list[tuple[Command, Callable[[], None]]] = []
        checked: list[tuple[Command, Command]] = []
        for command in commands:  # seed files read the disk: before the lock
            try:
                checked.append((command, self._read_seed_file(command)))
            except ControlError as exc:
                errors.append((command, exc))
        with self._lock:
            for command, resolved in checked:
                try:
                    todo.append((command, self._apply_locked(resolved, source)[1]))
                except ControlError as exc:
                    errors.append((command, exc))
        for command, after in todo:
            try:
                after()
            except ControlError as exc:
                errors.append((command, exc))
        return errors

    def _read_seed_file(self, command: Command) -> Command:
        """A seed file checked (outside the hub's lock: it reads the file) and named as the
        ``pattern``; any other command as it is."""
        if isinstance(command, SetSeedFile):
            return SetParam("pattern", seed_file_pattern(command.kind, command.path,
                                                         self.seed_dir, self.seed_check))
        return command

    def _resolve(self, command: Command) -> Command:
        if isinstance(command, RecallPreset):
            if self.presets is None:
                raise ControlError("no preset file is set; start riffbridge with --presets FILE")
            apply(self._state, command)  # checks the name
            return self.presets.recall(command.name)
        return command

    def _apply_locked(self, command: Command, source: str
                      ) -> tuple[EngineState, Callable[[], None]]:
        """Apply under the lock; returns the new state and what to do after the lock (write a
        saved preset, send the changed params to the sinks)."""
        resolved = self._resolve(command)
        new = apply(self._state, resolved)
        if isinstance(resolved, (SetParam, ApplyPreset)) and new.pattern != self._state.pattern:
            check_pattern_file(new.pattern, self.seed_dir, self.pattern_names)
        if isinstance(resolved, SavePreset) and self.presets is None:
            raise ControlError("no preset file is set; start riffbridge with --presets FILE")
        if isinstance(resolved, MidiLearn):
            if self.learner is None:
                raise ControlError("MIDI learn needs a MIDI input; start riffbridge with "
                                   "--midi-in NAME")
            self.learner.learn(resolved.param)
        old, self._state = self._state, new
        change = Change(resolved, new, tuple(changed_params(old, new)), source)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("listener failed on %r", resolved)

        def after() -> None:
            if isinstance(resolved, SavePreset):
                # The state as it was when the save arrived; written outside the hub's lock
                # (the store has its own), and a failed write still refuses the command.
                assert self.presets is not None
                self.presets.save(resolved.name, old)
            for name in change.changed:
                for address in ADDRESSES_OF_PARAM.get(name, ()):
                    self.push(address, getattr(new, name))
            for address, names in GROUPS.items():
                if any(n in change.changed for n in names):
                    self.push(address, *(getattr(new, n) for n in names))

        return new, after
