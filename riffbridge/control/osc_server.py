"""The OSC boundary: a UDP socket, riffbridge's OSC codec (``osc_codec``), and nothing else.

One thread reads datagrams, routes each message (``routes.route``) and hands the commands to the
hub. Answers (a query's value, /rb/status, /rb/pong, /rb/error) go to the sender's IP at the reply
port, never to its source port (Max's ``udpsend`` sends from a random one). Every change the hub
makes, and every engine ``push``, goes to all subscribers.

Knob floods: the thread drains every datagram already waiting (at most ``MAX_BATCH``) before it
applies anything, and in a run of plain param sets only the latest value of each param is
applied (``routes.coalesce``; when that one is refused, the latest earlier one that applies), so
a controller sending 1000 messages a second never builds a backlog. Bundles are applied in order
under one lock, never coalesced. A refused message gets /rb/error (address, reason); the server
keeps running.

Hostile input: every datagram is read by ``osc_codec.decode`` (bounded, O(its size)) before
anything else looks at it; no OSC library parses network input. Packets from senders outside
``osc_allow`` are dropped unanswered (an answer would be an amplifier) and counted. Subscribers
are bounded (``max_subscribers``) and expire after ``subscriber_ttl`` seconds without a datagram
from their address. A new subscriber gets the whole state at once (about 30 datagrams): those
snapshots are a token bucket per sender host (``SNAPSHOT_BURST``, then one every
``SNAPSHOT_EVERY_S``), so subscribing and unsubscribing in a loop cannot turn small requests into
a stream (a throttled subscriber is still subscribed, and gets a /rb/pong). Every /rb/error
reason is capped at ``MAX_REASON_BYTES``, and the /rb/error answers to one host are a token
bucket too (``ERRORS_BURST``, then ``ERRORS_PER_S``): a flood of bad packets is answered at a
bounded rate (``bench_osc.py --amplification`` prints bytes out per byte in). Log lines about bad
input are rate-limited per cause. Under a flood of full batches the thread rests as long as it
worked, so it takes at most about half a core (and the GIL) from the audio and the engine.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from riffbridge import params as P
from riffbridge.control.hub import Hub
from riffbridge.control.osc_codec import MAX_PACKET_BYTES, Message, decode, encode
from riffbridge.control.osc_spec import by_address
from riffbridge.control.routes import (
    Do,
    PingRequest,
    Query,
    QueryGroup,
    Route,
    StatusRequest,
    Subscribe,
    Unsubscribe,
    coalesce,
    route,
)
from riffbridge.errors import ConfigError, ControlError, DeviceError
from riffbridge.state import Command, SetParam

__all__ = ["MAX_PACKET_BYTES", "Message", "OscServer", "RateLimitedLog", "decode", "encode"]

log = logging.getLogger(__name__)

# New subscribers' snapshots, per sender host: a burst (a Live set with a few devices, a
# restart), then one every so often.
SNAPSHOT_BURST = 8
SNAPSHOT_EVERY_S = 2.0
# /rb/error answers, per sender host: a patch gone wrong gets every answer it can read; a flood
# of bad packets gets this many a second, however fast it comes (the rest are counted).
ERRORS_BURST = 64
ERRORS_PER_S = 50.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
DEFAULT_REPLY_PORT = 9001
DEFAULT_ALLOW: str = P.BY_NAME["osc_allow"].default
DEFAULT_MAX_SUBSCRIBERS: int = P.BY_NAME["max_subscribers"].default
DEFAULT_SUBSCRIBER_TTL: float = P.BY_NAME["subscriber_ttl"].default
RECEIVE_BUFFER_BYTES = 4 << 20
MAX_BATCH = 512  # datagrams drained per pass: bounds the time between two applies
MAX_REASON_BYTES = 300  # an /rb/error reason is cut to this: no answer is large
LOG_INTERVAL_S = 10.0  # at most one log line per cause this often
PACKET_ADDRESS = "/rb/packet"  # the address /rb/error names for a packet that has none

Peer = tuple[str, int]
Clock = Callable[[], float]


@dataclass(frozen=True)
class _Item:
    sender: str  # the sender's IP
    address: str
    route: Route
    in_bundle: int  # 0: a plain message; else the bundle's number within the batch


def cap_reason(reason: str, limit: int = MAX_REASON_BYTES) -> str:
    """``reason`` cut to at most ``limit`` bytes of UTF-8, marked with "..." when cut."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= limit:
        return reason
    return data[:limit - 3].decode("utf-8", "ignore") + "..."


class RateLimitedLog:
    """At most one line per cause every ``interval`` seconds; the next line says how many were
    left out. The causes are a small fixed set chosen by the caller (never the sender's text),
    so the table stays small."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL_S,
                 clock: Clock = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def __call__(self, level: int, cause: str, message: str, *args: Any) -> bool:
        """Log ``message % args`` unless ``cause`` was logged less than ``interval`` ago;
        whether it was logged."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        last = self._last.get(cause)
        if last is not None and now - last < self.interval:
            self._left_out[cause] = self._left_out.get(cause, 0) + 1
            return False
        self._last[cause] = now
        left_out = self._left_out.pop(cause, 0)
        if left_out:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, left_out, self.interval)
        self.logger.log(level, message, *args)
        return True


class TokenBuckets:
    """A token bucket per key (a sender host): ``burst`` tokens, refilled at ``per_s``.
    Used from the server's thread only. Forgets every bucket when it holds too many keys (a
    forgotten bucket is a full one: that only ever errs towards answering)."""

    MAX_KEYS = 256

    def __init__(self, burst: int, per_s: float, clock: Clock = time.monotonic) -> None:
        self.burst = float(burst)
        self.per_s = per_s
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str) -> bool:
        """Take a token for ``key``; False when its bucket is empty."""
        now = self.clock()
        tokens, since = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - since) * self.per_s)
        if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
            self._buckets.clear()
        ok = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
        return ok


class OscServer:
    """The UDP OSC server. A context manager; ``close()`` is idempotent.

    ``allow``: the senders whose packets are taken (``osc_allow``: a comma-separated string or
    parsed networks); ``max_subscribers`` and ``subscriber_ttl`` bound the subscribers; ``clock``
    (seconds, monotonic) times their expiry."""

    def __init__(self, hub: Hub, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 reply_port: int = DEFAULT_REPLY_PORT, *,
                 allow: str | Sequence[P.Network] = DEFAULT_ALLOW,
                 max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
                 subscriber_ttl: float = DEFAULT_SUBSCRIBER_TTL,
                 clock: Clock = time.monotonic) -> None:
        if not host.strip():
            raise ConfigError("the OSC host must not be empty; use 0.0.0.0 to listen on every "
                              "interface, 127.0.0.1 for this machine only")
        try:
            self.allow = P.parse_networks(allow) if isinstance(allow, str) else tuple(allow)
        except ControlError as exc:
            raise ConfigError(str(exc)) from None
        self.hub = hub
        self.reply_port = reply_port
        self.max_subscribers = max_subscribers
        self.subscriber_ttl = subscriber_ttl
        self._clock = clock
        self._subscribers: dict[Peer, float] = {}  # peer -> when its address last sent
        self._sub_lock = threading.Lock()
        self._allowed: dict[str, bool] = {}  # sender IP -> on the allow-list (a small cache)
        self._snapshots = TokenBuckets(SNAPSHOT_BURST, 1.0 / SNAPSHOT_EVERY_S, clock)
        self._answers = TokenBuckets(ERRORS_BURST, ERRORS_PER_S, clock)
        self.snapshots_throttled = 0  # new subscribers that got a /rb/pong, not the state
        self.errors_unanswered = 0  # refusals past the /rb/error bucket (counted in refused)
        self._log = RateLimitedLog(log)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0  # param sets applied (for tests and benchmarks)
        self.coalesced = 0  # param sets dropped because a newer value of the same param applied
        self.refused = 0  # messages answered with /rb/error (malformed packets included)
        self.denied = 0  # packets dropped unanswered: their sender is not on the allow-list
        try:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            # Room for a burst of small messages while a batch is applied (the kernel caps it
            # at net.core.rmem_max).
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            self._sock.bind((host, port))
        except OSError as exc:
            raise DeviceError(f"cannot listen for OSC on {host}:{port}: {exc}; "
                              f"pick another --osc-port") from None
        self._sock.setblocking(False)
        hub.add_sink(self._to_subscribers)

    # ---- lifecycle ----
    @property
    def address(self) -> Peer:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self) -> OscServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="riffbridge-osc", daemon=True)
            self._thread.start()
            host, port = self.address
            log.info("OSC listening on %s:%d, replies to port %d", host, port, self.reply_port)
            if not ipaddress.ip_address(host).is_loopback:
                log.warning("OSC listens on %s:%d, beyond this machine: it takes messages from "
                            "%s only (osc_allow), and anyone who can send from there controls "
                            "the engine; narrow --osc-allow, or use --osc-host 127.0.0.1",
                            host, port, self.allow_text())
        return self

    def allow_text(self) -> str:
        return ",".join(str(n) for n in self.allow)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.hub.remove_sink(self._to_subscribers)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> OscServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- subscribers ----
    def subscribers(self) -> set[Peer]:
        """The live subscribers (expired ones are dropped first)."""
        with self._sub_lock:
            self._expire_locked()
            return set(self._subscribers)

    def subscribe(self, peer: Peer) -> bool:
        """Add ``peer`` or refresh it; whether it is new. ``ControlError`` when
        ``max_subscribers`` are there."""
        with self._sub_lock:
            self._expire_locked()
            if peer not in self._subscribers and len(self._subscribers) >= self.max_subscribers:
                raise ControlError(
                    f"{len(self._subscribers)} subscribers already, the max_subscribers limit; "
                    f"unsubscribe one (/rb/unsubscribe), let it expire (subscriber_ttl "
                    f"{self.subscriber_ttl:g} s), or start riffbridge with a higher "
                    f"--max-subscribers")
            new = peer not in self._subscribers
            self._subscribers[peer] = self._clock()
        return new

    def _snapshot_allowed(self, host: str) -> bool:
        if self._snapshots.take(host):
            return True
        self.snapshots_throttled += 1
        return False

    def unsubscribe(self, peer: Peer) -> None:
        with self._sub_lock:
            self._subscribers.pop(peer, None)

    def _expire_locked(self) -> None:
        deadline = self._clock() - self.subscriber_ttl
        for peer in [p for p, seen in self._subscribers.items() if seen < deadline]:
            del self._subscribers[peer]
            log.info("OSC subscriber %s:%d expired: nothing from its address for %g s "
                     "(re-send /rb/subscribe more often)", peer[0], peer[1],
                     self.subscriber_ttl)

    def _heard_from(self, senders: set[str]) -> None:
        """A datagram from a subscriber's address keeps it alive."""
        with self._sub_lock:
            if not self._subscribers:
                return
            now = self._clock()
            for peer in self._subscribers:
                if peer[0] in senders:
                    self._subscribers[peer] = now

    def _to_subscribers(self, address: str, args: tuple[Any, ...]) -> None:
        dgram = encode(address, args)
        for peer in self.subscribers():
            self._send_dgram(dgram, peer)

    # ---- sending ----
    def _send_dgram(self, dgram: bytes, peer: Peer) -> None:
        if self._closed.is_set():
            return
        try:
            self._sock.sendto(dgram, peer)
        except OSError as exc:  # a full buffer or a vanished peer must not stop the server
            self._log(logging.WARNING, "send", "cannot send OSC to %s:%d: %s", peer[0],
                      peer[1], exc)

    def reply(self, sender: str, address: str, *args: Any) -> None:
        self._send_dgram(encode(address, args), (sender, self.reply_port))

    def _error(self, sender: str, address: str, reason: str) -> None:
        """Answer a refused message or packet; the reason is capped, the log rate-limited (by
        the address when it is one of ours, so one noisy knob does not hide the rest)."""
        reason = cap_reason(reason)
        self.refused += 1
        known = address == PACKET_ADDRESS or by_address(address) is not None
        cause = "refused " + (address if known else "unknown address")
        self._log(logging.INFO, cause, "refused OSC %s from %s: %s", address, sender, reason)
        if self._answers.take(sender):
            self.reply(sender, "/rb/error", address, reason)
        else:
            self.errors_unanswered += 1

    # ---- receiving ----
    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.1)
            except (OSError, ValueError):
                break  # the socket was closed under us
            if not ready:
                continue
            started = time.monotonic()
            batch = self._drain()
            self._process(batch)
            if len(batch) >= MAX_BATCH:
                # A flood: rest as long as the batch took, so this thread takes at most about
                # half a core and the audio and the engine get the GIL; the kernel's receive
                # buffer drops what does not fit, as UDP does.
                self._closed.wait(time.monotonic() - started)

    def _drain(self) -> list[tuple[bytes, str]]:
        batch: list[tuple[bytes, str]] = []
        while len(batch) < MAX_BATCH:
            try:
                dgram, peer = self._sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error from an earlier send
                log.debug("recvfrom: %s", exc)
                break
            batch.append((dgram, peer[0]))
        return batch

    def _is_allowed(self, sender: str) -> bool:
        allowed = self._allowed.get(sender)
        if allowed is None:
            try:
                ip = ipaddress.ip_address(sender)
                allowed = any(ip in network for network in self.allow)
            except ValueError:
                allowed = False
            if len(self._allowed) >= 1024:  # a spoofing flood must not grow it
                self._allowed.clear()
            self._allowed[sender] = allowed
        return allowed

    def _items(self, batch: list[tuple[bytes, str]]) -> list[_Item]:
        items: list[_Item] = []
        heard: set[str] = set()
        for number, (dgram, sender) in enumerate(batch, start=1):
            if not self._is_allowed(sender):
                self.denied += 1
                self._log(logging.WARNING, "denied", "dropped OSC from %s: not in osc_allow "
                          "(%s); add it to --osc-allow to take its messages", sender,
                          self.allow_text())
                continue
            heard.add(sender)
            try:
                messages, is_bundle = decode(dgram)
            except ControlError as exc:
                self._error(sender, PACKET_ADDRESS, str(exc))
                continue
            for message in messages:
                address = message.address
                try:
                    routed = route(address, message.args)
                except ControlError as exc:
                    self._error(sender, address[:200], str(exc))
                    continue
                items.append(_Item(sender, address, routed, number if is_bundle else 0))
        if heard:
            self._heard_from(heard)
        return items

    def _process(self, batch: list[tuple[bytes, str]]) -> None:
        items = self._items(batch)
        i = 0
        while i < len(items):
            item = items[i]
            if item.in_bundle:
                j = i
                while j < len(items) and items[j].in_bundle == item.in_bundle:
                    j += 1
                self._apply_group(items[i:j])
                i = j
            elif _is_set(item):
                j = i
                while j < len(items) and not items[j].in_bundle and _is_set(items[j]):
                    j += 1
                self._apply_sets(items[i:j])
                i = j
            else:
                self._handle(item)
                i += 1

    def _apply_sets(self, run: list[_Item]) -> None:
        """Apply a run of plain param sets: the latest value of each param that applies."""
        names = [item.route.command.name for item in run]  # type: ignore[union-attr]
        for chain in coalesce(names):
            for tried, index in enumerate(chain, start=1):
                if self._handle(run[index]):
                    self.coalesced += len(chain) - tried
                    break

    def _apply_group(self, group: list[_Item]) -> None:
        """A bundle: its commands apply in order under one lock; queries and the rest after."""
        commands: list[Command] = [it.route.command for it in group if isinstance(it.route, Do)]
        senders = {id(it.route.command): it for it in group if isinstance(it.route, Do)}
        refused = self.hub.submit_many(commands)
        for command, exc in refused:
            item = senders[id(command)]
            self._error(item.sender, item.address, str(exc))
        self.applied += sum(isinstance(c, SetParam) for c in commands) - sum(
            isinstance(c, SetParam) for c, _ in refused)
        for item in group:
            if not isinstance(item.route, Do):
                self._handle(item)

    def _handle(self, item: _Item) -> bool:
        """Do what ``item`` asks; whether it was done (else it was answered with /rb/error)."""
        r, sender = item.route, item.sender
        try:
            if isinstance(r, Do):
                self.hub.submit(r.command, source="osc")
                if isinstance(r.command, SetParam):
                    self.applied += 1
            elif isinstance(r, Query):
                self.reply(sender, r.address, self.hub.value(r.param))
            elif isinstance(r, QueryGroup):
                self.reply(sender, r.address, *(self.hub.value(p) for p in r.params))
            elif isinstance(r, PingRequest):
                self.reply(sender, "/rb/pong")
            elif isinstance(r, StatusRequest):
                self.reply(sender, "/rb/status", *self.hub.status())
            elif isinstance(r, Subscribe):
                peer = (sender, r.port or self.reply_port)
                if self.subscribe(peer) and self._snapshot_allowed(sender):
                    # A new subscriber (a device just loaded, or this engine just restarted)
                    # gets the whole state at once; a refresh (the keep-alive) gets one
                    # /rb/pong at its own port: the heartbeat behind a player's connection light.
                    for address, args in self.hub.snapshot():
                        self._send_dgram(encode(address, args), peer)
                else:
                    self._send_dgram(encode("/rb/pong", ()), peer)
            elif isinstance(r, Unsubscribe):
                self.unsubscribe((sender, r.port or self.reply_port))
        except ControlError as exc:
            self._error(sender, item.address, str(exc))
            return False
        return True


def _is_set(item: _Item) -> bool:
    return isinstance(item.route, Do) and isinstance(item.route.command, SetParam)
