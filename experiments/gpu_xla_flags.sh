#!/usr/bin/env bash
# A/B of the XLA GPU flags that matter for tlx's steps (issue 24, item 1), on the two goal cells
# (BERT-base finetune bfloat16 batch 32 x 128 tokens, ResNet-50 finetune bfloat16 batch 256),
# tlx alone, one process per flag set (XLA_FLAGS are read once per process):
#
#     bash experiments/gpu_xla_flags.sh        # on one H100/H200, about 6 minutes
#
# Writes $OUT/<set>_<model>/bench.{json,md} and $OUT/xla_flags.md (one line per set and model:
# step time and compile time). Keep a flag in a model's profile only where it measures faster.
set -uo pipefail

OUT="${OUT:-runs/gpu_xla_flags}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-.9}"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

declare -A SETS=(
  [default]=""
  [no_triton_gemm]="--xla_gpu_enable_triton_gemm=false"
  [autotune_0]="--xla_gpu_autotune_level=0"
)
declare -A BATCH=([bert_base]=32 [resnet50]=256)

for set in default no_triton_gemm autotune_0; do
  for model in bert_base resnet50; do
    XLA_FLAGS="${SETS[$set]}" timeout --kill-after=10 150 "$PYTHON" -m experiments.bench \
      --profile=gpu --notorch --models="$model" --plans=finetune --precisions=bfloat16 \
      --batch_sizes="${BATCH[$model]}" --steps=10 --warmup=2 --compile_workers=0 \
      --out="$OUT/${set}_${model}" "$@" > "$OUT/${set}_${model}.log" 2>&1
    echo "== $set $model: exit $?"
  done
done

"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
lines = ["| flags | model | step ms | compile s |", "|---|---|---|---|"]
for report in sorted(out.glob("*/bench.json")):
    data = json.loads(report.read_text())
    for row in data["rows"]:
        t = row.get("tlx") or {}
        step = f"{t['step_median_s'] * 1e3:.1f}" if t.get("step_median_s") else row.get("error", "-")
        compile_s = f"{t['compile_s']:.1f}" if t.get("compile_s") else "-"
        flags = data["environment"].get("xla_flags") or "(default)"
        lines.append(f"| {flags} | {row['model']} | {step} | {compile_s} |")
(out / "xla_flags.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
