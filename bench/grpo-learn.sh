#!/usr/bin/env bash
# GRPO acceptance: real learning on held-out prompts, on the CPU in a few minutes.
#
# A verifiable task, arithmetic word problems "X has a apples, gets b more and gives away c.
# How many apples now?" (a, b in 1..9, 0 < c < a + b), answer a + b - c. Everything is made here:
#  - pretraining text: drills of one-step sums and differences, and chat transcripts of the
#    problems answered with worked steps, "a + b = s. s - c = r. #### r" (never the held-out ones);
#  - llm-tok trains a tokenizer, llm-pretrain a llama-tiny on that text;
#  - llm-sft tunes it on chat rows of which 60% answer in one shot, "#### r", the rest with the
#    worked steps: decoding greedily, the tuned model answers most held-out prompts in one shot,
#    which is seldom right (~12%), and the others with the worked steps, which are (~95%): it is
#    partly right, 20-55% by seed;
#  - llm-ppo grpo --reward rule:exact on TRAIN prompts, temperature 1, 8 answers a prompt: the
#    samples that work the problem out score higher, and GRPO moves the policy to them, on
#    prompts it never saw too;
#  - llm-eval gen scores greedy answers to HELD-OUT prompts (problems (a, b, c) seen nowhere in
#    training, rendered with the same ChatML template GRPO uses) before GRPO (the SFT model)
#    and after (the GRPO run).
# It prints
#   grpo-learn: held-out exact match 0.29 -> 0.98 (n=300, pretrain P s, sft S s, grpo G s, total T s)
# and a line on the answers' form (the share of worked answers, and the accuracy of each form),
# and exits 1 when the gain is under MIN_GAIN. About 1.5 minutes on 2 cores (pretraining most).
#
# Usage: grpo-learn.sh [--seed N] [--keep]
#   BIN (default build/bin of this tree): the commands; THREADS (default 2): --threads of each
#   command; MIN_GAIN (default 0.10); --keep leaves the work directory and prints its path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN:-$here/../build/bin}" && pwd)
THREADS=${THREADS:-2}
MIN_GAIN=${MIN_GAIN:-0.10}
seed=1
keep=
while [ $# -gt 0 ]; do
  case $1 in
    --seed) seed=${2:?--seed N}; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: grpo-learn.sh [--seed N] [--keep]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/llmkit-grpo-learn-XXXXXX)
if [ -n "$keep" ]; then echo "grpo-learn: work directory $work" >&2; else trap 'rm -rf "$work"' EXIT; fi
cd "$work"
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$1" "$(now)"; }
t0=$(now)

SEED=$seed python3 - <<'PY'
import json, os, random
rng = random.Random(int(os.environ["SEED"]))
names = ["Tom", "Ann", "Bob", "Eva", "Sam", "Lia", "Max", "Zoe"]
things = ["apples", "coins", "books", "cards", "pens", "eggs"]
def triple():
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return a, b, rng.randint(1, a + b - 1)
def question(a, b, c):
    t = rng.choice(things)
    return f"{rng.choice(names)} has {a} {t}, gets {b} more and gives away {c}. How many {t} now?"
def worked(a, b, c): return f"{a} + {b} = {a + b}. {a + b} - {c} = {a + b - c}. #### {a + b - c}"
def direct(a, b, c): return f"#### {a + b - c}"
def write(name, rows):
    with open(name, "w") as f:
        for r in rows: f.write(json.dumps(r) + "\n")
# 300 held-out problems, out of the ~650 there are; training never sees them.
held = set()
while len(held) < 300: held.add(triple())
held = sorted(held)
rng.shuffle(held)
def train_triple():
    while True:
        t = triple()
        if t not in held: return t
# Held-out prompts as llm-eval gen reads them: the text of GRPO's chatml template up to where
# the assistant writes (llm-eval puts the same document-start token </s> before it).
write("heldout.jsonl", [{"prompt": f"<|im_start|>user\n{question(*t)}<|im_end|>\n<|im_start|>assistant\n",
                         "answer": str(t[0] + t[1] - t[2])} for t in held])
docs = []
for i in range(3000):
    eqs = []
    for j in range(8):
        if rng.random() < 0.5:
            x, y = rng.randint(1, 9), rng.randint(1, 9)
            eqs.append(f"{x} + {y} = {x + y}.")
        else:
            x = rng.randint(2, 18); y = rng.randint(1, x - 1)
            eqs.append(f"{x} - {y} = {x - y}.")
    docs.append({"text": " ".join(eqs)})
for i in range(8000):
    t = train_triple()
    docs.append({"text": f"<|im_start|>user\n{question(*t)}<|im_end|>\n<|im_start|>assistant\n{worked(*t)}<|im_end|>"})
rng.shuffle(docs)
write("docs.jsonl", docs)
write("chat.jsonl", [{"messages": [{"role": "user", "content": question(*t)},
                                   {"role": "assistant", "content": direct(*t) if rng.random() < 0.6 else worked(*t)}]}
                     for t in (train_triple() for i in range(2000))])
write("prompts.jsonl", [{"prompt": [{"role": "user", "content": question(*t)}], "answer": str(t[0] + t[1] - t[2])}
                        for t in (train_triple() for i in range(2000))])
PY

common=(--threads "$THREADS" --seed "$seed" -q)
"$BIN/llm-tok" train "${common[@]}" -o tok.model --vocab-size 400 --special '<|im_start|>,<|im_end|>' docs.jsonl
"$BIN/llm-tok" encode "${common[@]}" -m tok.model -o shards docs.jsonl
t1=$(now)
"$BIN/llm-pretrain" "${common[@]}" --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base \
  --seq-len 128 --micro-batch 16 --steps 1000 --lr 3e-3 --warmup 20 --eval-every 0
pretrain_s=$(since "$t1")
t2=$(now)
"$BIN/llm-sft" "${common[@]}" --init base --data chat.jsonl --no-truncate --seq-len 64 --micro-batch 16 --batch-size 32 \
  --lr 5e-4 --steps 100 --eval-every 0 --out sft
sft_s=$(since "$t2")

evaluate() {  # MODEL LOG: greedy answers to the held-out prompts; prints the exact match
  "$BIN/llm-eval" gen "${common[@]}" --model "$1" --until '<|im_end|>' --max-gen-tokens 32 --batch-size 32 \
    --log-samples "$2" -o "$2.json" heldout.jsonl
  python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['metrics']['exact_match,flexible-extract']['value'])" "$2.json"
}
before=$(evaluate sft sft.log)

t3=$(now)
"$BIN/llm-ppo" grpo "${common[@]}" --init sft --data prompts.jsonl --reward rule:exact --group-size 8 --temperature 1 \
  --max-new-tokens 32 --seq-len 80 --batch-size 64 --micro-batch 32 --lr 1e-4 --steps 30 --eval-every 0 --out grpo \
  --rollouts rollouts.jsonl
grpo_s=$(since "$t3")
after=$(evaluate grpo grpo.log)

python3 - "$before" "$after" "$pretrain_s" "$sft_s" "$grpo_s" "$(since "$t0")" "$MIN_GAIN" <<'PY'
import json, sys
before, after = float(sys.argv[1]), float(sys.argv[2])
n = sum(1 for _ in open("grpo.log"))
print(f"grpo-learn: held-out exact match {before:.2f} -> {after:.2f} (n={n}, pretrain {sys.argv[3]} s, "
      f"sft {sys.argv[4]} s, grpo {sys.argv[5]} s, total {sys.argv[6]} s)")
def forms(log):
    rows = [json.loads(l) for l in open(log)]
    w = [r for r in rows if "+" in r["generation"]]
    d = [r for r in rows if "+" not in r["generation"]]
    acc = lambda rs: f"{sum(r['correct_flexible'] for r in rs) / len(rs):.2f}" if rs else "-"
    return f"{len(w) / len(rows):.2f} worked (right {acc(w)}), one-shot right {acc(d)}"
rollouts = [json.loads(l) for l in open("rollouts.jsonl")]
first = [r["reward"] for r in rollouts if r["step"] <= 3]
last = [r["reward"] for r in rollouts if r["step"] > max(r["step"] for r in rollouts) - 3]
print(f"grpo-learn: answers before: {forms('sft.log')}; after: {forms('grpo.log')}; "
      f"sampled reward, first 3 steps {sum(first) / len(first):.2f}, last 3 {sum(last) / len(last):.2f}")
sys.exit(0 if after - before >= float(sys.argv[7]) else 1)
PY
