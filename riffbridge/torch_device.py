"""The compute device choice, one rule for the renderer and the spectrogram converter.

``auto`` picks cuda > mps > cpu and logs the pick; an explicit device must be there. Asking for
a GPU that is not there is an error that says what to do, never a silent fall back to the CPU.
torch is imported when a device is resolved, not when this module is, so ``riffbridge doctor``
can import it on a machine without torch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from riffbridge.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

NAMES = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda > mps > cpu (logged); an explicit name or torch.device must exist.

    An unknown name is a ConfigError; a CUDA or MPS device this machine lacks is a DeviceError.
    """
    import torch

    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            picked = "cuda"
        elif _mps_available():
            picked = "mps"
        else:
            picked = "cpu"
        log.info("device auto -> %s", picked)
        return torch.device(picked)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}: use {NAMES}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(dev)!r} asked for, but CUDA is not available here "
                              "(torch build or driver): use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {str(dev)!r} does not exist, this machine has {count} "
                              f"GPU(s): use --device cuda:0 .. cuda:{count - 1}, or cpu")
    elif dev.type == "mps" and not _mps_available():
        raise DeviceError(f"device {str(dev)!r} asked for, but MPS is not available here: "
                          "use --device cpu or auto")
    return dev
