"""Serialise a patcher the way the committed files store it: deterministic JSON."""

from __future__ import annotations

import json
from typing import Any


def dumps(patcher: dict[str, Any]) -> str:
    return json.dumps(patcher, indent="\t", ensure_ascii=False) + "\n"
