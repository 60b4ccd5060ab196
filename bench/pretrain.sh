#!/bin/sh
# llm-pretrain speed and memory on the CPU: the measured sgemm peak, then tokens/s, step time and
# MFU (model FLOPs / step time / sgemm peak) for llama-tiny, llama-25m and gpt2-124m, and peak
# RSS against parameters + gradients + AdamW moments + activations, and where a gpt2-124m step's
# time goes.
# llm.c's CPU trainer (train_gpt2.c) is not on this machine (no network); the issue's figure for
# it on these machines, 7.3 s per step at B=4, T=64 for GPT-2 124M, is the reference used.
# Usage: pretrain.sh BIN_DIR     LLMKIT_BENCH_STEPS (default 6): steps per model (first excluded).
set -eu
bin=$(cd "${1:?usage: pretrain.sh BIN_DIR}" && pwd)
steps=${LLMKIT_BENCH_STEPS:-6}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Random tokens below 4000 (every preset's vocabulary holds them) in an llm.c .bin file: the
# speed depends on the model's vocabulary, not on which ids the data uses.
python3 - "$work/tokens.bin" <<'PY'
import random, struct, sys
rng = random.Random(1)
n = 400000
with open(sys.argv[1], "wb") as f:
    h = [0] * 256; h[0] = 20240520; h[1] = 1; h[2] = n
    f.write(struct.pack("<256i", *h))
    f.write(struct.pack("<%dH" % n, *(rng.randrange(4000) for _ in range(n))))
PY

run() {  # MODEL SEQ MICRO
  model=$1 seq=$2 micro=$3
  /usr/bin/time -f "%M" -o "$work/rss" "$bin/llm-pretrain" -q --model "$model" --train "$work/tokens.bin" \
    --out "$work/run-$model-$seq" --seq-len "$seq" --micro-batch "$micro" --steps "$steps" --warmup 1 \
    --eval-every 0 --no-verify 2>/dev/null
  python3 - "$work/run-$model-$seq/metrics.jsonl" "$model" "$seq" "$micro" "$(cat "$work/rss")" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][1:]  # the first step warms up
model, seq, micro, rss_kb = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tps = sum(r["tokens_per_sec"] for r in rows) / len(rows)
mfu = sum(r["mfu"] for r in rows) / len(rows)
step_s = seq * micro / tps
print(f"{model:10s} B={micro:<2d} T={seq:<4d} {step_s * 1000:8.0f} ms/step {tps:9.0f} tok/s  MFU {100 * mfu:5.1f}%  "
      f"peak RSS {rss_kb / 1024:6.0f} MiB", end="")
if model == "gpt2-124m" and seq == 64 and micro == 4:
    print(f"  ({7.3 / step_s:.1f}x llm.c's 7.3 s/step)", end="")
print()
PY
}

"$bin/sgemm_peak"
run llama-tiny 256 8
run llama-25m 256 8
run gpt2-124m 64 4
run gpt2-124m 256 4

# Memory model for gpt2-124m, B=4, T=64: 4 bytes x (parameters x 4 [weights, gradients, m, v])
# plus activations, against the peak RSS measured above.
"$bin/sgemm_peak" --memory gpt2-124m 4 64
"$bin/sgemm_peak" --breakdown gpt2-124m 4 64
