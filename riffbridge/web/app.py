"""The page's ASGI app (Starlette): the page and its assets, the spectrogram pictures, and the
WebSocket the page plays through.

Security: every request must name an allowed host (``allowed_hosts``: the loopback names when
bound to loopback, which stops DNS rebinding), and carry the token when one is set (``?token=``
once, then the cookie the page gets). A WebSocket whose Origin is not this page's own is refused
before it opens. Only the fixed assets shipped in the package and pictures held in memory (by
serial number) are served: no request names a file.

Input from a page goes through ``protocol.parse`` (the OSC routes) to ``hub.submit`` with source
``web``, under a per-page rate limit (``Bucket``); a refused message is answered to that page
only, as OSC answers ``/rb/error`` to its sender. A page that floods is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from riffbridge.control.routes import Do, PingRequest, Query, StatusRequest, Subscribe, Unsubscribe
from riffbridge.errors import ControlError
from riffbridge.state import SavePreset
from riffbridge.web import protocol
from riffbridge.web.face import Client, Face

log = logging.getLogger(__name__)

ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
COOKIE = "rb_token"
RATE_PER_S = 120.0  # a dragged slider sends at most one message a frame (60/s)
BURST = 240
FLOOD_CLOSE = 2000  # messages over the limit within one second: the page is closed
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self'; "
                                      "connect-src 'self'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
           "Referrer-Policy": "no-referrer"}


class Bucket:
    """A token bucket: ``take()`` says whether a message may pass now."""

    def __init__(self, rate: float = RATE_PER_S, burst: float = BURST) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()
        self.dropped = 0  # in the current second
        self.dropped_since = self.at

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if now - self.dropped_since >= 1.0:
            self.dropped, self.dropped_since = 0, now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.dropped += 1
        return False


def _host_name(netloc: str) -> str:
    return (urlsplit("//" + netloc).hostname or "").lower()


class Guard:
    """Who may reach the page: the allowed host names (None: any) and the token ("" : none)."""

    def __init__(self, allowed_hosts: frozenset[str] | None, token: str) -> None:
        self.allowed_hosts = allowed_hosts
        self.token = token

    def refuse(self, conn: HTTPConnection) -> str | None:
        """Why ``conn`` is refused, or None."""
        host = conn.headers.get("host", "")
        if self.allowed_hosts is not None and _host_name(host) not in self.allowed_hosts:
            return f"unknown host {host[:80]!r}: open the page at the address riffbridge printed"
        if self.token:
            given = conn.query_params.get("token") or conn.cookies.get(COOKIE) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return ("this page needs its token: open the address with ?token=... that "
                        "riffbridge printed at start")
        if conn.scope["type"] == "websocket":
            origin = conn.headers.get("origin")
            # Browsers always send Origin; a page on another site must not play this one.
            if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
                return f"origin {origin[:80]!r} is not this page's"
        return None


def build_app(face: Face, guard: Guard) -> Starlette:
    hub = face.hub

    def asset(name: str) -> Response:
        data = resources.files("riffbridge.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=ASSETS[name], headers=HEADERS)

    async def page(request: Request) -> Response:
        why = guard.refuse(request)
        if why is not None:
            return PlainTextResponse(why, status_code=403, headers=HEADERS)
        name = request.path_params.get("name", "index.html")
        if name not in ASSETS:
            return PlainTextResponse("not found", status_code=404, headers=HEADERS)
        response = asset(name)
        if guard.token and request.query_params.get("token"):
            response.set_cookie(COOKIE, guard.token, httponly=True, samesite="strict")
        return response

    async def picture(request: Request) -> Response:
        why = guard.refuse(request)
        if why is not None:
            return PlainTextResponse(why, status_code=403, headers=HEADERS)
        data = face.image(request.path_params["serial"])
        if data is None:
            return PlainTextResponse("no such picture (any more)", status_code=404,
                                     headers=HEADERS)
        return Response(data, media_type="image/png",
                         headers={**HEADERS, "Cache-Control": "max-age=3600"})

    async def socket(ws: WebSocket) -> None:
        why = guard.refuse(ws)
        if why is not None:
            log.warning("web: refused a page: %s", why)
            await ws.close(code=1008, reason=why[:120])
            return
        await ws.accept()
        client = face.connect()
        sender = asyncio.create_task(_send(ws, client))
        bucket = Bucket()
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if not bucket.take():
                    if bucket.dropped == 1:
                        client.events.append(protocol.dumps(protocol.error_message(
                            "web", f"too many messages: more than {RATE_PER_S:g} a second are "
                                   f"dropped")))
                        client.ready.set()
                    if bucket.dropped > FLOOD_CLOSE:
                        log.warning("web: closed a page that flooded (%d dropped in 1 s)",
                                    bucket.dropped)
                        await ws.close(code=1008, reason="too many messages")
                        break
                    continue
                answer = await _handle(hub, message.get("text", message.get("bytes")))
                if answer is not None:
                    client.events.append(protocol.dumps(answer))
                    client.ready.set()
        except WebSocketDisconnect:
            pass
        finally:
            face.disconnect(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(face.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(routes=[Route("/", page), Route("/{name:str}", page),
                             Route("/spectrogram/{serial:int}.png", picture),
                             WebSocketRoute("/ws", socket)], lifespan=lifespan)


async def _send(ws: WebSocket, client: Client) -> None:
    """Sends what ``client`` holds, newest state and status only: a slow page skips, never
    queues."""
    while True:
        await client.ready.wait()
        for text in client.take():
            await ws.send_text(text)


async def _handle(hub: Any, data: Any) -> dict[str, Any] | None:
    """Apply one message from a page; the answer for that page (an error, a value), or None.
    A preset save writes a file: that happens on a thread, off the loop that sends frames."""
    try:
        r = protocol.parse(data)
        if isinstance(r, Do):
            if isinstance(r.command, SavePreset):
                await asyncio.to_thread(hub.submit, r.command, "web")
            else:
                hub.submit(r.command, source="web")
            return None
        if isinstance(r, Query):
            return {"type": "value", "address": r.address, "value": hub.value(r.param)}
        if isinstance(r, StatusRequest):
            return {"type": "value", "address": "/rb/status", "value": list(hub.status())}
        if isinstance(r, PingRequest):
            return {"type": "value", "address": "/rb/pong", "value": None}
        if isinstance(r, (Subscribe, Unsubscribe)):
            raise ControlError("the page gets every change already; /rb/subscribe is for OSC "
                               "clients")
        raise ControlError(f"the page cannot send {type(r).__name__}")
    except ControlError as exc:
        return protocol.error_message("web", str(exc))
    except Exception as exc:  # a bug must not close the page or stop the engine
        log.exception("web: message failed")
        return protocol.error_message("web", f"{type(exc).__name__}: {exc}")
