# llm-ppo dpo's loss is the mean over the pairs of the whole global batch, and the reference's
# log-probabilities are computed by all ranks together: the same curve for micro-batches of 2
# and 8 rows and for 1, 2 and 3 ranks (within 1e-5 over 10 steps).
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

python3 - <<'PY'
import json, random
rng = random.Random(4)
words = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "red", "ran", "to", "tree"]
with open("docs.jsonl", "w") as f:
    for i in range(200):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 50)))}) + "\n")
with open("prefs.jsonl", "w") as f:
    for i in range(120):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        tail = " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))  # answers of many lengths
        f.write(json.dumps({"prompt": f"add {a} and {b} ", "chosen": f"{a + b} {tail}",
                            "rejected": f"{(a + b + 3) % 19} {tail}"}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 --special '<|im_start|>,<|im_end|>' docs.jsonl
run llm-tok encode -m tok.model -o shards docs.jsonl
run llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 64 \
  --micro-batch 8 --steps 6 --lr 3e-3 --warmup 2 --eval-every 0 --threads 1
expect_rc 0 "the base model"
same() {  # A B TOL: both have 10 step losses within TOL relatively
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a, b = ([r["loss"] for r in map(json.loads, open(p)) if "loss" in r] for p in sys.argv[1:3])
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(len(a) == len(b) == 10, worst <= float(sys.argv[3]), f"{worst:.2e}")
PY
}
common="--init base --data prefs.jsonl --seq-len 32 --batch-size 24 --lr 3e-3 --steps 10 --eval-every 0 --threads 1"
run llm-ppo dpo $common --micro-batch 2 --out m2
expect_rc 0 "micro-batch 2"
run llm-ppo dpo $common --micro-batch 8 --out m8
r=$(same m2/metrics.jsonl m8/metrics.jsonl 1e-5); expect_eq "${r% *}" "True True" "micro-batch 8 vs 2 (${r##* })"
for np in 2 3; do
  run mpirun -np $np llm-ppo dpo $common --micro-batch 4 --out np$np
  expect_rc 0 "-np $np"
  r=$(same m2/metrics.jsonl np$np/metrics.jsonl 1e-5); expect_eq "${r% *}" "True True" "-np $np vs one rank (${r##* })"
done
expect_eq "$(python3 -c "
import json
a, b = (json.load(open(p + '/step-00000010/reference_logps.json'))['train'] for p in ('m2', 'np3'))
print(len(a) == len(b) == 240, max(abs(x - y) / abs(x) for x, y in zip(a, b)) < 1e-6)")" "True True" "the reference of 3 ranks"
finish
