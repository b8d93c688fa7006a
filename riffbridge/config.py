"""Settings of `riffbridge serve`: defaults < TOML file (``--config``) < flags.

The keys of the file are the flags' names with ``_`` for ``-``. Every value is checked here, up
front, with an error that names the key, the value and what is allowed, so a typo in a config
file stops the start with one clear line instead of a traceback minutes later. Pure but for one
look at the disk: whether a MIDI map file that was named exists.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from riffbridge import params as P
from riffbridge import styles
from riffbridge.errors import ConfigError, ControlError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib



class ServeConfig(P.Record):
    """The settings of `riffbridge serve`: every param of the table that has a config key,
    named by that key (``prompt`` for the live ``prompt_a``). Immutable."""

    FIELDS: ClassVar[tuple[P.Param, ...]] = P.SETTINGS
    ATTR: ClassVar[str] = "key"

    @property
    def files(self) -> bool:
        return bool(self.out_dir.lower() != "none")

    @property
    def device_output(self) -> bool:
        return bool(self.audio_out.lower() != "none")

    def initial_state(self) -> dict[str, Any]:
        """The live params' start values, by state name (a setlist starts on its first pair)."""
        values = {p.name: getattr(self, p.key) for p in P.LIVE if p.key}
        if self.setlist:
            values["prompt_a"], values["prompt_b"] = self.setlist[0]
        return values


PATH_KEYS = ("model", "out_dir", "midi_map", "presets", "seed_dir")


def check_setting(key: str, value: Any, where: str) -> Any:
    """``value`` for the setting ``key``, checked; ``ConfigError`` saying where it came from."""
    try:
        return P.check(P.BY_KEY[key], value, key)
    except ControlError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_file(path: str | Path) -> dict[str, Any]:
    p = Path(path).expanduser()
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(P.BY_KEY))
    if unknown:
        guesses = [f"{key} -> {close[0]}" for key in unknown
                   if (close := difflib.get_close_matches(key, P.BY_KEY, n=1))]
        hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        raise ConfigError(f"config file {p}: unknown key(s) {', '.join(unknown)}{hint}; "
                          f"known: {', '.join(sorted(P.BY_KEY))}")
    return {name: check_setting(name, value, f"config file {p}") for name, value in data.items()}


def build(file: str | Path | None = None, flags: Mapping[str, Any] | None = None
          ) -> ServeConfig:
    """Defaults, then the file, then the flags that were given (None = not given)."""
    values: dict[str, Any] = {}
    named: dict[str, str] = {}  # how the error names a setting: by its flag or its file
    if file is not None:
        values.update(load_file(file))
        named.update((name, f"config file {Path(file).expanduser()}: {name}") for name in values)
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in P.BY_KEY:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = check_setting(name, value, P.BY_KEY[name].cli_flag or name)
        named[name] = P.BY_KEY[name].cli_flag or name
    for name in PATH_KEYS:
        value = values.get(name)
        if isinstance(value, str) and value.startswith("~"):
            # Only then: str(Path(...)) would turn a hub id's "/" into "\\" on Windows.
            values[name] = str(Path(value).expanduser())
    conf = ServeConfig(**values)
    if conf.osc_port == conf.reply_port:
        # Replies go to the sender's IP at the reply port: a sender on this machine would make
        # riffbridge answer itself, refuse its own answer as unknown, and so on without end.
        raise ConfigError(f"--osc-port and --reply-port are both {conf.osc_port}: riffbridge "
                          f"would send its replies to itself; pick another --reply-port")
    _check_midi(conf, named)
    try:
        styles.check_mix(conf.initial_state())
    except ControlError as exc:
        raise ConfigError(f"the style slots' settings cannot sound: {exc}") from None
    return conf


def _check_midi(conf: ServeConfig, named: Mapping[str, str]) -> None:
    """MIDI settings that only make sense together, checked at the start: the serve command
    reads the map and the clock only once a MIDI input opens, so without these checks a wrong
    map or a MIDI clock with no input would pass unnoticed."""
    if conf.midi_map and not Path(conf.midi_map).is_file():
        where = named.get("midi_map", "--midi-map")
        what = "is a folder, not a file" if Path(conf.midi_map).is_dir() else "not found"
        raise ConfigError(f"{where} {conf.midi_map} {what}; give a MIDI map TOML file "
                          "(docs/midi.md), or leave it out for the built-in map")
    if conf.clock == "midi" and not conf.midi_in:
        where = named.get("clock", "--clock")
        raise ConfigError(f"{where} midi needs --midi-in NAME: the MIDI clock comes in on a "
                          "MIDI input (riffbridge devices lists them), or use --clock internal")
