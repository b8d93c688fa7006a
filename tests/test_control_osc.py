"""The OSC server on real loopback UDP sockets: python-osc as one client, liblo's oscsend/oscdump
(Debian liblo-tools) as an independent one."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from osc_helpers import Listener, free_udp_port
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from riffbridge import params as P
from riffbridge.control.hub import Hub
from riffbridge.control.osc_server import (
    ERRORS_BURST,
    MAX_PACKET_BYTES,
    OscServer,
    encode,
)
from riffbridge.control.routes import route
from riffbridge.errors import ControlError
from riffbridge.state import EngineState, Play, Render, SetParam, apply

LIBLO = shutil.which("oscsend") and shutil.which("oscdump")
needs_liblo = pytest.mark.skipif(
    not LIBLO, reason="liblo-tools (oscsend/oscdump) not installed: apt-get install liblo-tools")


@pytest.fixture
def client(server: OscServer) -> SimpleUDPClient:
    host, port = server.address
    return SimpleUDPClient(host, port)  # sends from its own random port, like Max's udpsend


def ask(client: SimpleUDPClient, replies: Listener, address: str) -> list[Any]:
    client.send_message(address, [])
    return replies.wait_for(address)


def sync(client: SimpleUDPClient, replies: Listener) -> None:
    """Wait until the server has handled everything sent before."""
    client.send_message("/rb/ping", [])
    replies.wait_for("/rb/pong")


def test_set_then_query_answers_on_the_same_address_at_the_reply_port(
        client: SimpleUDPClient, replies: Listener, hub: Hub) -> None:
    client.send_message("/rb/alpha", 0.25)
    client.send_message("/rb/prompt/a", "lo-fi hip hop, vinyl crackle")
    client.send_message("/rb/steps", 20.0)  # Max sends floats: an integral one is accepted
    assert ask(client, replies, "/rb/alpha") == [0.25]
    assert ask(client, replies, "/rb/prompt/a") == ["lo-fi hip hop, vinyl crackle"]
    assert ask(client, replies, "/rb/steps") == [20]
    assert hub.state.alpha == 0.25 and hub.state.steps == 20


@pytest.mark.parametrize(("address", "args", "fragment"), [
    ("/rb/alpha", [1.5], "alpha must be in [0, 1], got 1.5"),
    ("/rb/alpha", [float("nan")], "finite"),
    ("/rb/alpha", [float("inf")], "finite"),
    ("/rb/alpha", ["0.5"], "must be a float"),
    ("/rb/alpha", [0.1, 0.2], "got 2 argument(s)"),
    ("/rb/steps", [12.5], "whole number"),
    ("/rb/bpm", [400], "[40, 240]"),
    ("/rb/quantum", ["bars"], "one of beat, bar, loop"),
    ("/rb/prompt/a", ["x" * 501], "at most 500 characters"),
    ("/rb/pattern", ["../../etc/passwd"], "inside the seed folder"),
    ("/rb/pattern", ["/etc/hosts.png"], "absolute"),
    ("/rb/pattern", ["groove.png"], "no seed folder"),
    ("/rb/pattern", ["polka"], "unknown pattern"),
    ("/rb/nope", [], "unknown address"),
    ("/rb/ping", [1], "takes no argument"),
    ("/rb/preset", [], "takes a string"),
    ("/rb/preset", ["anything"], "no preset file"),
    ("/rb/subscribe", [70000], "UDP port"),
    ("/rb/midi/learn", ["alpha"], "needs a MIDI input"),
    ("/rb/slot/9/weight", [0.5], "slot '9' is out of range"),
    ("/rb/slot/3/weight", [-0.25], "weight_3 must be in [0, 1], got -0.25"),
    ("/rb/slot/3/weight", [float("nan")], "got nan"),
    ("/rb/slot/1/weight", [0.0], "the style weights must not all be 0, got [0.0, 0.0]"),
    ("/rb/slots", [1], "slots must be in [2, 8], got 1"),
    ("/rb/xy", [0.5, 1.5], "y must be in [0, 1], got 1.5"),
    ("/rb/seed/audio", ["take.wav"], "no seed folder is set"),
])
def test_bad_input_gets_an_error_and_leaves_the_state(
        client: SimpleUDPClient, replies: Listener, hub: Hub, address: str, args: list[Any],
        fragment: str) -> None:
    before = hub.state
    client.send_message(address, args)
    got, (where, reason) = replies.get()
    assert got == "/rb/error"
    assert where == address
    assert fragment in reason
    assert hub.state == before
    assert ask(client, replies, "/rb/alpha") == [before.alpha]  # still serving


def test_slots_and_the_xy_point_set_get_and_answer(
        client: SimpleUDPClient, replies: Listener, hub: Hub) -> None:
    client.send_message("/rb/slot/5/prompt", "steel drums")
    client.send_message("/rb/slot/5/seed", 77)
    client.send_message("/rb/slot/5/weight", 0.5)
    assert ask(client, replies, "/rb/slot/5/prompt") == ["steel drums"]
    assert ask(client, replies, "/rb/slot/5/seed") == [77]
    assert ask(client, replies, "/rb/slots") == [5]
    assert ask(client, replies, "/rb/mix") == ["weights"]
    client.send_message("/rb/xy", [0.25, 0.75])
    assert ask(client, replies, "/rb/xy") == [0.25, 0.75]
    assert ask(client, replies, "/rb/slots") == [4]
    assert ask(client, replies, "/rb/slot/1/prompt") == ask(client, replies, "/rb/prompt/a")
    assert (hub.state.mix, hub.state.x, hub.state.y) == ("xy", 0.25, 0.75)


def test_oversized_and_malformed_packets_get_an_error(
        server: OscServer, replies: Listener, hub: Hub) -> None:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big = encode("/rb/prompt/a", ("y" * (MAX_PACKET_BYTES + 10),))
    for dgram, fragment in [(big, "byte limit"), (b"\x00\x01junk..", "not an OSC packet"),
                            (b"/rb/alpha\x00\x00\x00,f\x00\x00\x01", "multiple of 4"),
                            (b"#bundle\x00" + b"\xff" * 12, "malformed"),
                            (b"/rb/alpha\x00\x00\x00,x\x00\x00\x00\x00\x00\x01", "type tag")]:
        tx.sendto(dgram, server.address)
        got, (where, reason) = replies.get()
        assert got == "/rb/error" and where == "/rb/packet" and fragment in reason, reason
    tx.close()
    assert hub.state == EngineState()


def test_subscribers_see_every_change_whoever_made_it(
        server: OscServer, client: SimpleUDPClient, replies: Listener, hub: Hub) -> None:
    other = Listener()
    try:
        client.send_message("/rb/subscribe", other.port)
        sync(client, replies)
        other.wait_for("/rb/status")  # the snapshot a new subscriber gets (tested below)
        other.drain()
        client.send_message("/rb/alpha", 0.5)  # from OSC
        assert other.wait_for("/rb/alpha") == [0.5]
        hub.submit(Render(), source="engine")  # no state change: nothing pushed
        hub.submit(SetParam("alpha", 0.75), source="engine")  # auto mode moves alpha
        assert other.wait_for("/rb/alpha") == [0.75]
        hub.push("/rb/clip", "/tmp/loop.wav", 0.75, 120.0, 2)  # the engine wrote a file
        assert other.wait_for("/rb/clip") == ["/tmp/loop.wav", 0.75, 120.0, 2]
        client.send_message("/rb/unsubscribe", other.port)
        sync(client, replies)
        client.send_message("/rb/alpha", 0.1)
        sync(client, replies)
        assert other.nothing()
    finally:
        other.sock.close()


def test_a_new_subscriber_gets_the_whole_state_at_once_and_a_refresh_gets_nothing(
        server: OscServer, client: SimpleUDPClient, replies: Listener, hub: Hub) -> None:
    hub.submit(SetParam("alpha", 0.25), source="midi")
    hub.push("/rb/clip", "/tmp/stale.wav", 0.0, 120.0, 2)  # pushed while stopped ...
    hub.submit(Play(), source="osc")
    hub.push("/rb/clip", "/abs/loop.wav", 0.25, 120.0, 2)  # ... and the one that sounds
    other = Listener()
    try:
        client.send_message("/rb/subscribe", other.port)
        got: dict[str, list[Any]] = {}
        order: list[str] = []
        while "/rb/clip" not in got:
            address, args = other.get()
            got[address] = args
            order.append(address)
        for param in P.LIVE:
            if param.osc:
                assert param.osc in got, f"{param.osc} missing from the snapshot"
        assert got["/rb/alpha"] == [0.25] and got["/rb/bpm"] == [120.0]
        assert got["/rb/clip"] == ["/abs/loop.wav", 0.25, 120.0, 2]
        assert order.index("/rb/bpm") < order.index("/rb/clip")  # tempo before the clip
        client.send_message("/rb/subscribe", other.port)  # the keep-alive: no second snapshot
        sync(client, replies)
        assert other.get() == ("/rb/pong", [])  # only the heartbeat, at the subscriber's port
        assert other.nothing()
    finally:
        other.sock.close()


def test_a_stopped_engine_sends_no_clip_to_a_new_subscriber(
        server: OscServer, client: SimpleUDPClient, replies: Listener, hub: Hub) -> None:
    hub.push("/rb/clip", "/abs/loop.wav", 0.25, 120.0, 2)
    other = Listener()
    try:
        client.send_message("/rb/subscribe", other.port)
        sync(client, replies)
        addresses = []
        while True:
            address, _ = other.get(1.0)
            addresses.append(address)
            if address == "/rb/status":
                break
        assert "/rb/bpm" in addresses
        assert other.nothing(), "a stopped engine must not hand out a clip to play"
    finally:
        other.sock.close()


def test_status_and_ping(server: OscServer, client: SimpleUDPClient, replies: Listener,
                         hub: Hub) -> None:
    hub.set_status_provider(lambda: (3, 7, 1))
    client.send_message("/rb/play", [])
    client.send_message("/rb/alpha", 0.5)
    assert ask(client, replies, "/rb/status") == ["playing", 120.0, 0.5, 3, 7, 1]
    client.send_message("/rb/ping", [])
    assert replies.get() == ("/rb/pong", [])


def test_a_bundle_applies_in_order_at_once(server: OscServer, client: SimpleUDPClient,
                                           replies: Listener, hub: Hub) -> None:
    changes = hub.events()
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, value in [("/rb/alpha", 0.25), ("/rb/bpm", 90.0), ("/rb/alpha", 0.75),
                           ("/rb/alpha", 5.0)]:
        msg = OscMessageBuilder(address)
        msg.add_arg(value)
        bundle.add_content(msg.build())
    client.send(bundle.build())
    got, (where, reason) = replies.get()
    assert got == "/rb/error" and where == "/rb/alpha" and "got 5.0" in reason
    sync(client, replies)
    seen = [changes.get_nowait() for _ in range(changes.qsize())]
    # every message of the bundle applied, in order, not coalesced
    assert [(c.command.name, c.command.value) for c in seen] == [  # type: ignore[union-attr]
        ("alpha", 0.25), ("bpm", 90.0), ("alpha", 0.75)]
    assert (hub.state.alpha, hub.state.bpm) == (0.75, 90.0)


def test_a_knob_flood_ends_on_the_latest_value(server: OscServer, client: SimpleUDPClient,
                                               replies: Listener, hub: Hub) -> None:
    values = [i / 2999 for i in range(3000)]
    for n, v in enumerate(values):
        client.send_message("/rb/alpha", v)
        if n % 50 == 49:
            time.sleep(0.005)  # ~10 000 messages/s: ten times a knob flood
    sync(client, replies)
    assert hub.state.alpha == pytest.approx(values[-1], abs=1e-6)  # float32 on the wire
    assert server.applied + server.coalesced == len(values)


def test_fuzz_thousands_of_random_and_malformed_datagrams(
        server: OscServer, client: SimpleUDPClient, replies: Listener, hub: Hub) -> None:
    rng = random.Random(6)
    addresses = [e for e in ("/rb/alpha", "/rb/bpm", "/rb/steps", "/rb/prompt/a", "/rb/quantum",
                             "/rb/pattern", "/rb/nope", "/rb", "/rb/preset/save")]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    errors = 0
    for n in range(4000):
        kind = n % 4
        if kind == 0:  # random bytes
            dgram = rng.randbytes(rng.randint(0, 200))
        elif kind == 1:  # a valid message, then corrupted
            good = bytearray(encode(rng.choice(addresses), (rng.random(),)))
            for _ in range(rng.randint(1, 4)):
                good[rng.randrange(len(good))] = rng.randrange(256)
            dgram = bytes(good[: rng.randint(1, len(good))])
        elif kind == 2:  # well-formed but wrong: types, ranges, NaN
            arg = rng.choice([float("nan"), float("-inf"), -1e30, 1e30, "text", -5, 2**31 - 1,
                              b"blob", True, None])
            dgram = encode(rng.choice(addresses), (arg,))
        else:  # a bundle header with garbage inside
            dgram = b"#bundle\x00" + rng.randbytes(rng.randint(0, 64))
        tx.sendto(dgram, server.address)
        if n % 200 == 0:
            time.sleep(0.005)  # keep within the kernel's receive buffer on a busy machine
            errors += replies.drain()
    tx.close()
    client.send_message("/rb/ping", [])
    replies.wait_for("/rb/pong", timeout=30)
    state = hub.state
    for name, value in state.params().items():  # every field still passes the checks
        assert apply(EngineState(), SetParam(name, value)).params()[name] == value
    assert state.prompt_a in (EngineState().prompt_a, "text")  # the only valid string sent
    assert 0.0 <= state.alpha <= 1.0 and 40 <= state.bpm <= 240 and 1 <= state.steps <= 500
    assert state.quantum in ("beat", "bar", "loop")
    assert ask(client, replies, "/rb/quantum") == [state.quantum]
    errors += replies.drain()
    # every refusal was counted; the answers to this one host were a bounded burst and rate
    assert server.refused > 1000 and server.errors_unanswered > 0
    answered = server.refused - server.errors_unanswered
    assert answered >= ERRORS_BURST and answered < server.refused // 10
    assert errors >= answered  # they arrived (with the odd query's answer among them)


def test_route_is_pure_and_needs_no_socket() -> None:
    with pytest.raises(ControlError, match="unknown address"):
        route("/rb/volume", [1.0])
    with pytest.raises(ControlError, match="must be a string"):
        route(b"/rb/alpha", [])


# ---- liblo: an independent OSC implementation --------------------------------------------------

def oscsend(port: int, address: str, types: str = "", *values: str) -> None:
    subprocess.run(["oscsend", "127.0.0.1", str(port), address, types, *values], check=True,
                   timeout=10, capture_output=True)


@needs_liblo
def test_liblo_oscsend_sets_and_oscdump_receives_the_answer(tmp_path: Path) -> None:
    hub = Hub(pattern_names=["four-on-the-floor"])
    dump_port = free_udp_port()
    log_file = tmp_path / "oscdump.txt"
    with log_file.open("w") as out:
        dump = subprocess.Popen(["oscdump", "-L", str(dump_port)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        with OscServer(hub, host="127.0.0.1", port=0, reply_port=dump_port) as srv:
            port = srv.address[1]
            time.sleep(0.3)  # let oscdump bind
            oscsend(port, "/rb/alpha", "f", "0.5")
            oscsend(port, "/rb/prompt/b", "s", "dub techno, deep chords")
            oscsend(port, "/rb/bars", "i", "4")
            oscsend(port, "/rb/alpha")
            oscsend(port, "/rb/prompt/b")
            oscsend(port, "/rb/bpm", "s", "fast")
            oscsend(port, "/rb/ping")
            deadline = time.monotonic() + 10
            while "/rb/pong" not in log_file.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        dump.terminate()
        dump.wait(timeout=5)
    text = log_file.read_text()
    assert (hub.state.alpha, hub.state.prompt_b, hub.state.bars) == (
        0.5, "dub techno, deep chords", 4)
    assert "/rb/alpha f 0.500000" in text
    assert '/rb/prompt/b s "dub techno, deep chords"' in text
    assert '/rb/error ss "/rb/bpm"' in text and "must be a float" in text
    assert "/rb/pong" in text
