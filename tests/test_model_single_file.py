"""`--model FILE`: one checkpoint in the original LDM layout (.safetensors or .ckpt), as
riffusion-model-v1.ckpt is. The tiny model is written in that layout by an independent
converter (tests/ldm_checkpoint.py), read back through ``load_components`` with the tiny
configs, and must come back weight for weight; what does not fit is an error, never a model
left partly random."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ldm_checkpoint import TEXT_PREFIX, UNET_PREFIX, to_ldm, write_checkpoint, write_configs

from riffbridge.cli import main
from riffbridge.errors import ModelNotFoundError, RenderError
from riffbridge.render.components import Components
from riffbridge.render.model import load_components
from riffbridge.render.riffuse import Renderer, RiffuseJob
from riffbridge.render.tiny import build_tiny

PARTS = ("unet", "vae", "text_encoder")


@pytest.fixture(scope="module")
def tiny() -> Components:
    return build_tiny()


@pytest.fixture(scope="module")
def configs(tiny: Components, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_configs(tiny, tmp_path_factory.mktemp("configs"))


@pytest.fixture(scope="module")
def ldm(tiny: Components) -> dict[str, torch.Tensor]:
    return to_ldm(tiny)


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No tokenizer from the real Hugging Face cache, and no network."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def model_dir(tiny: Components, folder: Path, tokenizer: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer:
        tiny.tokenizer.save_pretrained(folder / "tokenizer")
    return folder


def assert_same_weights(a: Components, b: Components) -> None:
    for part in PARTS:
        want, got = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        assert want.keys() == got.keys(), part
        for key, value in want.items():
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), f"{part}.{key}"


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_checkpoint_loads_back_weight_for_weight(
        tiny: Components, configs: Path, ldm: dict[str, torch.Tensor], tmp_path: Path,
        suffix: str) -> None:
    path = write_checkpoint(ldm, model_dir(tiny, tmp_path / "m") / f"riffusion{suffix}")
    loaded = load_components(str(path), configs=configs)
    assert loaded.name == path.name
    assert_same_weights(tiny, loaded)
    for part in PARTS:
        module = getattr(loaded, part)
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    ids = loaded.tokenizer("funk drums 120").input_ids
    assert ids == tiny.tokenizer("funk drums 120").input_ids
    assert dict(loaded.scheduler.config) == dict(tiny.scheduler.config)


def test_checkpoint_renders_the_same_clip(tiny: Components, configs: Path,
                                          ldm: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = write_checkpoint(ldm, model_dir(tiny, tmp_path / "m") / "riffusion.ckpt")
    job = RiffuseJob(prompt_a="x", steps=2, width=64)
    want = Renderer(build_tiny(), device="cpu").render([job])[0]
    got = Renderer(load_components(str(path), configs=configs), device="cpu").render([job])[0]
    assert got.size == want.size == (64, 512)
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_tokenizer_from_the_hub_cache(tiny: Components, configs: Path,
                                      ldm: dict[str, torch.Tensor], tmp_path: Path,
                                      empty_hub_cache: Path) -> None:
    """No tokenizer/ beside the file: the cached openai/clip-vit-large-patch14 one is used."""
    repo = empty_hub_cache / "models--openai--clip-vit-large-patch14"
    revision = "0" * 40
    tiny.tokenizer.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    path = write_checkpoint(ldm, model_dir(tiny, tmp_path / "m", tokenizer=False) / "m.ckpt")
    loaded = load_components(str(path), configs=configs)
    assert loaded.tokenizer("jazz").input_ids == tiny.tokenizer("jazz").input_ids


def test_no_tokenizer_anywhere_names_the_fixes(
        tiny: Components, configs: Path, ldm: dict[str, torch.Tensor], tmp_path: Path,
        empty_hub_cache: Path) -> None:
    path = write_checkpoint(ldm, model_dir(tiny, tmp_path / "m", tokenizer=False) / "m.ckpt")
    with pytest.raises(ModelNotFoundError) as err:
        load_components(str(path), configs=configs)
    text = str(err.value)
    assert str(path) in text and "carries no tokenizer" in text
    assert str(tmp_path / "m" / "tokenizer") in text and str(empty_hub_cache) in text
    assert "tokenizer/ folder next to the checkpoint file" in text
    assert "huggingface-cli download openai/clip-vit-large-patch14" in text


@pytest.mark.parametrize("drop, words", [
    ((UNET_PREFIX + "out.2.weight", UNET_PREFIX + "out.2.bias"),
     ["UNet", "2 of its 208 weights missing", "conv_out.bias, conv_out.weight"]),
    ((TEXT_PREFIX + "text_model.final_layer_norm.weight",),
     ["text encoder", "1 of its 36 weights missing", "final_layer_norm.weight"]),
])
def test_missing_weights_are_an_error_not_a_random_model(
        tiny: Components, configs: Path, ldm: dict[str, torch.Tensor], tmp_path: Path,
        drop: tuple[str, ...], words: list[str]) -> None:
    state = {k: v for k, v in ldm.items() if k not in drop}
    path = write_checkpoint(state, model_dir(tiny, tmp_path / "m") / "m.safetensors")
    with pytest.raises(RenderError) as err:
        load_components(str(path), configs=configs)
    text = str(err.value)
    assert str(path) in text and all(w in text for w in words), text


def test_unknown_weights_are_an_error(tiny: Components, configs: Path,
                                      ldm: dict[str, torch.Tensor], tmp_path: Path) -> None:
    state = {**ldm, UNET_PREFIX + "input_blocks.1.2.extra.weight": torch.zeros(3),
             TEXT_PREFIX + "text_model.extra.weight": torch.zeros(3)}
    path = write_checkpoint(state, model_dir(tiny, tmp_path / "m") / "m.safetensors")
    with pytest.raises(RenderError, match=r"UNet .* 1 of the file's 209 weights fit no part"):
        load_components(str(path), configs=configs)
    del state[UNET_PREFIX + "input_blocks.1.2.extra.weight"]
    path = write_checkpoint(state, path)
    with pytest.raises(RenderError, match=r"text encoder .* 1 unknown \(extra.weight\)"):
        load_components(str(path), configs=configs)


def test_another_architecture_does_not_fit_the_shipped_configs(
        tiny: Components, ldm: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """Without ``configs``, SD 1.5's shipped configs: the tiny file is the wrong size."""
    path = write_checkpoint(ldm, model_dir(tiny, tmp_path / "m") / "m.safetensors")
    with pytest.raises(RenderError) as err:
        load_components(str(path))
    text = str(err.value)
    assert "does not fit the UNet" in text and "configs/sd15" in text
    assert "of another shape (conv_in.bias: (32,) in the file, (320,) in the model)" in text
    assert "Stable Diffusion 1.x checkpoint in the original layout" in text


class Callback:
    """Stands for what a training checkpoint pickles beside the weights (Lightning state)."""


@pytest.mark.parametrize("name, content, words", [
    ("notes.ckpt", b"these are not weights\n", "is not a PyTorch checkpoint"),
    ("notes.safetensors", b"these are not weights\n", "is not a safetensors file"),
    ("cut.safetensors", None, "cannot be read as safetensors"),
    ("empty.ckpt", {"global_step": 3}, "holds no model weights"),
    ("pickled.ckpt", {"state_dict": {"w": torch.zeros(1)}, "callbacks": Callback()},
     "holds Python objects besides the weights \\(such as test_model_single_file.Callback\\)"),
])
def test_files_that_are_not_checkpoints(tiny: Components, configs: Path,
                                        ldm: dict[str, torch.Tensor], tmp_path: Path,
                                        name: str, content: object, words: str) -> None:
    path = model_dir(tiny, tmp_path / "m") / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:  # a download cut short
        write_checkpoint(ldm, path)
        path.write_bytes(path.read_bytes()[:5000])
    else:
        torch.save(content, path)
    with pytest.raises(RenderError, match=words) as err:
        load_components(str(path), configs=configs)
    assert str(path) in str(err.value)


def test_cli_says_one_line_for_a_file_that_is_not_a_checkpoint(
        tiny: Components, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = model_dir(tiny, tmp_path / "m") / "riffusion-model-v1.ckpt"
    path.write_text("version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer, say
    rc = main(["render", str(tmp_path / "clip.wav"), "--model", str(path), "--device", "cpu",
               "--steps", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"riffbridge: error: {path} is not a PyTorch checkpoint (neither a zip archive nor a "
        "pickle)"]


def test_doctor_finds_the_tokenizer_next_to_the_file(
        tiny: Components, ldm: dict[str, torch.Tensor], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    def model_check(path: Path) -> dict[str, str]:
        main(["doctor", "--json", "--model", str(path), "--audio-out", "none",
              "--out-dir", str(tmp_path)])
        checks = json.loads(capsys.readouterr().out)["checks"]
        return next(c for c in checks if c["name"] == "model")

    alone = write_checkpoint(ldm, model_dir(tiny, tmp_path / "a", tokenizer=False) / "m.ckpt")
    check = model_check(alone)
    assert check["status"] == "fail" and "carries no tokenizer" in check["detail"]
    assert "tokenizer/ folder next to the checkpoint file" in check["fix"]
    beside = write_checkpoint(ldm, model_dir(tiny, tmp_path / "b") / "m.ckpt")
    assert model_check(beside)["status"] == "ok"
