"""Loudness: our BS.1770-4 meter against pyloudnorm, normalisation to target, true peak."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from riffbridge.audio_io import read_audio
from riffbridge.dsp import resample
from riffbridge.errors import ConfigError
from riffbridge.loops.loudness import integrated_loudness, k_weighting, normalise, true_peak


def test_k_weighting_at_48k_is_the_standards_table() -> None:
    sos = k_weighting(48000)
    np.testing.assert_allclose(sos[0, :3], [1.53512485958697, -2.69169618940638,
                                            1.19839281085285], atol=1e-9)
    np.testing.assert_allclose(sos[0, 4:], [-1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(sos[1, 4:], [-1.99004745483398, 0.99007225036621], atol=1e-9)


def test_a_full_scale_997_hz_sine_reads_minus_3_lufs() -> None:
    t = np.arange(48000 * 5) / 48000
    sine = np.sin(2 * np.pi * 997 * t)
    assert integrated_loudness(sine[None], 48000) == pytest.approx(-3.01, abs=0.05)
    # Stereo: both channels count.
    assert integrated_loudness(np.stack([sine, sine]), 48000) == pytest.approx(0.0, abs=0.05)


def test_our_meter_agrees_with_pyloudnorm_on_the_clips(clips: list[Path]) -> None:
    for clip in clips:
        audio, rate = read_audio(clip)
        for r, a in ((rate, audio), (48000, resample(audio, rate, 48000))):
            ours = integrated_loudness(a, r)
            theirs = pyloudnorm.Meter(r).integrated_loudness(a.T.astype(np.float64))
            assert ours == pytest.approx(theirs, abs=0.15)


@pytest.mark.parametrize("target", [-14.0, -18.0, -10.0])
def test_clips_land_within_half_a_lu_of_target_under_the_ceiling(clips: list[Path],
                                                                  target: float) -> None:
    for clip in clips:
        audio, rate = read_audio(clip)
        out, report = normalise(audio * 0.05, rate, target, -1.0)  # start far from the target
        assert abs(integrated_loudness(out, rate) - target) <= 0.5
        meter = pyloudnorm.Meter(rate)
        assert abs(meter.integrated_loudness(out.T.astype(np.float64)) - target) <= 0.5
        assert true_peak(out) <= -1.0 + 1e-6
        assert report.output_lufs == pytest.approx(integrated_loudness(out, rate))


@pytest.mark.parametrize("target", [-14.0, -12.0])
def test_drum_loops_hit_the_target_with_the_limiter_holding_the_ceiling(target: float) -> None:
    from riffbridge.loops.drums import render_pattern
    from riffbridge.loops.patterns import get_pattern
    from riffbridge.loops.tempo import loop_samples

    drums = render_pattern(get_pattern("breakbeat"), loop_samples(100.0, 2), 2)
    out, report = normalise(drums, 44100, target, -1.0)
    assert report.limiter_max_reduction_db > 0  # sharp hits: the peaks would pass the ceiling
    assert abs(integrated_loudness(out, 44100) - target) <= 0.5
    assert abs(pyloudnorm.Meter(44100).integrated_loudness(out.T.astype(np.float64))
               - target) <= 0.5
    assert true_peak(out) <= -1.0 + 1e-6


def test_true_peak_sees_inter_sample_peaks() -> None:
    # A sine at fs/4 sampled 45 degrees off its peaks: samples read 0.707, the wave reaches 1.
    n = np.arange(4400)  # whole periods, so it loops
    x = np.sin(np.pi / 2 * n + np.pi / 4)[None]
    assert float(np.abs(x).max()) == pytest.approx(math.sqrt(0.5))
    assert true_peak(x) == pytest.approx(0.0, abs=0.05)
    assert true_peak(x, circular=False) > -0.05  # (plus the overshoot of its hard edges)


def test_silence_and_bad_settings() -> None:
    silent = np.zeros((1, 44100), dtype=np.float32)
    out, report = normalise(silent, 44100)
    assert not out.any() and report.input_lufs == -math.inf
    assert report.as_dict()["input_lufs"] is None
    with pytest.raises(ConfigError, match="target loudness"):
        normalise(silent, 44100, target_lufs=3.0)
    with pytest.raises(ConfigError, match="ceiling"):
        normalise(silent, 44100, ceiling_dbtp=2.0)
