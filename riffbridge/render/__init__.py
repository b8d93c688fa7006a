"""The renderer: Riffusion interpolation ("riffuse") on diffusers components.

Heavy imports (torch, diffusers) live in the submodules; import them where they are used.
"""

from __future__ import annotations

__all__ = ["ImageRef", "Renderer", "RiffuseJob"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from riffbridge.render import riffuse

        return getattr(riffuse, name)
    raise AttributeError(name)
