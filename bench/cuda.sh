#!/bin/sh
# The CUDA backend's operations one by one at the shapes of a training step (cuda_kernels):
# time per call, GB/s or TFLOP/s against the H100 SXM's peaks, and the step they add up to, for
# gpt2-124m and llama-125m at B=8, T=1024 with bf16 matmuls, after the device memory such a step
# needs (cuda_kernels --memory: weights, gradients, AdamW, activations). Compare the step estimate's
# tokens/s with llm-pretrain's at the same batch (pretrain-gpu.sh with LLMKIT_BENCH_MICRO=8).
# Prints one skip line and exits 0 where there is no GPU (cuda_kernels exits 77).
# Usage: cuda.sh BIN_DIR      LLMKIT_BENCH_PEAK="--peak-tflops X --peak-gbs Y" for another GPU.
set -eu
bin=$(cd "${1:?usage: cuda.sh BIN_DIR}" && pwd)
out=$(mktemp /tmp/llmkit-bench-XXXXXX)
trap 'rm -f "$out"' EXIT
for model in gpt2-124m llama-125m; do
  rc=0
  # shellcheck disable=SC2086  # the peaks are separate words
  { "$bin/cuda_kernels" --memory --model "$model" --batch 8 --seq 1024 &&
    "$bin/cuda_kernels" --model "$model" --batch 8 --seq 1024 ${LLMKIT_BENCH_PEAK:-}; } >"$out" || rc=$?
  if [ "$rc" -eq 77 ]; then
    echo "cuda: no CUDA device here: skipped"
    exit 0
  fi
  cat "$out"
  [ "$rc" -eq 0 ] || exit "$rc"
done
