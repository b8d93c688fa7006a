"""Hostile OSC input (issue 17): packets that hung or fooled the server, amplification, and
senders outside the allow-list. Real UDP sockets on loopback against a real OscServer and Hub;
the codec, the coalescing plan and the rate-limited log are also checked directly."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from osc_helpers import Listener

from riffbridge.config import build
from riffbridge.control.hub import Change, Hub
from riffbridge.control.osc_codec import MAX_DEPTH, MAX_ELEMENTS, decode, encode
from riffbridge.control.osc_server import (
    MAX_REASON_BYTES,
    SNAPSHOT_BURST,
    SNAPSHOT_EVERY_S,
    OscServer,
    RateLimitedLog,
)
from riffbridge.control.routes import coalesce
from riffbridge.errors import ConfigError, ControlError
from riffbridge.state import EngineState, SetParam

NEGATIVE_ELEMENT = b"#bundle\0" + bytes(7) + b"\1\xff\xff\xff\xfc"
TRUNCATED_FLOAT = b"/rb/alpha\0\0\0,f\0\0"


class Sender:
    """A UDP socket that sends raw datagrams from ``host`` (a random port, like Max's)."""

    def __init__(self, server: OscServer, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.to = server.address

    def raw(self, dgram: bytes) -> None:
        self.sock.sendto(dgram, self.to)

    def send(self, address: str, *args: Any) -> None:
        self.raw(encode(address, args))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tx(server: OscServer) -> Iterator[Sender]:
    sender = Sender(server)
    yield sender
    sender.close()


def ping(tx: Sender, replies: Listener) -> None:
    """/rb/ping is answered: the server still serves (and has handled all sent before)."""
    tx.send("/rb/ping")
    while True:
        address, _ = replies.get()
        if address == "/rb/pong":
            return


def error(replies: Listener) -> tuple[str, str]:
    address, args = replies.get()
    assert address == "/rb/error", (address, args)
    return args[0], args[1]


def bundle(*elements: bytes) -> bytes:
    return b"#bundle\0" + bytes(8) + b"".join(struct.pack(">i", len(e)) + e for e in elements)


# ---- packets that hung or fooled the server ------------------------------------------------------

def test_a_bundle_element_of_negative_size_is_refused_and_ping_still_answers(
        server: OscServer, tx: Sender, replies: Listener, hub: Hub) -> None:
    tx.raw(NEGATIVE_ELEMENT)  # python-osc's bundle parser looped on this forever
    where, reason = error(replies)
    assert where == "/rb/packet" and "size -4" in reason
    ping(tx, replies)
    assert hub.state == EngineState()


HOSTILE = [
    (NEGATIVE_ELEMENT, "size -4"),
    (b"#bundle\0" + bytes(8) + struct.pack(">i", 0), "size 0"),
    (b"#bundle\0" + bytes(8) + struct.pack(">i", 2**31 - 4) + bytes(8), "size 2147483644"),
    (b"#bundle\0" + bytes(4), "header"),
    (bundle(b"junk"), "neither a message"),
    (bundle(bundle(bundle(bundle(bundle(bundle(encode("/rb/ping"))))))), "nested deeper"),
    (bundle(*[encode("/rb/ping")] * (MAX_ELEMENTS + 1)), f"more than {MAX_ELEMENTS}"),
    (b"/rb/alpha\0\0\0,f\0\0", "does not match the type tags"),
    (b"/rb/seed/a\0\0,ii\0" + bytes(4), "does not match the type tags"),
    (b"/rb/bpm\0,d\0\0" + bytes(4), "does not match the type tags"),
    (b"/rb/alpha\0\0\0,f\0\0" + bytes(8), "after the last argument"),
    (b"/rb/preset\0\0,s\0\0abcd", "no NUL terminator"),
    (b"/rb/preset\0\0,b\0\0\x7f\xff\xff\xff", "blob"),
    (b"/rb/alpha\0\0\0f\0\0\0", "do not start with ','"),
    (b"/rb/\xff\xfe\0\0", "UTF-8"),
    (b"/rb/alpha\0\0\0,[[[[[\0\0", "arrays nested deeper"),
    (b"/rb/alpha\0\0\0,]\0\0", "']' without '['"),
    (b"/rb/alpha\0\0\0," + b"T" * 66 + b"\0", "at most 64"),
    (b"/rb/alpha\0\0\0,x\0\0" + bytes(4), "unsupported OSC type tag"),
]


@pytest.mark.parametrize(("dgram", "fragment"), HOSTILE, ids=range(len(HOSTILE)))
def test_each_hostile_packet_gets_one_error_and_ping_still_answers(
        server: OscServer, tx: Sender, replies: Listener, hub: Hub, dgram: bytes,
        fragment: str) -> None:
    tx.raw(dgram)
    where, reason = error(replies)
    assert where == "/rb/packet" and fragment in reason, reason
    ping(tx, replies)
    assert hub.state == EngineState()


@pytest.mark.parametrize(("dgram", "fragment"), HOSTILE, ids=range(len(HOSTILE)))
def test_the_codec_refuses_each_hostile_packet(dgram: bytes, fragment: str) -> None:
    with pytest.raises(ControlError) as info:
        decode(dgram)
    assert fragment in str(info.value)


def test_the_codec_reads_what_it_should() -> None:
    nested = bundle(bundle(encode("/rb/alpha", (0.5,))), encode("/rb/bpm", (90.0,)))
    messages, is_bundle = decode(nested)
    assert is_bundle and [(m.address, m.args) for m in messages] == [
        ("/rb/alpha", (0.5,)), ("/rb/bpm", (90.0,))]
    assert decode(b"/rb/ping\0\0\0\0")[0][0].args == ()  # no type tag string at all
    assert decode(bundle())[0] == []  # an empty bundle is well formed
    many = (b"/rb/x\0\0\0,ihdsTFN[i]b\0\0\0\0" + struct.pack(">iqd", -3, 2**40, 0.25)
            + b"hi\0\0" + struct.pack(">i", 7) + struct.pack(">i", 3) + b"abc\0")
    assert decode(many)[0][0].args == (-3, 2**40, 0.25, "hi", True, False, None, [7], b"abc")
    depth_ok = encode("/rb/ping")
    for _ in range(MAX_DEPTH):
        depth_ok = bundle(depth_ok)
    assert decode(depth_ok)[0][0].address == "/rb/ping"


@pytest.mark.parametrize("address", ["/rb/alpha", "/rb/gain", "/rb/xfade", "/rb/guidance"])
def test_a_truncated_float_is_refused_not_applied_as_zero(
        server: OscServer, tx: Sender, replies: Listener, hub: Hub, address: str) -> None:
    tx.send(address, 0.5)
    ping(tx, replies)
    name = {"/rb/alpha": "alpha", "/rb/gain": "gain_db", "/rb/xfade": "xfade",
            "/rb/guidance": "guidance"}[address]
    assert hub.value(name) == 0.5
    padded = address.encode() + b"\0" * (4 - len(address) % 4)
    tx.raw(padded + b",f\0\0")  # the type tag, no data
    where, reason = error(replies)
    assert where == "/rb/packet" and address in reason and "does not match" in reason
    assert hub.value(name) == 0.5


def test_bad_packets_log_one_line_per_cause_and_python_osc_logs_nothing(
        server: OscServer, tx: Sender, replies: Listener,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for n in range(300):
        tx.raw([NEGATIVE_ELEMENT, b"/rb/alpha\0\0\0,x\0\0" + bytes(4), b"\0" * 8][n % 3])
        if n % 50 == 49:
            ping(tx, replies)  # keep within the receive buffer
    ping(tx, replies)
    assert server.refused == 300
    refusals = [r for r in caplog.records if "refused OSC" in r.getMessage()]
    assert len(refusals) == 1  # one cause ("/rb/packet"), well within 10 s
    assert not [r for r in caplog.records if not r.name.startswith("riffbridge")]


def test_the_rate_limited_log_says_how_many_it_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("riffbridge.test"), 10.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO)
    assert limited(logging.INFO, "a", "bad %s", 1)
    assert not limited(logging.INFO, "a", "bad %s", 2)
    assert not limited(logging.INFO, "a", "bad %s", 3)
    assert limited(logging.INFO, "b", "other")  # another cause is not held back
    now[0] = 10.0
    assert limited(logging.INFO, "a", "bad %s", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "bad 1", "other", "bad 4 (and 2 more like it in the last 10 s)"]


# ---- coalescing never drops a value that would apply ---------------------------------------------

def test_the_coalescing_plan_tries_each_params_values_latest_first() -> None:
    assert coalesce([]) == []
    assert coalesce(["alpha"] * 3) == [[2, 1, 0]]
    assert coalesce(["pattern", "alpha", "pattern", "bpm", "alpha"]) == [
        [2, 0], [3], [4, 1]]


def test_a_refused_set_does_not_drop_the_valid_one_before_it_in_the_same_batch(
        server: OscServer, tx: Sender, replies: Listener, hub: Hub) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold(change: Change) -> None:  # runs on the OSC thread, under the hub's lock
        if change.state.alpha == 0.25 and not entered.is_set():
            entered.set()
            release.wait(5)

    hub.add_listener(hold)
    tx.send("/rb/alpha", 0.25)
    assert entered.wait(5)  # the OSC thread is busy: the next two land in one batch
    tx.send("/rb/pattern", "breakbeat")
    tx.send("/rb/pattern", "nosuch")
    release.set()
    where, reason = error(replies)
    assert where == "/rb/pattern" and "nosuch" in reason
    ping(tx, replies)
    assert hub.state.pattern == "breakbeat"
    assert (server.applied, server.refused) == (2, 1)


# ---- amplification: bounded subscribers, bounded answers ----------------------------------------

def test_subscribers_are_bounded_and_the_refusal_names_the_limit(
        hub: Hub, replies: Listener) -> None:
    listeners = [Listener() for _ in range(4)]
    try:
        with OscServer(hub, port=0, reply_port=replies.port, max_subscribers=3) as server:
            tx = Sender(server)
            for listener in listeners:
                tx.send("/rb/subscribe", listener.port)
            where, reason = error(replies)
            assert where == "/rb/subscribe" and "max_subscribers" in reason
            assert "--max-subscribers" in reason
            tx.send("/rb/subscribe", listeners[0].port)  # a refresh is not a new one
            ping(tx, replies)
            assert server.subscribers() == {("127.0.0.1", lst.port) for lst in listeners[:3]}
            for listener in listeners[:3]:  # each new one got the state once, status last
                while listener.get()[0] != "/rb/status":
                    pass
            assert listeners[0].get() == ("/rb/pong", [])  # the refresh: one heartbeat
            tx.send("/rb/alpha", 0.5)
            for listener in listeners[:3]:
                assert listener.get() == ("/rb/alpha", [0.5])
            assert listeners[3].nothing()
            tx.close()
    finally:
        for listener in listeners:
            listener.close()


def test_subscribing_in_a_loop_gets_a_few_snapshots_then_only_pongs(
        hub: Hub, replies: Listener) -> None:
    """A new subscriber's snapshot is ~30 datagrams: a subscribe/unsubscribe loop must not turn
    24-byte requests into a stream (issue 17's amplification, with issue 18's snapshot)."""
    now = [0.0]
    target = Listener()
    counts: list[int] = []
    with OscServer(hub, port=0, reply_port=replies.port, clock=lambda: now[0]) as server:
        tx = Sender(server)
        snapshot = len(hub.snapshot())
        assert snapshot > 10
        for _ in range(SNAPSHOT_BURST + 5):  # read as it goes: a receive buffer holds ~250
            tx.send("/rb/subscribe", target.port)
            tx.send("/rb/unsubscribe", target.port)
            ping(tx, replies)
            datagrams = 0
            while not target.nothing(0.05):
                datagrams += 1
            counts.append(datagrams)
        assert counts == [snapshot] * SNAPSHOT_BURST + [1] * 5  # then a pong each
        assert server.snapshots_throttled == 5
        now[0] += SNAPSHOT_EVERY_S  # one more token
        tx.send("/rb/subscribe", target.port)
        ping(tx, replies)
        got = []
        while (msg := target.get())[0] != "/rb/status":
            got.append(msg)
        assert len(got) == snapshot - 1  # the snapshot again, status last
        tx.send("/rb/unsubscribe", target.port)
        tx.send("/rb/subscribe", target.port)
        ping(tx, replies)
        assert target.get() == ("/rb/pong", [])  # throttled: subscribed, one heartbeat only
        assert server.subscribers() == {("127.0.0.1", target.port)}
        tx.close()
    target.close()


def test_silent_subscribers_expire_and_any_datagram_keeps_one_alive(
        hub: Hub, replies: Listener) -> None:
    now = [0.0]
    other = Listener()
    with OscServer(hub, port=0, reply_port=replies.port, allow="127.0.0.0/8",
                   subscriber_ttl=300, clock=lambda: now[0]) as server:
        near, far = Sender(server), Sender(server, host="127.0.0.2")
        near.send("/rb/subscribe", other.port)
        far.send("/rb/subscribe", 9)
        ping(near, replies)
        assert server.subscribers() == {("127.0.0.1", other.port), ("127.0.0.2", 9)}
        now[0] = 200.0
        ping(near, replies)  # anything from 127.0.0.1 keeps its subscriber alive
        now[0] = 400.0
        assert server.subscribers() == {("127.0.0.1", other.port)}
        while other.get()[0] != "/rb/status":  # the state it got when it subscribed
            pass
        hub.submit(SetParam("alpha", 0.5), source="engine")
        assert other.get() == ("/rb/alpha", [0.5])
        now[0] = 501.0
        hub.submit(SetParam("alpha", 0.75), source="engine")
        assert other.nothing()  # expired: no datagram for 301 s
        assert server.subscribers() == set()
        near.close()
        far.close()
    other.close()


def test_an_error_answer_is_capped(replies: Listener) -> None:
    names = [f"pattern-with-a-long-name-{i:03d}-" + "x" * 40 for i in range(200)]
    hub = Hub(pattern_names=names)  # the unknown-pattern error lists every name: ~14 kB
    with OscServer(hub, port=0, reply_port=replies.port) as server:
        tx = Sender(server)
        tx.send("/rb/pattern", "nosuch")
        replies.sock.settimeout(5)
        dgram = replies.sock.recv(65536)
        tx.close()
    (message,), _ = decode(dgram)
    reason = message.args[1]
    assert message.address == "/rb/error" and reason.startswith("unknown pattern 'nosuch'")
    assert len(reason.encode()) <= MAX_REASON_BYTES and reason.endswith("...")
    assert len(dgram) < 400


# ---- who may send -------------------------------------------------------------------------------

def test_a_sender_outside_the_allow_list_gets_nothing_back_and_changes_nothing(
        hub: Hub, replies: Listener, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with OscServer(hub, port=0, reply_port=replies.port, allow="127.0.0.1") as server:
        stranger = Sender(server, host="127.0.0.2")
        their_replies = Listener("127.0.0.2", replies.port)
        for dgram in (encode("/rb/alpha", (0.5,)), encode("/rb/subscribe"),
                      encode("/rb/ping"), NEGATIVE_ELEMENT, encode("/rb/nope")):
            stranger.raw(dgram)
        friend = Sender(server)
        ping(friend, replies)  # handled after the stranger's packets
        assert their_replies.nothing()
        assert hub.state == EngineState() and server.subscribers() == set()
        assert server.denied == 5
        stranger.close()
        friend.close()
        their_replies.close()
    denied = [r for r in caplog.records if "not in osc_allow" in r.getMessage()]
    assert len(denied) == 1 and "127.0.0.2" in denied[0].getMessage()


def test_listening_beyond_loopback_warns_naming_the_allow_list(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with OscServer(hub, host="127.0.0.1", port=0):
        pass
    assert not caplog.records
    with OscServer(hub, host="0.0.0.0", port=0, allow="127.0.0.1,192.168.1.0/24"):
        pass
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "beyond this machine" in record.getMessage()
    assert "127.0.0.1/32,192.168.1.0/24" in record.getMessage()


@pytest.mark.parametrize(("flags", "fragment"), [
    ({"osc_host": ""}, "use 0.0.0.0 to listen on every interface"),
    ({"osc_host": "  "}, "must not be empty"),
    ({"osc_allow": ""}, "comma-separated list"),
    ({"osc_allow": "127.0.0.1,192.168.1.0/33"}, "192.168.1.0/33"),
    ({"osc_allow": "lan"}, "'lan'"),
    ({"max_subscribers": 0}, "max_subscribers must be in [1, 1024]"),
])
def test_the_settings_are_checked_at_start(flags: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(flags=flags)
    assert fragment in str(info.value)


def test_the_allow_list_setting_reaches_the_server(hub: Hub) -> None:
    conf = build(flags={"osc_allow": "10.0.0.0/8, 127.0.0.1"})
    with OscServer(hub, port=0, allow=conf.osc_allow) as server:
        assert server.allow_text() == "10.0.0.0/8,127.0.0.1/32"
    with pytest.raises(ConfigError, match=r"use 0\.0\.0\.0"):
        OscServer(hub, host="", port=0)
