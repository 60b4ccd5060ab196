#!/bin/sh
# Quantized inference on the GPU: llama-125m (one training step: speed does not depend on what
# the weights learned) written as F16, Q8_0 and Q4_K_M GGUF files and decoded on the CUDA
# backend (bf16 matmuls; a GGUF's blocks stay on the GPU: warp dot products for a few rows,
# dequantize + cuBLASLt for prompts) and on the CPU for comparison: prompt processing and decode
# tokens/s (bench/decode, 128 prompt tokens, 64 new, best of 3) and the weights' bytes. The CUDA
# kernels' own check against the CPU is tests/cuda/kernels.cpp (ctest gpu/kernels).
# Prints one skip line and exits 0 where there is no GPU.
# Usage: quant-gpu.sh BIN_DIR
set -eu
bin=$(cd "${1:?usage: quant-gpu.sh BIN_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > /dev/null 2>&1; then
  echo "quant-gpu: no CUDA device here: skipped"
  exit 0
fi
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
find /usr/share/common-licenses -type f | head -40 | python3 -c "
import json, sys
for p in sys.stdin:
    try: print(json.dumps({'text': open(p.strip(), encoding='utf-8').read()}))
    except Exception: pass" > docs.jsonl
"$bin/llm-tok" train -q -o tok.model --vocab-size 4096 docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards docs.jsonl
"$bin/llm-pretrain" -q --model "$src/share/llmkit/models/llama-125m.json" --train 'shards/train-*.tok' --tokenizer tok.model \
  --out big --seq-len 64 --micro-batch 1 --steps 1 --warmup 0 --eval-every 0 2> /dev/null
printf '%-8s %-5s %12s %12s %10s\n' type device "pp tok/s" "decode tok/s" "MiB"
for t in f16 q8_0 q4_k_m; do
  "$bin/llm-quant" -q --model big --type "$t" -o big-$t.gguf
  for device in cuda cpu; do
    "$bin/decode" big-$t.gguf 128 64 3 "$device" 2> /dev/null | python3 -c "
import json, sys
o = json.load(sys.stdin)
print(f\"{'$t':8s} {'$device':5s} {o['pp_tokens_per_s']:12.0f} {o['decode_tokens_per_s']:12.1f} {o['weight_bytes'] / 2**20:10.1f}\")"
  done
done
