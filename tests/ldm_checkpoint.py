"""Write a diffusers model as one checkpoint in the original LDM (CompVis) key layout.

The inverse of diffusers' single-file converters, written here from the layout of Stable
Diffusion's original ``ldm`` code (the mapping of diffusers' repository script
``scripts/convert_diffusers_to_original_stable_diffusion.py``), but generic over the number of
blocks and ``layers_per_block`` so that it also fits the tiny test model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."

# Inside a block, the names that differ: (diffusers, LDM).
UNET_RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."),
               ("time_emb_proj.", "emb_layers.1."), ("norm2.", "out_layers.0."),
               ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]
VAE_ATTENTION = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
                 ("to_out.0.", "proj_out.")]

Table = list[tuple[str, str, list[tuple[str, str]]]]  # diffusers prefix, LDM prefix, inner names


def _convert(state: dict[str, torch.Tensor], table: Table) -> dict[str, torch.Tensor]:
    """Rename every key by the first matching table row; every key must match one."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        row = next((r for r in table if key.startswith(r[0])), None)
        if row is None:
            raise KeyError(f"no LDM name for {key}")
        old, new, inner = row
        rest = key[len(old):]
        for d_name, ldm_name in inner:
            if rest.startswith(d_name):
                rest = ldm_name + rest[len(d_name):]
                break
        if inner is VAE_ATTENTION and rest.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention is made of 1x1 convolutions
        out[new + rest] = value.contiguous()
    return out


def unet_to_ldm(unet: Any) -> dict[str, torch.Tensor]:
    cfg, state = unet.config, unet.state_dict()
    per = cfg.layers_per_block + 1  # LDM input blocks per level: the resnets, then a downsampler
    table: Table = [
        ("time_embedding.linear_1.", "time_embed.0.", []),
        ("time_embedding.linear_2.", "time_embed.2.", []),
        ("conv_in.", "input_blocks.0.0.", []),
        ("conv_norm_out.", "out.0.", []),
        ("conv_out.", "out.2.", []),
        ("mid_block.attentions.0.", "middle_block.1.", []),
        ("mid_block.resnets.0.", "middle_block.0.", UNET_RESNET),
        ("mid_block.resnets.1.", "middle_block.2.", UNET_RESNET),
    ]
    for i in range(len(cfg.block_out_channels)):
        for j in range(cfg.layers_per_block):
            n = per * i + j + 1
            table.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{n}.0.", UNET_RESNET))
            table.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{n}.1.", []))
        table.append((f"down_blocks.{i}.downsamplers.0.conv.",
                      f"input_blocks.{per * (i + 1)}.0.op.", []))
        for j in range(per):
            n = per * i + j
            table.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{n}.0.", UNET_RESNET))
            table.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{n}.1.", []))
        has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in state)
        table.append((f"up_blocks.{i}.upsamplers.0.",
                      f"output_blocks.{per * i + per - 1}.{2 if has_attention else 1}.", []))
    return {UNET_PREFIX + k: v for k, v in _convert(state, table).items()}


def vae_to_ldm(vae: Any) -> dict[str, torch.Tensor]:
    cfg, state = vae.config, vae.state_dict()
    levels = len(cfg.block_out_channels)
    table: Table = [("quant_conv.", "quant_conv.", []),
                    ("post_quant_conv.", "post_quant_conv.", [])]
    for part in ("encoder", "decoder"):
        table += [
            (f"{part}.conv_in.", f"{part}.conv_in.", []),
            (f"{part}.conv_out.", f"{part}.conv_out.", []),
            (f"{part}.conv_norm_out.", f"{part}.norm_out.", []),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", VAE_ATTENTION),
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", []),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", []),
        ]
    for i in range(levels):
        table.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", []))
        table.append((f"encoder.down_blocks.{i}.downsamplers.0.",
                      f"encoder.down.{i}.downsample.", []))
        up = levels - 1 - i  # LDM counts the decoder's levels from the bottom
        table.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{up}.block.", []))
        table.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{up}.upsample.", []))
    ldm = _convert(state, table)
    # In the VAE's resnets only the shortcut is named differently.
    return {VAE_PREFIX + k.replace(".conv_shortcut.", ".nin_shortcut."): v for k, v in ldm.items()}


def text_encoder_to_ldm(text_encoder: Any) -> dict[str, torch.Tensor]:
    """Keys as in SD 1.x checkpoints, ``text_model.`` included, with the ``position_ids`` buffer
    those checkpoints carry (transformers today keeps it out of the state dict)."""
    out = {}
    for key, value in text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        out[TEXT_PREFIX + key] = value.contiguous()
    positions = text_encoder.config.max_position_embeddings
    out[TEXT_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def to_ldm(components: Any) -> dict[str, torch.Tensor]:
    """The whole model (unet, vae, text_encoder of a Components) as one LDM state dict."""
    return {**unet_to_ldm(components.unet), **vae_to_ldm(components.vae),
            **text_encoder_to_ldm(components.text_encoder),
            # What else an LDM training checkpoint holds beside the three models.
            "betas": torch.linspace(0.00085, 0.012, 1000), "logvar": torch.zeros(1000)}


def write_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    """``.safetensors``: the flat dict; ``.ckpt``: ``{"state_dict": ...}`` as LDM training saves."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 1}, path)
    return path


def write_configs(components: Any, folder: Path) -> Path:
    """The model configs as riffbridge ships SD 1.5's: unet/vae/text_encoder/scheduler .json."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("unet", "vae", "scheduler"):
        (folder / f"{name}.json").write_text(json.dumps(dict(getattr(components, name).config)))
    (folder / "text_encoder.json").write_text(components.text_encoder.config.to_json_string())
    return folder
