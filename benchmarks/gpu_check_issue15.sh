#!/usr/bin/env bash
# Issue 15's GPU checks in one go (about 12 minutes on an H100/H200; figures to $OUT or ./gpu15).
# What it checks: the CUDA tests of the render path (graphs, the real background compile, width
# buckets), the default path against diffusers in the same run, the levers one by one, batching
# planned loops (bench_batch.py), and the start to first sound with a cold and a warm compile
# cache. Run from the repository root.
set -u
OUT=${OUT:-gpu15}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONPATH=$PWD
PY=${PY:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
$PY -m pytest -q tests/test_render_speedups.py tests/test_render_compile.py \
    tests/test_render_path.py > "$OUT/tests.txt" 2>&1; echo "tests rc $?" >> "$OUT/tests.txt"
B="$PY -m riffbridge bench --random-weights --device cuda --steps 50 --runs 5"
# The default path (graphs + compile, the compile before timing), and against diffusers.
timeout 600 $B --against diffusers --json > "$OUT/default_vs_diffusers.json" 2>&1
timeout 300 $B --batch 4 --against diffusers --json > "$OUT/default_b4_vs_diffusers.json" 2>&1
timeout 300 $B --no-compile --json > "$OUT/graphs_only.json" 2>&1
timeout 300 $B --no-compile --no-cuda-graphs --json > "$OUT/eager.json" 2>&1
timeout 300 $B --width-buckets on --width 400 --json > "$OUT/bucket_400_in_448.json" 2>&1
timeout 300 $B --width-buckets off --width 400 --json > "$OUT/exact_400.json" 2>&1
# Where batching planned loops stops paying (render_batch): per-clip time, UNet ms/step, the
# first loop's wait and peak memory at batch 1..16, on the default path less compile (2 min).
timeout 240 $PY benchmarks/bench_batch.py --model sd15-random --device cuda --steps 50 \
    --sizes 1,2,4,8,16 --runs 2 --json > "$OUT/batch.json" 2>&1
# Start to first sound, cold and warm compile cache.
timeout 900 $PY benchmarks/bench_startup.py --model sd15-random --device cuda --steps 50 \
    --runs 1 > "$OUT/startup.txt" 2>&1
# Step caching (DeepCache-style, off by default): UNet time and the change of the output per
# interval against the uncached render (eager fp16: step caching turns graphs and compile off).
timeout 300 $PY benchmarks/bench_step_cache.py --model sd15-random --device cuda --width 512 \
    --steps 50 --runs 3 > "$OUT/step_cache.txt" 2>&1
timeout 300 $B --step-cache 3 --json > "$OUT/step_cache_3.json" 2>&1
nvidia-smi --query-gpu=memory.used --format=csv >> "$OUT/gpu.txt" 2>&1
tail -n 3 "$OUT"/*.txt
