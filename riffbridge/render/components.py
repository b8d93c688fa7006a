"""The pieces of one loaded model, a plain holder that every model source fills in.

Its own module so that the loaders (``model``) and the tiny test model (``tiny``) can both
build one without importing each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# diffusers' ModelMixin.to() warns "There are modules in X that should be kept in float32: []"
# on every cast with a dtype: it tests ``fp32_modules is not None`` after ``or []``, so the
# warning fires even when the list is empty (diffusers 0.3x-0.42). With an empty list there is
# nothing to keep in fp32 and nothing to fix, so exactly that message is dropped while we cast;
# a non-empty list (a model that does need fp32 parts) still warns.
_DIFFUSERS_MODELING = "diffusers.models.modeling_utils"
_EMPTY_FP32_WARNING = "that should be kept in float32: []."


def _not_the_empty_fp32_warning(record: logging.LogRecord) -> bool:
    return _EMPTY_FP32_WARNING not in record.getMessage()


@contextlib.contextmanager
def _quiet_empty_fp32_warning() -> Iterator[None]:
    logger = logging.getLogger(_DIFFUSERS_MODELING)
    logger.addFilter(_not_the_empty_fp32_warning)
    try:
        yield
    finally:
        logger.removeFilter(_not_the_empty_fp32_warning)


@dataclass
class Components:
    """The pieces of one loaded model. Owned by one Renderer; not shared across threads."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    name: str

    def to(self, device: Any, dtype: Any) -> Components:
        with _quiet_empty_fp32_warning():
            for module in (self.unet, self.vae, self.text_encoder):
                module.to(device=device, dtype=dtype)
        return self

    def save(self, folder: str | Path) -> Path:
        """Write a diffusers-layout folder that ``load_components`` reads back."""
        folder = Path(folder)
        for sub in ("unet", "vae", "text_encoder"):
            getattr(self, sub).save_pretrained(folder / sub)
        self.tokenizer.save_pretrained(folder / "tokenizer")
        self.scheduler.save_pretrained(folder / "scheduler")
        (folder / "model_index.json").write_text(json.dumps({
            "_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", type(self.scheduler).__name__],
        }, indent=1))
        return folder
