"""The page's server: uvicorn on its own thread and event loop, outside the audio path.

``WebServer`` binds its socket in ``start`` (a port in use stops the start with what to pass),
runs uvicorn on a thread of its own, hooks the page to the hub (a sink) and to the engine's news
(a feedback consumer), and undoes all of it in ``close`` (idempotent). A non-loopback address
needs a token: the one given, or a fresh one, which ``url`` carries (serve prints it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import threading
import time
from typing import Any

import uvicorn

from riffbridge.control.feedback import Feedback
from riffbridge.control.hub import Hub
from riffbridge.errors import ConfigError
from riffbridge.params import BY_NAME
from riffbridge.web.app import LOOPBACK_NAMES, Guard, build_app
from riffbridge.web.face import EngineView, Face

log = logging.getLogger(__name__)

MAX_PAGES = 32  # connections at once, pages and pictures together
WS_MAX_BYTES = 16 * 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebServer:
    def __init__(self, hub: Hub, engine: EngineView | None = None,
                 feedback: Feedback | None = None, *, host: str = "127.0.0.1",
                 port: int = BY_NAME["web_port"].default, token: str = "",
                 grid: int = BY_NAME["grid"].default,
                 xy_grid: int = BY_NAME["xy_grid"].default) -> None:
        self.hub = hub
        self.feedback = feedback
        self.host = host
        self.loopback = is_loopback(host)
        self.token = token or ("" if self.loopback else secrets.token_urlsafe(16))
        self.face = Face(hub, engine, grid=grid, xy_grid=xy_grid)
        self._port = port
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            return self.host, self._port
        return self.host, int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        token = f"/?token={self.token}" if self.token else "/"
        return f"http://{shown}:{port}{token}"

    def start(self, timeout: float = 10.0) -> WebServer:
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._sock = socket.create_server((self.host, self._port), family=family)
        except OSError as exc:
            raise ConfigError(f"cannot serve the page on {self.host}:{self._port}: "
                              f"{exc.strerror or exc}; pick another --web-port, or --no-web"
                              ) from None
        allowed = None if not self.loopback else frozenset(
            LOOPBACK_NAMES | {self.host.lower()})
        app = build_app(self.face, Guard(allowed, self.token))
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                ws_max_size=WS_MAX_BYTES, ws_max_queue=16,
                                limit_concurrency=MAX_PAGES, timeout_graceful_shutdown=1,
                                server_header=False)
        self._server = uvicorn.Server(config)
        self.hub.add_sink(self.face.on_push)
        if self.feedback is not None:
            self.feedback.add_consumer(self.face.on_event)
        self._thread = threading.Thread(target=self._serve, name="riffbridge-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise ConfigError(f"the page's server did not start on {self.host}:"
                                  f"{self._port}; see the log, or pass --no-web")
            time.sleep(0.01)
        log.info("page at %s", self.url)
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except Exception:
            log.exception("the page's server stopped")

    def close(self) -> None:
        """Stop serving (open pages are closed), unhook from the hub and the feedback.
        Idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.hub.remove_sink(self.face.on_push)
        if self.feedback is not None:
            self.feedback.remove_consumer(self.face.on_event)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self._server = None

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
