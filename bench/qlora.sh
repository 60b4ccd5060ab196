#!/bin/sh
# QLoRA against LoRA and full fine-tuning of the same model (llama-125m, hidden 768: every matrix
# is whole 256-value blocks), the same chat data, seed and steps: llm-sft's peak RSS, the
# weights it holds, trained tokens per second, and the mean training loss of the first and the
# last five steps, for a full fine-tune, LoRA (rank 16, all linear layers) on the fp32 base, and LoRA on the
# base held as Q8_0, Q4_K_M and Q4_0 blocks and as NF4 (--qlora). The base has had 60 pretraining steps
# only: the losses compare how the quantized bases train, not a finished model. The peak RSS
# of a QLoRA run includes loading the fp32 checkpoint, which is quantized once it is read.
# Usage: qlora.sh BIN_DIR     LLMKIT_BENCH_STEPS (default 20): fine-tuning steps per run.
set -eu
bin=$(cd "${1:?usage: qlora.sh BIN_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
steps=${LLMKIT_BENCH_STEPS:-20}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

{ find /usr/share/common-licenses -type f; find /usr/share/doc -maxdepth 2 -name copyright -type f; } 2>/dev/null | sort | head -300 |
  python3 -c "
import json, sys, random
rng = random.Random(3)
docs, chats = open('docs.jsonl', 'w'), open('chat.jsonl', 'w')
for p in sys.stdin:
    try: t = open(p.strip(), encoding='utf-8').read()
    except Exception: continue
    docs.write(json.dumps({'text': t}) + '\n')
    words = t.split()
    # Instruction rows from the text itself: continue a passage.
    for i in range(0, max(0, len(words) - 60), 400):
        chats.write(json.dumps({'messages': [{'role': 'user', 'content': 'Continue: ' + ' '.join(words[i:i + 20])},
                                             {'role': 'assistant', 'content': ' '.join(words[i + 20:i + 60])}]}) + '\n')"
"$bin/llm-tok" train -q -o tok.model --vocab-size 4096 --special '<|im_start|>,<|im_end|>' docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards docs.jsonl
"$bin/llm-pretrain" -q --model "$src/share/llmkit/models/llama-125m.json" --train 'shards/train-*.tok' --tokenizer tok.model \
  --out base --seq-len 128 --micro-batch 4 --steps 60 --warmup 5 --lr 1e-3 --eval-every 0

echo "llama-125m, $steps steps of llm-sft (seq 128, micro-batch 4, lr 1e-4 full and 1e-3 adapters, seed 0) on $(wc -l < chat.jsonl) rows made from Debian's licence texts"
printf '%-22s %10s %12s %12s %10s %10s\n' run "peak RSS" "weights MiB" "tokens/s" "loss 1-5" "loss last 5"
for mode in full lora qlora-q8_0 qlora-q4_k_m qlora-q4_0 qlora-nf4; do
  flags="--init base --data chat.jsonl --seq-len 128 --micro-batch 4 --steps $steps --warmup 2 --eval-every 0 --threads 2"
  case $mode in
    full) flags="$flags --lr 1e-4" ;;
    lora) flags="$flags --lr 1e-3 --lora-rank 16" ;;
    qlora-*) flags="$flags --lr 1e-3 --lora-rank 16 --qlora ${mode#qlora-}" ;;
  esac
  /usr/bin/time -f "%M" -o rss-$mode "$bin/llm-sft" $flags --out $mode 2> $mode.log
  weights=$(grep -o 'held as [a-z0-9_]* blocks, [0-9.]* MiB' $mode.log | grep -o '[0-9.]* MiB' | cut -d' ' -f1)
  [ -n "$weights" ] || weights=fp32
  python3 - "$mode" "$(cat rss-$mode)" "$weights" "$mode/metrics.jsonl" <<'PY'
import json, sys
mode, rss, weights, metrics = sys.argv[1:]
rows = [json.loads(l) for l in open(metrics) if '"loss"' in l]
tps = sum(r["tokens_per_sec"] for r in rows[1:]) / max(1, len(rows) - 1)
first = sum(r["loss"] for r in rows[:5]) / len(rows[:5])
last = sum(r["loss"] for r in rows[-5:]) / len(rows[-5:])
print(f"{mode:22s} {int(rss) / 1024:7.0f} MiB {weights:>12s} {tps:12.0f} {first:10.4f} {last:10.4f}")
PY
done
