"""The renderer's speed levers: attention choice, memory format, CUDA graphs.

The CUDA-graph tests need a CUDA GPU; without one they skip and say so. What runs everywhere:
the levers give the same pictures, a variant's choice does not leak into the next Renderer
that shares the model, and asking for CUDA graphs off CUDA is a clear error before any load.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from riffbridge.cli import main
from riffbridge.config import build
from riffbridge.errors import ConfigError
from riffbridge.render.components import Components
from riffbridge.render.riffuse import Renderer, RiffuseJob
from riffbridge.render.seamless import set_time_tiling
from riffbridge.render.tiny import build_tiny

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU here: CUDA graphs run only on CUDA")


def pixels(renderer: Renderer, jobs: list[RiffuseJob]) -> list[np.ndarray]:
    return [np.asarray(img).astype(np.int16) for img in renderer.render(jobs)]


def jobs(width: int = 64, tile: bool = False) -> list[RiffuseJob]:
    return [RiffuseJob("jazz", "rock", seed_a=1, seed_b=2, alpha=a, steps=3, width=width,
                       tile_time=tile) for a in (0.0, 0.5)]


def processors(comps: Components) -> set[str]:
    return {type(p).__name__ for p in comps.unet.attn_processors.values()}


def test_attention_choice_does_not_leak_into_the_next_renderer() -> None:
    comps = build_tiny()
    plain = pixels(Renderer(comps, device="cpu", sdpa=False, channels_last=True), jobs())
    assert processors(comps) == {"AttnProcessor"}
    assert comps.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    sdpa = pixels(Renderer(comps, device="cpu"), jobs())
    assert processors(comps) == {"AttnProcessor2_0"}
    assert comps.unet.conv_in.weight.is_contiguous()
    for a, b in zip(plain, sdpa, strict=True):
        assert np.abs(a - b).max() <= 2  # same maths, other kernels


def test_cuda_graphs_off_cuda_is_refused_before_loading() -> None:
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"CUDA graphs need a CUDA device.*cpu"):
        Renderer("no/such-model-would-fail-later", device="cpu", cuda_graphs=True)
    assert time.perf_counter() - t0 < 5  # no model load was tried


def test_serve_config_takes_the_gpu_levers_on_the_cpu_as_not_applying() -> None:
    conf = build(flags={"device": "cpu"})
    assert (conf.cuda_graphs, conf.compile, conf.width_buckets) == (True, True, "auto")
    assert build(flags={"device": "mps", "cuda_graphs": True}).cuda_graphs


def test_bench_cli_with_cuda_graphs_on_the_cpu_says_they_do_not_apply(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--device", "cpu", "--cuda-graphs", "--compile", "--runs", "1",
                 "--warmup", "0", "--steps", "2", "--width", "64", "--no-audio"]) == 0
    out = capsys.readouterr().out
    assert ("render path: cuda graphs do not apply on cpu; compile does not apply on cpu; "
            "width buckets off (a new width costs nothing here)") in out
    assert "tiny auto b1 default 2st" in out and "graphs" not in out.split("\n", 1)[1]


class RecordOps(TorchDispatchMode):
    """Every aten op a forward runs, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


# Ops that read a GPU value on the host (item/bool/nonzero: a sync) or copy host data to the
# GPU (torch.tensor(...) inside the forward): either breaks a CUDA-graph recording.
HOST_SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "lift_fresh", "masked_select",
                 "unique", "_unique2", "equal", "is_nonzero"}


@pytest.mark.parametrize("latent_width", [8, 9])  # 9: the UNet's odd-size upsampling path
@pytest.mark.parametrize("tile", [False, True])
def test_the_unet_step_has_no_host_sync_so_a_graph_can_record_it(latent_width: int,
                                                                   tile: bool) -> None:
    """Runs here on the CPU: the op list is the same on CUDA, where a sync would fail capture."""
    unet = build_tiny().unet
    set_time_tiling(unet, tile)
    sample, t, context = torch.randn(2, 4, 64, latent_width), torch.tensor(501), \
        torch.randn(2, 77, 32)
    with torch.inference_mode(), RecordOps() as ops:
        out = unet(sample, t, encoder_hidden_states=context)
    assert out.sample.shape == sample.shape
    assert "conv2d" in ops.names and "scaled_dot_product_attention" in ops.names
    assert ("pad" in ops.names) == tile  # the recorder sees the tiling code
    assert not ops.names & HOST_SYNC_OPS, sorted(ops.names & HOST_SYNC_OPS)


@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_cuda_graphs_render_what_eager_renders(dtype: str) -> None:
    comps = build_tiny()
    eager = pixels(Renderer(comps, device="cuda", dtype=dtype), jobs())
    graphed = Renderer(comps, device="cuda", dtype=dtype, cuda_graphs=True)
    first = pixels(graphed, jobs())
    again = pixels(graphed, jobs())
    assert graphed._graphed is not None
    assert graphed._graphed.captures == 1  # replayed, not recorded again
    for e, g, a in zip(eager, first, again, strict=True):
        assert np.abs(e - g).max() <= 2
        assert np.array_equal(g, a)  # deterministic replay


@needs_cuda
def test_cuda_graphs_record_per_shape_and_tiling_and_stay_bounded() -> None:
    r = Renderer(build_tiny(), device="cuda", cuda_graphs=True)
    graphs = r._graphed
    assert graphs is not None
    pixels(r, jobs(64))
    pixels(r, jobs(64, tile=True))  # the tiling switch changes the convolutions' code
    pixels(r, jobs(128))
    pixels(r, jobs(64)[:1])  # another batch size
    assert graphs.captures == 4 and len(graphs) == 4
    tiled = pixels(r, jobs(64, tile=True))
    assert graphs.captures == 4  # still held
    eager = pixels(Renderer(build_tiny(), device="cuda"), jobs(64, tile=True))
    for e, g in zip(eager, tiled, strict=True):
        assert np.abs(e - g).max() <= 2
    pixels(r, jobs(72))
    assert graphs.captures == 5 and len(graphs) == graphs.max_graphs == 4
