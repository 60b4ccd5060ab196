# llm-eval under mpirun with 1, 2 and 3 ranks: the same report figures and the same sample logs
# as one process (ranks take blocks of examples; rank 0 writes), bit for bit: one process runs 2
# threads, a rank 1, and the CPU backend's results do not depend on the thread count. Checked
# also with OpenBLAS on its Haswell kernels (OPENBLAS_CORETYPE=Haswell, set on some machines),
# whose own threading would round rows differently.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

python3 - <<'PY'
import json, random
rng = random.Random(6)
words = ["red", "blue", "green", "fish", "bird", "flies", "swims", "over", "under", "the", "a", "sea", "sky"]
with open("docs.jsonl", "w") as f:
    for i in range(200):
        f.write(json.dumps({"id": i, "text": " ".join(rng.choice(words) for _ in range(rng.randint(15, 40)))}) + "\n")
with open("mc.jsonl", "w") as f:
    for i in range(23):
        c = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(3)]
        f.write(json.dumps({"id": i, "context": " ".join(rng.choice(words) for _ in range(6)), "choices": c, "gold": i % 3}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 docs.jsonl
expect_rc 0 "tokenizer"
run llm-tok encode -m tok.model --val-fraction 0.3 -o shards docs.jsonl
run llm-pretrain --train 'shards/train-*.tok' --tokenizer tok.model --out run --seq-len 32 --micro-batch 4 --steps 10 --lr 3e-3 --warmup 2
expect_rc 0 "train"
figures='[round(v["value"], 9) for v in j["metrics"].values()], j["examples"]'
run llm-eval mc --model run --batch-size 4 --num-fewshot 1 --log-samples one.log -o one.json mc.jsonl
expect_rc 0 "mc, one process"
run llm-eval ppl --model run --seq-len 32 --batch-size 2 -o one-ppl.json shards/val-00000.tok
for np in 2 3 "2 -x LLMKIT_GEMM=openblas -x OPENBLAS_CORETYPE=Haswell"; do
  if [ "$np" != 2 ] && [ "$np" != 3 ]; then  # the one-process reference with that kernel too
    run env LLMKIT_GEMM=openblas OPENBLAS_CORETYPE=Haswell llm-eval mc --model run --batch-size 4 --num-fewshot 1 --log-samples one.log -o one.json mc.jsonl
    run env LLMKIT_GEMM=openblas OPENBLAS_CORETYPE=Haswell llm-eval ppl --model run --seq-len 32 --batch-size 2 -o one-ppl.json shards/val-00000.tok
  fi
  run mpirun -np $np llm-eval mc --model run --batch-size 4 --num-fewshot 1 --log-samples np.log -o np.json mc.jsonl
  expect_rc 0 "mc -np $np"
  expect_eq "$(json np.json "$figures")" "$(json one.json "$figures")" "mc figures, -np $np"
  cmp -s np.log one.log && ok || fail "sample logs differ with -np $np"
  run mpirun -np $np llm-eval ppl --model run --seq-len 32 --batch-size 2 -o np-ppl.json shards/val-00000.tok
  expect_eq "$(json np-ppl.json 'round(j["metrics"]["loss"]["value"], 9), j["tokens"]')" \
            "$(json one-ppl.json 'round(j["metrics"]["loss"]["value"], 9), j["tokens"]')" "ppl, -np $np"
  expect_eq "$(json np-ppl.json 'repr(j["metrics"]["loss"]["value"])')" "$(json one-ppl.json 'repr(j["metrics"]["loss"]["value"])')" "ppl bits, -np $np"
done

# A run killed on one process resumes on two ranks (a block's results do not depend on the rank
# that computed them): the report and the log of one uninterrupted process; no cache is left.
run llm-eval ppl --model run --batch-size 1 --limit 80 --log-samples ref.log -o ref.json docs.jsonl
expect_rc 0 "ppl on documents, one process"
llm-eval ppl --model run --batch-size 1 --limit 80 --log-samples res.log -o res.json docs.jsonl 2>/dev/null &
pid=$!
for i in $(seq 1 6000); do [ -f res.json.cache ] && [ "$(wc -l < res.json.cache)" -ge 5 ] && break; sleep 0.01; done
kill -KILL $pid; wait $pid 2>/dev/null
expect_eq "$([ -f res.json.cache ] && [ ! -f res.json ] && echo interrupted)" "interrupted" "killed midway"
run mpirun -np 2 llm-eval ppl --model run --batch-size 1 --limit 80 --log-samples res.log -o res.json docs.jsonl
expect_rc 0 "resumed on 2 ranks"
expect_err_contains "resuming from res.json.cache"
expect_eq "$(json res.json "$figures")" "$(json ref.json "$figures")" "resumed figures"
cmp -s res.log ref.log && ok || fail "the resumed sample log differs"
expect_eq "$(ls | grep -c 'res.json.cache')" "0" "no cache file left"
finish
