"""Loop shaping: tempo-exact length, seed patterns, seamless loops and loudness."""

from __future__ import annotations

from riffbridge.loops.patterns import GROOVES, Pattern, custom_pattern, get_pattern
from riffbridge.loops.tempo import loop_frames, loop_samples, render_width, resample_frames
from riffbridge.loops.types import Loop

__all__ = [
    "GROOVES",
    "Loop",
    "Pattern",
    "custom_pattern",
    "get_pattern",
    "loop_frames",
    "loop_samples",
    "render_width",
    "resample_frames",
]
