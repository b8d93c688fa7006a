"""`riffbridge bench`: per-stage timing of the render path, a table or --json."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    from riffbridge.params import BY_NAME

    p = sub.add_parser(
        "bench", help="time the render path per stage (text, UNet, VAE decode, image->audio)",
        description="Render a batch of alphas repeatedly and print per-stage milliseconds, "
        "clips per second and the real-time factor.")
    p.add_argument("--model", default="tiny",
                   help="tiny (default), a hub id, a diffusers folder or a checkpoint file")
    p.add_argument("--random-weights", action="store_true",
                   help="full-size SD 1.5 from the shipped configs with random weights")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--denoise", type=float, default=0.75)
    p.add_argument("--guidance", type=float, default=7.0)
    p.add_argument("--scheduler", default="default", choices=("default", "dpm++2m", "ddim"))
    p.add_argument("--batch", type=int, default=1, help="alphas rendered in one UNet batch")
    p.add_argument("--width", type=int, default=512, help="clip width in columns (10 ms each)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-sdpa", action="store_true", help="plain attention instead of SDPA")
    p.add_argument("--channels-last", action="store_true")
    for name in ("cuda_graphs", "compile"):  # the serve settings, same defaults and help
        param = BY_NAME[name]
        p.add_argument("--" + name.replace("_", "-"), dest=name,
                       action=argparse.BooleanOptionalAction, default=None,
                       help=f"{param.help} (default {'on' if param.default else 'off'}; the "
                       "compile runs before timing)" if name == "compile" else
                       f"{param.help} (default {'on' if param.default else 'off'})")
    p.add_argument("--compile-cache", default=BY_NAME["compile_cache"].default, metavar="DIR",
                   help=BY_NAME["compile_cache"].help)
    p.add_argument("--width-buckets", default=BY_NAME["width_buckets"].default,
                   choices=BY_NAME["width_buckets"].choices,
                   help=BY_NAME["width_buckets"].help + " (--width is then rendered at its "
                   "bucket and timed as a loop, tiled in time)")
    p.add_argument("--step-cache", type=int, default=BY_NAME["step_cache"].default,
                   metavar="N", help=BY_NAME["step_cache"].help)
    p.add_argument("--no-audio", action="store_true", help="skip the image -> audio stage")
    p.add_argument("--against", choices=("diffusers",), default=None,
                   help="also time diffusers' StableDiffusionImg2ImgPipeline on the same "
                   "components, device and jobs, in the same run, and print the ratio")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from riffbridge.errors import ConfigError
    from riffbridge.params import BY_NAME
    from riffbridge.render.bench import (
        BenchConfig,
        format_against,
        format_table,
        make_renderer,
        run_bench,
        run_diffusers,
    )
    from riffbridge.render.path import (
        RenderOptions,
        choose_path,
        probe_platform,
        use_compile_cache,
    )
    from riffbridge.torch_device import resolve_device

    if args.runs <= 0 or args.warmup < 0 or args.batch <= 0:
        raise ConfigError(f"--runs and --batch must be >= 1 and --warmup >= 0, got runs "
                          f"{args.runs}, batch {args.batch}, warmup {args.warmup}")
    def asked(name: str) -> bool:
        value = getattr(args, name)
        return bool(BY_NAME[name].default if value is None else value)

    path = choose_path(probe_platform(resolve_device(args.device)),
                       RenderOptions(asked("cuda_graphs"), asked("compile"), args.compile_cache,
                                     args.width_buckets, args.step_cache))
    if not args.json:
        print(path.describe(), flush=True)
    if path.compile_cache is not None:
        use_compile_cache(path.compile_cache)
    cfg = BenchConfig(
        model="sd15-random" if args.random_weights else args.model, device=args.device,
        dtype=args.dtype, steps=args.steps, denoise=args.denoise, guidance=args.guidance,
        scheduler=args.scheduler, batch=args.batch, width=args.width, runs=args.runs,
        warmup=args.warmup, sdpa=not args.no_sdpa, channels_last=args.channels_last,
        compile=path.compile, cuda_graphs=path.cuda_graphs, width_buckets=path.width_buckets,
        step_cache=path.step_cache, audio=not args.no_audio)
    renderer = make_renderer(cfg)
    result = run_bench(cfg, renderer)
    against = run_diffusers(cfg, renderer, result) if args.against == "diffusers" else None
    if args.json:
        out = {"render_path": path.describe(), **result.as_dict()}
        if against is not None:
            out["against"] = against.as_dict()
        print(json.dumps(out, indent=1))
    else:
        print(f"device: {result.device_name}")
        print(format_table([result]))
        if against is not None:
            print(format_against(against))
    return 0
