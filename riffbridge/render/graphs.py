"""The UNet forward replayed as a CUDA graph: one launch per denoising step instead of ~1200.

On a fast GPU an eager SD 1.5 UNet step is bound by Python and kernel launches (about 1200 ops
per step), not by the GPU's arithmetic: see docs/benchmarks.md. A CUDA graph records the
step's kernels once per input shape and replays them with one call.

The graph reads and writes fixed tensors, so each call copies its inputs into the captured
ones, replays, and returns a copy of the captured output. A graph is recorded per input shape,
dtype and tiling switch (the tiling switch changes the convolutions' padding code, which the
graph has baked in); the least recently used is dropped past ``max_graphs``, which frees its
memory pool. The UNet may be a ``torch.compile``d one: the warm-up before recording compiles it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch

from riffbridge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class _Captured:
    sample: torch.Tensor
    timestep: torch.Tensor
    context: torch.Tensor
    unet: Any = None
    graph: Any = None
    out: torch.Tensor | None = None


def require_cuda(device: torch.device) -> None:
    if device.type != "cuda":
        raise ConfigError(f"CUDA graphs need a CUDA device, the renderer is on {device}: "
                          "drop cuda_graphs (--cuda-graphs) or use --device cuda")


class GraphedUNet:
    """Calls ``unet(sample, timestep, encoder_hidden_states=context).sample`` through graphs."""

    def __init__(self, unet: Any, device: torch.device, *, max_graphs: int = 4,
                 warmup: int = 2) -> None:
        require_cuda(device)
        if max_graphs < 1 or warmup < 1:
            raise ConfigError(f"max_graphs and warmup must be >= 1, got {max_graphs}, {warmup}")
        self.unet = unet
        self.device = device
        self.max_graphs = max_graphs
        self.warmup = warmup
        self._graphs: OrderedDict[Hashable, _Captured] = OrderedDict()
        self.captures = 0  # how many graphs were recorded, for tests and logs

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                 variant: Hashable = None, unet: Any = None) -> torch.Tensor:
        """``unet``: another callable to record for this call (the compiled UNet once it is
        ready); ``variant`` must then tell it apart from the default one."""
        timestep = torch.as_tensor(timestep, device=self.device)
        key = (tuple(sample.shape), sample.dtype, tuple(timestep.shape), timestep.dtype,
               tuple(context.shape), context.dtype, variant)
        cap = self._graphs.get(key)
        if cap is None:
            cap = self._capture(sample, timestep, context, self.unet if unet is None else unet)
            self._graphs[key] = cap
            while len(self._graphs) > self.max_graphs:
                _, old = self._graphs.popitem(last=False)
                old.graph.reset()
        else:
            self._graphs.move_to_end(key)
        cap.sample.copy_(sample)
        cap.timestep.copy_(timestep)
        cap.context.copy_(context)
        cap.graph.replay()
        assert cap.out is not None
        return cap.out.clone()  # the next replay overwrites cap.out

    def _forward(self, cap: _Captured) -> torch.Tensor:
        out: torch.Tensor = cap.unet(cap.sample, cap.timestep,
                                     encoder_hidden_states=cap.context).sample
        return out

    def _capture(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                 unet: Any) -> _Captured:
        cap = _Captured(sample.clone(), timestep.clone(), context.clone(), unet)
        # Warm-up on a side stream (cuDNN/cuBLAS choose kernels, torch.compile compiles) so
        # that nothing in the recorded region allocates workspaces or syncs for the first time.
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self._forward(cap)
        main.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the background compiler's thread may run kernels meanwhile; only this
        # thread's unsafe calls are refused during the recording.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            cap.out = self._forward(cap)
        cap.graph = graph
        self.captures += 1
        log.info("captured the UNet as a CUDA graph for input %s %s (%d held)",
                 tuple(sample.shape), str(sample.dtype).replace("torch.", ""),
                 len(self._graphs) + 1)
        return cap

    def clear(self) -> None:
        for cap in self._graphs.values():
            cap.graph.reset()
        self._graphs.clear()

    def __len__(self) -> int:
        return len(self._graphs)
