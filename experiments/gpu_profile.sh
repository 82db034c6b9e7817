#!/usr/bin/env bash
# The GPU benchmark, as one script to run from the repository root on a machine with one
# H100/H200 (python3 with jax[cuda], torch, torchvision, transformers, matplotlib):
#
#     bash experiments/gpu_profile.sh [extra experiments.bench flags]
#
# Writes $OUT/bench_gpu/bench.{json,md,png} (rewritten after every cell), then the Faster R-CNN
# cell's $OUT/frcnn_speed_gpu.{json,md}, and $OUT/bench_gpu.log;
# OUT defaults to runs/bench_gpu. The profile plans every cell into 7.5 minutes (the plan is
# printed first: `python -m experiments.bench --profile=gpu --dry_run` shows it on any machine)
# and stops starting cells past 7.75; `timeout` ends it at 8 minutes whatever happens. Extra
# flags go after --profile=gpu --torch and so override them. Afterwards, on any machine:
#     python -m experiments.bench_recount $OUT/bench_gpu/bench.json   (XLA's FLOPs and MFU)
set -uo pipefail

OUT="${OUT:-runs/bench_gpu}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
LOG="$OUT/bench_gpu.log"

# jax and torch share the GPU in one process: jax preallocates half, torch allocates from the rest
# (a fraction of .9 for jax would leave torch too little for the larger batches).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-.5}"
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # random-init models only; never the network

{
  echo "== $(date -u '+%F %T UTC') on $(hostname); OUT=$OUT"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit \
    --format=csv 2>&1 || echo "nvidia-smi not available"
  nvidia-smi -L 2>&1 || true
  timeout 90 "$PYTHON" -c 'import jax; print("jax", jax.__version__, jax.devices())' 2>&1
  echo "== experiments.bench --profile=gpu --torch $*"
} 2>&1 | tee "$LOG"

timeout --kill-after=10 480 "$PYTHON" -m experiments.bench --profile=gpu --torch \
  --out="$OUT/bench_gpu" "$@" 2>&1 | tee -a "$LOG"
status=${PIPESTATUS[0]}
echo "== exit status $status (124: stopped by timeout; the reports hold the cells done)" \
  | tee -a "$LOG"

# Issue 23's GPU cell: the Faster R-CNN train step, tlx against torchvision on the same GPU
# (experiments.frcnn_speed; 10 timed steps each in 2 interleaved rounds), at most 2.5 minutes.
echo "== experiments.frcnn_speed (Faster R-CNN train step) $(date -u '+%T UTC')" | tee -a "$LOG"
timeout --kill-after=10 150 "$PYTHON" -m experiments.frcnn_speed --steps=10 \
  --interleave_rounds=2 --out="$OUT/frcnn_speed_gpu" 2>&1 | tee -a "$LOG"
echo "== frcnn_speed exit status ${PIPESTATUS[0]}" | tee -a "$LOG"
exit "$status"
