#!/bin/sh
# llm-pretrain on a GPU (issue 6's figures): tokens/s, MFU against the GPU's dense bf16 peak
# (989 TFLOP/s for an H100 SXM) and peak GPU memory, for gpt2-124m and llama-125m at seq 1024,
# with and without --recompute; the goal is MFU >= 50% at 124M and at least llm.c's ~460k
# tokens/s per H100 (its published 124M run: 3.7M tokens/s on 8 H100s).
# llm.c itself is not installed on the GPU machines (no network), so its published figure is
# the reference. Prints one skip line and exits 0 where there is no GPU.
# Usage: pretrain-gpu.sh BIN_DIR   LLMKIT_BENCH_STEPS (default 12): steps per run (first 2 excluded)
#                                   LLMKIT_BENCH_MICRO (default 16): sequences per micro-batch
set -eu
bin=$(cd "${1:?usage: pretrain-gpu.sh BIN_DIR}" && pwd)
steps=${LLMKIT_BENCH_STEPS:-12}
micro=${LLMKIT_BENCH_MICRO:-16}
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "pretrain-gpu: no GPU here (nvidia-smi): skipped"
  exit 0
fi
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Random tokens below 32000: enough windows of 1025 tokens for every step.
. "$(dirname "$0")/lib.sh"
random_tokens "$work/tokens.bin" "$(( (steps + 2) * micro * 1025 ))" 32000

run() {  # MODEL [EXTRA OPTIONS]
  model=$1
  shift
  out="$work/run-$model-$#"
  "$bin/llm-pretrain" -q --device cuda --model "$model" --train "$work/tokens.bin" --out "$out" --seq-len 1024 \
    --micro-batch "$micro" --steps "$steps" --warmup 1 --eval-every 0 --no-verify "$@" 2>"$work/err" ||
    { cat "$work/err"; exit 1; }
  python3 - "$out/metrics.jsonl" "$model" "$micro" "$*" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][2:]  # the first steps warm up
model, micro, extra = sys.argv[2], int(sys.argv[3]), sys.argv[4]
tps = sum(r["tokens_per_sec"] for r in rows) / len(rows)
mfu = sum(r["mfu"] for r in rows) / len(rows)
mem = max(r.get("peak_device_mem", 0) for r in rows)
print(f"{model:10s} B={micro:<3d} T=1024 {extra:12s} {1024 * micro / tps * 1000:8.1f} ms/step {tps:10.0f} tok/s  "
      f"MFU {100 * mfu:5.1f}%  peak GPU memory {mem / 2**30:6.2f} GiB  ({tps / 460e3:.2f}x llm.c's 460k tok/s per H100)")
PY
}

nvidia-smi -L
"$bin/cuda_kernels" --model gpt2-124m --batch "$micro" --seq 1024 --reps 5 | tail -3 || true
run gpt2-124m
run gpt2-124m --recompute
run llama-125m
run llama-125m --recompute
