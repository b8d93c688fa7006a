"""A recorded set's log (``riffbridge.outputs.recorder``), read back, and the set played again.

``read_log`` parses and checks the JSON-lines log: one clear ``OutputError`` naming the line and
what is wrong with it for a line edited into nonsense; a last line cut short (the machine died
while it was written) is left out with a warning, so a log always replays up to where it ends.

``assemble`` plays the switches again through the player's own code: each switch's segment is
``build_segment`` of the engine, each crossfade ``prepare_cue`` and the samples ``Player.fill``,
so the replayed set cannot drift from what the engine played: with the same loops it is the
recording, sample for sample; with loops rendered at a higher quality, the same set on the same
samples.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from riffbridge import params as P
from riffbridge.engine.clock import Grid
from riffbridge.engine.core import CueDecision
from riffbridge.engine.engine import build_segment
from riffbridge.engine.plan import Choice, LoopKey
from riffbridge.engine.player import Player, Segment, prepare_cue
from riffbridge.errors import ControlError, OutputError
from riffbridge.outputs.recorder import LOG_VERSION

log = logging.getLogger(__name__)

FILL_BLOCK = 65536  # frames per Player.fill call while assembling


@dataclass(frozen=True)
class SwitchEntry:
    line: int
    frame: int  # the player's frame where the crossfade starts
    bar: int
    fade: int
    phase: float
    level: float
    gains: tuple[float, float]
    label: str
    quantum: int
    bpm: float
    low: LoopKey | None  # None: silence
    high: LoopKey | None
    weight: float
    before_start: bool  # what already played as the recording started

    def loop_keys(self) -> tuple[LoopKey, ...]:
        return tuple(k for k in (self.low, self.high) if k is not None)


@dataclass(frozen=True)
class SetLog:
    path: Path
    rate: int
    channels: int
    header: dict[str, Any]
    first_frame: int  # the player's frame of the recording's first sample
    samples: int  # how long the set is known to be, in samples
    switches: tuple[SwitchEntry, ...]
    params: int  # parameter changes logged
    complete: bool  # the log has its stop line
    warnings: tuple[str, ...]

    def sample_of(self, switch: SwitchEntry) -> int:
        return switch.frame - self.first_frame


def _fail(path: Path, line: int, what: str) -> OutputError:
    return OutputError(f"{path} line {line}: {what}; fix that line or cut the log before it "
                       f"(a log replays up to where it ends)")


def key_from_sidecar(values: Any, path: Path, line: int, field: str) -> LoopKey:
    """A ``LoopKey`` from its sidecar form (config keys), every value checked."""
    if not isinstance(values, dict):
        raise _fail(path, line, f"{field} must be a loop key (an object), got {values!r:.80}")
    names = {p.key: p for p in P.SOUND}
    unknown = sorted(values.keys() - names.keys())
    missing = sorted(names.keys() - values.keys())
    if unknown or missing:
        raise _fail(path, line, f"{field} has unknown field(s) {unknown} and lacks {missing}; "
                    f"a loop key has {', '.join(names)}")
    checked = {}
    for key, param in names.items():
        try:
            checked[param.name] = P.check(param, values[key], f"{field}.{key}")
        except ControlError as exc:
            raise _fail(path, line, str(exc)) from None
    return LoopKey(**checked)


def _number(entry: dict[str, Any], name: str, path: Path, line: int, kind: type = float) -> Any:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not float(value).is_integer()):
        raise _fail(path, line, f"{name} must be {'an int' if kind is int else 'a number'}, "
                    f"got {value!r:.80}")
    return kind(value)


def _switch(entry: dict[str, Any], path: Path, line: int) -> SwitchEntry:
    low = entry.get("low")
    high = entry.get("high")
    gains = entry.get("gains")
    if not (isinstance(gains, list) and len(gains) == 2
            and all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in gains)):
        raise _fail(path, line, f"gains must be two numbers, got {gains!r:.80}")
    fade = _number(entry, "fade", path, line, int)
    if fade < 1:
        raise _fail(path, line, f"fade must be at least 1 frame, got {fade}")
    return SwitchEntry(
        line, _number(entry, "frame", path, line, int), _number(entry, "bar", path, line, int),
        fade, _number(entry, "phase", path, line), _number(entry, "level", path, line),
        (float(gains[0]), float(gains[1])), str(entry.get("label", "")),
        _number(entry, "quantum", path, line, int), _number(entry, "bpm", path, line),
        None if low is None else key_from_sidecar(low, path, line, "low"),
        None if high is None else key_from_sidecar(high, path, line, "high"),
        _number(entry, "weight", path, line), bool(entry.get("before_start", False)))


def read_log(path: str | Path) -> SetLog:
    """The set log at ``path``, checked. See the module docstring for what is refused."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputError(f"set log not found: {p}; it is the recording's path with the "
                          f"suffix .jsonl") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read the set log {p}: {exc}") from None
    lines = text.split("\n")
    warnings: list[str] = []
    entries: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # the last line, with no newline: cut short
                warnings.append(f"{p} line {number} is cut short (the recording was "
                                f"interrupted); replaying up to line {number - 1}")
                break
            raise _fail(p, number, f"not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise _fail(p, number, f"each line must be an object with a type, got {raw[:80]!r}")
        entries.append((number, entry))
    if not entries or entries[0][1]["type"] != "start":
        raise OutputError(f"{p} is not a riffbridge set log: its first line must be the start "
                          f"line that `serve --record` writes")
    header = entries[0][1]
    if header.get("version") != LOG_VERSION:
        raise _fail(p, entries[0][0], f"log version {header.get('version')!r} is not "
                    f"{LOG_VERSION}; replay it with the riffbridge that recorded it")
    rate = _number(header, "rate", p, entries[0][0], int)
    channels = _number(header, "channels", p, entries[0][0], int)
    if rate <= 0 or channels not in (1, 2):
        raise _fail(p, entries[0][0], f"rate {rate} / channels {channels} are not a recording's")
    switches: list[SwitchEntry] = []
    first: int | None = None
    samples = 0
    params = 0
    complete = False
    for number, entry in entries[1:]:
        kind = entry["type"]
        frame, sample = entry.get("frame"), entry.get("sample")
        if isinstance(frame, int) and isinstance(sample, int):
            if first is None:
                first = frame - sample
            elif frame - sample != first:
                raise _fail(p, number, f"frame {frame} and sample {sample} disagree with the "
                            f"lines before (the file starts at frame {first})")
        if kind == "switch":
            switches.append(_switch(entry, p, number))
        elif kind == "param":
            params += 1
        elif kind in ("frames", "stop"):
            samples = max(samples, _number(entry, "samples", p, number, int))
            complete = complete or kind == "stop"
        else:
            raise _fail(p, number, f"unknown line type {kind!r}; known: start, param, switch, "
                        f"frames, stop")
    if first is None:
        first = 0
    for a, b in itertools.pairwise(switches):
        if b.frame < a.frame + a.fade and not b.before_start:
            raise _fail(p, b.line, f"this switch at frame {b.frame} starts before the one on "
                        f"line {a.line} has faded in (frame {a.frame + a.fade})")
    if switches:
        last = switches[-1]
        samples = max(samples, last.frame + last.fade - first)
    if not complete:
        warnings.append(f"{p} has no stop line (the recording was interrupted); the set is "
                        f"replayed up to sample {samples} ({samples / rate:.1f} s)")
    return SetLog(p, rate, channels, header, first, samples, tuple(switches), params, complete,
                  tuple(warnings))


def decision_of(switch: SwitchEntry, token: int, rate: int) -> CueDecision:
    """The engine's cue decision that the log line stands for."""
    choice = None if switch.low is None else Choice(switch.low, switch.high, switch.weight)
    return CueDecision(token, switch.frame, switch.fade, choice, switch.gains, switch.level,
                       switch.phase, switch.label, switch.quantum, False,
                       Grid(rate, switch.bpm))


FramesOf = Callable[[LoopKey], np.ndarray]


def assemble(setlog: SetLog, frames_of: FramesOf) -> np.ndarray:
    """The set, (samples, channels) float32, played again from ``setlog`` with the loops
    ``frames_of`` gives (at the log's rate, as the player holds them; the same key must give the
    same array object, as the engine's cache does, so a loop into itself is told apart)."""
    channels = 2
    player = Player(channels)
    first = setlog.first_frame
    start = min([first, *(s.frame for s in setlog.switches)])
    player.frame = start
    out = np.zeros((setlog.samples, channels), dtype=np.float32)
    block = np.zeros((FILL_BLOCK, channels), dtype=np.float32)

    def play_to(frame: int) -> None:
        while player.frame < frame:
            n = min(FILL_BLOCK, frame - player.frame)
            f0 = player.frame
            player.fill(block[:n])
            lo, hi = max(f0, first), min(f0 + n, first + setlog.samples)
            if hi > lo:
                out[lo - first:hi - first] = block[lo - f0:hi - f0]

    previous: Segment | None = None
    for token, switch in enumerate(setlog.switches, 1):
        decision = decision_of(switch, token, setlog.rate)
        segment = None
        if switch.low is not None:
            high = None if switch.high is None else frames_of(switch.high)
            segment = build_segment(decision, frames_of(switch.low), high)
        cue = prepare_cue(previous, segment, switch.frame, switch.fade, token, channels)
        play_to(switch.frame)
        player.cue = cue
        previous = segment
    play_to(first + setlog.samples)
    return out


def cue_sheet(setlog: SetLog, audio_name: str) -> str:
    """A CD cue sheet of the switches: one track per switch, at its sample (75 frames/s)."""
    lines = [f'FILE "{audio_name}" WAVE']
    track = 0
    for switch in setlog.switches:
        sample = max(0, setlog.sample_of(switch))
        if sample >= setlog.samples:
            continue
        track += 1
        total = sample * 75 // setlog.rate
        index = f"{total // 4500:02d}:{total // 75 % 60:02d}:{total % 75:02d}"
        lines += [f"  TRACK {track:02d} AUDIO",
                  f'    TITLE "bar {switch.bar}: {switch.label} at {switch.bpm:g} BPM"',
                  f"    REM SAMPLE {sample}",
                  f"    INDEX 01 {index}"]
    return "\n".join(lines) + "\n"
