"""Outputs: loops written for the DAW (WAV with acid/smpl chunks, sidecars, run folders)."""

from __future__ import annotations

from riffbridge.outputs.files import OutputFolder, atomic_write
from riffbridge.outputs.wav import WavSettings, wav_bytes

__all__ = ["OutputFolder", "WavSettings", "atomic_write", "wav_bytes"]
