"""The playhead: what the audio callback plays, and the engine-side preparation of switches.

The callback (``Player.fill``) only copies: from the looping ``Segment`` that is playing, and,
at a cued frame, from a ``Cue``'s prepared crossfade into its next segment. It allocates nothing,
takes no lock, logs nothing. The engine thread is the only writer of ``cue`` (one reference
swap); the callback is the only writer of ``playing``, ``frame`` and the counters. A cue carries a
rising token, so the engine can tell from ``applied_token`` when the switch has sounded.

``prepare_cue`` (engine thread) computes the crossfade ahead of time: the frames of what will be
playing at the switch, faded out with the new loop faded in at its bar-aligned phase, on an
equal-power curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Segment:
    """A loop playing from ``origin``: frame f sounds ``audio[(f - origin) % len(audio)]``."""

    audio: np.ndarray  # (frames, channels) float32, C-contiguous, read-only
    origin: int
    label: str = ""

    def window(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) of this segment (wrapping), as a new array."""
        n = self.audio.shape[0]
        idx = (np.arange(start, start + count) - self.origin) % n
        return self.audio[idx]


@dataclass(frozen=True, eq=False)
class Cue:
    at: int  # absolute frame where the switch starts
    fade: np.ndarray  # (k, channels) float32: frames [at, at + k), prepared
    then: Segment | None  # what plays from at + k on; None = silence
    token: int


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
        self.underruns = 0
        self.blocks = 0
        # (frame at the start of the last block, time.monotonic() of that block), for clocks
        self.stamp = np.zeros(2, dtype=np.float64)

    # -- audio thread --
    def fill(self, out: np.ndarray, now: float = 0.0, underrun: bool = False) -> None:
        """Write ``out.shape[0]`` frames into ``out`` (frames, channels)."""
        frames = out.shape[0]
        f0 = self.frame
        self.stamp[0] = f0
        self.stamp[1] = now
        if underrun:
            self.underruns += 1
        cue = self.cue
        if cue is not None and cue.token <= self.applied_token:
            cue = None
        pos = 0
        while pos < frames:
            f = f0 + pos
            if cue is not None and f >= cue.at:
                k = f - cue.at
                fade_len = cue.fade.shape[0]
                if k < fade_len:
                    n = min(frames - pos, fade_len - k)
                    out[pos:pos + n] = cue.fade[k:k + n]
                    pos += n
                    continue
                self.playing = cue.then if cue.then is not None else self.silence
                self.applied_token = cue.token
                self.applied_at = cue.at
                cue = None
                continue
            n = frames - pos if cue is None else min(frames - pos, cue.at - f)
            self._copy_loop(out, pos, f, n)
            pos += n
        self.frame = f0 + frames
        self.blocks += 1

    def _copy_loop(self, out: np.ndarray, pos: int, f: int, n: int) -> None:
        seg = self.playing
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


def prepare_cue(current: Segment | None, new: Segment | None, at: int, fade_frames: int,
                token: int, channels: int = 2) -> Cue:
    """A switch at frame ``at`` from ``current`` to ``new`` (either may be None = silence)."""
    k = max(1, int(fade_frames))
    out_curve, in_curve = equal_power(k)
    old = current.window(at, k) if current is not None and current.label != "silence" else \
        np.zeros((k, channels), dtype=np.float32)
    fresh = new.window(at, k) if new is not None else np.zeros((k, channels), dtype=np.float32)
    fade = np.ascontiguousarray(old * out_curve[:, None] + fresh * in_curve[:, None],
                                dtype=np.float32)
    fade.flags.writeable = False
    return Cue(at, fade, new, token)


def frozen_frames(audio: np.ndarray, gain: float = 1.0) -> np.ndarray:
    data = np.ascontiguousarray(audio * np.float32(gain), dtype=np.float32)
    data.flags.writeable = False
    return data
