"""Circular padding on the time (width) axis of every Conv2d, so images tile horizontally.

The frequency (height) axis keeps zero padding. Switchable per render: the original padding is
remembered on each conv and restored when the switch goes off.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _circular_time_forward(self: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor | None) -> torch.Tensor:
    ph, pw = self._riff_padding  # type: ignore[misc]
    if pw:
        x = F.pad(x, (pw, pw, 0, 0), mode="circular")
    if ph:
        x = F.pad(x, (0, 0, ph, ph), mode="constant")
    return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def set_time_tiling(module: nn.Module, enabled: bool) -> int:
    """Switch circular time-axis padding on or off for every Conv2d; returns how many changed."""
    changed = 0
    for conv in module.modules():
        if not isinstance(conv, nn.Conv2d) or isinstance(conv.padding, str):
            continue
        padding: Any = conv.padding
        if enabled and not hasattr(conv, "_riff_padding"):
            if padding == (0, 0) or conv.padding_mode != "zeros":
                continue
            conv._riff_padding = tuple(padding)  # type: ignore[assignment]
            conv._conv_forward = _circular_time_forward.__get__(conv)  # type: ignore[method-assign]
            changed += 1
        elif not enabled and hasattr(conv, "_riff_padding"):
            del conv._conv_forward
            del conv._riff_padding
            changed += 1
    return changed
