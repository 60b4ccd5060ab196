# llm-pretrain data parallel: with the same global batch, 2 and 3 ranks follow the one-rank loss
# curve (relative difference < 1e-4 over 20 steps), and a run saved by 2 ranks resumes on 1.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

word_shards 300
common="--model llama-tiny --train shards/train-00000.tok --seq-len 32 --micro-batch 2 --batch-tokens 384 --lr 2e-3 --warmup 2 --steps 20 --threads 1"
run llm-pretrain $common --out one
expect_rc 0 "one rank"
for np in 2 3; do
  run mpirun -np $np llm-pretrain $common --out np$np
  expect_rc 0 "-np $np"
  result=$(compare_losses one/metrics.jsonl np$np/metrics.jsonl)
  expect_eq "${result% *}" "True True" "-np $np follows one rank (worst relative difference ${result##* })"
  expect_eq "$(json np$np/step-00000020/trainer_state.json 'j["world_size"], j["cursor"]')" "$np 240" "trainer state, -np $np"
done
# Saved by 2 ranks at step 10, resumed on 1: the same global batches, so the same curve.
run mpirun -np 2 llm-pretrain $common --stop-at 10 --out mixed
expect_rc 0 "--stop-at 10"
expect_eq "$(cat mixed/latest)" "step-00000010" "stopped at step 10"
run llm-pretrain $common --out mixed --resume
expect_rc 0 "resume a 2-rank run on 1 rank"
expect_err_contains "resuming a 2-rank run on 1 ranks"
result=$(compare_losses one/metrics.jsonl mixed/metrics.jsonl)
expect_eq "${result% *}" "True True" "2 ranks then 1 follow one rank (${result##* })"
finish
