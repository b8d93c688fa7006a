"""Spectrogram parameters: the contract with the Riffusion weights (see shared/reference)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from riffbridge.errors import ConfigError

# EXIF tag numbers as the reference numbers them, so its images and ours read each other.
EXIF_TAGS: dict[str, int] = {
    "sample_rate": 11000,
    "stereo": 11005,
    "step_size_ms": 11010,
    "window_duration_ms": 11020,
    "padded_duration_ms": 11030,
    "num_frequencies": 11040,
    "min_frequency": 11050,
    "max_frequency": 11060,
    "power_for_image": 11070,
    "max_value": 11080,
}


@dataclass(frozen=True)
class SpectrogramParams:
    """How audio becomes a spectrogram image and back. Defaults are Riffusion's."""

    stereo: bool = False
    sample_rate: int = 44100
    step_size_ms: int = 10
    window_duration_ms: int = 100
    padded_duration_ms: int = 400
    num_frequencies: int = 512
    min_frequency: int = 0
    max_frequency: int = 10000
    power_for_image: float = 0.25
    max_value: float = 30e6

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate}")
        if not 0 <= self.min_frequency < self.max_frequency <= self.sample_rate / 2:
            raise ConfigError(
                f"need 0 <= min_frequency < max_frequency <= sample_rate/2, got "
                f"{self.min_frequency}..{self.max_frequency} Hz at {self.sample_rate} Hz")
        if self.win_length > self.n_fft or self.hop_length <= 0:
            raise ConfigError(
                f"window ({self.window_duration_ms} ms) must fit the padded FFT "
                f"({self.padded_duration_ms} ms) and the step must be positive")
        if self.num_frequencies <= 0 or self.power_for_image <= 0:
            raise ConfigError("num_frequencies and power_for_image must be positive")

    @property
    def hop_length(self) -> int:
        return int(self.step_size_ms / 1000.0 * self.sample_rate)

    @property
    def win_length(self) -> int:
        return int(self.window_duration_ms / 1000.0 * self.sample_rate)

    @property
    def n_fft(self) -> int:
        return int(self.padded_duration_ms / 1000.0 * self.sample_rate)

    @property
    def channels(self) -> int:
        return 2 if self.stereo else 1

    def to_exif(self) -> dict[int, Any]:
        return {tag: getattr(self, name) for name, tag in EXIF_TAGS.items()}

    @classmethod
    def from_exif(cls, exif: dict[int, Any]) -> SpectrogramParams:
        """Parameters stored in an image; tags that are absent keep their defaults."""
        kwargs: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, tag in EXIF_TAGS.items():
            if tag not in exif:
                continue
            value = exif[tag]
            kind = types[name]
            if kind == "bool":
                kwargs[name] = bool(value)
            elif kind == "int":
                kwargs[name] = int(value)
            else:
                kwargs[name] = float(value)
        return replace(cls(), **kwargs)
