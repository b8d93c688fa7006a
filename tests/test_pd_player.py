"""The Pure Data player (max_patches/riffbridge-player.pd) run for real: ``pd -nogui -nosound``
(Debian ``puredata-core``), its real-time scheduler, UDP OSC, ``soundfiler``, ``vline~``,
``tabread~`` and ``writesf~``.

What it records must equal the loop files sample for sample after each switch's crossfade, read
at the transport's phase (sample ``t`` of the recording plays sample ``t mod loop`` of the file:
the player's transport starts with the recording), and every switch must land on a bar line.

One test plays synthetic clips sent straight to the player (fast: no model); the other runs
``riffbridge serve`` with the tiny model and lets the engine drive the player, Pd started first.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from osc_helpers import free_udp_port

from riffbridge.control.osc_codec import decode, encode

ROOT = Path(__file__).resolve().parents[1]
PLAYER = ROOT / "max_patches" / "riffbridge-player.pd"
PD = shutil.which("pd")
RATE = 44100
BEAT = RATE // 2  # 120 BPM
BAR = 4 * BEAT
XFADE = round(0.05 * RATE)  # the engine's default xfade, which the player starts with too

pytestmark = pytest.mark.skipif(PD is None, reason="Pure Data is not installed (Debian "
                                "puredata-core; .ci/run installs it)")


def read_wav(path: Path) -> np.ndarray:
    """(frames, channels) float32 from a 24-bit PCM or 32-bit float WAV, as Pd reads them (a
    24-bit sample x becomes x / 2**23 exactly). Reads to the end of the file, so a data chunk
    whose size was never patched in still reads."""
    data = path.read_bytes()
    i, fmt, body = 12, None, b""
    while i + 8 <= len(data):
        cid, n = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "little")
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[i + 8:i + 24])
        if cid == b"data":
            body = data[i + 8:] if n == 0 else data[i + 8:i + 8 + n]
            break
        i += 8 + n + (n & 1)
    assert fmt is not None, f"{path} has no fmt chunk"
    channels, bits = fmt[1], fmt[5]
    if bits == 32:
        body = body[:len(body) // (4 * channels) * 4 * channels]
        return np.frombuffer(body, "<f4").reshape(-1, channels)
    assert bits == 24, f"{path}: {bits}-bit, expected 24 or 32"
    raw = np.frombuffer(body[:len(body) // (3 * channels) * 3 * channels], np.uint8)
    raw = raw.reshape(-1, 3).astype(np.int32)
    v = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    v = np.where(v >= 1 << 23, v - (1 << 24), v)
    return (v.astype(np.float64) / (1 << 23)).astype(np.float32).reshape(-1, channels)


def write_wav24(path: Path, audio: np.ndarray) -> None:
    """(channels, frames) in [-1, 1) as 24-bit PCM."""
    q = np.round(audio.T * 8388607).astype("<i4").reshape(-1)
    body = np.stack([q & 0xFF, (q >> 8) & 0xFF, (q >> 16) & 0xFF], axis=1).astype(np.uint8)
    channels = audio.shape[0]
    fmt = struct.pack("<HHIIHH", 1, channels, RATE, RATE * 3 * channels, 3 * channels, 24)
    raw = body.tobytes()
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVEfmt "
                     + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(raw)) + raw)


class PdPlayer:
    """``pd -nogui -nosound`` with the player and a small stopper patch that, on a UDP ``halt``,
    stops the player's transport (``rb-run 0``, what its run toggle sends) and on ``stop``
    closes the recording and quits Pd (so the WAV header is written); ``x ...`` and ``y ...``
    go to the XY pad's sliders (their receive names), as a hand on them would. The quantum the
    player takes from riffbridge is printed (``rb-quantum: 0`` beat, 1 bar, 2 loop)."""

    def __init__(self, tmp: Path, engine_port: int, listen: int) -> None:
        self.record = tmp / "pd-record.wav"
        self.control = free_udp_port()
        stopper = tmp / "stopper.pd"
        stopper.write_text(
            "#N canvas 0 0 300 200 12;\n"
            f"#X obj 10 10 netreceive -u {self.control};\n"
            "#X obj 10 40 route stop halt x y;\n"
            "#X msg 10 70 \\; rb-record-stop bang \\; pd quit;\n"
            "#X msg 150 70 \\; rb-run 0;\n"
            "#X obj 10 100 s rb-pad-x-in;\n"
            "#X obj 150 100 s rb-pad-y-in;\n"
            "#X connect 0 0 1 0;\n#X connect 1 0 2 0;\n#X connect 1 1 3 0;\n"
            "#X obj 300 10 r rb_q;\n"
            "#X obj 300 40 print rb-quantum;\n"
            "#X connect 1 2 4 0;\n#X connect 1 3 5 0;\n#X connect 6 0 7 0;\n")
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(PD), "-nogui", "-nosound", "-stderr", "-r", str(RATE),
             "-send", f"rb-connect 127.0.0.1 {engine_port} {listen}",
             "-send", f"rb-record {self.record}", str(PLAYER), str(stopper)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> np.ndarray:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"stop;\n", ("127.0.0.1", self.control))
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return read_wav(self.record)

    def halt(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"halt;\n", ("127.0.0.1", self.control))

    def pad(self, axis: str, value: float | str) -> None:
        """``value`` to the pad's ``axis`` slider: a float moves it (and it sends), ``bang``
        makes it send where it is."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(f"{axis} {value};\n".encode(), ("127.0.0.1", self.control))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def expected(clip: np.ndarray, frames: np.ndarray, loop: int) -> np.ndarray:
    """What the player plays of ``clip`` at recording frames ``frames``: the transport's phase
    in the loop, the last frame held if the file is shorter than the loop."""
    return clip[np.minimum(frames % loop, len(clip) - 1)]


def heard_from(record: np.ndarray, clip: np.ndarray, loop: int) -> tuple[int, int]:
    """The first frame from which ``record`` equals ``clip`` exactly, and how many frames on it
    keeps equal; (-1, 0) if never."""
    frames = np.arange(len(record))
    same = np.all(record == expected(clip, frames, loop), axis=1)
    where = np.flatnonzero(same)
    if not len(where):
        return -1, 0
    start = int(where[0])
    # a run of equal frames; a frame may equal by chance (silence in both), so take the run
    end = start
    while end < len(same) and same[end]:
        end += 1
    return start, end - start


def test_the_pd_player_loads_only_the_idle_slot_switches_on_the_bar_and_stops(
        tmp_path: Path) -> None:
    """Synthetic clips straight to the player: a relative and a missing path are refused where
    the performer sees them; two clips inside one bar: the first never sounds, the second
    sounds from the bar line; stopping the transport silences it."""
    listen = free_udp_port()
    rng = np.random.default_rng(7)
    loop = 2 * BAR
    clips = []
    for k in range(3):
        path = tmp_path / f"clip{k}.wav"
        # clip 0 mono, as riffbridge writes them: the player plays it on both sides
        write_wav24(path, rng.uniform(-0.5, 0.5, (1 if k == 0 else 2, loop)))
        clips.append(path)
    pd = PdPlayer(tmp_path, free_udp_port(), listen)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            def clip(path: str) -> None:
                tx.sendto(encode("/rb/clip", (path, 0.0, 120.0, 2)), ("127.0.0.1", listen))

            time.sleep(1.0)
            clip("out/relative.wav")
            clip(str(tmp_path / "missing.wav"))
            clip(str(clips[0]))
            time.sleep(2.6)  # clip 0 sounds from a bar line; now two clips in one bar (sent
            clip(str(clips[1]))  # back to back, so no bar line can fall between them)
            clip(str(clips[2]))
            time.sleep(2.6)
            pd.halt()
            time.sleep(1.0)
        record = pd.stop()
    finally:
        pd.kill()
    log = "\n".join(pd.lines)
    assert "refused /rb/clip: relative path" in log and "out/relative.wav" in log, log
    assert "refused /rb/clip: no such file" in log and "missing.wav" in log, log
    assert record.shape[1] == 2 and len(record) > 5 * RATE, record.shape

    first = [read_wav(p) for p in clips]
    start0, run0 = heard_from(record, first[0], loop)
    assert start0 > 0 and (start0 - XFADE) % BAR == 0, f"clip 0 from frame {start0}"
    start2, run2 = heard_from(record, first[2], loop)
    assert start2 > start0 and (start2 - XFADE) % BAR == 0, f"clip 2 from frame {start2}"
    assert start0 + run0 == start2 - XFADE, "clip 0 plays unchanged up to clip 2's switch"
    assert heard_from(record, first[1], loop) == (-1, 0), "clip 1 was replaced before its bar"
    # the transport stops: a short fade, then silence to the end
    silent_from = start2 + run2
    assert run2 > BAR // 2
    tail = record[silent_from + XFADE:]
    assert len(tail) > RATE // 2 and not tail.any(), "the sound must stop with the transport"


def test_the_pd_player_plays_what_the_engine_renders_sample_for_sample(tmp_path: Path) -> None:
    """Pd first, then ``riffbridge serve`` (the player's keep-alive finds it); three renders;
    each clip's file sounds from a bar line, equal to the file sample for sample."""
    engine_port, listen = free_udp_port(), free_udp_port()
    pd = PdPlayer(tmp_path, engine_port, listen)
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    serve = subprocess.Popen(
        [sys.executable, "-m", "riffbridge", "serve", "--model", "tiny", "--device", "cpu",
         "--audio-out", "none", "--out-dir", "out", "--steps", "2", "--bars", "1",
         "--bpm", "120", "--osc-port", str(engine_port), "--reply-port",
         str(free_udp_port()), "--no-web"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inbox.bind(("127.0.0.1", 0))
    inbox.settimeout(0.5)
    paths: list[str] = []
    try:
        deadline = time.monotonic() + 300

        def next_clip() -> list[Any]:
            while time.monotonic() < deadline:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                    tx.sendto(encode("/rb/subscribe", (inbox.getsockname()[1],)),
                              ("127.0.0.1", engine_port))
                try:
                    messages, _ = decode(inbox.recv(65536))
                except TimeoutError:
                    continue
                for m in messages:
                    if m.address == "/rb/clip" and m.params[0] not in paths:
                        return list(m.params)
            raise AssertionError("no new /rb/clip from riffbridge within 300 s")

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            # the next points on the alpha grid (8 per unit): the engine renders them next
            for alpha in (None, 0.125, 0.25):
                if alpha is not None:
                    tx.sendto(encode("/rb/alpha", (alpha,)), ("127.0.0.1", engine_port))
                path, _, bpm, bars = next_clip()
                assert Path(path).is_absolute(), f"/rb/clip sent a relative path: {path}"
                assert (bpm, bars) == (120.0, 1)
                paths.append(path)
                time.sleep(2 * BAR / RATE + 0.5)  # the player's next bar line, and one more
        record = pd.stop()
    finally:
        pd.kill()
        serve.terminate()
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
        inbox.close()
    loop = BAR  # one-bar loops: the tiny model renders them fastest
    starts = []
    for path in paths:
        clip = read_wav(Path(path))
        start, run = heard_from(record, clip, loop)
        assert start >= 0, f"{path} never sounded as written; pd said:\n" + "\n".join(pd.lines)
        assert (start - XFADE) % BAR == 0, f"{path} sounds from frame {start}, not a bar line"
        assert run >= BAR, f"{path} equal for only {run} frames"
        starts.append(start)
    assert starts == sorted(starts), "the clips sound in the order they were sent"


class FakeEngine:
    """A UDP socket where riffbridge would listen: collects what the player sends."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])

    def collect(self, seconds: float, address: str | None = None,
                count: int = 0) -> list[tuple[str, list[Any]]]:
        """Messages for ``seconds``, or until ``count`` of ``address`` have come."""
        got: list[tuple[str, list[Any]]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                messages, _ = decode(self.sock.recv(65536))
            except TimeoutError:
                continue
            got.extend((m.address, list(m.params)) for m in messages)
            if count and sum(a == address for a, _ in got) >= count:
                break
        return got

    def close(self) -> None:
        self.sock.close()


def xy_of(messages: list[tuple[str, list[Any]]]) -> list[list[Any]]:
    return [params for address, params in messages if address == "/rb/xy"]


def test_the_pd_pad_sends_xy_with_both_values_and_follows_riffbridges_x_and_y(
        tmp_path: Path) -> None:
    """Moving either slider of the pad sends one ``/rb/xy x y`` (floats) with both values;
    riffbridge's ``/rb/x`` and ``/rb/y`` move both sliders and the other axis's value without
    sending anything back, and the next move carries them."""
    engine, listen = FakeEngine(), free_udp_port()
    pd = PdPlayer(tmp_path, engine.port, listen)
    try:
        first = engine.collect(10.0, "/rb/subscribe", 1)
        assert ("/rb/subscribe", [listen]) in first, first  # Pd is up and speaking
        assert not xy_of(first), "the pad sends nothing at load"

        pd.pad("x", 0.25)
        (moved,) = xy_of(engine.collect(5.0, "/rb/xy", 1))
        assert moved == pytest.approx([0.25, 0.0])
        pd.pad("y", 0.75)
        (moved,) = xy_of(engine.collect(5.0, "/rb/xy", 1))
        assert moved == pytest.approx([0.25, 0.75])

        # riffbridge's pushes (another controller moved the point): no echo
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(encode("/rb/x", (0.8,)), ("127.0.0.1", listen))
            tx.sendto(encode("/rb/y", (0.1,)), ("127.0.0.1", listen))
        assert not xy_of(engine.collect(1.0)), "a push must not be sent back"

        # the sliders moved: each, asked where it is, sends the pushed point
        pd.pad("x", "bang")
        (where,) = xy_of(engine.collect(5.0, "/rb/xy", 1))
        assert where == pytest.approx([0.8, 0.1], abs=1e-3)
        pd.pad("y", "bang")
        (where,) = xy_of(engine.collect(5.0, "/rb/xy", 1))
        assert where == pytest.approx([0.8, 0.1], abs=1e-3)
        # and a move of one axis carries the other's pushed value
        pd.pad("x", 0.5)
        (moved,) = xy_of(engine.collect(5.0, "/rb/xy", 1))
        assert moved == pytest.approx([0.5, 0.1], abs=1e-6)
        pd.stop()
    finally:
        pd.kill()
        engine.close()
    log = "\n".join(pd.lines)
    assert "error" not in log.lower(), log


def test_the_pd_pad_moves_the_real_servers_point(tmp_path: Path) -> None:
    """The pad against a real ``OscServer``: its ``/rb/xy`` is accepted, sets x and y and puts
    the mix on the XY surface; the player takes riffbridge's pushes without an error in Pd's
    window (the quantum, a string, reaches its ``sel``)."""
    from riffbridge.control.hub import Hub
    from riffbridge.control.osc_server import OscServer

    hub = Hub()
    listen = free_udp_port()
    with OscServer(hub, host="127.0.0.1", port=0, reply_port=free_udp_port()) as srv:
        pd = PdPlayer(tmp_path, srv.address[1], listen)
        try:
            def settled(x: float, y: float) -> bool:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if (hub.value("x"), hub.value("y")) == pytest.approx((x, y)):
                        return True
                    time.sleep(0.05)
                return False

            time.sleep(1.0)  # Pd loads and subscribes (it gets the state: x, y = 0, 0)
            pd.pad("x", 0.3)
            assert settled(0.3, 0.0), (hub.value("x"), hub.value("y"))
            pd.pad("y", 0.6)
            assert settled(0.3, 0.6), (hub.value("x"), hub.value("y"))
            assert hub.value("mix") == "xy"
            # and the quantum riffbridge pushes reaches the player's switching (a symbol)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.sendto(encode("/rb/quantum", ("beat",)), srv.address)
            deadline = time.monotonic() + 5
            while "rb-quantum: 0" not in pd.lines and time.monotonic() < deadline:
                time.sleep(0.05)
            pd.stop()
        finally:
            pd.kill()
    log = "\n".join(pd.lines)
    assert "error" not in log.lower(), log
    assert "rb-quantum: 1" in pd.lines, log  # the state a new subscriber gets: bar
    assert "rb-quantum: 0" in pd.lines, log  # then beat
