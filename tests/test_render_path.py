"""The render path: which of CUDA graphs, compile and width buckets run, and why.

``choose_path`` is pure, so every machine is a literal ``Platform`` here (a CUDA box with and
without Triton, an old torch, the CPU, MPS); the worker's use of it runs on this CPU.
"""

from __future__ import annotations

import pytest

from riffbridge.engine.worker import WorkerSettings, open_renderer
from riffbridge.errors import ConfigError
from riffbridge.render.path import (
    Platform,
    RenderOptions,
    choose_path,
    choose_render_batch,
    default_cache_dir,
    torch_version_tuple,
    use_compile_cache,
)

H200 = Platform("cuda", "2.11.0+cu130", cuda_graphs=True, triton=True)
ENV = {"HOME": "/home/player"}


def test_on_cuda_the_fast_path_is_the_default() -> None:
    path = choose_path(H200, RenderOptions(), ENV)
    assert (path.cuda_graphs, path.compile, path.width_buckets) == (True, True, True)
    assert path.compile_cache == "/home/player/.cache/riffbridge/inductor"
    assert path.describe() == (
        "render path: cuda graphs on; compile in the background, uncompiled until ready "
        "(cache /home/player/.cache/riffbridge/inductor); width buckets on (each new width "
        "records or compiles)")


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_off_cuda_the_levers_are_accepted_and_reported_as_not_applying(device: str) -> None:
    path = choose_path(Platform(device, "2.13.0+cpu"), RenderOptions(), ENV)
    assert (path.cuda_graphs, path.compile, path.width_buckets, path.compile_cache) == (
        False, False, False, None)
    assert path.describe() == (
        f"render path: cuda graphs do not apply on {device}; compile does not apply on "
        f"{device}; width buckets off (a new width costs nothing here)")


def test_opting_out_is_said_by_its_flag() -> None:
    path = choose_path(H200, RenderOptions(cuda_graphs=False, compile=False), ENV)
    assert (path.cuda_graphs, path.compile, path.width_buckets) == (False, False, False)
    assert path.reasons == ("cuda graphs off (--no-cuda-graphs)", "compile off (--no-compile)",
                            "width buckets off (a new width costs nothing here)")


def test_graphs_alone_still_bucket_and_compile_alone_too() -> None:
    assert choose_path(H200, RenderOptions(compile=False), ENV).width_buckets
    assert choose_path(H200, RenderOptions(cuda_graphs=False), ENV).width_buckets
    assert not choose_path(H200, RenderOptions(width_buckets="off"), ENV).width_buckets
    cpu = choose_path(Platform("cpu", "2.13.0"), RenderOptions(width_buckets="on"), ENV)
    assert cpu.width_buckets and cpu.reasons[-1] == "width buckets on"


def test_a_cuda_machine_without_triton_or_with_an_old_torch_plays_uncompiled() -> None:
    no_triton = choose_path(Platform("cuda", "2.11.0", cuda_graphs=True), RenderOptions(), ENV)
    assert (no_triton.cuda_graphs, no_triton.compile) == (True, False)
    assert "compile unavailable (triton is not installed)" in no_triton.reasons
    old = choose_path(Platform("cuda", "2.1.2+cu121", cuda_graphs=True, triton=True),
                      RenderOptions(), ENV)
    assert not old.compile and "compile needs torch >= 2.2, have 2.1.2+cu121" in old.reasons
    no_graphs = choose_path(Platform("cuda", "2.11.0", triton=True), RenderOptions(), ENV)
    assert not no_graphs.cuda_graphs and no_graphs.compile
    assert "cuda graphs unavailable in torch 2.11.0" in no_graphs.reasons


def test_the_compile_cache_is_configurable_and_defaults_under_the_user_cache_dir(
        tmp_path: object) -> None:
    assert choose_path(H200, RenderOptions(compile_cache="/fast/disk"), ENV).compile_cache \
        == "/fast/disk"
    assert default_cache_dir({"XDG_CACHE_HOME": "/xdg", "HOME": "/h"}) == \
        "/xdg/riffbridge/inductor"
    env: dict[str, str] = {}
    use_compile_cache(f"{tmp_path}/inductor", env)
    assert env == {"TORCHINDUCTOR_CACHE_DIR": f"{tmp_path}/inductor",
                   "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}


def test_versions_and_bad_choices() -> None:
    assert torch_version_tuple("2.11.0+cu130") == (2, 11)
    assert torch_version_tuple("nightly") == (0, 0)
    with pytest.raises(ConfigError, match="width_buckets must be one of auto, on, off, got 'x'"):
        choose_path(H200, RenderOptions(width_buckets="x"))


def test_the_render_batch_is_4_on_cuda_and_1_elsewhere_unless_asked() -> None:
    assert choose_render_batch("cuda", 0) == (4, "render batch 4 (auto on cuda)")
    assert choose_render_batch("cpu", 0) == (1, "render batch 1 (auto on cpu)")
    assert choose_render_batch("mps", 0) == (1, "render batch 1 (auto on mps)")
    assert choose_render_batch("cpu", 3) == (3, "render batch 3")
    assert choose_render_batch("cuda", 1) == (1, "render batch 1")
    for bad in (-1, 2.0, True):
        with pytest.raises(ConfigError, match="render_batch must be an integer >= 0"):
            choose_render_batch("cuda", bad)  # type: ignore[arg-type]


def test_the_worker_builds_its_renderer_on_the_chosen_path_on_this_cpu() -> None:
    renderer, path = open_renderer(WorkerSettings("tiny", "cpu"))
    assert path.describe().startswith("render path: cuda graphs do not apply on cpu")
    assert renderer.compiler is None and not renderer.width_buckets
    renderer, path = open_renderer(WorkerSettings("tiny", "cpu", width_buckets="on"))
    assert renderer.width_buckets


def test_the_worker_process_reports_its_path_when_ready() -> None:
    from riffbridge.engine.worker import RenderWorker

    with RenderWorker(WorkerSettings("tiny", "cpu")) as worker:
        ready = worker.wait_ready(120)
    assert ready.path.startswith("render path: cuda graphs do not apply on cpu; compile does "
                                 "not apply on cpu")
    assert ready.path.endswith("; render batch 1 (auto on cpu)") and ready.batch == 1


def test_step_caching_is_off_by_default_and_said_only_when_on() -> None:
    assert choose_path(H200, RenderOptions(), ENV).step_cache == 1
    assert not any("step cache" in r for r in choose_path(H200, RenderOptions(), ENV).reasons)
    cpu = choose_path(Platform("cpu", "2.13.0+cpu"), RenderOptions(step_cache=3), ENV)
    assert cpu.step_cache == 3 and not (cpu.cuda_graphs or cpu.compile)
    assert cpu.describe() == (
        "render path: cuda graphs do not apply on cpu; compile does not apply on cpu; width "
        "buckets off (a new width costs nothing here); step cache on: the whole UNet every 3 "
        "steps, its deep features reused between (changes the output)")


def test_step_caching_turns_cuda_graphs_and_compile_off_and_says_why() -> None:
    # Both record one fixed UNet call; a cached step is another. Asked for, step caching wins.
    path = choose_path(H200, RenderOptions(step_cache=2), ENV)
    assert (path.cuda_graphs, path.compile, path.compile_cache, path.step_cache) == (
        False, False, None, 2)
    assert path.reasons[:3] == (
        "cuda graphs off (step cache 2 runs a second, shallow UNet call)",
        "compile off (step cache 2 runs a second, shallow UNet call)",
        "width buckets off (a new width costs nothing here)")
    # What would not have run anyway keeps its own reason.
    off = choose_path(H200, RenderOptions(cuda_graphs=False, step_cache=2), ENV)
    assert off.reasons[0] == "cuda graphs off (--no-cuda-graphs)"
    with pytest.raises(ConfigError, match=r"step_cache must be an integer in \[1, 5\].*got 0"):
        choose_path(H200, RenderOptions(step_cache=0), ENV)


def test_the_worker_builds_a_step_cached_renderer_on_this_cpu() -> None:
    renderer, path = open_renderer(WorkerSettings("tiny", "cpu", step_cache=4))
    assert renderer.step_cache == path.step_cache == 4
    assert path.describe().endswith("step cache on: the whole UNet every 4 steps, its deep "
                                    "features reused between (changes the output)")
