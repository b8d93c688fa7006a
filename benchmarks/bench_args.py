"""The command line the model benchmarks share: which model on which device, how many
denoising steps, how many timed runs. Imported by the scripts beside it, which run as
``python benchmarks/bench_<name>.py`` (Python puts the script's folder on the path)."""

from __future__ import annotations

import argparse


def model_parser(*, steps: int, runs: int) -> argparse.ArgumentParser:
    """``--model`` (default the tiny model), ``--device`` (default the CPU), ``--steps`` and
    ``--runs`` with this benchmark's defaults; the caller adds its own options."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--runs", type=int, default=runs)
    return ap
