"""The pieces of one loaded model, a plain holder that every model source fills in.

Its own module so that the loaders (``model``) and the tiny test model (``tiny``) can both
build one without importing each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
