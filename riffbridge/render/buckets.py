"""Width buckets: a loop of any tempo renders at one of a few widths, and keeps its exact columns.

Every new input width costs a CUDA-graph recording (a few steps' time) and, compiled, a compile
(about a minute cold). A loop's render width follows its length (100 columns a second, a
multiple of 8), so a tempo sweep would bring a new width at almost every step. Buckets bound
them: a loop of W columns renders at the smallest bucket B >= W, B - W extra latent columns
padded on both sides with the loop's own wrap-around (what a circular loop has there), and
after every UNet step only the loop's own W columns are kept (the padding is rebuilt from them
for the next step). The latents, the scheduler and the VAE decode stay at W columns, so the
image is exactly the loop's W columns, circular as before, and loop shaping lands it on the
exact sample count unchanged.

The buckets are multiples of 64 columns (8 latent columns: the UNet's three halvings come out
even) of the form m * 2**e with m in 4..7, plus 64, 128 and 192 below them: at most 25 % extra
columns above 256, and 14 widths cover every 1-, 2- and 4-bar loop from 60 to 200 BPM.
"""

from __future__ import annotations

from typing import Any

from riffbridge.errors import ConfigError

UNIT = 64  # image columns per bucket unit
LATENT_FACTOR = 8


def bucket_units() -> list[int]:
    """The bucket sizes in units, ascending, as far as any loop needs (60 s: 6000 columns)."""
    units = [1, 2, 3]
    e = 0
    while units[-1] * UNIT < 8192:
        units += [m << e for m in (4, 5, 6, 7)]
        e += 1
    return units


BUCKETS: tuple[int, ...] = tuple(u * UNIT for u in bucket_units())


def bucket_width(width: int) -> int:
    """The smallest bucket >= ``width`` (image columns, a positive multiple of 8)."""
    if not isinstance(width, int) or width <= 0 or width % LATENT_FACTOR:
        raise ConfigError(f"width must be a positive multiple of {LATENT_FACTOR}, got {width}")
    for bucket in BUCKETS:
        if bucket >= width:
            return bucket
    raise ConfigError(f"width {width} is wider than the widest bucket ({BUCKETS[-1]}): render "
                      "a shorter loop or set width_buckets off")


def padding(width: int, bucket: int) -> tuple[int, int]:
    """Latent columns (left, right) that pad ``width`` image columns to ``bucket``."""
    extra = (bucket - width) // LATENT_FACTOR
    return extra // 2, extra - extra // 2


def wrap_index(latent_width: int, left: int, right: int) -> list[int]:
    """The latent columns of the padded input: the loop's own columns read circularly from
    ``-left`` to ``latent_width + right`` (a padding wider than the loop repeats it)."""
    return [(k - left) % latent_width for k in range(latent_width + left + right)]


def pad_latents(latents: Any, left: int, right: int) -> Any:
    """(..., W/8) latents padded circularly to (..., W/8 + left + right). A torch tensor."""
    if not left and not right:
        return latents
    import torch

    key = (latents.shape[-1], left, right, str(latents.device))
    index = _INDEX.get(key)
    if index is None:  # once per shape: a host-to-GPU copy every step would wait on the GPU
        index = _INDEX[key] = torch.tensor(wrap_index(latents.shape[-1], left, right),
                                           device=latents.device)
    return latents.index_select(-1, index)


_INDEX: dict[tuple[int, int, int, str], Any] = {}


def crop_latents(padded: Any, left: int, right: int) -> Any:
    """The loop's own columns of a padded UNet output."""
    if not left and not right:
        return padded
    return padded[..., left:padded.shape[-1] - right]


def extra_fraction(width: int) -> float:
    """Extra columns a bucket renders, as a fraction of the loop's own."""
    return bucket_width(width) / width - 1.0
