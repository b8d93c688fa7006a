"""The playhead: what the audio callback plays, and the engine-side preparation of switches.

The callback (``Player.fill``: called by the device's callback, or, buffered, by the feeder
thread that keeps the C callback's ring full, ``outputs/audio_stream.py``) only copies: from
the looping ``Segment`` that is playing, and, at a cued frame, from a ``Cue``'s prepared
crossfade into its next segment. It allocates nothing,
takes no lock, logs nothing. The engine thread is the only writer of ``cue`` (one reference
swap); the callback is the only writer of ``playing``, ``frame`` and the counters. Two more
references the engine swaps: ``tap`` (the set recorder's ring: each played block is copied into
it, ``RecordRing.push``) and ``cue_bus`` (the loop ``fill_cue`` plays on the cue outputs).
A cue carries a rising token, so the engine can tell from ``applied_token`` when the switch has
sounded. A cue also names the switch it follows (``after``): the callback drops a cue that would
start from other audio than the engine prepared its fade from (``dropped_token``: the engine cues
again from what plays), and a fade that has begun always plays to its end, whatever cue the engine
puts in place meanwhile.

``prepare_cue`` (engine thread) computes the crossfade ahead of time: the frames of what will be
playing at the switch, faded out with the new loop faded in at its bar-aligned phase. The level
is kept whatever the two loops are (``keep_level``): equal power for unrelated audio, equal gain
for the same audio, in between by their measured correlation. The same loop at the same phase is
not crossfaded at all: only its level ramps. Every prepared frame, the fade and the segments,
stays under ``CEILING`` (``limit``), so the callback cannot send an over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

CEILING_DBFS = -0.3  # no prepared sample goes above this (sample peak)
KNEE_DBFS = -1.0  # below this samples pass untouched: loops are shaped to -1 dBTP
CEILING = 10 ** (CEILING_DBFS / 20)
CUE_SAME_CYCLE_S = 0.003  # a cue stream's first block this soon after the master's: one cycle
KNEE = 10 ** (KNEE_DBFS / 20)
# the largest float32 at or under the ceiling: what a prepared sample is clipped to at most
_CEILING32 = np.float32(CEILING) if float(np.float32(CEILING)) <= CEILING \
    else np.nextafter(np.float32(CEILING), np.float32(0))


class Tap(Protocol):
    """What the callback hands each played block to (the recorder's ring): a copy, no more."""

    def push(self, block: np.ndarray, frame: int) -> None: ...


@dataclass(frozen=True, eq=False)
class Segment:
    """A loop playing from ``origin``: frame f sounds ``audio[(f - origin) % len(audio)]``.

    ``audio`` is ``limit(sum(part * gain) * level)`` when ``parts`` are given (the cached loops
    it is mixed from), else the audio itself. The parts let a cue mix the unlimited sources
    (so the fade is limited once and joins the segment exactly) and tell the same loop again."""

    audio: np.ndarray  # (frames, channels) float32, C-contiguous, read-only
    origin: int
    label: str = ""
    parts: tuple[np.ndarray, ...] = ()  # read-only (>= frames, channels) float32
    gains: tuple[float, ...] = ()
    level: float = 1.0

    def window(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) of this segment (wrapping), as a new array."""
        return self.audio[self._index(start, count)]

    def source_window(self, start: int, count: int) -> np.ndarray:
        """The same frames before the ceiling (``window`` when the segment has no parts)."""
        if not self.parts:
            return self.window(start, count)
        return mix(self.parts, self.gains, self.level, self._index(start, count))

    def _index(self, start: int, count: int) -> np.ndarray:
        return (np.arange(start, start + count) - self.origin) % self.audio.shape[0]


@dataclass(frozen=True, eq=False)
class Cue:
    at: int  # absolute frame where the switch starts
    fade: np.ndarray  # (k, channels) float32: frames [at, at + k), prepared
    then: Segment | None  # what plays from at + k on; None = silence
    token: int
    # The token the player must have applied last when this cue starts (None: any). The fade
    # is prepared from what that switch plays; if another switch sounded in the meantime (the
    # engine read the player a moment before it applied the cue this one replaces) the fade
    # would start from the wrong audio, so the player drops the cue instead (``dropped_token``).
    after: int | None = None


def _silence(channels: int) -> Segment:
    audio = np.zeros((1, channels), dtype=np.float32)
    audio.flags.writeable = False
    return Segment(audio, 0, "silence")


class Player:
    def __init__(self, channels: int = 2) -> None:
        self.channels = channels
        self.silence = _silence(channels)
        self.playing: Segment = self.silence
        self.cue: Cue | None = None
        self.frame = 0
        self.applied_token = 0
        self.applied_at = -1
        self.dropped_token = 0  # the last cue dropped: it did not follow ``applied_token``
        self._fading: Cue | None = None  # the cue whose fade is playing: it plays to its end
        self.underruns = 0
        self.blocks = 0
        # (frame at the start of the last block, time.monotonic() of that block), for clocks
        self.stamp = np.zeros(2, dtype=np.float64)
        # The set recorder's ring (``riffbridge.outputs.recorder.RecordRing``), or None: each
        # block played is copied into it, nothing more. The engine thread swaps the reference.
        self.tap: Tap | None = None
        # The cue bus (``fill_cue``): a loop that plays in time with the master on other
        # outputs. The engine thread swaps the reference; the cue callback owns the counters.
        self.cue_bus: Segment | None = None
        self.cue_frame = -1
        self.cue_underruns = 0

    # -- audio thread --
    def fill(self, out: np.ndarray, now: float = 0.0, underrun: bool = False) -> None:
        """Write ``out.shape[0]`` frames into ``out`` (frames, channels)."""
        frames = out.shape[0]
        f0 = self.frame
        self.stamp[0] = f0
        self.stamp[1] = now
        if underrun:
            self.underruns += 1
        cue = self._fading
        if cue is None:
            cue = self.cue
            if cue is not None and cue.token <= self.applied_token:
                cue = None
            elif cue is not None and cue.after is not None and cue.after != self.applied_token:
                self.dropped_token = cue.token
                cue = None
        pos = 0
        while pos < frames:
            f = f0 + pos
            if cue is not None and f >= cue.at:
                k = f - cue.at
                fade_len = cue.fade.shape[0]
                if k < fade_len:
                    self._fading = cue
                    n = min(frames - pos, fade_len - k)
                    out[pos:pos + n] = cue.fade[k:k + n]
                    pos += n
                    continue
                self.playing = cue.then if cue.then is not None else self.silence
                self.applied_token = cue.token
                self.applied_at = cue.at
                self._fading = None
                cue = None
                continue
            n = frames - pos if cue is None else min(frames - pos, cue.at - f)
            self._copy_loop(self.playing, out, pos, f, n)
            pos += n
        self.frame = f0 + frames
        self.blocks += 1
        tap = self.tap
        if tap is not None:
            tap.push(out, f0)

    def fill_cue(self, out: np.ndarray, now: float = 0.0, underrun: bool = False,
                 frame: int | None = None) -> None:
        """The cue bus: ``out.shape[0]`` frames of ``cue_bus`` (silence when None) from the
        master's ``frame`` (given by a callback that plays both), or, for a second stream on
        the same audio clock (two clients of one JACK server), from a counter of its own that
        starts on the master's block of the same cycle. Only copies, like ``fill``."""
        frames = out.shape[0]
        if frame is not None:
            self.cue_frame = frame
        elif self.cue_frame < 0:
            # The master's callback ran moments ago: this cycle began at its block's frame.
            same_cycle = self.blocks > 0 and 0.0 <= now - self.stamp[1] < CUE_SAME_CYCLE_S
            self.cue_frame = int(self.stamp[0]) if same_cycle else self.frame
        f = self.cue_frame
        if underrun:
            self.cue_underruns += 1
        seg = self.cue_bus
        if seg is None:
            out[:] = 0.0
        else:
            self._copy_loop(seg, out, 0, f, frames)
        self.cue_frame = f + frames

    def _copy_loop(self, seg: Segment, out: np.ndarray, pos: int, f: int, n: int) -> None:
        audio = seg.audio
        length = audio.shape[0]
        if seg is self.silence:
            out[pos:pos + n] = 0.0
            return
        while n > 0:
            phase = (f - seg.origin) % length
            m = min(n, length - phase)
            out[pos:pos + m] = audio[phase:phase + m]
            pos += m
            f += m
            n -= m


# -- engine thread ------------------------------------------------------------------------------

def equal_power(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in curves of ``k`` frames whose squares sum to one."""
    theta = (np.arange(k, dtype=np.float64) + 0.5) / max(k, 1) * (np.pi / 2)
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


def correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``(r, Pa, Pb)`` of two equal-shaped stretches: their zero-lag correlation, -1..1 (1 for
    the same audio at any level, about 0 for unrelated audio, 0 if either is silent), and their
    energies."""
    x, y = a.ravel(), b.ravel()
    pa, pb = float(np.dot(x, x)), float(np.dot(y, y))
    if pa <= 0.0 or pb <= 0.0:
        return 0.0, pa, pb
    return max(-1.0, min(1.0, float(np.dot(x, y)) / np.sqrt(pa * pb))), pa, pb


def keep_level(a: np.ndarray, b: np.ndarray, gain_a: np.ndarray | float,
               gain_b: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Gains for ``a * gain_a + b * gain_b`` (equal-power gains, or curves of them) rescaled so
    the mix has the power it would have if ``a`` and ``b`` were unrelated.

    An equal-power mix of correlated audio adds up to +3 dB (two copies of one loop sum to 1.41
    times it). With ``r`` the measured correlation (negative counts as 0: the mix only dips),
    the mix's power is ``ga²Pa + gb²Pb + 2 r ga gb sqrt(Pa Pb)``; scaling both gains by the
    square root of ``(ga²Pa + gb²Pb)`` over that gives equal power for ``r = 0`` and, for the same
    audio (``r = 1``), gains that sum to one: the loop itself at its own level."""
    ga = np.asarray(gain_a, dtype=np.float64)
    gb = np.asarray(gain_b, dtype=np.float64)
    r, pa, pb = correlation(a, b)
    base = ga * ga * pa + gb * gb * pb
    mixed = base + 2.0 * max(0.0, r) * ga * gb * np.sqrt(pa * pb)
    scale = np.sqrt(np.divide(base, mixed, out=np.ones_like(base), where=mixed > 0))
    return ga * scale, gb * scale


def limit(audio: np.ndarray) -> np.ndarray:
    """``audio`` with every sample under ``CEILING``: samples up to ``KNEE`` pass unchanged (the
    same array comes back when none is above), louder ones bend smoothly towards the ceiling
    (memoryless, so a limited loop still loops seamlessly)."""
    over = np.flatnonzero(np.abs(audio) > KNEE)
    if over.size == 0:
        return audio
    out = np.array(audio, dtype=np.float32, order="C")
    flat = out.reshape(-1)
    x = flat[over].astype(np.float64)
    span = CEILING - KNEE
    bent = np.copysign(KNEE + span * np.tanh((np.abs(x) - KNEE) / span), x)
    # tanh can round to 1: keep the float32 result itself at or under the ceiling
    flat[over] = np.clip(bent.astype(np.float32), -_CEILING32, _CEILING32)
    return out


def mix(parts: tuple[np.ndarray, ...], gains: tuple[float, ...], level: float,
        index: np.ndarray | int) -> np.ndarray:
    """``sum(part * gain) * level`` over the frames ``index`` (an array), or the first
    ``index`` frames (an int): the same float32 arithmetic either way, sample for sample."""
    total: np.ndarray | None = None
    for part, gain in zip(parts, gains, strict=True):
        frames = part[:index] if isinstance(index, int) else part[index]
        term = frames * np.float32(gain)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("a mix needs at least one part")
    return total * np.float32(level)


def same_loop(current: Segment | None, new: Segment | None) -> bool:
    """Whether ``new`` plays the same mix of the same loops as ``current``, at the same phase
    (perhaps at another level): then a switch is only a level change."""
    if current is None or new is None or not current.parts:
        return False
    n = current.audio.shape[0]
    return (len(current.parts) == len(new.parts)
            and all(p is q for p, q in zip(current.parts, new.parts, strict=True))
            and current.gains == new.gains and new.audio.shape[0] == n
            and (current.origin - new.origin) % n == 0)


def prepare_cue(current: Segment | None, new: Segment | None, at: int, fade_frames: int,
                token: int, channels: int = 2, after: int | None = None) -> Cue:
    """A switch at frame ``at`` from ``current`` to ``new`` (either may be None = silence);
    ``after``: the token of the switch that plays ``current`` (the player drops the cue if
    another one sounded last)."""
    k = max(1, int(fade_frames))
    old = current.source_window(at, k) if current is not None and current.label != "silence" \
        else np.zeros((k, channels), dtype=np.float32)
    fresh = new.source_window(at, k) if new is not None \
        else np.zeros((k, channels), dtype=np.float32)
    if same_loop(current, new):
        if current is not None and new is not None and current.level == new.level:
            mixed = fresh  # nothing changes: the loop plays on, sample for sample
        else:  # the same audio at another level: a linear ramp from one level to the other
            ramp = ((np.arange(k, dtype=np.float64) + 1) / k).astype(np.float32)[:, None]
            mixed = old * (np.float32(1) - ramp) + fresh * ramp
    else:
        out_curve, in_curve = keep_level(old, fresh, *equal_power(k))
        mixed = old * out_curve.astype(np.float32)[:, None] \
            + fresh * in_curve.astype(np.float32)[:, None]
    fade = np.ascontiguousarray(limit(mixed), dtype=np.float32)
    fade.flags.writeable = False
    return Cue(at, fade, new, token, after)


def frozen_frames(audio: np.ndarray, gain: float = 1.0) -> np.ndarray:
    data = np.ascontiguousarray(audio * np.float32(gain), dtype=np.float32)
    data.flags.writeable = False
    return data
