"""Shared test fixtures: the real music clips in ../shared/audio and the tools beside them; an
OSC server on loopback with a listener for its replies (the helpers are in osc_helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from osc_helpers import Listener

from riffbridge.control.hub import Hub
from riffbridge.control.osc_server import OscServer

SHARED = Path(__file__).resolve().parents[2] / "shared"

# Two cores here: keep torch from oversubscribing when tests spawn helpers.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "audio").is_dir():
        pytest.fail(f"{SHARED} is missing: clone riffbridge next to the project's shared/ folder")
    return SHARED


@pytest.fixture(scope="session")
def clips(shared_dir: Path) -> list[Path]:
    found = sorted((shared_dir / "audio").glob("*.wav"))
    assert found, f"no clips in {shared_dir / 'audio'}"
    return found


@pytest.fixture
def replies() -> Iterator[Listener]:
    """Where the server's replies go."""
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture
def hub() -> Hub:
    return Hub(pattern_names=["four-on-the-floor", "breakbeat"])


@pytest.fixture
def server(hub: Hub, replies: Listener) -> Iterator[OscServer]:
    """An OSC server on an ephemeral loopback port, replying to ``replies``."""
    with OscServer(hub, host="127.0.0.1", port=0, reply_port=replies.port) as srv:
        yield srv
