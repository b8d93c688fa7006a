"""Settings of `riffbridge serve`: defaults < TOML file (``--config``) < flags. Pure.

The keys of the file are the flags' names with ``_`` for ``-``. Every value is checked here, up
front, with an error that names the key, the value and what is allowed, so a typo in a config
file stops the start with one clear line instead of a traceback minutes later.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from riffbridge.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_MODEL = "riffusion/riffusion-model-v1"


@dataclass(frozen=True)
class ServeConfig:
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    cuda_graphs: bool = False  # replay the UNet step as a CUDA graph (CUDA only)
    audio_out: str = "default"  # a device name or index, "default", or "none"
    out_dir: str = "out"  # "none": no files
    bpm: float = 120.0
    bars: int = 2
    beats_per_bar: int = 4
    steps: int = 50
    prompt: str = "funk drum groove, slap bass"
    prompt_b: str = "jazz piano trio, brushed drums"
    seed: int = 42
    seed_b: int = 43
    pattern: str = "four-on-the-floor"
    quantum: str = "bar"
    xfade: float = 0.05
    auto: float = 0.0
    clock: str = "internal"
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000
    reply_port: int = 9001
    midi_in: str = ""  # "" = no MIDI; "virtual" = a virtual input port called riffbridge
    midi_api: str = "auto"
    midi_map: str = ""
    presets: str = ""
    seed_dir: str = ""
    cache_mb: float = 512.0
    quality: str = "fast"
    blocksize: int = 512
    grid: int = 8
    autoplay: bool = True
    render_timeout: float = 300.0
    setlist: tuple[tuple[str, str], ...] = ()

    @property
    def files(self) -> bool:
        return self.out_dir.lower() != "none"

    @property
    def device_output(self) -> bool:
        return self.audio_out.lower() != "none"


_CHOICES = {
    "dtype": ("auto", "fp16", "bf16", "fp32"),
    "quantum": ("beat", "bar", "loop"),
    "clock": ("internal", "midi", "link"),
    "midi_api": ("auto", "jack", "default"),
    "quality": ("fast", "high"),
}
_RANGES: dict[str, tuple[float, float]] = {
    "bpm": (40.0, 240.0), "bars": (1, 16), "beats_per_bar": (1, 16), "steps": (1, 500),
    "seed": (0, 2**31 - 1), "seed_b": (0, 2**31 - 1), "xfade": (0.0, 10.0),
    "auto": (-1.0, 1.0), "osc_port": (1, 65535), "reply_port": (1, 65535),
    "cache_mb": (16.0, 1_000_000.0), "blocksize": (32, 8192), "grid": (1, 64),
    "render_timeout": (5.0, 86_400.0),
}
PATH_KEYS = ("model", "out_dir", "midi_map", "presets", "seed_dir")
_FIELDS = {f.name: f for f in fields(ServeConfig)}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _check(name: str, value: Any, where: str) -> Any:
    default = getattr(ServeConfig, name, None)
    if name == "setlist":
        return _setlist(value, where)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        if isinstance(default, int) and not float(value).is_integer():
            raise ConfigError(f"{where}: {name} must be a whole number, got {value!r}")
        lo, hi = _RANGES.get(name, (-math.inf, math.inf))
        if not lo <= value <= hi:
            raise ConfigError(f"{where}: {name} must be in [{lo:g}, {hi:g}], got {value!r}")
        return int(value) if isinstance(default, int) else float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {name} must be a string, got {value!r}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"{where}: {name} must be one of {', '.join(_CHOICES[name])}, "
                          f"got {value!r}")
    if name == "device" and not _DEVICE.fullmatch(value):
        # Checked here, not when the render worker loads the model seconds later.
        raise ConfigError(f"{where}: device must be auto, cpu, cuda, cuda:N or mps, "
                          f"got {value!r}")
    return value


def _setlist(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: setlist must be a list of [prompt_a, prompt_b] pairs, "
                          f"got {value!r}")
    pairs = []
    for i, pair in enumerate(value):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(p, str) and p.strip() for p in pair)):
            raise ConfigError(f"{where}: setlist entry {i + 1} must be a pair of prompts "
                              f"[\"a\", \"b\"], got {pair!r}")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


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
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        guesses = [f"{key} -> {close[0]}" for key in unknown
                   if (close := difflib.get_close_matches(key, _FIELDS, n=1))]
        hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        raise ConfigError(f"config file {p}: unknown key(s) {', '.join(unknown)}{hint}; "
                          f"known: {', '.join(sorted(_FIELDS))}")
    return {name: _check(name, value, f"config file {p}") for name, value in data.items()}


def build(file: str | Path | None = None, flags: Mapping[str, Any] | None = None
          ) -> ServeConfig:
    """Defaults, then the file, then the flags that were given (None = not given)."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(load_file(file))
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _check(name, value, "--" + name.replace("_", "-"))
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
    if conf.cuda_graphs and conf.device in ("cpu", "mps"):
        raise ConfigError(f"cuda_graphs needs a CUDA device, device is {conf.device}: "
                          "drop --cuda-graphs or use --device cuda")
    return conf
