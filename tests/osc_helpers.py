"""Shared helpers for the tests that talk OSC over real loopback UDP sockets: where replies and
pushes arrive (``Listener``) and a free port to point a process at. The fixtures built on them
(``replies``, ``hub``, ``server``) are in conftest.py."""

from __future__ import annotations

import socket
import time
from typing import Any

from riffbridge.control.osc_codec import decode


class Listener:
    """A UDP socket on loopback (an ephemeral port unless given): where replies and pushes
    arrive."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]

    def get(self, timeout: float = 5.0) -> tuple[str, list[Any]]:
        """The next datagram: one message (the server sends no bundles), its address and
        arguments."""
        self.sock.settimeout(timeout)
        (message,), _ = decode(self.sock.recv(65536))
        return message.address, list(message.args)

    def wait_for(self, address: str, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, args = self.get(max(0.01, deadline - time.monotonic()))
            if got == address:
                return args
        raise AssertionError(f"no {address} within {timeout} s")

    def drain(self) -> int:
        """Throw away what has arrived; how many datagrams that was."""
        self.sock.setblocking(False)
        n = 0
        try:
            while True:
                self.sock.recv(65536)
                n += 1
        except BlockingIOError:
            return n
        finally:
            self.sock.setblocking(True)

    def nothing(self, wait: float = 0.3) -> bool:
        self.sock.settimeout(wait)
        try:
            self.sock.recv(65536)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


def free_udp_port() -> int:
    """A UDP port on loopback that nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
