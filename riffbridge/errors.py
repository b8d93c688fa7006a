"""The exception tree. Messages say what was wrong, the value received, and what to do."""

from __future__ import annotations


class RiffbridgeError(Exception):
    """Base of every error riffbridge raises on purpose (an expected failure, no stack trace)."""


class ConfigError(RiffbridgeError):
    """A setting, flag or parameter value is invalid."""


class AudioFileError(RiffbridgeError):
    """An audio or image file cannot be read or written."""


class RenderError(RiffbridgeError):
    """The model could not be loaded or a render failed."""


class ModelNotFoundError(RenderError):
    """The model weights are not where we looked."""


class ControlError(RiffbridgeError):
    """A control message (OSC, MIDI) is invalid."""


class DeviceError(RiffbridgeError):
    """An audio, MIDI or compute (GPU) device cannot be opened or used."""


class OutputError(RiffbridgeError):
    """A result cannot be written (disk full, no permission, bad folder)."""
