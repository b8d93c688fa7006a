"""The audio-device lookup boundary: PortAudio's output devices (through sounddevice) as frozen
``AudioDevice`` values, and finding one by index or name.

sounddevice is imported inside the functions: importing it raises OSError when the PortAudio
library is missing, and that must become a ``DeviceError`` that says what to install, not a
failure of ``import riffbridge``.

PortAudio reads its device list once, when sounddevice is first imported; a device plugged in or
a JACK server started later shows up in the next process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from riffbridge.errors import DeviceError

INSTALL_PORTAUDIO = ("install the PortAudio library: `apt-get install libportaudio2` "
                     "(Debian/Ubuntu) or `brew install portaudio` (macOS)")
PORTAUDIO_MISSING = "cannot load PortAudio"
NO_OUTPUTS = ("no audio output devices found (no sound card, or no sound server such as "
              "PulseAudio, PipeWire or JACK running); use --audio-out none to write files only")


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device that can play audio."""

    index: int
    name: str
    hostapi: str
    max_output_channels: int
    default_samplerate: float
    is_default: bool

    def label(self) -> str:
        return f"{self.index} {self.name!r} ({self.hostapi})"


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # "PortAudio library not found"
        raise DeviceError(f"{PORTAUDIO_MISSING} ({exc}): {INSTALL_PORTAUDIO}") from None
    return sounddevice


def _default_output_index(sd: Any) -> int | None:
    try:
        info = sd.query_devices(kind="output")
    except sd.PortAudioError:  # no default output device
        return None
    index = info.get("index") if isinstance(info, dict) else None
    return int(index) if index is not None and index >= 0 else None


def list_outputs() -> list[AudioDevice]:
    """Every device with output channels, in PortAudio's order (may be empty)."""
    sd = _sounddevice()
    try:
        devices = list(sd.query_devices())
        hostapis = [str(h["name"]) for h in sd.query_hostapis()]
        default = _default_output_index(sd)
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    return [
        AudioDevice(
            index=index, name=str(d["name"]),
            hostapi=hostapis[d["hostapi"]] if 0 <= d["hostapi"] < len(hostapis) else "?",
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]),
            is_default=index == default)
        for index, d in enumerate(devices) if d["max_output_channels"] > 0
    ]


def _available(outputs: list[AudioDevice]) -> str:
    return "; ".join(d.label() for d in outputs)


def find_output(spec: str | int | None) -> AudioDevice:
    """The output device for ``spec``: None or "default", an index (int or digit string), or a
    name: an exact match, else the one name containing ``spec`` (case-insensitive).

    Several exact matches (one device under several host APIs, as on Windows) prefer the one on
    the default device's host API. Anything else ambiguous, missing or without output channels
    raises ``DeviceError`` naming the value and the devices there are.
    """
    outputs = list_outputs()
    if not outputs:
        raise DeviceError(NO_OUTPUTS)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "default"):
        for device in outputs:
            if device.is_default:
                return device
        raise DeviceError("PortAudio reports no default audio output; pass --audio-out NAME "
                          f"or INDEX, one of: {_available(outputs)}")
    if isinstance(spec, int) or spec.strip().isdigit():
        return _by_index(int(spec), outputs)
    return _by_name(spec, outputs)


def _by_index(index: int, outputs: list[AudioDevice]) -> AudioDevice:
    for device in outputs:
        if device.index == index:
            return device
    raise DeviceError(f"no audio output device with index {index}; outputs: "
                      f"{_available(outputs)} (`riffbridge devices` lists them)")


def _by_name(name: str, outputs: list[AudioDevice]) -> AudioDevice:
    exact = [d for d in outputs if d.name == name] or \
            [d for d in outputs if d.name.lower() == name.lower()]
    if len(exact) > 1:
        default_api = next((d.hostapi for d in outputs if d.is_default), None)
        exact = [d for d in exact if d.hostapi == default_api] or exact
    if exact:
        if len(exact) == 1:
            return exact[0]
        candidates = exact
    else:
        candidates = [d for d in outputs if name.lower() in d.name.lower()]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise DeviceError(f"no audio output device matches {name!r}; outputs: "
                              f"{_available(outputs)} (`riffbridge devices` lists them; "
                              "--audio-out none writes files only)")
    raise DeviceError(f"audio output {name!r} is ambiguous, it matches: {_available(candidates)}; "
                      "pass more of the name or the index")
