"""An independent recorder for the JACK tests: jack_capture, in a process of its own.

A recorder written as a JACK client in the test's own process needs Python's GIL in its JACK
callback, so whatever holds the GIL in the engine's process (the page, the engine, a collection)
would make the recorder late: the test would measure its own recorder. jack_capture is C, in
another process, and records the ports it is given as float, sample for sample.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf

NO_CAPTURE = "jack_capture is not installed (apt-get install jack-capture)"


def capture_missing() -> bool:
    return shutil.which("jack_capture") is None


def output_ports() -> set[str]:
    """Every audio output port of the JACK graph but the server's own."""
    out = subprocess.run(["jack_lsp", "-p"], capture_output=True, text=True, timeout=10).stdout
    ports, name = set(), None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            name = line.strip()
        elif "output" in line and name and not name.startswith("system:"):
            ports.add(name)
    return ports


def _connected(port: str) -> bool:
    out = subprocess.run(["jack_lsp", "-c", port], capture_output=True, text=True,
                         timeout=10).stdout
    return any(line.startswith((" ", "\t")) and "jack_capture" in line
               for line in out.splitlines())


class JackCapture:
    """Records ``ports`` (the streams' new ports: ``output_ports()`` after minus before) into
    ``path`` from ``start`` until ``stop``, which returns the recording as float32."""

    def __init__(self, ports: list[str], path: Path) -> None:
        assert ports, "no ports to record"
        self.ports = ports
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> JackCapture:
        args = ["jack_capture", "--daemon", "-B", "60"]
        for port in self.ports:
            args += ["--port", port]
        self._proc = subprocess.Popen([*args, str(self.path)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not all(_connected(p) for p in self.ports):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"jack_capture did not connect to {self.ports}")
            time.sleep(0.1)
        return self

    def stop(self) -> np.ndarray:
        proc = self._proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        self._proc = None
        data, _ = sf.read(self.path, dtype="float32", always_2d=True)
        return data

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)


def jack_period() -> int:
    """The server's period in frames (``jack_bufsize``)."""
    out = subprocess.run(["jack_bufsize"], capture_output=True, text=True, timeout=10).stdout
    return int(out.split()[0])
