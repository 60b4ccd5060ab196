#!/bin/sh
# Reinforcement learning on the CPU, llama-25m, prompts of about 57 tokens, 32 new tokens an answer:
#  - llm-ppo grpo (8 prompts x 8 answers a step, rule reward) and llm-ppo ppo (64 prompts a
#    rollout batch, a reward model, 2 PPO epochs): each step's time split into rollout, scoring
#    (rewards, the reference's and the value head's forward passes) and training, and the
#    rollout's generated tokens/s;
#  - the same model's plain batched generation of the same number of sequences (bench/rollout),
#    measured in the same run: rollout tokens/s in training against it (goal >= 0.9x) and
#    against one sequence at a time;
#  - peak RSS of each run against the memory budget the command prints at start (one model's
#    weights, gradients, optimizer, activations, plus the reference and KV cache).
# Usage: rl.sh BIN_DIR       LLMKIT_BENCH_STEPS (default 4): optimizer steps per run.
set -eu
bin=$(cd "${1:?usage: rl.sh BIN_DIR}" && pwd)
steps=${LLMKIT_BENCH_STEPS:-4}
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
with open("prompts.jsonl", "w") as f:
    for i in range(256): f.write(json.dumps({"prompt": sentence(40), "answer": "a"}) + "\n")
with open("prefs.jsonl", "w") as f:
    for i in range(64): f.write(json.dumps({"prompt": sentence(30), "chosen": sentence(10), "rejected": sentence(10)}) + "\n")
PY
"$bin/llm-tok" train -q -o tok.model --vocab-size 320 --special '<|im_start|>,<|im_end|>' docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards docs.jsonl
"$bin/llm-pretrain" -q --model llama-25m --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 128 \
  --micro-batch 4 --steps 1 --warmup 1 --eval-every 0
"$bin/llm-rm" -q --init base --data prefs.jsonl --seq-len 128 --micro-batch 8 --batch-size 8 --steps 1 --eval-every 0 --out rm

common="--init base --data prompts.jsonl --seq-len 128 --max-new-tokens 32 --temperature 1 --batch-size 64 --micro-batch 16 \
  --eval-every 0 --save-every 0 --keep 1 --lr 1e-6"
"$bin/llm-ppo" grpo $common --group-size 8 --reward 'rule:regex:^a' --steps "$steps" --out grpo 2> grpo.err
"$bin/llm-ppo" ppo $common --reward-model rm --ppo-epochs 2 --steps "$steps" --out ppo 2> ppo.err
# The reference generation on prompts as long as the runs' (their mean in tokens, with the leading </s>).
plen=$(python3 -c "import json; [print(json.loads(l)['prompt']) for l in open('prompts.jsonl')]" | spm_encode --model=tok.model --output_format=id |
  awk '{s += NF} END {printf "%d", s / NR + 1.5}')
"$bin/rollout" --init base --prompts 8 --group 8 --prompt-len "$plen" --new 32 > group.out
"$bin/rollout" --init base --prompts 64 --group 1 --prompt-len "$plen" --new 32 > plain.out

PLEN=$plen python3 - <<'PY'
import json, re
def run(name):
    rows = [json.loads(l) for l in open(name + "/metrics.jsonl") if '"loss"' in l]
    first = [r for r in rows if "rollout_tokens_per_s" in r][1:] or [r for r in rows if "rollout_tokens_per_s" in r]
    split = {k: sum(r["time/" + k] for r in first) / len(first) for k in ("rollout", "scoring", "training")}
    tps = sum(r["rollout_tokens_per_s"] for r in first) / len(first)
    budget = float(re.search(r"; ([0-9.]+) MiB in all", open(name + ".err").read()).group(1))
    return split, tps, rows[-1]["peak_rss"] / 2**20, budget
def bench(path, kind):
    return float(re.search(r"^" + kind + r" .*?:\s+([0-9.]+) generated tokens/s", open(path).read(), re.M).group(1))
import os
print(f"llama-25m, {os.environ['PLEN']}-token prompts, 32 new tokens, 64 answers a rollout batch, 2 threads")
for name, ref_file, ref_kind in (("grpo", "group.out", "batched"), ("ppo", "plain.out", "batched")):
    split, tps, rss, budget = run(name)
    ref, single = bench(ref_file, ref_kind), bench(ref_file, "single")
    print(f"llm-ppo {name}: a rollout batch's first step: rollout {split['rollout']:.0%}, scoring {split['scoring']:.0%}, "
          f"training {split['training']:.0%}; rollout {tps:.1f} tokens/s = {tps / ref:.2f}x plain batched generation ({ref:.1f}), "
          f"{tps / single:.2f}x one at a time ({single:.1f}); peak RSS {rss:.0f} MiB against the printed budget {budget:.0f} MiB")
PY
