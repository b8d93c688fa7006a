"""The model-loading boundary: hub id, local diffusers folder, single checkpoint file, "tiny".

Also the explicit dtype choice (the device is chosen in ``riffbridge.torch_device``): fp16 on a
GPU, fp32 on the CPU, never a silent fallback.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riffbridge.errors import ConfigError, ModelNotFoundError, RenderError
from riffbridge.params import DEFAULT_MODEL
from riffbridge.render.components import Components
from riffbridge.render.tiny import build_tiny

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "sd15"
DTYPES = ("auto", "fp16", "bf16", "fp32")


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


# The key prefixes of the three models in an original (LDM/CompVis) Stable Diffusion checkpoint.
LDM_UNET = "model.diffusion_model."
LDM_VAE = "first_stage_model."
LDM_TEXT_ENCODER = "cond_stage_model.transformer."
TOKENIZER_REPOS = (DEFAULT_MODEL, "openai/clip-vit-large-patch14")
TOKENIZER_FIX = ("put the CLIP tokenizer files (vocab.json and merges.txt, or tokenizer.json) in "
                 "a tokenizer/ folder next to the checkpoint file, or run once with internet: "
                 "`huggingface-cli download openai/clip-vit-large-patch14 --include '*.json' "
                 "'*.txt'`")


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or all(
        (folder / name).is_file() for name in ("vocab.json", "merges.txt"))


def find_tokenizer(checkpoint: Path) -> Path | None:
    """The CLIP tokenizer for a single checkpoint file, which carries none: a ``tokenizer/``
    folder next to the file, else one in the Hugging Face cache (never downloaded here)."""
    from huggingface_hub import snapshot_download

    candidates = [checkpoint.parent / "tokenizer"]
    for repo in TOKENIZER_REPOS:
        try:
            snap = Path(snapshot_download(repo, allow_patterns=["*tokenizer*", "*.txt", "*.json"],
                                          local_files_only=True))
        except Exception:  # LocalEntryNotFoundError and kin: this repo is not cached
            log.debug("no tokenizer cached for %s", repo)
            continue
        candidates += [snap / "tokenizer", snap]
    return next((folder for folder in candidates if _has_tokenizer(folder)), None)


def _read_config(config_dir: Path, name: str) -> dict[str, Any]:
    path = config_dir / f"{name}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model config {path} cannot be read: {exc}") from None
    return data


def _builders(config_dir: Path) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]:
    """How to build the UNet, VAE and text encoder from ``config_dir``/{unet,vae,text_encoder}.json
    (random weights)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return (
        lambda: UNet2DConditionModel.from_config(_read_config(config_dir, "unet")),
        lambda: AutoencoderKL.from_config(_read_config(config_dir, "vae")),
        lambda: CLIPTextModel(CLIPTextConfig.from_dict(_read_config(config_dir, "text_encoder"))),
    )


def _blank(build: Callable[[], Any]) -> Any:
    """``build()`` without its random init (seconds for SD 1.5): built on the meta device, then
    given uninitialised CPU memory that a strict load must fill. A model with buffers outside
    its state dict (the text encoder's position ids), which no checkpoint fills, is built the
    normal way."""
    import torch

    with torch.device("meta"):
        model = build()
    if set(dict(model.named_buffers())) - set(model.state_dict()):
        return build()
    return model.to_empty(device="cpu")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The tensors of a .safetensors or .ckpt file (a .ckpt's ``state_dict`` unwrapped)."""
    import zipfile

    import torch

    with path.open("rb") as f:
        head = f.read(9)
    loaded: Any
    if path.suffix.lower() == ".safetensors":
        if len(head) < 9 or head[8:9] != b"{":  # an 8-byte header length, then a JSON header
            raise RenderError(f"{path} is not a safetensors file (no safetensors header)")
        from safetensors.torch import load_file

        try:
            loaded = load_file(str(path))
        except Exception as exc:  # SafetensorError and I/O errors share no base class
            raise RenderError(f"{path} cannot be read as safetensors: {_first_line(exc)}") from None
    else:
        is_zip = zipfile.is_zipfile(path)
        if not is_zip and head[:1] != b"\x80":  # torch.save: a zip archive, or a bare pickle
            raise RenderError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a "
                              "pickle)")
        try:
            # Tensors only: unpickling anything else could run code carried by the file.
            loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ...
            if "Weights only load failed" in str(exc):
                found = re.search(r"GLOBAL ([\w.]+)", str(exc))
                what = f" (such as {found[1]})" if found else ""
                raise RenderError(
                    f"{path} holds Python objects besides the weights{what}; riffbridge reads "
                    "only tensors from a .ckpt, since unpickling anything else can run code "
                    "from the file. If you trust the file, convert it to .safetensors once "
                    "(see docs/troubleshooting.md, 'A single checkpoint file')") from None
            raise RenderError(f"{path} cannot be read as a PyTorch checkpoint: "
                              f"{_first_line(exc)}") from None
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    tensors = ({k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
               if isinstance(loaded, dict) else {})
    if not tensors:
        raise RenderError(f"{path} holds no model weights (no tensors in it)")
    return tensors


def _under(checkpoint: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k: v for k, v in checkpoint.items() if k.startswith(prefix)}


def _text_encoder_weights(checkpoint: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """The CLIP text encoder's weights renamed for this transformers version's CLIPTextModel.

    SD 1.x files name them ``text_model.*``; transformers 5 dropped that level. The
    ``position_ids`` buffer (always 0..76) is in most files but no longer in the model's state.
    """
    level = "text_model." if any(k.startswith("text_model.") for k in expected) else ""
    state = {}
    for key, value in _under(checkpoint, LDM_TEXT_ENCODER).items():
        name = level + key[len(LDM_TEXT_ENCODER):].removeprefix("text_model.")
        if name.endswith("embeddings.position_ids") and name not in expected:
            continue
        state[name] = value
    return state


def _keys(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _fill(model: Any, state: dict[str, Any], what: str, path: Path, config_dir: Path,
          in_file: int = 0) -> None:
    """Load ``state`` into ``model``. Every weight must fit, so that no part is left blank.

    ``in_file``: how many weights the file holds under the model's prefix; diffusers'
    converters pass over names they do not know, so more than ``len(state)`` is an error too.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} of its {len(expected)} weights missing ({_keys(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unknown ({_keys(unexpected)})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} of another shape ({k}: {tuple(state[k].shape)} in the "
                        f"file, {tuple(expected[k].shape)} in the model)")
    if not problems and in_file > len(state):
        problems.append(f"{in_file - len(state)} of the file's {in_file} weights fit no part "
                        "of it")
    if problems:
        raise RenderError(f"{path} does not fit the {what} of the configs in {config_dir}: "
                          f"{'; '.join(problems)}. Is it a Stable Diffusion 1.x checkpoint in "
                          "the original layout?")
    model.load_state_dict(state, strict=True)


def _load_single_file(path: Path, config_dir: Path = CONFIG_DIR) -> Components:
    """A Stable Diffusion 1.x checkpoint in the original (LDM/CompVis) layout, like
    ``riffusion-model-v1.ckpt``: read once, converted with diffusers' converters, into models
    built from the configs in ``config_dir``. Every weight must be in the file."""
    from diffusers import PNDMScheduler
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from transformers import CLIPTokenizer

    tokenizer_dir = find_tokenizer(path)  # before the slow read: a file carries no tokenizer
    if tokenizer_dir is None:
        raise ModelNotFoundError(
            f"{path}: a single checkpoint file carries no tokenizer, and none was found (looked "
            f"in {path.parent / 'tokenizer'} and, for {' and '.join(TOKENIZER_REPOS)}, in "
            f"{_hf_cache_dir()}). To fix: {TOKENIZER_FIX}")
    checkpoint = _read_checkpoint(path)
    if any(k.startswith("model_ema.") for k in checkpoint):
        log.info("%s also holds EMA weights (model_ema.*); using the others, as diffusers "
                 "does", path.name)
    build_unet, build_vae, build_text_encoder = _builders(config_dir)
    # Only each model's own keys go to its converter: they scan every key they get.
    unet, unet_file = _blank(build_unet), _under(checkpoint, LDM_UNET)
    _fill(unet, convert_ldm_unet_checkpoint(unet_file, dict(unet.config)), "UNet", path,
          config_dir, len(unet_file))
    vae, vae_file = _blank(build_vae), _under(checkpoint, LDM_VAE)
    _fill(vae, convert_ldm_vae_checkpoint(vae_file, dict(vae.config)), "VAE", path, config_dir,
          len(vae_file))
    text_encoder = _blank(build_text_encoder)
    _fill(text_encoder, _text_encoder_weights(checkpoint, set(text_encoder.state_dict())),
          "text encoder", path, config_dir)
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return Components(unet=unet, vae=vae, text_encoder=text_encoder,
                      tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
                      scheduler=PNDMScheduler.from_config(_read_config(config_dir, "scheduler")),
                      name=path.name)


def build_random_sd15(seed: int = 0, device: str | Any = "cpu") -> Components:
    """Full-size SD 1.5 (shipped configs) with random weights, for timing. Tiny tokenizer.

    ``device`` only says where the random init runs (much faster on a GPU).
    """
    import torch
    from diffusers import PNDMScheduler

    torch.manual_seed(seed)
    with torch.device(device):
        unet, vae, text_encoder = (build() for build in _builders(CONFIG_DIR))
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return Components(unet=unet, vae=vae, text_encoder=text_encoder,
                      tokenizer=build_tiny().tokenizer,
                      scheduler=PNDMScheduler.from_config(_read_config(CONFIG_DIR, "scheduler")),
                      name="sd15-random")


def load_components(model: str = DEFAULT_MODEL, *, configs: Path = CONFIG_DIR) -> Components:
    """Load on the CPU in fp32; the Renderer moves them. Raises ModelNotFoundError when absent.

    ``configs``: the folder of model configs (unet, vae, text_encoder, scheduler .json) that a
    single checkpoint file, which carries none, is read with; SD 1.5's by default.
    """
    if model == "tiny":
        return build_tiny()
    if model == "sd15-random":
        return build_random_sd15()
    path = Path(model).expanduser()
    try:
        if path.is_file():
            if path.suffix.lower() not in (".ckpt", ".safetensors"):
                raise ConfigError(f"model file {path} is not a .ckpt or .safetensors file")
            return _load_single_file(path, configs)
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
