"""The page in a real browser: Debian's chromium, headless, driven by Playwright, on the page of a
running `riffbridge serve` (tiny model, no audio device: the paced stream keeps the clock).

Set RIFFBRIDGE_WEB_SCREENSHOT=docs/web.png to keep the screenshot the test takes (the one in
the docs comes from here).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pythonosc.udp_client import SimpleUDPClient
from test_serve import CLIP_TIMEOUT_S, Inbox, Serve, free_udp_port, serve_args, serving

CHROMIUM = os.environ.get("RIFFBRIDGE_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed: pip install -e .[dev]")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no chromium at {CHROMIUM}: "
                       "apt-get install chromium (or set RIFFBRIDGE_CHROMIUM)"),
]


def free_tcp_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def page_args(out_dir: Path, osc_port: int, reply_port: int, web_port: int,
              *extra: str) -> list[str]:
    args = [a for a in serve_args(out_dir, osc_port, reply_port, *extra) if a != "--no-web"]
    return [*args, "--web-port", str(web_port)]


def page_url(proc: Serve) -> str:
    proc.wait_running()
    line = proc.out[proc.wait_line("  page ", 5)]
    return line.split(None, 1)[1]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_the_page_plays_and_follows_a_running_engine(tmp_path: Path, browser: Any) -> None:
    inbox = Inbox()
    osc_port = free_udp_port()
    args = page_args(tmp_path / "out", osc_port, inbox.port, free_tcp_port())
    with serving(args, tmp_path) as proc:
        url = page_url(proc)
        assert url.startswith("http://127.0.0.1:")
        osc = SimpleUDPClient("127.0.0.1", osc_port)
        osc.send_message("/rb/subscribe", [])
        mark = inbox.mark()
        osc.send_message("/rb/ping", [])
        inbox.wait("/rb/pong", mark)

        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url)
        alpha = page.locator("#ctl-alpha")
        alpha.wait_for()
        assert page.locator("#conn.on").count() == 1

        # The page's control -> the engine -> OSC subscribers.
        mark = inbox.mark()
        alpha.fill("0.5")
        assert inbox.wait("/rb/alpha", mark, where=lambda a: a == [0.5])
        # A click on the style map is the same knob: three quarters of the way to B.
        page.locator("#map").scroll_into_view_if_needed()  # the controls are a long column
        box = page.locator("#map").bounding_box()
        pad = 30 * box["width"] / 768
        mark = inbox.mark()
        page.mouse.click(box["x"] + pad + 0.75 * (box["width"] - 2 * pad),
                         box["y"] + box["height"] / 2)
        moved = inbox.wait("/rb/alpha", mark)
        assert abs(moved[0] - 0.75) < 0.01, moved

        # OSC -> the page's control moves.
        osc.send_message("/rb/alpha", 0.25)
        page.wait_for_function("() => document.getElementById('ctl-alpha').value === '0.25'",
                               timeout=5000)
        assert page.locator("#num-alpha").input_value() == "0.25"

        # A loop sounds: its picture shows and the playhead moves through it in time.
        page.wait_for_function("() => document.getElementById('specimg').dataset.serial",
                               timeout=CLIP_TIMEOUT_S * 1000)
        page.wait_for_function("() => document.getElementById('counter').dataset.beat",
                               timeout=5000)
        beat0 = float(page.locator("#counter").get_attribute("data-beat") or "nan")
        time.sleep(1.0)
        beat1 = float(page.locator("#counter").get_attribute("data-beat") or "nan")
        assert 1.2 < beat1 - beat0 < 3.5, (beat0, beat1)  # 120 BPM: 2 beats a second
        phases = set()
        for _ in range(5):
            phases.add(page.locator("#playhead").get_attribute("data-phase"))
            time.sleep(0.3)
        assert len(phases) >= 4, phases
        assert "bar " in page.locator("#counter").inner_text()

        # A switch to another loop changes the picture.
        before = page.locator("#specimg").get_attribute("data-serial")
        first = page.request.get(f"{url.rstrip('/')}/spectrogram/{before}.png").body()
        mark = inbox.mark()
        osc.send_message("/rb/alpha", 1.0)
        inbox.wait("/rb/playing", mark, timeout=CLIP_TIMEOUT_S, where=lambda a: a[0] == 1.0)
        page.wait_for_function(
            f"() => document.getElementById('specimg').dataset.serial !== '{before}'",
            timeout=10000)
        after = page.locator("#specimg").get_attribute("data-serial")
        second = page.request.get(f"{url.rstrip('/')}/spectrogram/{after}.png").body()
        assert first[:8] == second[:8] == b"\x89PNG\r\n\x1a\n" and first != second
        assert "alpha 1" in page.locator("#sounding").inner_text()

        # Bad input from the page is answered on the page, like /rb/error to an OSC sender.
        page.locator("#num-bpm").fill("999")
        page.locator("#num-bpm").press("Enter")
        page.wait_for_function("() => document.getElementById('errors').textContent"
                               ".includes('bpm must be in [40, 240], got 999')", timeout=5000)

        # The XY surface (issue 13): the map turns into the surface, follows /rb/xy from OSC,
        # and a click on it is /rb/xy from the page.
        osc.send_message("/rb/xy", [0.25, 0.75])
        page.wait_for_function("() => document.getElementById('map').dataset.point"
                               " === '0.250,0.750'", timeout=5000)
        assert page.locator("#map").get_attribute("data-mode") == "xy"
        page.locator("#map").scroll_into_view_if_needed()
        box = page.locator("#map").bounding_box()
        scale = box["width"] / 768
        pad, size = 30 * scale, (300 - 60) * scale
        left = (box["width"] - size) / 2
        mark = inbox.mark()
        page.mouse.click(box["x"] + left + 0.5 * size, box["y"] + pad + (1 - 0.125) * size)
        inbox.wait("/rb/xy", mark,
                   where=lambda a: abs(a[0] - 0.5) < 0.01 and abs(a[1] - 0.125) < 0.01)
        page.wait_for_function("() => document.getElementById('map').dataset.point"
                               ".startsWith('0.5')", timeout=5000)
        # A shift-click on the surface cues that point on the cue bus (issue 16) and leaves the
        # master where it is: the engine renders it and says so; "commit cue" moves the master.
        mark = inbox.mark()
        page.keyboard.down("Shift")
        page.mouse.click(box["x"] + left + 0.75 * size, box["y"] + pad + (1 - 0.25) * size)
        page.keyboard.up("Shift")
        page.wait_for_function("() => document.getElementById('map').dataset.cue"
                               ".startsWith('0.7')", timeout=5000)
        cx, cy = (float(v) for v in page.locator("#map").get_attribute("data-cue").split(","))
        assert abs(cx - 0.75) < 0.01 and abs(cy - 0.25) < 0.01
        inbox.wait("/rb/cue/playing/xy", mark, timeout=CLIP_TIMEOUT_S,
                   where=lambda a: abs(a[0] - cx) < 1e-3 and abs(a[1] - cy) < 1e-3)
        page.wait_for_function("() => document.getElementById('cuelabel').textContent"
                               ".startsWith('cue: xy 0.7')", timeout=5000)
        assert page.locator("#map").get_attribute("data-point").startswith("0.5")
        mark = inbox.mark()
        page.locator("#commit").click()
        inbox.wait("/rb/xy", mark, where=lambda a: abs(a[0] - cx) < 1e-3 and abs(a[1] - cy) < 1e-3)
        page.wait_for_function("() => document.getElementById('map').dataset.cue === ''",
                               timeout=5000)
        osc.send_message("/rb/alpha", 1.0)  # back on the A/B path: the line again
        page.wait_for_function("() => document.getElementById('map').dataset.mode === 'alpha'",
                               timeout=5000)

        # The cue buttons (issue 16) go the same way: a commit with nothing cued is refused by
        # the engine, and the page shows why.
        page.locator("#commit").click()
        page.wait_for_function("() => document.getElementById('errors').textContent"
                               ".includes('nothing is on the cue bus')", timeout=10000)

        shot = tmp_path / "web.png"
        page.screenshot(path=str(shot), full_page=True)
        keep = os.environ.get("RIFFBRIDGE_WEB_SCREENSHOT")
        if keep:
            shutil.copyfile(shot, keep)
        page.close()
    inbox.close()
