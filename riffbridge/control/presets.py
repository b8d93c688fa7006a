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

import difflib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from riffbridge import params as P
from riffbridge.errors import ConfigError, ControlError
from riffbridge.fsutil import atomic_write
from riffbridge.state import ApplyPreset, EngineState, coerce

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

HEADER = "# riffbridge presets: recall with /rb/preset NAME, store with /rb/preset/save NAME\n\n"
CLOSE_MATCHES = 5  # how many near names a "no preset named" error offers


def _check_values(name: str, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        try:
            checked[key] = coerce(key, value)
        except ControlError as exc:
            raise ConfigError(f"{where}: preset {name!r}: {exc}") from None
    return checked


def parse_presets(text: str, where: str) -> dict[str, dict[str, Any]]:
    """The presets in the TOML ``text``, every value checked; ``ConfigError`` naming ``where``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read presets from {where}: {exc}") from None
    table = data.get("presets", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [presets] must be a table of named presets")
    presets: dict[str, dict[str, Any]] = {}
    for name, values in table.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: preset {name!r} must be a table of settings")
        presets[name] = _check_values(name, values, where)
    return presets


def load_presets(path: Path) -> dict[str, dict[str, Any]]:
    """The presets in ``path`` (an empty dict when the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read presets from {path}: {exc}") from None
    return parse_presets(text, str(path))


def dump_presets(presets: Mapping[str, Mapping[str, Any]]) -> str:
    """The presets file's text. tomli-w writes it, so every name and string is escaped the way
    TOML wants (a hand-made writer once let a DEL character through and broke the file)."""
    return HEADER + tomli_w.dumps({"presets": {name: dict(values)
                                               for name, values in presets.items()}})


def _verified(presets: Mapping[str, Mapping[str, Any]], name: str, path: Path) -> bytes:
    """The file's bytes, after checking that they read back as ``presets``: a save must never
    leave a file that the next start cannot read."""
    try:
        text = dump_presets(presets)
        data = text.encode("utf-8")
        back = parse_presets(text, str(path))
    except (TypeError, ValueError, ConfigError) as exc:  # UnicodeError is a ValueError
        raise ControlError(f"cannot save preset {name!r}: its values cannot be stored in "
                           f"{path} ({exc}); {path} is unchanged") from None
    if back != {key: dict(values) for key, values in presets.items()}:
        changed = sorted(key for key in presets if back.get(key) != dict(presets[key]))
        raise ControlError(f"cannot save preset {name!r}: preset(s) {', '.join(map(repr, changed))}"
                           f" would not read back the same from {path}; {path} is unchanged")
    return data


class PresetStore:
    """Presets kept in one TOML file. Thread-safe; every save rewrites the file atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._presets = load_presets(self.path)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._presets)

    def _not_found(self, name: str) -> ControlError:
        """A short answer however many presets there are: the count and a few near names."""
        known = sorted(self._presets)
        if not known:
            return ControlError(f"no preset named {name!r}: {self.path} holds none yet; "
                                "save one with /rb/preset/save NAME")
        if len(known) <= CLOSE_MATCHES:
            return ControlError(f"no preset named {name!r}; known: {', '.join(known)}")
        close = difflib.get_close_matches(name, known, n=CLOSE_MATCHES)
        hint = f"; closest: {', '.join(close)}" if close else ""
        return ControlError(f"no preset named {name!r} among the {len(known)} in "
                            f"{self.path}{hint}")

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._presets:
                raise self._not_found(name)
            return dict(self._presets[name])

    def recall(self, name: str) -> ApplyPreset:
        """The command that applies preset ``name``."""
        return ApplyPreset(name, tuple(self.get(name).items()))

    def save(self, name: str, state: EngineState) -> None:
        """Store every param of ``state`` as preset ``name`` (replacing one of that name).

        The new file is checked to read back as the presets before it replaces the old one;
        ``ControlError`` (the old file kept) otherwise, or when the disk refuses it."""
        P.check_name("preset name", name)
        values = state.params()
        with self._lock:
            presets = dict(self._presets)
            presets[name] = values
            data = _verified(presets, name, self.path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.path, data)
            except OSError as exc:
                raise ControlError(f"cannot save preset {name!r} to {self.path}: "
                                   f"{exc.strerror or exc}") from None
            self._presets = presets
        log.info("saved preset %r to %s", name, self.path)
