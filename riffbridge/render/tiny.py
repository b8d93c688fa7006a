"""A tiny random-weight Stable-Diffusion-shaped model for tests, CI and plumbing demos.

Same structure as SD 1.5 (UNet2DConditionModel, AutoencoderKL with an 8x downsampling VAE,
CLIPTextModel, CLIPTokenizer, PNDM scheduler) at a fraction of the size, with weights drawn
from a fixed torch seed so every build is identical. The tokenizer's vocabulary is written
here: characters, end-of-word characters and the two CLIP special tokens.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

from riffbridge.render.components import Components

TINY_SEED = 1234
TEXT_WIDTH = 32
_CHARS = string.ascii_lowercase + string.digits


def tiny_vocab() -> dict[str, int]:
    """The tiny tokenizer's vocabulary: specials, then characters, then end-of-word chars."""
    tokens = ["<|startoftext|>", "<|endoftext|>", *_CHARS, *(c + "</w>" for c in _CHARS)]
    return {tok: i for i, tok in enumerate(tokens)}


def build_tiny() -> Components:
    """Build the tiny model on the CPU in fp32, deterministic (fixed torch seed)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = Path(tmp) / "vocab.json"
        merges_path = Path(tmp) / "merges.txt"
        vocab_path.write_text(json.dumps(tiny_vocab()))
        merges_path.write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(vocab_path), str(merges_path),
                                  pad_token="<|endoftext|>", model_max_length=77)

    state = torch.random.get_rng_state()
    torch.manual_seed(TINY_SEED)
    try:
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), norm_num_groups=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=TEXT_WIDTH, attention_head_dim=8,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
            block_out_channels=(8, 16, 16, 16), norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=TEXT_WIDTH,
            intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
            num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=77,
        ))
    finally:
        torch.random.set_rng_state(state)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
    )
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)  # type: ignore[union-attr]
    return Components(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                      scheduler=scheduler, name="tiny")
