"""Renderer tests on the tiny random-weight model (CPU, few steps, small widths)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from riffbridge.cli import main
from riffbridge.errors import AudioFileError, ConfigError, DeviceError, ModelNotFoundError
from riffbridge.render.model import load_components
from riffbridge.render.riffuse import (
    LATENT_CACHE_SIZE,
    TEXT_CACHE_SIZE,
    ImageRef,
    Renderer,
    RiffuseJob,
)
from riffbridge.render.seamless import set_time_tiling
from riffbridge.spectrogram import SpectrogramConverter
from riffbridge.torch_device import resolve_device

W = 64


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("tiny", device="cpu")


def stripes(width: int = W, shift: int = 0) -> ImageRef:
    arr = np.full((512, width, 3), 230, dtype=np.uint8)
    for k in range(4):
        arr[150:, k * width // 4: k * width // 4 + 3] = 20
    arr[:, :, :] = np.roll(arr, shift, axis=1)
    return ImageRef.from_image(Image.fromarray(arr))


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(np.float64)


def job(**kw: object) -> RiffuseJob:
    base: dict[str, object] = dict(prompt_a="jazz", prompt_b="rock", steps=2, width=W)
    base.update(kw)
    return RiffuseJob(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("kw, word", [
    (dict(alpha=1.3), "alpha"), (dict(alpha=math.nan), "alpha"), (dict(steps=0), "steps"),
    (dict(steps=-3), "steps"), (dict(width=100), "width"), (dict(denoise_a=2.0), "denoise_a"),
    (dict(scheduler="euler"), "scheduler"),
])
def test_bad_jobs_name_the_value(kw: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        job(**kw)


def test_job_is_a_cache_key() -> None:
    assert hash(job(alpha=0.5)) == hash(job(alpha=0.5))
    assert job(seed_image=stripes()) == job(seed_image=stripes())
    assert job(alpha=0.5) != job(alpha=0.25)


def test_deterministic_and_batched_equals_single(renderer: Renderer) -> None:
    jobs = [job(alpha=a, seed_a=1, seed_b=2, seed_image=stripes()) for a in (0.0, 0.5, 1.0)]
    batch = renderer.render(jobs)
    again = renderer.render(jobs)
    single = renderer.render(jobs[1:2])[0]
    assert all(a.size == (W, 512) for a in batch)
    assert all((px(a) == px(b)).all() for a, b in zip(batch, again, strict=True))
    assert np.abs(px(batch[1]) - px(single)).max() <= 2  # batch maths may round differently
    assert np.abs(px(batch[0]) - px(batch[2])).mean() > 0.1


def test_negative_prompt_takes_effect(renderer: Renderer) -> None:
    plain = renderer.render([job()])[0]
    neg = renderer.render([job(negative="noise")])[0]
    assert np.abs(px(plain) - px(neg)).mean() > 0.05


def test_empty_prompt_and_long_prompt(renderer: Renderer, caplog: pytest.LogCaptureFixture
                                      ) -> None:
    assert renderer.render([job(prompt_a="", prompt_b="")])[0].size == (W, 512)
    renderer.render([job(prompt_a="la " * 200)])
    assert "truncated" in caplog.text


def test_mask_black_keeps_seed(renderer: Renderer, tmp_path: Path) -> None:
    mask = np.full((512, W), 255, dtype=np.uint8)
    mask[:, : W // 2] = 0  # keep the left half
    mpath = tmp_path / "mask.png"
    Image.fromarray(mask).save(mpath)
    seed = stripes()
    free = renderer.render([job(seed_image=seed, denoise_a=1.0)])[0]
    kept = renderer.render([job(seed_image=seed, denoise_a=1.0, mask=mpath)])[0]
    keep_all = tmp_path / "black.png"
    Image.fromarray(np.zeros((512, W), dtype=np.uint8)).save(keep_all)
    all_kept = renderer.render([job(seed_image=seed, denoise_a=1.0, mask=keep_all)])[0]
    left = slice(0, W // 2 - 8)
    assert np.abs(px(kept)[:, left] - px(all_kept)[:, left]).mean() < \
        np.abs(px(free)[:, left] - px(all_kept)[:, left]).mean()
    Image.fromarray(np.zeros((512, W + 8), dtype=np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(ConfigError, match="mask is"):
        renderer.render([job(seed_image=seed, mask=tmp_path / "wide.png")])


def test_seed_image_errors(renderer: Renderer, tmp_path: Path) -> None:
    bad = tmp_path / "not.png"
    bad.write_text("hello")
    with pytest.raises(AudioFileError, match="not an image"):
        renderer.render([job(seed_image=bad)])
    with pytest.raises(ConfigError, match="seed image is"):
        renderer.render([job(seed_image=stripes(W + 8))])


def test_tile_time_wraps(renderer: Renderer) -> None:
    def seam_ratio(img: Image.Image) -> float:
        a = px(img).mean(axis=2)
        edge = np.abs(a[:, 0] - a[:, -1]).mean()
        inner = np.mean([np.abs(a[:, i] - a[:, i + 1]).mean() for i in range(1, a.shape[1] - 2)])
        return float(edge / inner)

    tiled = renderer.render([job(tile_time=True, seed_image=stripes())])[0]
    assert seam_ratio(tiled) < 3.0
    # Exact check on the decoder: with circular time padding, decoding a circularly shifted
    # latent gives the circularly shifted image (the renderer's noise does not shift with a
    # seed image, so the end-to-end render is only approximately equivariant).
    import torch

    vae = renderer.components.vae
    lat = torch.randn(1, 4, 64, W // 8, generator=torch.Generator().manual_seed(3))
    renderer._set_tiling(False)
    set_time_tiling(vae, True)
    try:
        with torch.inference_mode():
            a = vae.decode(lat).sample
            b = vae.decode(torch.roll(lat, 2, dims=3)).sample
    finally:
        set_time_tiling(vae, False)
    assert torch.allclose(torch.roll(a, 16, dims=3), b, atol=1e-4)


def test_tiling_switch_restores(renderer: Renderer) -> None:
    before = renderer.render([job()])[0]
    renderer.render([job(tile_time=True)])
    after = renderer.render([job()])[0]
    assert (px(before) == px(after)).all()
    assert set_time_tiling(renderer.components.vae, False) == 0


def test_schedulers_and_progress(renderer: Renderer) -> None:
    seen: list[float] = []
    for name in ("dpm++2m", "ddim"):
        img = renderer.render([job(scheduler=name, steps=3)], seen.append)[0]
        assert img.size == (W, 512)
    assert seen and seen[-1] == 1.0 and all(0 < f <= 1 for f in seen)


def test_render_audio(renderer: Renderer) -> None:
    (audio, rate), = renderer.render_audio([job()])
    assert rate == 44100 and audio.ndim == 2 and abs(audio.shape[1] - W * 441) <= 441


def test_tiny_saved_and_loaded_back(tmp_path: Path, renderer: Renderer) -> None:
    load_components("tiny").save(tmp_path / "tiny")
    loaded = Renderer(str(tmp_path / "tiny"), device="cpu")
    a = renderer.render([job(seed_image=stripes())])[0]
    b = loaded.render([job(seed_image=stripes())])[0]
    assert (px(a) == px(b)).all()


def test_caches_keep_the_most_recently_used_prompts_and_seeds() -> None:
    """A long session's prompts and seed images do not pile up; what is dropped is recomputed
    to the same numbers, and a render gives the same clip before and after."""
    import torch

    renderer = Renderer("tiny", device="cpu")
    encodes: list[str] = []
    renderer.components.text_encoder.register_forward_hook(lambda *_: encodes.append("text"))
    renderer.components.vae.encoder.register_forward_hook(lambda *_: encodes.append("seed"))
    before = px(renderer.render([job(seed_image=stripes())])[0])
    first = renderer.text_embedding("jazz").clone()

    prompts = [f"prompt {i}" for i in range(TEXT_CACHE_SIZE + 10)]
    for prompt in prompts:
        renderer.text_embedding(prompt)
    assert len(renderer._text_cache) == TEXT_CACHE_SIZE
    encodes.clear()
    oldest_kept = prompts[-TEXT_CACHE_SIZE]
    renderer.text_embedding(oldest_kept)  # a hit, and now the most recently used
    renderer.text_embedding("one more")  # pushes out prompts[-TEXT_CACHE_SIZE + 1] instead
    renderer.text_embedding(oldest_kept)
    assert encodes == ["text"]
    renderer.text_embedding(prompts[-TEXT_CACHE_SIZE + 1])
    assert encodes == ["text", "text"] and len(renderer._text_cache) == TEXT_CACHE_SIZE
    again = renderer.text_embedding("jazz")  # long gone: encoded again, the same numbers
    assert torch.equal(again, first) and len(renderer._text_cache) == TEXT_CACHE_SIZE

    seeds = [ImageRef.from_image(Image.fromarray(np.full((512, W, 3), 100 + i, np.uint8)))
             for i in range(LATENT_CACHE_SIZE + 2)]
    latents = [renderer.seed_latents(seed, W, False).clone() for seed in seeds]
    assert len(renderer._latent_cache) == LATENT_CACHE_SIZE
    encodes.clear()
    assert torch.equal(renderer.seed_latents(seeds[-1], W, False), latents[-1])
    assert encodes == []  # recent: cached
    assert torch.equal(renderer.seed_latents(seeds[0], W, False), latents[0])
    assert encodes == ["seed"] and len(renderer._latent_cache) == LATENT_CACHE_SIZE

    assert (px(renderer.render([job(seed_image=stripes())])[0]) == before).all()


def test_missing_model_and_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
        load_components("riffusion/riffusion-model-v1")
    with pytest.raises(ModelNotFoundError, match="no such file"):
        load_components(str(tmp_path / "nope"))


def test_devices_are_explicit(monkeypatch: pytest.MonkeyPatch,
                              caplog: pytest.LogCaptureFixture) -> None:
    """One rule for the renderer and the converter: auto picks and says so; a name or a
    torch.device that is not there is refused with the value and the fix, never a fallback."""
    import torch

    with caplog.at_level("INFO", logger="riffbridge.torch_device"):
        picked = resolve_device("auto")
    assert picked.type in ("cuda", "mps", "cpu")
    assert f"device auto -> {picked.type}" in caplog.text
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"unknown device 'gpu0': use auto, cpu, cuda"):
        resolve_device("gpu0")
    # A machine without CUDA (faked here so the check runs on a GPU machine too).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", torch.device("cuda:1")):
        with pytest.raises(DeviceError, match=r"'cuda(:1)?' asked for, but CUDA is not "
                           r"available here .*use --device cpu"):
            resolve_device(device)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        Renderer("tiny", device="cuda")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        SpectrogramConverter(device="cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(DeviceError, match=r"'mps' asked for, but MPS is not available "
                           r"here: use --device cpu"):
            resolve_device("mps")


def test_a_gpu_index_past_the_last_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"'cuda:2' does not exist, this machine has 2 "
                       r"GPU\(s\): use --device cuda:0 .. cuda:1, or cpu"):
        resolve_device("cuda:2")


def test_cli_render_writes_wav_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    out, png = tmp_path / "clip.wav", tmp_path / "clip.png"
    rc = main(["render", str(out), "--model", "tiny", "--device", "cpu", "--prompt", "jazz",
               "--prompt-b", "rock", "--alpha", "0.5", "--steps", "2", "--width", "32",
               "--image", str(png)])
    assert rc == 0
    info = soundfile.info(str(out))
    assert info.samplerate == 44100 and abs(info.frames - 32 * 441) <= 441
    assert Image.open(png).size == (32, 512)
    rc = main(["render", str(out), "--model", "tiny", "--alpha", "1.5"])
    assert rc == 2 and "alpha must be in [0, 1], got 1.5" in capsys.readouterr().err


def test_cli_bench_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "--device", "cpu", "--steps", "2", "--width", "32", "--runs", "1",
               "--warmup", "0", "--batch", "2", "--json", "--no-audio"])
    assert rc == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["unet_steps"] >= 1 and data["clips_per_s"] > 0
