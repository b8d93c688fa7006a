"""The OSC boundary: a UDP socket, python-osc's packet codec, and nothing else.

One thread reads datagrams, routes each message (``routes.route``) and hands the commands to the
hub. Answers (a query's value, /rb/status, /rb/pong, /rb/error) go to the sender's IP at the reply
port, never to its source port (Max's ``udpsend`` sends from a random one). Every change the hub
makes, and every engine ``push``, goes to all subscribers.

Knob floods: the thread drains every datagram already waiting before it applies anything, and in
a run of plain param sets only the last value of each param is applied, so a controller sending
1000 messages a second never builds a backlog. Bundles are applied in order under one lock, never
coalesced. A refused message gets /rb/error (address, reason); the server keeps running.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from riffbridge.control.hub import Hub
from riffbridge.control.routes import (
    Do,
    PingRequest,
    Query,
    Route,
    StatusRequest,
    Subscribe,
    Unsubscribe,
    route,
)
from riffbridge.errors import ControlError, DeviceError
from riffbridge.state import Command, SetParam

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
DEFAULT_REPLY_PORT = 9001
MAX_PACKET_BYTES = 16384  # two 500-character prompts in 4-byte UTF-8 fit several times over
RECEIVE_BUFFER_BYTES = 4 << 20
MAX_BATCH = 512  # datagrams drained per pass: bounds the time between two applies
KNOWN_TYPE_TAGS = "ifsbhdtTFNrm[]"  # what python-osc decodes
PACKET_ADDRESS = "/rb/packet"  # the address /rb/error names for a packet that has none

Peer = tuple[str, int]


@dataclass(frozen=True)
class _Item:
    sender: str  # the sender's IP
    address: str
    route: Route
    in_bundle: int  # 0: a plain message; else the bundle's number within the batch


def encode(address: str, args: tuple[Any, ...] = ()) -> bytes:
    builder = OscMessageBuilder(address=address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def _walk_bundle(bundle: OscBundle) -> Iterator[OscMessage]:
    for content in bundle:
        if isinstance(content, OscBundle):
            yield from _walk_bundle(content)
        else:
            yield content


def _check_type_tags(message: OscMessage) -> None:
    """python-osc skips type tags it does not know (with a log line), which would turn
    ``/rb/alpha ,x`` into a query; refuse them instead."""
    _, index = osc_types.get_string(message.dgram, 0)
    if index < len(message.dgram):
        tags, _ = osc_types.get_string(message.dgram, index)
        unknown = set(tags[1:]) - set(KNOWN_TYPE_TAGS)
        if unknown:
            raise ControlError(f"{message.address}: unsupported OSC type tag(s) "
                               f"{''.join(sorted(unknown))!r}; send i, f, s (or d, h)")


def decode(dgram: bytes) -> tuple[list[OscMessage], bool]:
    """The messages of a datagram in packet order, and whether it was a bundle.
    Raises ``ControlError`` for a malformed packet."""
    if len(dgram) % 4:  # OSC pads everything to 4 bytes; python-osc would zero-fill the rest
        raise ControlError(f"malformed OSC packet: {len(dgram)} bytes is not a multiple of 4")
    try:
        if OscBundle.dgram_is_bundle(dgram):
            messages, is_bundle = list(_walk_bundle(OscBundle(dgram))), True
        elif OscMessage.dgram_is_message(dgram):
            messages, is_bundle = [OscMessage(dgram)], False
        else:
            messages, is_bundle = [], False
        for message in messages:
            _check_type_tags(message)
        if messages or is_bundle:
            return messages, is_bundle
    except ControlError:
        raise
    except Exception as exc:  # python-osc raises several kinds on garbage; all mean "malformed"
        raise ControlError(f"malformed OSC packet ({len(dgram)} bytes): {exc}") from None
    raise ControlError(f"not an OSC packet ({len(dgram)} bytes): it must start with '/' or "
                       f"'#bundle'")


class OscServer:
    """The UDP OSC server. A context manager; ``close()`` is idempotent."""

    def __init__(self, hub: Hub, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 reply_port: int = DEFAULT_REPLY_PORT) -> None:
        self.hub = hub
        self.reply_port = reply_port
        self._subscribers: set[Peer] = set()
        self._sub_lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0  # param sets applied (for tests and benchmarks)
        self.coalesced = 0  # param sets dropped because a newer value of the same param came
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
            log.info("OSC listening on %s:%d, replies to port %d", *self.address,
                     self.reply_port)
        return self

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
        with self._sub_lock:
            return set(self._subscribers)

    def subscribe(self, peer: Peer) -> None:
        with self._sub_lock:
            self._subscribers.add(peer)

    def unsubscribe(self, peer: Peer) -> None:
        with self._sub_lock:
            self._subscribers.discard(peer)

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
            log.warning("cannot send OSC to %s:%d: %s", peer[0], peer[1], exc)

    def reply(self, sender: str, address: str, *args: Any) -> None:
        self._send_dgram(encode(address, args), (sender, self.reply_port))

    def _error(self, sender: str, address: str, reason: str) -> None:
        log.info("refused OSC %s from %s: %s", address, sender, reason)
        self.reply(sender, "/rb/error", address, reason)

    # ---- receiving ----
    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], 0.1)
            except (OSError, ValueError):
                break  # the socket was closed under us
            if ready:
                self._process(self._drain())

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

    def _items(self, batch: list[tuple[bytes, str]]) -> list[_Item]:
        items: list[_Item] = []
        for number, (dgram, sender) in enumerate(batch, start=1):
            if len(dgram) > MAX_PACKET_BYTES:
                self._error(sender, PACKET_ADDRESS, f"packet of {len(dgram)} bytes is over the "
                            f"{MAX_PACKET_BYTES}-byte limit; send smaller messages")
                continue
            try:
                messages, is_bundle = decode(dgram)
            except ControlError as exc:
                self._error(sender, PACKET_ADDRESS, str(exc))
                continue
            for message in messages:
                address = message.address
                try:
                    routed = route(address, message.params)
                except ControlError as exc:
                    self._error(sender, str(address)[:200], str(exc))
                    continue
                items.append(_Item(sender, address, routed, number if is_bundle else 0))
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
            elif isinstance(item.route, Do) and isinstance(item.route.command, SetParam):
                j = i
                while (j < len(items) and not items[j].in_bundle
                       and isinstance(items[j].route, Do)
                       and isinstance(items[j].route.command, SetParam)):  # type: ignore[union-attr]
                    j += 1
                self._apply_sets(items[i:j])
                i = j
            else:
                self._handle(item)
                i += 1

    def _apply_sets(self, run: list[_Item]) -> None:
        """Apply a run of plain param sets, the latest value of each param only."""
        last: dict[str, int] = {}
        for index, item in enumerate(run):
            last[item.route.command.name] = index  # type: ignore[union-attr]
        keep = sorted(last.values())
        self.coalesced += len(run) - len(keep)
        for index in keep:
            self._handle(run[index])

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

    def _handle(self, item: _Item) -> None:
        r, sender = item.route, item.sender
        try:
            if isinstance(r, Do):
                self.hub.submit(r.command, source="osc")
                if isinstance(r.command, SetParam):
                    self.applied += 1
            elif isinstance(r, Query):
                self.reply(sender, r.address, self.hub.value(r.param))
            elif isinstance(r, PingRequest):
                self.reply(sender, "/rb/pong")
            elif isinstance(r, StatusRequest):
                self.reply(sender, "/rb/status", *self.hub.status())
            elif isinstance(r, Subscribe):
                self.subscribe((sender, r.port or self.reply_port))
            elif isinstance(r, Unsubscribe):
                self.unsubscribe((sender, r.port or self.reply_port))
        except ControlError as exc:
            self._error(sender, item.address, str(exc))
