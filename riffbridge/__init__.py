"""riffbridge: play the Riffusion model like an instrument."""

__version__ = "0.1.0"
