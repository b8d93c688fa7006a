"""Compiling off the critical path: renders go on uncompiled while the UNet compiles, the switch
comes after, and a failed compile falls back with one warning.

A GPU and Triton are not here, so the compile step is a fake that behaves like one: it holds its
thread until the test lets it go (a compile takes a minute on a GPU) and returns a callable
twin of the UNet that counts the calls the render thread makes through it. What the renderer
does around it (the per-shape queue, the twins that share the UNet's weights, the switch
between steps) is the real code.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch

from riffbridge.render.compiling import BackgroundCompiler
from riffbridge.render.riffuse import Renderer, RiffuseJob
from riffbridge.render.tiny import build_tiny


def job(width: int = 64, tile: bool = True) -> RiffuseJob:
    return RiffuseJob("jazz", "rock", seed_a=1, seed_b=2, alpha=0.5, steps=3, width=width,
                      tile_time=tile)


def pixels(renderer: Renderer, width: int = 64) -> np.ndarray:
    return np.asarray(renderer.render([job(width)])[0]).astype(np.int16)


class SlowCompile:
    """A stand-in for torch.compile: returns the module itself behind a counter, after the test
    releases it (``fail``: raises instead, as a compiler without its backend does)."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.fail = fail
        self.render_calls = 0  # calls from the render thread through the "compiled" twin
        self.render_thread = threading.get_ident()
        self.twins: list[Any] = []

    def __call__(self, module: Any) -> Any:
        assert self.release.wait(60), "the test never released the compile"
        if self.fail:
            raise RuntimeError("Cannot find a working triton installation")
        self.twins.append(module)

        def compiled(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.render_thread:
                self.render_calls += 1
            else:  # the warm-up at a new shape: where torch.compile compiles
                assert self.release.wait(60), "the test never released the compile"
            return module(*args, **kwargs)

        return compiled


def test_renders_go_on_uncompiled_during_the_compile_and_switch_after() -> None:
    comps = build_tiny()
    eager = pixels(Renderer(comps, device="cpu"))
    renderer = Renderer(comps, device="cpu")
    fake = SlowCompile()
    compiler = renderer.compile_in_background(compile=fake)
    try:
        t0 = time.perf_counter()
        during = [pixels(renderer) for _ in range(3)]  # the compile is still held
        assert compiler.state == "compiling" and fake.render_calls == 0
        assert not compiler.wait(0.01)
        for image in during:
            np.testing.assert_array_equal(image, eager)
        assert time.perf_counter() - t0 < 60
        fake.release.set()
        assert compiler.wait(30) and compiler.state == "idle"
        after = pixels(renderer)
        steps = int(renderer.timings["unet_steps"])
        assert steps >= 3 and fake.render_calls == steps  # every UNet step ran compiled
        np.testing.assert_array_equal(after, eager)  # the twin shares the UNet's weights
        twin = fake.twins[0]
        assert twin is not comps.unet
        assert twin.conv_in.weight.data_ptr() == comps.unet.conv_in.weight.data_ptr()
        assert hasattr(twin.conv_in, "_riff_padding")  # tiled, like the job
        # A new width is a new shape: uncompiled until its own compile is done.
        before = fake.render_calls
        fake.release.clear()
        pixels(renderer, 128)
        assert fake.render_calls == before and compiler.state == "compiling"
        fake.release.set()
        assert compiler.wait(30)
        pixels(renderer, 128)
        assert fake.render_calls == before + steps
        assert len(fake.twins) == 1  # one build per tiling switch, one warm-up per shape
    finally:
        fake.release.set()
        renderer.close()


def test_a_failed_compile_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    comps = build_tiny()
    eager = pixels(Renderer(comps, device="cpu"))
    renderer = Renderer(comps, device="cpu")
    fake = SlowCompile(fail=True)
    compiler = renderer.compile_in_background(compile=fake)
    with caplog.at_level(logging.WARNING, logger="riffbridge.render.compiling"):
        np.testing.assert_array_equal(pixels(renderer), eager)
        fake.release.set()
        assert compiler.wait(30)
        for width in (64, 128, 64):
            renderer.render([job(width)])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "compiling the UNet failed, rendering uncompiled from now on: RuntimeError: Cannot find "
        "a working triton installation")
    assert compiler.state == "failed" and fake.render_calls == 0
    np.testing.assert_array_equal(pixels(renderer), eager)
    renderer.close()
    renderer.close()  # idempotent


def test_the_compiler_queues_each_shape_once_and_reports_its_time() -> None:
    built: list[object] = []
    warmed: list[object] = []
    gate = threading.Event()

    def make(variant: object) -> object:
        built.append(variant)
        return lambda: variant

    def warm(call: object, key: object) -> None:
        gate.wait(10)
        warmed.append(key)

    compiler = BackgroundCompiler(make, warm)
    keys = [(True, (1,)), (True, (2,)), (False, (1,))]
    assert [compiler.pick(k) for k in keys + keys] == [None] * 6
    gate.set()
    assert compiler.wait(10)
    assert warmed == keys and built == [True, False]
    assert all(compiler.pick(k) is not None for k in keys)
    assert set(compiler.compile_s) == set(keys)
    compiler.close()


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA GPU here: the real compile and CUDA graphs run only on CUDA")
def test_on_cuda_the_real_compile_switches_under_cuda_graphs_and_renders_the_same() -> None:
    comps = build_tiny()
    eager = np.asarray(Renderer(comps, device="cuda", dtype="fp32").render([job()])[0])
    renderer = Renderer(comps, device="cuda", dtype="fp32", cuda_graphs=True, width_buckets=True)
    compiler = renderer.compile_in_background()
    try:
        during = np.asarray(renderer.render([job()])[0])  # uncompiled (graphs of eager)
        assert compiler.wait(600) and compiler.state == "idle", compiler.failed
        after = np.asarray(renderer.render([job()])[0])  # compiled, recorded as a graph
        assert compiler.compile_s
        for image in (during, after):
            assert np.abs(image.astype(np.int16) - eager).max() <= 2
    finally:
        renderer.close()
