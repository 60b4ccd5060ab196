#!/bin/sh
# Preference learning on the CPU, llama-25m at --seq-len 256, 8 pairs a step (16 rows):
#  - llm-ppo dpo's step against an llm-sft step over the same rows (each pair's chosen and
#    rejected answers as two prompt/completion rows): DPO's should cost one forward and backward
#    over both answers, the reference being computed once before training (its time printed);
#  - llm-rm's step on the same pairs (no LM head: cheaper than a language model's step);
#  - pairs per second and peak RSS of each.
# Usage: pref.sh BIN_DIR       LLMKIT_BENCH_STEPS (default 6): steps per run (first excluded).
set -eu
bin=$(cd "${1:?usage: pref.sh BIN_DIR}" && pwd)
steps=${LLMKIT_BENCH_STEPS:-6}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

python3 - <<'PY'
import json, random
rng = random.Random(7)
words = "the a of to and in is it for on that with as was he she they at by from this have not are but".split()
def sentence(n): return " ".join(rng.choice(words) for _ in range(n))
with open("docs.jsonl", "w") as f:
    for i in range(300): f.write(json.dumps({"text": sentence(rng.randint(50, 200))}) + "\n")
with open("prefs.jsonl", "w") as f, open("sft.jsonl", "w") as g:
    for i in range(400):
        p, c, r = sentence(rng.randint(20, 60)), sentence(rng.randint(20, 120)), sentence(rng.randint(20, 120))
        f.write(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n")
        g.write(json.dumps({"prompt": p, "completion": c}) + "\n")
        g.write(json.dumps({"prompt": p, "completion": r}) + "\n")
PY
"$bin/llm-tok" train -q -o tok.model --vocab-size 320 --special '<|im_start|>,<|im_end|>' docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards docs.jsonl
"$bin/llm-pretrain" -q --model llama-25m --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 256 \
  --micro-batch 4 --steps 1 --warmup 1 --eval-every 0

common="--init base --seq-len 256 --micro-batch 8 --batch-size 16 --steps $steps --eval-every 0 --save-every 0 --keep 1 --lr 1e-5"
"$bin/llm-sft" $common --data sft.jsonl --out sft 2> sft.err
"$bin/llm-ppo" dpo $common --data prefs.jsonl --out dpo 2> dpo.err
"$bin/llm-rm" $common --data prefs.jsonl --out rm 2> rm.err

python3 - <<'PY'
import json, re
def steps(path):  # seconds of each step after the first, and the last peak RSS
    rows = [json.loads(l) for l in open(path) if '"loss"' in l]
    secs = [(r["tokens"] - p["tokens"]) / r["tokens_per_sec"] for p, r in zip(rows, rows[1:])]
    return sum(secs) / len(secs), rows[-1]["peak_rss"] / 2**20
sft, sft_rss = steps("sft/metrics.jsonl")
dpo, dpo_rss = steps("dpo/metrics.jsonl")
rm, rm_rss = steps("rm/metrics.jsonl")
ref = re.search(r"reference: .* of (\d+) answers, in ([0-9.]+) s", open("dpo.err").read())
print("llama-25m, --seq-len 256, 8 pairs (16 rows) a step, 2 threads")
print(f"llm-sft on the same rows: {sft:.3f} s/step, peak RSS {sft_rss:.0f} MiB")
print(f"llm-ppo dpo:              {dpo:.3f} s/step, {8 / dpo:.2f} pairs/s, peak RSS {dpo_rss:.0f} MiB; "
      f"the reference's {ref.group(1)} answers once before training: {float(ref.group(2)):.1f} s")
print(f"llm-rm:                   {rm:.3f} s/step, {8 / rm:.2f} pairs/s, peak RSS {rm_rss:.0f} MiB")
print(f"DPO step / SFT step on the same tokens: {dpo / sft:.2f}x (goal: close to 1, no reference forward while training)")
print(f"RM step / SFT step: {rm / sft:.2f}x (no LM head)")
PY
