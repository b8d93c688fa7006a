"""Shared test fixtures: the real music clips in ../shared/audio and the tools beside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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
