#!/bin/sh
# llm-sft on the CPU:
#  - packing against one example a row (padding), on a realistic length mix (many short rows, a
#    few long ones) at --seq-len 512: the padding fraction of each and their useful (trained)
#    tokens per second over one epoch, and the ratio (goal: packing >= 2x);
#  - a LoRA step (rank 16, all linear layers) against a full fine-tuning step of gpt2-124m and
#    llama-125m at B=4, T=256: time ratio (goal <= 0.7) and trainable state (goal < 2%);
#  - llm-sft's peak RSS against the memory model (weights + gradients + AdamW state +
#    activations) for a full and a LoRA run.
# Usage: sft.sh BIN_DIR
set -eu
bin=$(cd "${1:?usage: sft.sh BIN_DIR}" && pwd)
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

python3 - <<'PY'
import json, random
rng = random.Random(5)
words = "the a of to and in is it for on that with as was he she they at by from this have not are but".split()
def sentence(n): return " ".join(rng.choice(words) for _ in range(n))
with open("docs.jsonl", "w") as f:
    for i in range(400): f.write(json.dumps({"text": sentence(rng.randint(50, 200))}) + "\n")
with open("chat.jsonl", "w") as f:
    for i in range(600):
        # 9 in 10 short exchanges, 1 in 10 long ones: the mix of instruction data sets
        long = rng.random() < 0.1
        q, a = (rng.randint(40, 120), rng.randint(150, 300)) if long else (rng.randint(3, 15), rng.randint(5, 40))
        f.write(json.dumps({"messages": [{"role": "user", "content": sentence(q)}, {"role": "assistant", "content": sentence(a)}]}) + "\n")
PY
"$bin/llm-tok" train -q -o tok.model --vocab-size 320 --special '<|im_start|>,<|im_end|>' docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards docs.jsonl
"$bin/llm-pretrain" -q --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 512 \
  --micro-batch 4 --steps 2 --warmup 1 --eval-every 0

rate() {  # METRICS: trained tokens per second over the run's steps (the first excluded: warm-up)
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][1:]
print(sum(r["tokens"] - p["tokens"] for p, r in zip(rows, rows[1:])) / sum((r["tokens"] - p["tokens"]) / r["tokens_per_sec"] for p, r in zip(rows, rows[1:])))
PY
}
for mode in padded packed; do
  flags="--init base --data chat.jsonl --seq-len 512 --micro-batch 4 --batch-size 8 --lr 1e-4 --epochs 1 --eval-every 0"
  [ "$mode" = packed ] && flags="$flags --packing"
  /usr/bin/time -f "%M" -o rss-$mode "$bin/llm-sft" $flags --out $mode 2> $mode.log
  grep -o "[0-9]* examples in [0-9]* rows ([^)]*)" $mode.log | head -1 > rows-$mode
  rate $mode/metrics.jsonl > rate-$mode
  echo "$mode: $(cat rows-$mode); $(printf '%.0f' "$(cat rate-$mode)") trained tokens/s"
done
python3 -c "import sys; print(f'packing / padding: {float(open(\"rate-packed\").read()) / float(open(\"rate-padded\").read()):.2f}x the useful tokens/s (goal >= 2x)')"

# Peak RSS against the memory model (sgemm_peak --memory counts weights, gradients, AdamW's
# moments and activations for the full model; LoRA trains ~1% of it).
echo "peak RSS: full run $(($(cat rss-packed) / 1024)) MiB; memory model: $("$bin/sgemm_peak" --memory base/step-00000002/config.json 4 512 | sed 's/.*: //')"
/usr/bin/time -f "%M" -o rss-lora "$bin/llm-sft" --init base --data chat.jsonl --seq-len 512 --micro-batch 4 --batch-size 8 \
  --lr 1e-4 --steps 3 --eval-every 0 --packing --lora-rank 16 --out lora 2> lora.log
echo "peak RSS: LoRA run $(($(cat rss-lora) / 1024)) MiB ($(grep -o '[0-9.]*M trainable parameters' lora.log))"

for m in gpt2-124m llama-125m; do "$bin/sft_step" --model $m --batch 4 --seq 256 --rank 16; done
