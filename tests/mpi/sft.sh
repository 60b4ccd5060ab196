# llm-sft's loss is the mean over the trained tokens of the whole global batch: the same curve
# for micro-batches of 1 and 4 and for 1, 2 and 3 ranks (within 1e-5 over 20 steps: only the
# order of sums differs), packed rows and LoRA adapters with dropout included (a token's mask
# is a function of its place in the data, not of its batch), and distillation from a teacher;
# a 2-rank LoRA run resumed on 1 rank follows it too, and so does tensor parallel (--tp 2).
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

python3 - <<'PY'
import json, random
rng = random.Random(2)
words = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "red", "ran", "to", "tree"]
with open("docs.jsonl", "w") as f:
    for i in range(200):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 50)))}) + "\n")
with open("chat.jsonl", "w") as f:
    for i in range(200):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))  # answers of many lengths
        f.write(json.dumps({"messages": [{"role": "user", "content": f"add {a} and {b}"},
                                         {"role": "assistant", "content": f"{a + b} {answer}"}]}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 --special '<|im_start|>,<|im_end|>' docs.jsonl
run llm-tok encode -m tok.model -o shards docs.jsonl
run llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 64 \
  --micro-batch 8 --steps 6 --lr 3e-3 --warmup 2 --eval-every 0 --threads 1
expect_rc 0 "the base model"
same() {  # A B TOL: both have 20 step losses within TOL relatively
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a, b = ([r["loss"] for r in map(json.loads, open(p)) if "loss" in r] for p in sys.argv[1:3])
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(len(a) == len(b) == 20, worst <= float(sys.argv[3]), f"{worst:.2e}")
PY
}
for mode in "" "--lora-rank 4 --packing --lora-dropout 0.1" "--teacher base --kd-loss jsd --kd-alpha 0.7 --packing"; do
  common="--init base --data chat.jsonl --seq-len 64 --batch-size 12 --lr 3e-3 --steps 20 --eval-every 0 --threads 1 $mode"
  run llm-sft $common --micro-batch 1 --out m1
  expect_rc 0 "micro-batch 1 ($mode)"
  run llm-sft $common --micro-batch 4 --out m4
  r=$(same m1/metrics.jsonl m4/metrics.jsonl 1e-5); expect_eq "${r% *}" "True True" "micro-batch 4 vs 1 ($mode, ${r##* })"
  for np in 2 3; do
    run mpirun -np $np llm-sft $common --micro-batch 2 --out np$np
    expect_rc 0 "-np $np ($mode)"
    r=$(same m1/metrics.jsonl np$np/metrics.jsonl 1e-5); expect_eq "${r% *}" "True True" "-np $np vs one rank ($mode, ${r##* })"
  done
  rm -rf m1 m4 np2 np3
done
# Tensor parallel (--tp 2) on packed rows follows one rank; LoRA and distillation refuse it.
common="--init base --data chat.jsonl --seq-len 64 --batch-size 12 --lr 3e-3 --steps 20 --eval-every 0 --threads 1 --micro-batch 2 --packing"
run llm-sft $common --out tp1
expect_rc 0 "packed, one rank"
run mpirun -np 2 llm-sft $common --tp 2 --out tp2
expect_rc 0 "packed, --tp 2"
r=$(same tp1/metrics.jsonl tp2/metrics.jsonl 1e-5); expect_eq "${r% *}" "True True" "--tp 2 vs one rank (${r##* })"
run mpirun -np 2 llm-sft $common --tp 2 --lora-rank 4 --out tp-lora
expect_rc 2 "--tp 2 with LoRA"
expect_err_contains "LoRA adapters are not tensor-parallel here"
run mpirun -np 2 llm-sft $common --zero 2 --lora-rank 4 --out z2-lora
expect_rc 2 "--zero 2 with LoRA"
expect_err_contains "with frozen tensors (LoRA, a frozen base) give --zero 1"
run mpirun -np 2 llm-sft $common --tp 2 --teacher base --out tp-kd
expect_rc 2 "--tp 2 with a teacher"
expect_err_contains "distillation reads the teacher's whole logits and is not tensor-parallel"
common="--init base --data chat.jsonl --seq-len 64 --batch-size 12 --lr 3e-3 --steps 20 --eval-every 0 --threads 1 --lora-rank 4 --micro-batch 2"
run llm-sft $common --out one
run mpirun -np 2 llm-sft $common --out mixed --stop-at 10
expect_rc 0 "2 ranks to step 10"
run llm-sft $common --out mixed --resume
expect_rc 0 "resumed on one rank"
r=$(same one/metrics.jsonl mixed/metrics.jsonl 1e-5); expect_eq "${r% *}" "True True" "2 ranks then 1 (${r##* })"
finish
