"""Which render path runs: CUDA graphs, torch.compile (in the background), width buckets.

``choose_path`` is pure: from what the machine offers (``Platform``: the device type, the torch
version, whether CUDA graphs and the compiler's backend exist) and what the user asked
(``RenderOptions``, from the parameter table) it decides the path and says why, one reason per
lever. The defaults ask for the fastest safe path; a lever that cannot run here (CUDA graphs on
the CPU, compiling without Triton) is reported as not applying, never an error and never
silently. ``probe_platform`` is the one place that asks torch what it has.

Why these levers: on a fast GPU an eager SD 1.5 UNet step is bound by Python and kernel launches,
which a CUDA-graph replay removes; ``torch.compile`` fuses kernels on top of that but costs about
a minute per input shape at a cold start, so it runs off the critical path (the worker plays
from the uncompiled path meanwhile, ``riffbridge.render.compiling``) with a persistent on-disk
cache (a second start reads the compiled code back), and width buckets bound the shapes a tempo
change can bring (``riffbridge.render.buckets``).

Step caching (``step_cache`` N > 1, ``riffbridge.render.stepcache``) is off by default: it
changes the output, and whether it pays on a GPU is unmeasured. When asked for, it wins over
CUDA graphs and compile, which record one fixed UNet call (a cached step is another): they are
then off, and the line says why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_COMPILE_TORCH = (2, 2)  # torch.compile with the inductor FX graph cache on disk
BUCKET_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Platform:
    """What the machine offers the renderer."""

    device_type: str  # "cuda", "cpu", "mps"
    torch_version: str  # torch.__version__, e.g. "2.11.0+cu130"
    cuda_graphs: bool = False  # torch.cuda.CUDAGraph usable on this device
    triton: bool = False  # the inductor backend's GPU compiler is importable


@dataclass(frozen=True)
class RenderOptions:
    """What the user asked for (the ``serve`` settings of the same names)."""

    cuda_graphs: bool = True
    compile: bool = True
    compile_cache: str = ""  # "" : the user cache dir (``default_cache_dir``)
    width_buckets: str = "auto"  # auto: on when graphs or compile run (a new shape costs)
    step_cache: int = 1  # 1: off; N: the whole UNet every N steps, deep features reused between


@dataclass(frozen=True)
class RenderPath:
    """The decision: which levers run, where the compile cache is, and why."""

    device_type: str
    cuda_graphs: bool
    compile: bool  # in the background; the uncompiled path plays meanwhile
    width_buckets: bool
    compile_cache: str | None  # the inductor cache dir when compiling
    reasons: tuple[str, ...]
    step_cache: int = 1

    def describe(self) -> str:
        """The one line logged at start: ``render path: ...``."""
        return "render path: " + "; ".join(self.reasons)


def torch_version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a torch version string ("2.11.0+cu130" -> (2, 11)); (0, 0) unreadable."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def default_cache_dir(env: Mapping[str, str] | None = None) -> str:
    """Where compiled code is kept between starts: $XDG_CACHE_HOME/riffbridge/inductor, else
    ~/.cache/riffbridge/inductor (%LOCALAPPDATA% on Windows)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or (env.get("LOCALAPPDATA") if os.name == "nt" else None)
    root = Path(base) if base else Path(env.get("HOME") or Path.home()) / ".cache"
    return str(root / "riffbridge" / "inductor")


def choose_path(platform: Platform, options: RenderOptions,
                env: Mapping[str, str] | None = None) -> RenderPath:
    """The render path for ``options`` on ``platform``, with one reason per lever."""
    if options.width_buckets not in BUCKET_CHOICES:
        from riffbridge.errors import ConfigError

        raise ConfigError(f"width_buckets must be one of {', '.join(BUCKET_CHOICES)}, got "
                          f"{options.width_buckets!r}")
    from riffbridge.render.stepcache import check_interval

    step_cache = check_interval(options.step_cache)
    fixed_call = f"step cache {step_cache} runs a second, shallow UNet call"
    dev = platform.device_type
    cuda = dev == "cuda"
    reasons = []
    graphs = False
    if not options.cuda_graphs:
        reasons.append("cuda graphs off (--no-cuda-graphs)")
    elif not cuda:
        reasons.append(f"cuda graphs do not apply on {dev}")
    elif not platform.cuda_graphs:
        reasons.append(f"cuda graphs unavailable in torch {platform.torch_version}")
    elif step_cache > 1:
        reasons.append(f"cuda graphs off ({fixed_call})")
    else:
        graphs = True
        reasons.append("cuda graphs on")
    compiled = False
    cache: str | None = None
    version = torch_version_tuple(platform.torch_version)
    if not options.compile:
        reasons.append("compile off (--no-compile)")
    elif not cuda:
        # Inductor on the CPU compiles for minutes and gains little on a model this size;
        # on MPS it is not there. The renderer stays eager.
        reasons.append(f"compile does not apply on {dev}")
    elif version < MIN_COMPILE_TORCH:
        reasons.append(f"compile needs torch >= {'.'.join(map(str, MIN_COMPILE_TORCH))}, "
                       f"have {platform.torch_version}")
    elif not platform.triton:
        reasons.append("compile unavailable (triton is not installed)")
    elif step_cache > 1:
        reasons.append(f"compile off ({fixed_call})")
    else:
        compiled = True
        cache = options.compile_cache or default_cache_dir(env)
        reasons.append(f"compile in the background, uncompiled until ready (cache {cache})")
    shapes_cost = graphs or compiled
    if options.width_buckets == "off":
        buckets = False
        reasons.append("width buckets off")
    elif options.width_buckets == "on":
        buckets = True
        reasons.append("width buckets on")
    else:
        buckets = shapes_cost
        reasons.append("width buckets on (each new width records or compiles)" if buckets
                       else "width buckets off (a new width costs nothing here)")
    if step_cache > 1:
        reasons.append(f"step cache on: the whole UNet every {step_cache} steps, its deep "
                       "features reused between (changes the output)")
    return RenderPath(dev, graphs, compiled, buckets, cache, tuple(reasons), step_cache)


AUTO_RENDER_BATCH = {"cuda": 4}  # planned loops per render by device type; others: 1


def choose_render_batch(device_type: str, asked: int) -> tuple[int, str]:
    """How many planned loops one render carries (``render_batch``; 0: auto), and why.

    Auto is 4 on CUDA and 1 elsewhere. On a GPU an SD 1.5 UNet step at batch 1 leaves most of
    the device idle: issue 15's H200 run took 34.2 ms a step eager at batch 1 and 35.2 at 4
    (with CUDA graphs 12.6 and 27.9), so four neighbours cost little more than one. On a CPU
    (and MPS) the step's time grows with the batch (benchmarks/bench_batch.py): a batch only
    makes its first loops later. Where batching stops paying on a GPU is what
    ``bench_batch.py`` measures (``benchmarks/gpu_check_issue15.sh``)."""
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 0:
        from riffbridge.errors import ConfigError

        raise ConfigError(f"render_batch must be an integer >= 0 (0: auto), got {asked!r}")
    if asked:
        return asked, f"render batch {asked}"
    auto = AUTO_RENDER_BATCH.get(device_type, 1)
    return auto, f"render batch {auto} (auto on {device_type})"


def probe_platform(device: Any) -> Platform:
    """Ask torch what ``device`` (a torch.device) offers. Imports torch."""
    import importlib.util

    import torch

    cuda = device.type == "cuda"
    graphs = cuda and hasattr(torch.cuda, "CUDAGraph") and torch.cuda.is_available()
    triton = cuda and importlib.util.find_spec("triton") is not None
    return Platform(device.type, torch.__version__, cuda_graphs=graphs, triton=triton)


def use_compile_cache(path: str, env: Any = None) -> None:
    """Point torch inductor's on-disk caches (its cache dir, the FX graph cache and the
    AOTAutograd cache) at ``path``, before anything compiles. ``env``: os.environ by default."""
    env = os.environ if env is None else env
    Path(path).mkdir(parents=True, exist_ok=True)
    env["TORCHINDUCTOR_CACHE_DIR"] = path
    env.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    env.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
