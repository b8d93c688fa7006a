"""`riffbridge serve` end to end, as a user runs it: a subprocess with the tiny random-weight model
on the CPU and no audio device, driven over real OSC on loopback UDP, its WAVs read back with
soundfile, stopped with real signals.

The OSC tests share one running server (starting one loads torch and the model: seconds on this
CPU); the last of them stops it with SIGINT. Tests that need their own process start one each.
Every process runs in its own session, so a test can check that nothing it started outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from osc_helpers import free_udp_port
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

START_TIMEOUT_S = 120.0  # torch import + tiny model, on two cores that others use too
CLIP_TIMEOUT_S = 120.0  # a render of the tiny model takes seconds here; a busy machine, more
EXIT_TIMEOUT_S = 60.0
PROC = Path("/proc")

pytestmark = pytest.mark.skipif(not PROC.is_dir() or not hasattr(os, "killpg"),
                                reason="these tests watch the server's processes through /proc "
                                       "(Linux)")


def loop_frames(bpm: float, bars: int = 1, beats_per_bar: int = 4) -> int:
    return round(bars * beats_per_bar * 60.0 / bpm * 44100)


def session_processes(sid: int) -> list[str]:
    """The live (not zombie) processes of session ``sid``, as 'pid name' strings."""
    found = []
    for stat in PROC.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                found.append(f"{stat.parent.name} {name}")
    return found


def wait_until(check: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll)


class Inbox:
    """A UDP socket on loopback that collects every OSC message sent to it (replies and pushes)
    on a thread; tests wait for the one they expect. Decoded with python-osc."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.messages: list[tuple[str, list[Any]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                dgram = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            message = OscMessage(dgram)
            with self._cond:
                self.messages.append((message.address, list(message.params)))
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.messages)

    def wait(self, address: str, since: int = 0, timeout: float = 10.0,
             where: Callable[[list[Any]], bool] = lambda args: True) -> list[Any]:
        """The args of the first ``address`` message at or after index ``since`` for which
        ``where(args)`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for got, args in self.messages[since:]:
                    if got == address and where(args):
                        return args
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [a for a, _ in self.messages[since:]]
                    raise AssertionError(f"no matching {address} within {timeout:g} s; got {seen}")
                self._cond.wait(left)

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


@dataclass
class Serve:
    """One `riffbridge serve` process in its own session, its output read on threads."""

    args: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riffbridge", "serve", *self.args], cwd=self.cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        self.sid = self.proc.pid
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
                         for pipe, lines in ((self.proc.stdout, self.out),
                                             (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: Any, lines: list[str]) -> None:
        for line in pipe:
            with self._cond:
                lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, text: str, timeout: float) -> int:
        """The index in stdout of the first line containing ``text``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, line in enumerate(self.out):
                    if text in line:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"no {text!r} on stdout (exit code {self.proc.poll()}).\nstdout:\n"
                        + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err[-30:]))
                self._cond.wait(min(left, 0.2))

    def wait_running(self) -> dict[str, str]:
        """Wait for the status block; return its lines by their first word."""
        i = self.wait_line("riffbridge is running", START_TIMEOUT_S)
        self.wait_line("  tempo ", 5)
        with self._cond:
            block = []
            for line in self.out[i + 1:]:  # the indented lines after the headline
                if not line.startswith("  "):
                    break
                block.append(line)
        return {line.split()[0]: line.split(None, 1)[1] for line in block}

    def wait_exit(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def children(self) -> list[int]:
        found = []
        for task in PROC.glob(f"{self.proc.pid}/task/*/children"):
            with contextlib.suppress(OSError):
                found += [int(p) for p in task.read_text().split()]
        return found

    def leftovers(self, timeout: float = 10.0) -> list[str]:
        """What of this session is still alive once the server has exited."""
        wait_until(lambda: not session_processes(self.sid), timeout)
        return session_processes(self.sid)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.sid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def serve_args(out_dir: Path | str, osc_port: int, reply_port: int, *extra: str) -> list[str]:
    return ["--model", "tiny", "--device", "cpu", "--audio-out", "none", "--out-dir",
            str(out_dir), "--steps", "2", "--bars", "1", "--osc-port", str(osc_port),
            "--reply-port", str(reply_port), "--no-web", *extra]


@contextlib.contextmanager
def serving(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Iterator[Serve]:
    server = Serve(args, cwd, env or {})
    try:
        yield server
    finally:
        server.kill()


def temp_files(folder: Path) -> list[Path]:
    """What ``riffbridge.outputs.files`` stages before a rename: ``.<name>.<random>.part``."""
    return sorted(p for p in folder.rglob("*") if p.name.startswith(".")
                  and p.name.endswith(".part"))


def check_run_folder(run_dir: Path, written: int) -> list[dict[str, Any]]:
    """Every loop in ``index.jsonl`` is there, complete, with its sidecar; nothing else is."""
    entries = [json.loads(line) for line in
               (run_dir / "index.jsonl").read_text().splitlines()] if written else []
    assert len(entries) == written
    for entry in entries:
        wav = run_dir / entry["file"]
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        assert rate == 44100
        assert audio.shape[0] == loop_frames(entry["bpm"], entry["bars"],
                                             entry["beats_per_bar"]) == entry["samples"]
        assert json.loads(wav.with_suffix(".json").read_text())["file"] == wav.name
    assert sorted(p.name for p in run_dir.glob("*.wav")) == sorted(e["file"] for e in entries)
    assert temp_files(run_dir.parent) == []
    return entries


def summary_counts(out: list[str]) -> tuple[int, int]:
    line = next(line for line in out if line.startswith("riffbridge: stopped."))
    match = re.search(r"(\d+) loops rendered, (\d+) written", line)
    assert match, line
    return int(match.group(1)), int(match.group(2))


# ---- one server for the OSC tests --------------------------------------------------------------

@dataclass
class Running:
    serve: Serve
    inbox: Inbox  # at the reply port, subscribed: replies and pushes
    client: SimpleUDPClient
    osc_port: int
    block: dict[str, str]
    out_dir: Path

    @property
    def run_dir(self) -> Path:
        return Path(self.block["files"])

    def ping(self) -> None:
        mark = self.inbox.mark()
        self.client.send_message("/rb/ping", [])
        self.inbox.wait("/rb/pong", mark)

    def ask(self, address: str) -> list[Any]:
        mark = self.inbox.mark()
        self.client.send_message(address, [])
        return self.inbox.wait(address, mark, where=lambda args: len(args) == 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("serve")
    inbox = Inbox()
    osc_port = free_udp_port()
    with serving(serve_args(tmp / "out", osc_port, inbox.port), tmp) as proc:
        block = proc.wait_running()
        client = SimpleUDPClient("127.0.0.1", osc_port)  # sends from a random port, like Max
        client.send_message("/rb/subscribe", [])  # pushes to the reply port
        running = Running(proc, inbox, client, osc_port, block, tmp / "out")
        running.ping()
        yield running
    inbox.close()


@pytest.fixture
def live(server: Running) -> Running:
    assert server.serve.proc.poll() is None, (
        "the shared server has exited: test_sigint_stops_the_shared_server must stay last\n"
        + "\n".join(server.serve.err[-20:]))
    return server


def test_start_prints_one_status_block(live: Running) -> None:
    block = live.block
    assert block["model"] == "tiny on cpu"
    assert block["render"] == ("cuda graphs do not apply on cpu; compile does not apply on cpu; "
                               "width buckets off (a new width costs nothing here); "
                               "render batch 1 (auto on cpu)")
    assert block["audio"].startswith("none")
    assert f"127.0.0.1:{live.osc_port}" in block["osc"]
    assert f"replies to port {live.inbox.port}" in block["osc"]
    assert live.run_dir.parent == live.out_dir and live.run_dir.is_dir()
    assert block["tempo"].startswith("120 BPM, 1 bar of 4")
    assert sum("riffbridge is running" in line for line in live.serve.out) == 1


def test_ping_is_answered_with_pong_on_the_reply_port(live: Running) -> None:
    live.ping()


def test_written_loops_are_pushed_as_clips_of_exact_length(live: Running) -> None:
    path, alpha, bpm, bars = live.inbox.wait("/rb/clip", timeout=CLIP_TIMEOUT_S)
    wav = Path(path)
    assert wav.parent == live.run_dir and wav.suffix == ".wav"
    assert (bpm, bars) == (120.0, 1) and 0.0 <= alpha <= 1.0
    info = sf.info(wav)
    assert info.format == "WAV" and info.samplerate == 44100
    assert info.frames == loop_frames(bpm, bars) == 88200
    assert sf.read(wav)[0].shape[0] == info.frames


def test_alpha_one_leads_to_a_clip_at_alpha_one(live: Running) -> None:
    mark = live.inbox.mark()
    live.client.send_message("/rb/alpha", 1.0)
    assert live.ask("/rb/alpha") == [1.0]
    path, _, _, _ = live.inbox.wait("/rb/clip", mark, CLIP_TIMEOUT_S,
                                    where=lambda args: args[1] == 1.0)
    sidecar = json.loads(Path(path).with_suffix(".json").read_text())
    assert sidecar["alpha"] == 1.0


def _size(address: str, *args: Any) -> int:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return len(builder.build().dgram)


HUGE_PROMPT = "x" * 60000
HUGE_PACKET = _size("/rb/prompt/a", HUGE_PROMPT)


def _raw(dgram: bytes) -> Callable[[Running], None]:
    def send(live: Running) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(dgram, ("127.0.0.1", live.osc_port))
    return send


def _message(address: str, *args: Any) -> Callable[[Running], None]:
    return lambda live: live.client.send_message(address, list(args))


@pytest.mark.parametrize(("send", "address", "names"), [
    (_raw(b"garbage!"), "/rb/packet", "8 bytes"),
    (_raw(b"\x00\x01\x02"), "/rb/packet", "3 bytes"),
    (_message("/rb/alpha", "x"), "/rb/alpha", "'x'"),
    (_message("/rb/alpha", 7.0), "/rb/alpha", "7.0"),
    (_message("/rb/no/such/thing", 1), "/rb/no/such/thing", "'/rb/no/such/thing'"),
    (_message("/rb/prompt/a", "drums " * 1000), "/rb/prompt/a", "6000"),
    (_message("/rb/prompt/a", HUGE_PROMPT), "/rb/packet", f"{HUGE_PACKET} bytes"),
], ids=["garbage", "short-garbage", "alpha-string", "alpha-7", "unknown-address",
        "long-prompt", "huge-packet"])
def test_a_bad_message_gets_an_error_and_the_server_keeps_answering(
        live: Running, send: Callable[[Running], None], address: str, names: str) -> None:
    alpha, prompt = live.ask("/rb/alpha"), live.ask("/rb/prompt/a")
    mark = live.inbox.mark()
    send(live)
    _, reason = live.inbox.wait("/rb/error", mark, where=lambda args: args[0] == address)
    assert names in reason
    live.ping()
    assert live.ask("/rb/alpha") == alpha and live.ask("/rb/prompt/a") == prompt
    assert live.serve.proc.poll() is None


def test_sigint_stops_the_shared_server(live: Running) -> None:
    """Last of the OSC tests: it stops the server they share."""
    live.inbox.wait("/rb/clip", timeout=CLIP_TIMEOUT_S)  # something was written
    live.serve.signal(signal.SIGINT)
    assert live.serve.wait_exit() == 0
    assert any("riffbridge: stopping" in line for line in live.serve.out)
    _, written = summary_counts(live.serve.out)
    assert written >= 1
    check_run_folder(live.run_dir, written)
    assert live.serve.leftovers() == []


# ---- shutdown ----------------------------------------------------------------------------------

def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    inbox = Inbox()
    try:
        osc_port = free_udp_port()
        with serving(serve_args(tmp_path / "out", osc_port, inbox.port), tmp_path) as serve:
            run_dir = Path(serve.wait_running()["files"])
            SimpleUDPClient("127.0.0.1", osc_port).send_message("/rb/subscribe", [])
            inbox.wait("/rb/clip", timeout=CLIP_TIMEOUT_S)
            serve.signal(signal.SIGTERM)
            assert serve.wait_exit() == 0
            _, written = summary_counts(serve.out)
            assert written >= 1
            check_run_folder(run_dir, written)
            assert serve.leftovers() == []
    finally:
        inbox.close()


def test_a_second_sigint_while_stopping_forces_exit(tmp_path: Path) -> None:
    """Stopping waits for the file being written. Make that write stall, as on a hung network
    share: index.jsonl is a FIFO, so writing the first loop blocks reading it until we let go.
    Then the first SIGINT cannot finish, and the second must end the process at once, render
    worker included."""
    with serving(serve_args(tmp_path / "out", free_udp_port(), free_udp_port()),
                 tmp_path) as serve:
        run_dir = Path(serve.wait_running()["files"])
        fifo = run_dir / "index.jsonl"
        os.mkfifo(fifo)

        def writer_is_stuck() -> int | None:
            try:  # succeeds once the loop writer has the FIFO open to read it
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return None

        fd = wait_until(writer_is_stuck, CLIP_TIMEOUT_S, poll=0.1)
        assert fd is not None, "no loop was written"
        try:
            assert serve.children(), "no render worker"
            serve.signal(signal.SIGINT)
            serve.wait_line("riffbridge: stopping", 10)
            time.sleep(0.5)
            assert serve.proc.poll() is None  # stuck on the write, as planned
            serve.signal(signal.SIGINT)
            assert serve.wait_exit(20) == 130
            assert "forced exit" in serve.err
            assert serve.leftovers() == []
        finally:
            os.close(fd)


SHUTDOWN_PROBE = """
import sys, time
from riffbridge.cli.serve import Shutdown
with Shutdown() as shutdown:
    shutdown.at_force(lambda: print("at_force", flush=True))
    print("ready", flush=True)
    shutdown.event.wait()
    print("stopping", flush=True)
    time.sleep(60)  # a stop that cannot finish: only a forced exit ends this
"""


def test_a_hang_up_stops_in_stages_and_only_a_second_sigint_or_sigterm_forces() -> None:
    """SIGHUP (a closed terminal) asks for the staged stop like Ctrl-C; it can come twice for
    one hang-up, so it never forces. A second SIGTERM forces like a second Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-c", SHUTDOWN_PROBE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGHUP)
        assert proc.stdout.readline() == "stopping\n"
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
        assert proc.stdout.read() == "at_force\n"
        assert proc.stderr is not None and "forced exit" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(10)


def test_for_seconds_exits_on_its_own(tmp_path: Path) -> None:
    with serving(serve_args(tmp_path / "out", free_udp_port(), free_udp_port(),
                            "--for-seconds", "2"), tmp_path) as serve:
        serve.wait_running()
        assert serve.wait_exit() == 0
        assert any(line.startswith("riffbridge: stopped.") for line in serve.out)
        assert serve.leftovers() == []


# ---- start-up errors ---------------------------------------------------------------------------

def _portaudio() -> str:
    """Why the device lookup cannot run here, or '' when it can."""
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        return f"PortAudio cannot load ({exc}): apt-get install libportaudio2"
    return ""


STARTS: dict[str, tuple[list[str], list[str]]] = {
    # case: (flags on top of the tiny model and files in ./out, what the error line must name)
    "model-missing": (["--model", "/nonexistent/model"], ["/nonexistent/model", "--model tiny"]),
    "default-model-not-cached": (["--model", "riffusion/riffusion-model-v1"],
                                 ["riffusion/riffusion-model-v1", "huggingface-cli download",
                                  "--model tiny"]),
    "nothing-to-play-to": (["--audio-out", "none", "--out-dir", "none"],
                           ["--audio-out none", "--out-dir none", "give an audio device"]),
    "bpm-out-of-range": (["--bpm", "500"], ["--bpm", "500", "[40, 240]"]),
    "config-unknown-key": (["--config", "unknown.toml"], ["unknown.toml", "bmp -> bpm"]),
    "config-bad-value": (["--config", "bad.toml"], ["bad.toml", "quantum", "'bars'",
                                                    "beat, bar, loop"]),
    "no-such-audio-device": (["--audio-out", "no such device"],
                             ["'no such device'", "--audio-out none"]),
    "unknown-pattern": (["--pattern", "polka"], ["--pattern", "'polka'", "four-on-the-floor"]),
    "prompt-too-long": (["--prompt", "drums " * 100], ["--prompt", "500 characters", "600"]),
    "unknown-device": (["--device", "gpu"], ["--device", "'gpu'", "cpu"]),
    "replies-to-itself": (["--osc-port", "9876", "--reply-port", "9876"],
                          ["9876", "--reply-port"]),
}


@pytest.mark.parametrize("case", list(STARTS))
def test_a_bad_start_exits_2_with_one_line_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    flags, names = STARTS[case]
    if case == "no-such-audio-device" and _portaudio():
        pytest.skip(_portaudio())
    (tmp_path / "unknown.toml").write_text("bmp = 120\n")
    (tmp_path / "bad.toml").write_text('quantum = "bars"\n')
    out = tmp_path / "out"
    out.mkdir()
    args = [*serve_args(out, free_udp_port(), free_udp_port()), *flags]
    # An empty model cache, whatever this machine has downloaded: what a new user sees.
    env = {"HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    with serving(args, tmp_path, env) as serve:
        code = serve.wait_exit(START_TIMEOUT_S)
        lines = [line for line in serve.err if line.strip()]
        assert code == 2, "\n".join(serve.err)
        assert len(lines) == 1 and lines[0].startswith("riffbridge: error: "), lines
        for name in names:
            assert name in lines[0]
        assert not any("riffbridge is running" in line for line in serve.out)
        assert serve.leftovers() == []
        assert list(out.iterdir()) == []  # no empty run folder left behind


def test_ctrl_c_while_the_model_loads_stops_cleanly(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group, render worker included."""
    out = tmp_path / "out"
    with serving(serve_args(out, free_udp_port(), free_udp_port()), tmp_path) as serve:
        serve.wait_line("riffbridge: loading", START_TIMEOUT_S)
        time.sleep(1.0)  # the worker is importing torch by now (or is not there yet: either way)
        os.killpg(serve.sid, signal.SIGINT)
        assert serve.wait_exit(START_TIMEOUT_S) == 0, "\n".join(serve.err[-20:])
        assert "riffbridge: stopped while loading the model" in serve.out
        assert not any("riffbridge is running" in line for line in serve.out)
        assert not any(line.startswith("riffbridge: error") for line in serve.err)
        assert serve.leftovers() == []
        assert list(out.iterdir()) == []


def test_an_osc_port_in_use_stops_the_start_and_leaves_nothing(tmp_path: Path) -> None:
    """Fails after the model has loaded: the worker and the run folder must go too."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = tmp_path / "out"
        with serving(serve_args(out, port, free_udp_port()), tmp_path) as serve:
            assert serve.wait_exit(START_TIMEOUT_S) == 2
            errors = [line for line in serve.err if line.startswith("riffbridge: error:")]
            assert len(errors) == 1 and f"{port}" in errors[0] and "--osc-port" in errors[0]
            assert serve.err[-1] == errors[0]
            assert serve.leftovers() == []
            assert list(out.iterdir()) == []
