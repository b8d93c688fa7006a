"""Whether a JACK server answers here: the audio and MIDI tests that need one skip without it."""

from __future__ import annotations

import shutil
import subprocess

NO_JACK = "no JACK server running (CI starts one: jackd --no-realtime -d dummy -r 44100 -p 1024)"


def jack_running() -> bool:
    if not shutil.which("jack_lsp"):
        return False
    try:
        return subprocess.run(["jack_lsp"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
