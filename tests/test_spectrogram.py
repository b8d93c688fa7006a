"""The spectrogram core against the reference facts (shared/reference/riffusion.md)."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from riffbridge.audio_io import read_audio, write_audio
from riffbridge.errors import AudioFileError, ConfigError, DeviceError
from riffbridge.spectrogram import (
    EXIF_TAGS,
    SpectrogramConverter,
    SpectrogramParams,
    audio_to_image,
    image_to_audio,
    image_to_mel,
    mel_to_image,
)
from riffbridge.spectrogram.mel import filterbank, inverse_filterbank
from riffbridge.spectrogram.stft import Framing, stft

RATE = 44100


def tone(freq: float, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None, :]


def save_load(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="PNG", exif=image.info["exif"])
    buf.seek(0)
    return Image.open(buf)


# --- parameters --------------------------------------------------------------------------

def test_default_parameters_are_the_reference_contract() -> None:
    p = SpectrogramParams()
    assert (p.sample_rate, p.hop_length, p.win_length, p.n_fft) == (44100, 441, 4410, 17640)
    assert p.n_fft // 2 + 1 == 8821
    assert (p.num_frequencies, p.min_frequency, p.max_frequency) == (512, 0, 10000)
    assert p.power_for_image == 0.25


def test_filterbank_is_htk_triangles_without_normalisation() -> None:
    p = SpectrogramParams()
    fb = filterbank(p, "cpu").double().numpy()
    assert fb.shape == (8821, 512)
    # Independent construction, one filter at a time.
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(10000.0)), 514)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = np.arange(8821) * 2.5
    for m in (0, 1, 100, 300, 511):
        lo, mid, hi = hz[m], hz[m + 1], hz[m + 2]
        expect = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
        np.testing.assert_allclose(fb[:, m], expect, atol=1e-5)
    assert fb.max() <= 1.0 + 1e-6  # peak 1: no area normalisation
    assert not fb[4001:].any()  # nothing above 10 kHz


def test_forward_stft_matches_torch_stft() -> None:
    p = SpectrogramParams()
    x = torch.randn(1, 30000, generator=torch.Generator().manual_seed(1))
    frames = x.shape[-1] // p.hop_length + 1
    ours = stft(x, Framing(p.n_fft, p.hop_length, p.win_length, frames)).abs()
    ref = torch.stft(x, p.n_fft, p.hop_length, p.win_length, torch.hann_window(p.win_length),
                     center=True, pad_mode="reflect", return_complex=True).abs()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-3)


def test_circular_stft_is_the_stft_of_the_repeated_loop() -> None:
    hop, n_fft = 441, 4410
    loop = torch.randn(1, 40 * hop, generator=torch.Generator().manual_seed(2))
    circ = stft(loop, Framing(n_fft, hop, n_fft, 40, circular=True))
    tiled = loop.repeat(1, 5)
    lin = stft(tiled, Framing(n_fft, hop, n_fft, tiled.shape[-1] // hop + 1))
    torch.testing.assert_close(circ, lin[:, :, 80:120], rtol=1e-4, atol=1e-3)


def test_pseudo_inverse_recovers_magnitudes_inside_the_band() -> None:
    p = SpectrogramParams()
    inv = inverse_filterbank(p, "cpu")
    fb = filterbank(p, "cpu")
    # mel -> linear -> mel is the identity on the mel side (fb has full row rank).
    mel = torch.rand(512, 7)
    torch.testing.assert_close(fb.T @ (inv @ mel), mel, rtol=1e-3, atol=1e-3)
    assert inverse_filterbank(p, "cpu") is inv  # cached


# --- image format ------------------------------------------------------------------------

def test_pixel_mapping_flip_and_inversion_bit_exact() -> None:
    p = SpectrogramParams()
    mel = np.zeros((1, 512, 4), dtype=np.float32)
    mel[0, 0, 0] = 16.0  # lowest band, loudest value
    mel[0, 511, 1] = 1.0  # highest band: (1/16) ** 0.25 = 0.5
    mel[0, 10, 2] = 16.0 * 0.1
    image = mel_to_image(mel, p)
    px = np.asarray(image)
    assert image.mode == "RGB" and image.size == (4, 512)
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()  # grey
    assert px[511, 0, 0] == 0  # loudest = black, on the bottom row (low frequencies)
    assert px[0, 1, 0] == int(255 - 255 * 0.5)  # top row = highest band, 127 (truncated)
    assert px[511 - 10, 2, 0] == int(255 - 255 * 0.1 ** 0.25)
    assert px[200, 3, 0] == 255  # silence = white
    expected = (255.0 - 255.0 * np.power(mel[0] / 16.0, 0.25)).astype(np.uint8)[::-1]
    np.testing.assert_array_equal(px[..., 0], expected)


def test_stereo_is_r_zero_g_left_b_right() -> None:
    p = SpectrogramParams(stereo=True)
    mel = np.zeros((2, 512, 3), dtype=np.float32)
    mel[0, 5, 0] = 1.0  # left
    mel[1, 50, 1] = 1.0  # right
    px = np.asarray(mel_to_image(mel, p))
    assert not px[..., 0].any()
    assert px[511 - 5, 0, 1] == 0 and px[511 - 5, 0, 2] == 255
    assert px[511 - 50, 1, 2] == 0 and px[511 - 50, 1, 1] == 255


def test_exif_tags_use_reference_numbers_and_round_trip() -> None:
    p = SpectrogramParams(stereo=True, max_frequency=8000)
    image = save_load(mel_to_image(np.ones((2, 512, 8), dtype=np.float32), p))
    exif = image.getexif()
    assert EXIF_TAGS["sample_rate"] == 11000 and EXIF_TAGS["max_value"] == 11080
    assert exif[11000] == 44100 and exif[11005] == 1 and exif[11010] == 10
    assert exif[11020] == 100 and exif[11030] == 400 and exif[11040] == 512
    assert exif[11050] == 0 and exif[11060] == 8000 and exif[11070] == 0.25
    assert exif[11080] == 30e6
    mel, params = image_to_mel(image)
    assert params == p and mel.shape == (2, 512, 8)


def test_decoding_honours_the_image_parameters() -> None:
    stereo = save_load(mel_to_image(np.random.rand(2, 512, 50).astype(np.float32),
                                    SpectrogramParams(stereo=True)))
    audio, rate = image_to_audio(stereo, iters=2)
    assert audio.shape[0] == 2 and rate == 44100
    # The same pixels read as mono when no EXIF says stereo: the first channel only.
    plain = Image.fromarray(np.asarray(stereo))
    mono, _ = image_to_audio(plain, iters=2)
    assert mono.shape[0] == 1


def test_image_of_the_wrong_height_is_refused() -> None:
    with pytest.raises(AudioFileError, match=r"512 pixels high.*got 300"):
        image_to_mel(Image.new("RGB", (64, 300)))


# --- round trips on real music -------------------------------------------------------------

def metrics(shared_dir: Path, original: Path, rebuilt: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, str(shared_dir / "tools" / "spec_metrics.py"),
                          str(original), str(rebuilt)], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return float(fields["sc"]), float(fields["lsd_db"])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_round_trip_quality_on_real_clips(index: int, clips: list[Path], shared_dir: Path,
                                          tmp_path: Path) -> None:
    """Default settings score at least as well as the reference algorithm does on the same clip
    (its worst of 3 seeds in benchmarks/bench_spectrogram.py, docs/benchmarks.md)."""
    audio, rate = read_audio(clips[index])
    original = tmp_path / "original.wav"
    write_audio(original, audio.mean(axis=0, keepdims=True), rate)
    image = save_load(audio_to_image(audio, rate))
    rebuilt_audio, out_rate = image_to_audio(image)
    assert out_rate == rate and np.isfinite(rebuilt_audio).all()
    rebuilt = tmp_path / "rebuilt.wav"
    write_audio(rebuilt, rebuilt_audio, out_rate)
    sc, lsd = metrics(shared_dir, original, rebuilt)
    reference_worst = {0: (0.136, 5.76), 1: (0.124, 3.58), 2: (0.131, 5.76)}[index]
    assert sc <= reference_worst[0], sc
    assert lsd <= reference_worst[1], lsd


@pytest.mark.parametrize("width", [8, 100, 777])
def test_any_width(width: int) -> None:
    rng = np.random.default_rng(width)
    image = mel_to_image(rng.random((1, 512, width)).astype(np.float32), SpectrogramParams())
    audio, _ = image_to_audio(image, iters=4)
    assert audio.shape == (1, (width - 1) * 441)
    audio, _ = image_to_audio(image, iters=4, circular=True)
    assert audio.shape == (1, width * 441)
    audio, _ = image_to_audio(image, iters=4, num_samples=12345)
    assert audio.shape == (1, 12345)


def test_silence_gives_white_image_and_finite_silence() -> None:
    image = audio_to_image(np.zeros((1, RATE), dtype=np.float32), RATE)
    assert (np.asarray(image) == 255).all()
    audio, _ = image_to_audio(image, iters=4)
    assert np.isfinite(audio).all() and np.abs(audio).max() == 0.0


def test_clipping_and_non_finite_input_are_handled() -> None:
    loud = np.clip(tone(440.0) * 40.0, -8.0, 8.0)  # hard-clipped, far over full scale
    loud[0, 100] = np.nan
    loud[0, 200] = np.inf
    image = audio_to_image(loud, RATE)
    px = np.asarray(image)[..., 0]
    assert px.min() == 0  # the loudest point maps to black
    audio, _ = image_to_audio(image, iters=8)
    assert np.isfinite(audio).all() and 0.5 < np.abs(audio).max() <= 0.9 + 1e-6


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(audio[0] * np.hanning(audio.shape[1])))
    return float(np.argmax(spec) * rate / audio.shape[1])


def test_a_tone_comes_back_at_its_pitch() -> None:
    image = audio_to_image(tone(440.0, 2.0), RATE)
    rows = np.asarray(image)[..., 0].mean(axis=1)
    band = 511 - int(np.argmin(rows))  # darkest row, counted from the bottom
    mel_440 = 2595 * math.log10(1 + 440 / 700) / (2595 * math.log10(1 + 10000 / 700)) * 513
    assert abs(band - (mel_440 - 1)) <= 2
    audio, _ = image_to_audio(image)
    assert abs(dominant_hz(audio, RATE) - 440.0) < 5.0


def test_other_sample_rates_are_resampled() -> None:
    ref = np.asarray(audio_to_image(tone(1000.0, 1.0, 44100), 44100), dtype=np.float32)
    for rate in (22050, 48000):
        img = np.asarray(audio_to_image(tone(1000.0, 1.0, rate), rate), dtype=np.float32)
        assert abs(img.shape[1] - ref.shape[1]) <= 1
        n = min(img.shape[1], ref.shape[1])
        assert np.abs(img[:, 5:n - 5] - ref[:, 5:n - 5]).mean() < 3.0  # grey levels


def test_stereo_keeps_left_and_right_apart() -> None:
    left, right = tone(300.0), tone(2000.0)
    stereo = np.concatenate([left, right])
    image = audio_to_image(stereo, RATE, SpectrogramParams(stereo=True))
    px = np.asarray(image)
    assert not px[..., 0].any()
    assert np.argmin(px[..., 1].mean(axis=1)) > np.argmin(px[..., 2].mean(axis=1))  # G lower
    audio, _ = image_to_audio(image)
    assert audio.shape[0] == 2
    assert dominant_hz(audio[:1], RATE) < 400 and dominant_hz(audio[1:], RATE) > 1500
    # Mono parameters mix all channels down.
    mono = audio_to_image(stereo, RATE)
    assert np.asarray(mono).shape[2] == 3


def test_multichannel_to_stereo_folds_even_left_odd_right() -> None:
    conv = SpectrogramConverter(SpectrogramParams(stereo=True))
    four = np.stack([np.ones(10), np.zeros(10), np.ones(10), np.zeros(10)]).astype(np.float32)
    out = conv.prepare_audio(four, RATE)
    assert out.shape == (2, 10) and (out[0] == 1).all() and (out[1] == 0).all()


def test_circular_reconstruction_loops_without_a_jump() -> None:
    """A loop rebuilt circularly continues from its end into its start."""
    hop = 441
    loop = np.tile(tone(220.0, 0.1), 10)[:, : 100 * hop]  # 220 Hz fits 0.1 s exactly
    conv = SpectrogramConverter()
    mel = conv.audio_to_mel(np.tile(loop, 3), RATE)[:, :, 100:200]
    audio = conv.mel_to_audio(mel, circular=True, num_samples=44100)
    wrapped = np.concatenate([audio[0, -200:], audio[0, :200]])
    steps = np.abs(np.diff(wrapped))
    inside = np.abs(np.diff(audio[0]))
    assert steps.max() <= 1.5 * inside.max()


def test_bad_arguments_are_config_errors() -> None:
    from riffbridge.spectrogram.stft import initial_phase

    with pytest.raises(ConfigError, match=r"mel must be \(1, n_mels, frames\) for "
                       r"stereo=False, got shape \(2, 512, 8\)"):
        mel_to_image(np.ones((2, 512, 8), dtype=np.float32), SpectrogramParams())
    framing = Framing(4410, 441, 4410, 4)
    with pytest.raises(ConfigError, match="unknown initial phase 'zero'; use 'random' or"):
        initial_phase(torch.ones(1, 4, 2206), framing, "zero", 0)


def test_devices_are_explicit() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal is for machines without it")
    with pytest.raises(DeviceError, match=r"CUDA is not available here.*use --device cpu"):
        SpectrogramConverter(device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu() -> None:
    audio = tone(440.0, 1.0)
    cpu = SpectrogramConverter(device="cpu").audio_to_mel(audio, RATE)
    gpu = SpectrogramConverter(device="cuda").audio_to_mel(audio, RATE).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-2)
    out = SpectrogramConverter(device="cuda").mel_to_audio(gpu.cuda())
    assert np.isfinite(out).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_matches_eager_and_follows_new_input() -> None:
    from riffbridge.spectrogram.stft import _iterate, griffin_lim, initial_phase

    framing = Framing(4410, 441, 4410, 64)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):  # the second call replays the cached graph on new data
        mag = torch.rand(1, 2206, 64, generator=gen).cuda()
        mag[:, 1000:] = 0
        graphed = griffin_lim(mag, framing, 8, init="random", seed=5)
        target = mag[:, :1000].transpose(1, 2).contiguous()
        spec = target * initial_phase(target, framing, "random", 5)
        eager = _iterate(spec, target, framing, 8, 0.99)
        torch.testing.assert_close(graphed, eager, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("params", [
    SpectrogramParams(),  # closed form fb (fb^T fb)^-1
    SpectrogramParams(stereo=True, num_frequencies=256, max_frequency=16000),
    SpectrogramParams(padded_duration_ms=100),  # lowest filters miss every bin: the SVD path
])
@pytest.mark.parametrize("decimation", [1, 4])
def test_cached_inverse_equals_the_pseudo_inverse(params: SpectrogramParams,
                                                  decimation: int) -> None:
    from riffbridge.spectrogram.mel import _filterbank_cpu

    direct = torch.linalg.pinv(_filterbank_cpu(params).T)[::decimation]
    cached = inverse_filterbank(params, "cpu", decimation)
    assert cached.dtype == torch.float32 and cached.shape == direct.shape
    # The same numbers up to float32 rounding (half an ulp: 6e-8 relative).
    assert bool(((cached.double() - direct).abs() <= 1e-12 + 1e-7 * direct.abs()).all())
    assert inverse_filterbank(params, "cpu", decimation) is cached  # once per process


def test_the_closed_form_is_used_only_when_it_holds() -> None:
    from riffbridge.spectrogram.mel import _gram_inverse

    assert _gram_inverse(SpectrogramParams()) is not None
    assert _gram_inverse(SpectrogramParams(padded_duration_ms=100)) is None


def test_griffin_lim_stops_at_an_iteration_when_its_scope_is_cancelled() -> None:
    import threading

    from riffbridge import cancel
    from riffbridge.spectrogram.stft import Framing, griffin_lim

    framing = Framing(1024, 256, 1024, 40, circular=True)
    magnitude = torch.rand(1, 513, 40)
    flag = threading.Event()
    with cancel.cancellable(flag):
        assert griffin_lim(magnitude, framing, iters=4).shape[-1] > 0  # not set: runs
        flag.set()
        with pytest.raises(cancel.Cancelled):
            griffin_lim(magnitude, framing, iters=4)
    assert griffin_lim(magnitude, framing, iters=4).shape[-1] > 0  # outside the scope: runs
