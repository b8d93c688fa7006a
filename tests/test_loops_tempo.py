"""Exact loop length over tempos and bar counts, and time-axis resampling of spectrograms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riffbridge.errors import ConfigError
from riffbridge.loops import Loop
from riffbridge.loops.shape import ShapeSettings, shape_mel
from riffbridge.loops.tempo import (
    check_tempo,
    cut,
    loop_frames,
    loop_samples,
    render_width,
    resample_frames,
)
from riffbridge.spectrogram import SpectrogramParams

bpms = st.floats(min_value=40.0, max_value=240.0, allow_nan=False)
bar_counts = st.integers(min_value=1, max_value=16)
meters = st.integers(min_value=2, max_value=7)


@given(bpm=bpms, bars=bar_counts, beats=meters)
def test_loop_length_is_the_exact_formula(bpm: float, bars: int, beats: int) -> None:
    n = loop_samples(bpm, bars, beats)
    assert n == round(bars * beats * 60 / bpm * 44100)
    frames = loop_frames(bpm, bars, beats)
    assert abs(frames * 441 - n) <= 441 / 2  # within half a 10 ms frame
    width = render_width(frames)
    assert width % 8 == 0 and frames <= width < frames + 8


@given(src=st.integers(1, 400), dst=st.integers(1, 400))
def test_circular_resampling_keeps_every_columns_spectrum(src: int, dst: int) -> None:
    # A steady spectrum stays the same spectrum at any length: tempo changes, pitch does not.
    column = np.linspace(0.0, 1.0, 16, dtype=np.float32)[:, None]
    mel = np.repeat(column, src, axis=1)[None]
    out = resample_frames(mel, dst, circular=True)
    assert out.shape == (1, 16, dst)
    np.testing.assert_allclose(out, np.repeat(column, dst, axis=1)[None], atol=1e-6)


def test_circular_resampling_moves_events_in_proportion_and_wraps() -> None:
    mel = np.zeros((1, 4, 100), dtype=np.float32)
    mel[..., 25] = 1.0  # an event a quarter of the way through
    out = resample_frames(mel, 200, circular=True)
    assert int(np.argmax(out[0, 0])) == 50
    # Between the last and first column the interpolation wraps round the loop.
    mel2 = np.zeros((1, 1, 10), dtype=np.float32)
    mel2[..., 0] = 1.0
    up = resample_frames(mel2, 20, circular=True)
    assert up[0, 0, 19] == pytest.approx(0.5)


def test_shrinking_averages_rather_than_skipping_short_hits() -> None:
    mel = np.zeros((1, 1, 400), dtype=np.float32)
    mel[..., 1::4] = 1.0  # a one-column hit every 4 columns
    out = resample_frames(mel, 100, circular=True)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


@settings(max_examples=6, deadline=None)
@given(bpm=bpms, bars=st.integers(1, 2), beats=st.sampled_from([3, 4]))
def test_shaped_loops_are_sample_exact(bpm: float, bars: int, beats: int) -> None:
    # Any render width maps onto the exact sample count (few Griffin-Lim iterations: the
    # length does not depend on them).
    rng = np.random.default_rng(1)
    mel = rng.random((1, 512, 3 * 8 * 17)).astype(np.float32) * 1e6
    loop = shape_mel(mel, SpectrogramParams(), bpm, bars, beats,
                     ShapeSettings(iters=2, seam="circular"))
    assert loop.num_samples == round(bars * beats * 60 / bpm * 44100)
    assert loop.audio.dtype == np.float32 and loop.sample_rate == 44100


def test_the_longest_fastest_and_slowest_shortest_loops_are_exact() -> None:
    rng = np.random.default_rng(2)
    for bpm, bars in ((240.0, 16), (40.0, 1), (239.7, 1)):
        mel = rng.random((1, 512, 64)).astype(np.float32) * 1e6
        loop = shape_mel(mel, SpectrogramParams(), bpm, bars,
                         settings=ShapeSettings(iters=1, seam="circular"))
        assert loop.num_samples == round(bars * 4 * 60 / bpm * 44100)


@pytest.mark.parametrize(("bpm", "bars", "beats", "word"), [
    (39.9, 4, 4, "bpm"), (240.5, 4, 4, "bpm"), (float("nan"), 4, 4, "bpm"),
    (120, 0, 4, "bars"), (120, 17, 4, "bars"), (120, 4, 0, "beats"),
])
def test_out_of_range_tempo_is_a_clear_error(bpm: float, bars: int, beats: int,
                                             word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        check_tempo(bpm, bars, beats)


def test_cut_is_sample_exact() -> None:
    audio = np.ones((2, 1000), dtype=np.float32)
    assert cut(audio, 10).shape == (2, 10)
    padded = cut(audio, 1200)
    assert padded.shape == (2, 1200) and padded[:, 1000:].max() == 0.0


def test_loop_value_is_frozen_and_read_only() -> None:
    loop = Loop(np.zeros((1, 100)), 44100, 120.0, 1, metadata={"prompt": "x"})
    with pytest.raises(ValueError):
        loop.audio[0, 0] = 1.0
    with pytest.raises(TypeError):
        loop.metadata["prompt"] = "y"  # type: ignore[index]
    assert loop.with_metadata(seed=3).metadata == {"prompt": "x", "seed": 3}
    assert loop.beats == 4 and loop.audio.dtype == np.float32
