"""The model-loading boundary: hub id, local diffusers folder, single checkpoint file, "tiny".

Also the explicit device and dtype choice: ``auto`` picks cuda > mps > cpu and says so; asking
for a device that is not there is an error, never a silent fallback.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riffbridge.errors import ConfigError, DeviceError, ModelNotFoundError, RenderError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "riffusion/riffusion-model-v1"
CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "sd15"
DTYPES = ("auto", "fp16", "bf16", "fp32")


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


def resolve_device(name: str = "auto") -> Any:
    """``auto`` -> cuda > mps > cpu (logged); an explicit device must exist."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            picked = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            picked = "mps"
        else:
            picked = "cpu"
        log.info("device auto -> %s", picked)
        return torch.device(picked)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cuda, cuda:N, mps or cpu") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for but CUDA is not available here "
                          "(torch build or driver): use --device cpu or auto")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise DeviceError(f"device {name!r} asked for but MPS is not available here")
    return device


def resolve_dtype(name: str, device: Any) -> Any:
    """``auto``: fp16 on CUDA and MPS, fp32 on CPU. fp16 on the CPU is refused (too slow)."""
    import torch

    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}")
    if name == "auto":
        name = "fp32" if device.type == "cpu" else "fp16"
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("dtype fp16 on the CPU is not supported: use fp32 or bf16")
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


def _hf_cache_dir() -> Path:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return Path(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return Path(os.path.expanduser("~/.cache/huggingface/hub"))


def _not_found(model: str, where: str, detail: str = "") -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model {model!r} not found (looked in {where}{'; ' + detail if detail else ''}). "
        f"Get it with `huggingface-cli download {DEFAULT_MODEL}` (about 4 GB), or pass "
        "--model PATH (a diffusers folder or a .ckpt/.safetensors file), or --model tiny "
        "for a plumbing check with random weights")


def _load_folder(folder: Path, name: str) -> Components:
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    sched_cfg_path = folder / "scheduler" / "scheduler_config.json"
    sched_cls = getattr(diffusers, json.loads(sched_cfg_path.read_text())["_class_name"])
    return Components(
        unet=UNet2DConditionModel.from_pretrained(folder / "unet").eval().requires_grad_(False),
        vae=AutoencoderKL.from_pretrained(folder / "vae").eval().requires_grad_(False),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder")
        .eval().requires_grad_(False),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        scheduler=sched_cls.from_pretrained(folder / "scheduler"),
        name=name,
    )


def _hub_folder(model: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    patterns = ["*.json", "*.txt", "unet/*.safetensors", "vae/*.safetensors",
                "text_encoder/*.safetensors"]
    try:
        path = snapshot_download(model, allow_patterns=patterns, local_files_only=True)
    except LocalEntryNotFoundError:
        if offline:
            raise _not_found(model, str(_hf_cache_dir()), "HF_HUB_OFFLINE is set") from None
        try:
            path = snapshot_download(model, allow_patterns=patterns)
        except Exception as exc:
            raise _not_found(model, str(_hf_cache_dir()),
                             f"download failed: {type(exc).__name__}") from None
    except Exception as exc:
        raise _not_found(model, str(_hf_cache_dir()), f"{type(exc).__name__}: {exc}") from None
    return Path(path)


def _load_single_file(path: Path) -> Components:
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = None
    for repo in (DEFAULT_MODEL, "openai/clip-vit-large-patch14"):
        try:
            from huggingface_hub import snapshot_download

            snap = Path(snapshot_download(repo, allow_patterns=["*tokenizer*", "*.txt", "*.json"],
                                          local_files_only=True))
            tok_dir = snap / "tokenizer" if (snap / "tokenizer").is_dir() else snap
            break
        except Exception:
            log.debug("no tokenizer cached for %s", repo)
    if tok_dir is None:
        raise _not_found(str(path), str(_hf_cache_dir()),
                         "a single checkpoint file carries no tokenizer; the CLIP tokenizer of "
                         f"{DEFAULT_MODEL} or openai/clip-vit-large-patch14 must be cached")
    kw = {"local_files_only": True}
    unet = UNet2DConditionModel.from_single_file(
        str(path), config=str(CONFIG_DIR), subfolder="unet", **kw)
    vae = AutoencoderKL.from_single_file(str(path), config=str(CONFIG_DIR), subfolder="vae", **kw)
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        load_single_file_checkpoint,
    )

    text_encoder = CLIPTextModel(CLIPTextConfig(**json.loads(
        (CONFIG_DIR / "text_encoder.json").read_text())))
    state = convert_ldm_clip_checkpoint(load_single_file_checkpoint(str(path)))
    text_encoder.load_state_dict(state, strict=False)
    scheduler = PNDMScheduler.from_config(json.loads((CONFIG_DIR / "scheduler.json").read_text()))
    return Components(unet=unet.eval().requires_grad_(False), vae=vae.eval().requires_grad_(False),
                      text_encoder=text_encoder.eval().requires_grad_(False),
                      tokenizer=CLIPTokenizer.from_pretrained(tok_dir), scheduler=scheduler,
                      name=path.name)


def build_random_sd15(seed: int = 0, device: str | Any = "cpu") -> Components:
    """Full-size SD 1.5 (shipped configs) with random weights, for timing. Tiny tokenizer.

    ``device`` only says where the random init runs (much faster on a GPU).
    """
    import torch


    def cfg(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((CONFIG_DIR / f"{name}.json").read_text())
        return {k: v for k, v in data.items() if not k.startswith("_")}

    torch.manual_seed(seed)
    te_cfg = cfg("text_encoder")
    te_cfg.pop("architectures", None)
    te_cfg.pop("model_type", None)
    with torch.device(device):
        return _random_components(cfg, te_cfg)


def _random_components(cfg: Callable[[str], dict[str, Any]], te_cfg: dict[str, Any]
                       ) -> Components:
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from riffbridge.render.tiny import build_tiny

    return Components(
        unet=UNet2DConditionModel(**cfg("unet")).eval().requires_grad_(False),  # type: ignore[attr-defined]
        vae=AutoencoderKL(**cfg("vae")).eval().requires_grad_(False),  # type: ignore[attr-defined]
        text_encoder=CLIPTextModel(CLIPTextConfig(**te_cfg)).eval().requires_grad_(False),
        tokenizer=build_tiny().tokenizer,
        scheduler=PNDMScheduler(**cfg("scheduler")),
        name="sd15-random",
    )


def load_components(model: str = DEFAULT_MODEL) -> Components:
    """Load on the CPU in fp32; the Renderer moves them. Raises ModelNotFoundError when absent."""
    if model == "tiny":
        from riffbridge.render.tiny import build_tiny

        return build_tiny()
    if model == "sd15-random":
        return build_random_sd15()
    path = Path(model).expanduser()
    try:
        if path.is_file():
            if path.suffix.lower() not in (".ckpt", ".safetensors"):
                raise ConfigError(f"model file {path} is not a .ckpt or .safetensors file")
            return _load_single_file(path)
        if path.is_dir():
            if not (path / "unet").is_dir():
                raise _not_found(model, str(path), "no unet/ folder: not a diffusers model")
            return _load_folder(path, path.name)
        if model.startswith((".", "/", "~")) or (os.sep in model and model.count("/") != 1):
            raise _not_found(model, str(path), "no such file or folder")
        return _load_folder(_hub_folder(model), model)
    except (ConfigError, RenderError):
        raise
    except OSError as exc:
        raise _not_found(model, str(path if path.exists() else _hf_cache_dir()),
                         f"{type(exc).__name__}: {exc}") from None
