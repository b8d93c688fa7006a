"""Presets: named prompt pairs and settings in a TOML file; recall and save.

File layout (any subset of the params; what a preset leaves out keeps its current value)::

    [presets."dusty funk"]
    prompt_a = "dusty funk drum break"
    prompt_b = "deep house chords"
    alpha = 0.0
    bpm = 96.0

Names of the keys are the state field names (``riffbridge osc-spec`` lists them as ``param``).
Saving rewrites the whole file atomically (``riffbridge.fsutil``: a temporary file, then rename).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from riffbridge.errors import ConfigError, ControlError
from riffbridge.fsutil import atomic_write
from riffbridge.state import ApplyPreset, EngineState, coerce

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)


def _check_values(name: str, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        try:
            checked[key] = coerce(key, value)
        except ControlError as exc:
            raise ConfigError(f"{where}: preset {name!r}: {exc}") from None
    return checked


def load_presets(path: Path) -> dict[str, dict[str, Any]]:
    """The presets in ``path`` (an empty dict when the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read presets from {path}: {exc}") from None
    table = data.get("presets", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [presets] must be a table of named presets")
    presets: dict[str, dict[str, Any]] = {}
    for name, values in table.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: preset {name!r} must be a table of settings")
        presets[name] = _check_values(name, values, str(path))
    return presets


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot store the non-finite number {value!r} in a preset")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    raise ConfigError(f"cannot store {type(value).__name__} {value!r} in a preset")


def dump_presets(presets: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["# riffbridge presets: recall with /rb/preset NAME, store with /rb/preset/save NAME",
             ""]
    for name, values in presets.items():
        lines.append(f"[presets.{json.dumps(name, ensure_ascii=False)}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


class PresetStore:
    """Presets kept in one TOML file. Thread-safe; every save rewrites the file atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._presets = load_presets(self.path)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._presets)

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._presets:
                known = ", ".join(sorted(self._presets)) or "none yet"
                raise ControlError(f"no preset named {name!r}; known: {known}")
            return dict(self._presets[name])

    def recall(self, name: str) -> ApplyPreset:
        """The command that applies preset ``name``."""
        return ApplyPreset(name, tuple(self.get(name).items()))

    def save(self, name: str, state: EngineState) -> None:
        """Store every param of ``state`` as preset ``name`` (replacing one of that name)."""
        values = state.params()
        with self._lock:
            presets = dict(self._presets)
            presets[name] = values
            text = dump_presets(presets)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.path, text.encode("utf-8"))
            except OSError as exc:
                raise ControlError(f"cannot save preset {name!r} to {self.path}: "
                                   f"{exc.strerror or exc}") from None
            self._presets = presets
        log.info("saved preset %r to %s", name, self.path)
