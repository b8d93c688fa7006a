"""The browser page's server: its messages (pure), its pictures, and the server itself on real
sockets (uvicorn on loopback, a WebSocket client, OSC over UDP), bad input and floods included."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from engine_helpers import wait_for
from osc_helpers import Listener, free_udp_port
from pythonosc.udp_client import SimpleUDPClient
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from riffbridge.control.feedback import Feedback, to_osc
from riffbridge.control.hub import Hub
from riffbridge.control.osc_server import OscServer
from riffbridge.control.presets import PresetStore
from riffbridge.control.routes import Do, route
from riffbridge.errors import ConfigError, ControlError
from riffbridge.events import ClipCued, EngineError, Event, LoopReady, Progress, Switched
from riffbridge.state import EngineState, SetParam
from riffbridge.web import protocol, spectro
from riffbridge.web.app import BURST, RATE_PER_S, Bucket
from riffbridge.web.face import EVENTS_KEPT
from riffbridge.web.server import WebServer, is_loopback

# ---- the messages, pure -------------------------------------------------------------------------


def test_a_page_message_routes_like_the_same_osc_message() -> None:
    text = json.dumps({"address": "/rb/alpha", "args": [0.25]})
    assert protocol.parse(text) == route("/rb/alpha", (0.25,)) == Do(SetParam("alpha", 0.25))
    assert protocol.parse('{"address": "/rb/bars", "args": [4.0]}') == Do(SetParam("bars", 4))
    assert protocol.parse('{"address": "/rb/play"}') == route("/rb/play", ())


@pytest.mark.parametrize(("text", "fragment"), [
    ('{"address": "/rb/alpha", "args": [1.5]}', "alpha must be in [0, 1], got 1.5"),
    ('{"address": "/rb/alpha", "args": ["loud"]}', "alpha"),
    ('{"address": "/rb/alpha", "args": [true]}', "strings or numbers, got bool true"),
    ('{"address": "/rb/alpha", "args": [null]}', "got NoneType null"),
    ('{"address": "/rb/alpha", "args": [[0.5]]}', "got list [0.5]"),
    ('{"address": "/rb/alpha", "args": 0.5}', "args must be a list"),
    ('{"address": "/rb/alpha", "args": [1, 2, 3, 4, 5]}', "at most 4"),
    ('{"address": "/rb/nope", "args": []}', "unknown address '/rb/nope'"),
    ('{"address": 7}', 'must be {"address"'),
    ("[1, 2]", 'must be {"address"'),
    ("not json", "not JSON"),
    ('{"address": "/rb/prompt/a", "args": ["' + "x" * 5000 + '"]}', "message too long"),
    ('{"address": "/rb/seed/a", "args": [1e999]}', "finite"),
    ('{"address": "/rb/pattern", "args": ["../../etc/passwd"]}', "inside the seed folder"),
])
def test_bad_page_messages_are_refused_naming_the_value(text: str, fragment: str) -> None:
    with pytest.raises(ControlError) as err:
        protocol.parse(text)
    assert fragment in str(err.value)


def test_binary_frames_are_refused() -> None:
    with pytest.raises(ControlError, match="JSON text frames"):
        protocol.parse(b'{"address": "/rb/play"}')


def test_events_become_page_messages_and_a_clip_shows_its_file_name_only() -> None:
    assert protocol.event_message(Switched(0.5, 12, "alpha 0.5")) == {
        "type": "event", "kind": "switched", "alpha": 0.5, "bar": 12, "label": "alpha 0.5"}
    clip = protocol.event_message(ClipCued("/home/me/out/run-1/0003 funk.wav", 0.25, 120.0, 2))
    assert clip is not None and clip["file"] == "0003 funk.wav" and "/" not in json.dumps(clip)
    assert protocol.event_message(EngineError("render", "out of memory"))["source"] == "render"
    assert protocol.event_message(LoopReady(0.125, 120.0, 2, 1.5))["kind"] == "ready"
    assert protocol.event_message(Progress(0.5)) is None  # progress travels in the status


def test_the_page_builds_its_controls_from_the_param_table() -> None:
    names = [row["name"] for row in protocol.param_table()]
    for name in ("prompt_a", "prompt_b", "seed_a", "seed_b", "alpha", "bpm", "bars", "quantum",
                 "gain_db"):
        assert name in names
    alpha = next(row for row in protocol.param_table() if row["name"] == "alpha")
    assert (alpha["min"], alpha["max"], alpha["address"]) == (0.0, 1.0, "/rb/alpha")


def test_the_bucket_lets_a_burst_through_then_the_rate() -> None:
    bucket = Bucket(rate=100.0, burst=10)
    passed = sum(bucket.take() for _ in range(1000))
    assert 10 <= passed <= 12 and bucket.dropped >= 988


# ---- pictures ------------------------------------------------------------------------------------

def _tone(hz: float, seconds: float = 2.0, rate: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * hz * t).astype(np.float32)
    return np.stack([mono, mono], axis=1)


def test_a_spectrogram_shows_where_the_sound_is() -> None:
    from io import BytesIO

    from PIL import Image

    low, high = spectro.magnitudes(_tone(200), 44100), spectro.magnitudes(_tone(4000), 44100)
    assert low.shape == high.shape == (spectro.HEIGHT, spectro.WIDTH)
    assert np.argmax(low.mean(axis=1)) < np.argmax(high.mean(axis=1))  # row 0 is the bottom
    png = spectro.spectrogram_png(_tone(200), 44100)
    image = Image.open(BytesIO(png))
    assert image.size == (spectro.WIDTH, spectro.HEIGHT) and image.mode == "RGB"
    assert png != spectro.spectrogram_png(_tone(4000), 44100)
    # A 60 s loop is drawn from the same number of FFTs as a short one.
    assert spectro.magnitudes(_tone(200, 60.0), 44100).shape == low.shape
    assert spectro.magnitudes(np.zeros((100, 2), np.float32), 44100).shape == low.shape


# ---- the feedback hands every event to its consumers -----------------------------------------

def test_feedback_fans_events_out_and_keeps_the_osc_pushes() -> None:
    hub = Hub()
    pushed: list[tuple[str, tuple[Any, ...]]] = []
    hub.add_sink(lambda address, args: pushed.append((address, args)))
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a consumer with a bug")

    feedback = Feedback(hub, queue.Queue(), [broken])
    feedback.add_consumer(got.append)
    events: list[Event] = [Progress(0.5), Switched(0.25, 3, "alpha 0.25"),
                           EngineError("render", "boom"), LoopReady(0.25, 120.0, 2, 1.0)]
    for event in events:
        feedback.handle(event)
    assert got == events  # the same values, in order, despite the broken consumer before it
    assert pushed == [m for m in map(to_osc, events) if m is not None]
    feedback.remove_consumer(got.append)
    feedback.handle(Progress(1.0))
    assert len(got) == len(events)


# ---- the server on real sockets -----------------------------------------------------------------

class Page:
    """A WebSocket client that keeps what the server sends, as the page would."""

    def __init__(self, web: WebServer, path: str = "/ws", **kw: Any) -> None:
        host, port = web.address
        self.ws: ClientConnection = connect(f"ws://{host}:{port}{path}", **kw)
        self.messages: list[dict[str, Any]] = []

    def send(self, address: str, *args: Any) -> None:
        self.ws.send(json.dumps({"address": address, "args": list(args)}))

    def wait(self, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0
             ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                break
            self.messages.append(message)
            if check(message):
                return message
        raise AssertionError(f"no such message within {timeout} s; last: {self.messages[-3:]}")

    def state(self, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return self.wait(lambda m: m["type"] == "state" and check(m["state"]))["state"]

    def error(self) -> str:
        return str(self.wait(lambda m: m.get("kind") == "error")["message"])

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def web(hub: Hub) -> Iterator[WebServer]:
    with WebServer(hub, port=0) as server:
        yield server


@pytest.fixture
def page(web: WebServer) -> Iterator[Page]:
    p = Page(web)
    p.wait(lambda m: m["type"] == "hello")
    yield p
    p.close()


def _get(web: WebServer, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes, Any]:
    host, port = web.address
    request = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_the_page_and_its_assets_come_from_the_package(web: WebServer) -> None:
    status, body, headers = _get(web, "/")
    assert status == 200 and b"<script src=\"app.js\">" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        status, body, headers = _get(web, "/" + name)
        assert status == 200 and kind in headers["Content-Type"] and body
        assert b"http://" not in body and b"https://" not in body  # no CDN, nothing outside
    for path in ("/pyproject.toml", "/..%2f..%2fetc%2fpasswd", "/static/../server.py",
                 "/spectrogram/99.png"):
        assert _get(web, path)[0] == 404, path


def test_a_knob_on_the_page_reaches_the_state_and_osc_subscribers(hub: Hub, page: Page) -> None:
    other = Listener()
    try:
        with OscServer(hub, host="127.0.0.1", port=0, reply_port=Listener().port) as osc:
            client = SimpleUDPClient(*osc.address)
            client.send_message("/rb/subscribe", other.port)
            other.wait_for("/rb/status")  # the state a new subscriber gets ends there
            page.send("/rb/alpha", 0.75)
            assert other.wait_for("/rb/alpha") == [0.75]
            assert hub.state.alpha == 0.75
            # ... and OSC's changes reach the page.
            client.send_message("/rb/bpm", 96.0)
            assert page.state(lambda s: s["bpm"] == 96.0)["alpha"] == 0.75
    finally:
        other.sock.close()


def test_bad_input_on_the_socket_is_answered_and_harms_nothing(hub: Hub, page: Page) -> None:
    before = hub.state
    for text, fragment in (('{"address": "/rb/alpha", "args": [3]}', "got 3"),
                           ('{"address": "/rb/kick", "args": []}', "unknown address"),
                           ('{"address": "/rb/bpm", "args": ["fast"]}', "bpm"),
                           ("{{{", "not JSON"),
                           ('{"address": "/rb/subscribe", "args": []}', "every change")):
        page.ws.send(text)
        assert fragment in page.error()
    page.ws.send(b"\x00\x01binary")
    assert "text frames" in page.error()
    assert hub.state == before
    page.send("/rb/alpha", 0.5)  # the page still plays
    assert page.state(lambda s: s["alpha"] == 0.5)
    page.send("/rb/alpha")  # a query is answered
    assert page.wait(lambda m: m["type"] == "value")["value"] == 0.5


def test_a_preset_saved_from_the_page_is_written_off_the_event_loop(tmp_path: Any) -> None:
    """The file is written on a thread (the loop that sends frames never waits on the disk);
    the save is complete and readable, and the page is told of a bad name like OSC is."""
    hub = Hub(EngineState(alpha=0.25), presets=PresetStore(tmp_path / "presets.toml"))
    writers: list[str] = []
    save = hub.presets.save if hub.presets is not None else None

    def spy(name: str, state: EngineState) -> None:
        writers.append(threading.current_thread().name)
        assert save is not None
        save(name, state)

    assert hub.presets is not None
    hub.presets.save = spy  # type: ignore[method-assign]
    with WebServer(hub, port=0) as web:
        page = Page(web)
        page.wait(lambda m: m["type"] == "hello")
        page.send("/rb/preset/save", "verse")
        wait_for(lambda: writers, 5, "the save")
        page.send("/rb/preset/save", "bad\x7fname")
        assert "control character" in page.error()
        page.close()
    assert writers == [writers[0]] and writers[0] != "riffbridge-web"  # not the page's loop
    assert PresetStore(tmp_path / "presets.toml").names() == ["verse"]


def test_a_flood_of_ten_thousand_messages_is_limited_and_closed(
        hub: Hub, web: WebServer, page: Page) -> None:
    changes: list[Any] = []
    hub.add_listener(changes.append)
    flood = Page(web)
    flood.wait(lambda m: m["type"] == "hello")
    started = time.monotonic()
    sent = 0
    try:
        for i in range(10_000):
            flood.send("/rb/alpha", (i % 100) / 100)
            sent += 1
    except ConnectionClosed:
        pass  # the server closed the flood before it was over
    seconds = time.monotonic() - started
    # The bucket: its burst, then its rate; the rest dropped unread by the hub.
    assert len(changes) <= BURST + RATE_PER_S * (seconds + 1), (len(changes), seconds)
    with pytest.raises(ConnectionClosed):
        for _ in range(200):
            flood.ws.recv(timeout=5)
    assert flood.ws.close_code == 1008
    # The other page and the hub are fine.
    page.send("/rb/alpha", 0.375)
    assert page.state(lambda s: s["alpha"] == 0.375)
    assert sent > 0


def test_a_page_that_never_reads_holds_nothing_up(hub: Hub, web: WebServer,
                                                   page: Page) -> None:
    idle = Page(web, close_timeout=1)  # connected, never reads
    try:
        for i in range(3000):
            hub.submit(SetParam("alpha", (i % 1000) / 1000))
            hub.push("/rb/error", "render", f"error {i}")
        hub.submit(SetParam("alpha", 0.125))
        assert page.state(lambda s: s["alpha"] == 0.125)
        for client in web.face.clients:  # bounded: the latest state, a few events
            assert len(client.events) <= EVENTS_KEPT
    finally:
        idle.close()


def test_websocket_from_another_site_is_refused(web: WebServer) -> None:
    host, port = web.address
    with pytest.raises(InvalidStatus) as err:
        Page(web, origin="http://evil.example")  # type: ignore[arg-type]
    assert err.value.response.status_code == 403
    page = Page(web, origin=f"http://{host}:{port}")  # type: ignore[arg-type]
    page.wait(lambda m: m["type"] == "hello")
    page.close()


def test_a_foreign_host_name_is_refused_on_loopback(web: WebServer) -> None:
    _, port = web.address
    status, body, _ = _get(web, "/", {"Host": f"rebound.example:{port}"})
    assert status == 403 and b"unknown host" in body
    assert _get(web, "/", {"Host": f"localhost:{port}"})[0] == 200


def test_a_token_guards_the_page_the_pictures_and_the_socket(hub: Hub) -> None:
    with WebServer(hub, port=0, token="s3cret") as web:
        assert web.url.endswith("/?token=s3cret")
        status, body, _ = _get(web, "/")
        assert status == 403 and b"token" in body
        assert _get(web, "/app.js")[0] == 403
        status, _, headers = _get(web, "/?token=s3cret")
        assert status == 200 and "rb_token=s3cret" in headers["Set-Cookie"]
        assert _get(web, "/app.js", {"Cookie": "rb_token=s3cret"})[0] == 200
        with pytest.raises(InvalidStatus):
            Page(web)
        with pytest.raises(InvalidStatus):
            Page(web, "/ws?token=wrong")
        page = Page(web, "/ws?token=s3cret")
        page.wait(lambda m: m["type"] == "hello")
        page.close()


def test_a_non_loopback_address_gets_a_fresh_token(hub: Hub) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    with WebServer(hub, host="0.0.0.0", port=0) as web:
        assert len(web.token) >= 16 and f"token={web.token}" in web.url
        port = web.address[1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 403
    assert WebServer(hub, host="127.0.0.1").token == ""


def test_a_port_in_use_stops_the_start_naming_the_flag(hub: Hub) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        web = WebServer(hub, port=taken.getsockname()[1])
        with pytest.raises(ConfigError, match="--web-port"):
            web.start()
        web.close()
    finally:
        taken.close()


def test_close_is_idempotent_and_unhooks(hub: Hub) -> None:
    feedback = Feedback(hub, queue.Queue())
    web = WebServer(hub, feedback=feedback, port=0).start()
    page = Page(web)
    page.wait(lambda m: m["type"] == "hello")
    web.close()
    web.close()
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            page.ws.recv(timeout=5)
    assert not any(t.name == "riffbridge-web" for t in threading.enumerate())
    feedback.handle(Switched(0.5, 1, "x"))  # no consumer left to call
    hub.submit(SetParam("alpha", 0.5))  # no sink left to call
    assert hub.state == EngineState(alpha=0.5)


class EngineStandIn:
    """The engine as the page reads it: a real ``Player`` with real segments and cues, a real
    beat grid, and a status snapshot; no worker, no thread."""

    def __init__(self, hub: Hub) -> None:
        from riffbridge.engine.clock import Grid
        from riffbridge.engine.player import Player

        self.rate = 48000
        self.player = Player()
        self.grid = Grid(self.rate, 120.0)
        self._hub = hub

    def status(self) -> Any:
        from riffbridge.events import EngineStatus

        return EngineStatus(self._hub.state, "alpha 0.5", 2, 3, 12.0, 0, "rendering", 3, 1.5, 0,
                            "", rendered=(0.0, 0.5), wanted=(0.625, 0.75), rendering=0.625)


def _segment(hz: float, label: str) -> Any:
    from riffbridge.engine.player import Segment

    audio = _tone(hz, 2.0, 48000)
    audio.flags.writeable = False
    return Segment(audio, 0, label)


def test_the_page_shows_the_sounding_loop_the_next_cue_and_the_style_map(hub: Hub) -> None:
    from riffbridge.engine.player import Cue

    engine = EngineStandIn(hub)
    engine.player.playing = _segment(300, "alpha 0.5")
    with WebServer(hub, engine, port=0) as web:
        page = Page(web)
        status = page.wait(lambda m: m["type"] == "status" and m["loop"]
                           and m["loop"]["image"] is not None)
        assert status["loop"]["label"] == "alpha 0.5" and status["loop"]["frames"] == 96000
        assert (status["rendered"], status["wanted"], status["rendering"]) == (
            [0.0, 0.5], [0.625, 0.75], 0.625)
        assert status["bpm"] == 120.0 and status["rate"] == 48000 and status["next"] is None
        code, png, headers = _get(web, f"/spectrogram/{status['loop']['image']}.png")
        assert code == 200 and png.startswith(b"\x89PNG") and headers["Content-Type"] == \
            "image/png"
        # A cue the player has not applied yet is the next loop, with its own picture.
        engine.player.cue = Cue(96000, np.zeros((10, 2), np.float32),
                                _segment(3000, "alpha 0.625"), token=1)
        cued = page.wait(lambda m: m["type"] == "status" and m["next"] is not None
                         and m["next"]["image"] is not None)
        assert cued["next"]["label"] == "alpha 0.625" and cued["next"]["at"] == 96000
        assert cued["next"]["image"] != status["loop"]["image"]
        # Once applied, it is what sounds and nothing is cued.
        engine.player.playing, engine.player.applied_token = engine.player.cue.then, 1
        after = page.wait(lambda m: m["type"] == "status" and m["next"] is None
                          and m["loop"]["label"] == "alpha 0.625")
        assert after["loop"]["image"] == cued["next"]["image"]  # drawn once, not again
        page.close()


def test_a_switch_filled_ahead_shows_as_next_until_it_sounds(hub: Hub) -> None:
    """A buffered stream plays a switch into its ring ``audio_ahead`` before the speakers: the
    page keeps showing the loop that sounds, with the switch as next at its frame, until the
    sounding frame reaches it."""
    import time

    engine = EngineStandIn(hub)
    player = engine.player
    old, new = _segment(300, "alpha 0.5"), _segment(3000, "alpha 0.625")
    player.playing, player.frame = old, 90000
    player.stamp[0], player.stamp[1] = 90000, time.monotonic()
    with WebServer(hub, engine, port=0) as web:
        page = Page(web)
        page.wait(lambda m: m["type"] == "status" and m["loop"]
                  and m["loop"]["label"] == "alpha 0.5")
        # the feeder applies the switch at 96000 and fills on; the sound is still before it
        player.playing, player.applied_at, player.applied_token = new, 96000, 1
        player.frame = 100000
        player.stamp[0], player.stamp[1] = 90000, time.monotonic() + 3600
        ahead = page.wait(lambda m: m["type"] == "status" and m["next"] is not None)
        assert ahead["loop"]["label"] == "alpha 0.5"
        assert ahead["next"]["label"] == "alpha 0.625" and ahead["next"]["at"] == 96000
        # the sound reaches the switch
        player.stamp[0], player.stamp[1] = 100000, time.monotonic() - 1
        heard = page.wait(lambda m: m["type"] == "status" and m["next"] is None
                          and m["loop"]["label"] == "alpha 0.625")
        assert heard["frame"] >= 96000
        page.close()


@pytest.mark.slow
def test_serve_with_the_page_port_taken_stops_with_one_line(tmp_path: Any) -> None:
    from test_serve import serve_args, serving

    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        args = [a for a in serve_args(tmp_path / "out", free_udp_port(), free_udp_port())
                if a != "--no-web"]
        with serving([*args, "--web-port", str(port)], tmp_path) as proc:
            assert proc.wait_exit() == 2
            errors = [line for line in proc.err if line.startswith("riffbridge: error: ")]
            assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], proc.err[-5:]
            assert "--web-port" in errors[0] and "--no-web" in errors[0]
            assert proc.leftovers() == []  # the render worker went with it
        assert not any((tmp_path / "out").glob("*/*.wav"))
    finally:
        taken.close()


def test_a_frame_over_the_size_limit_closes_only_that_page(hub: Hub, web: WebServer,
                                                           page: Page) -> None:
    big = Page(web)
    big.wait(lambda m: m["type"] == "hello")
    big.ws.send(json.dumps({"address": "/rb/prompt/a", "args": ["x" * 20_000]}))
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            big.ws.recv(timeout=5)
    assert big.ws.close_code == 1009  # message too big
    assert hub.state.prompt_a == EngineState().prompt_a
    page.send("/rb/alpha", 0.625)
    assert page.state(lambda s: s["alpha"] == 0.625)


def test_the_page_is_told_the_frame_that_sounds_not_the_frame_filled_ahead():
    """A buffered stream fills ``audio_ahead`` before the sound: the playhead the page draws
    follows the player's stamp (a block's first frame and when it reaches the device), carried
    forward at the audio rate, and never passes what has been filled."""
    from riffbridge.engine.player import Player
    from riffbridge.web.face import sounding_frame

    player = Player()
    player.frame = 5000
    assert sounding_frame(player, 44100, 123.0) == 5000  # nothing played yet: no stamp
    player.stamp[0], player.stamp[1] = 1000, 100.0  # frame 1000 reaches the device at t=100
    player.frame = 1000 + 6615  # 150 ms filled ahead of it
    assert sounding_frame(player, 44100, 100.0) == 1000
    assert sounding_frame(player, 44100, 100.05) == 1000 + 2205
    assert sounding_frame(player, 44100, 101.0) == 1000 + 6615  # never past what is filled
    assert sounding_frame(player, 44100, 99.0) == 0  # stamped in the future: not negative
