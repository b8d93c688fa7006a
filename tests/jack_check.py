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


def jack_device() -> int:
    """PortAudio's index of the JACK server's "system" output (what the JACK tests play to)."""
    import sounddevice as sd

    for i, dev in enumerate(sd.query_devices()):
        api = sd.query_hostapis(dev["hostapi"])["name"]
        if "JACK" in api and dev["max_output_channels"] >= 2 and dev["name"] == "system":
            return i
    raise AssertionError("PortAudio shows no JACK output device named 'system'")
