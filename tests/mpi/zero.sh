# llm-pretrain --zero 1 (ZeRO-1: AdamW's moments sharded over the ranks): on 2 and 3 ranks it
# follows --zero 0 step for step (relative 1e-5) to the same weights and moments, logs the
# optimizer state it keeps per rank, writes checkpoints that --zero 0 on one rank resumes and
# resumes theirs; on one rank it is --zero 0 exactly.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

word_shards 300
# 12 sequences per step: 6 per rank on 2 ranks, 4 on 3.
common="--model llama-tiny --train shards/train-00000.tok --seq-len 32 --micro-batch 2 --batch-tokens 384 --lr 2e-3 --warmup 2 --steps 20 --threads 1"

run llm-pretrain $common --out one
expect_rc 0 "one rank"
run llm-pretrain $common --zero 1 --out one-z1
expect_rc 0 "--zero 1 on one rank"
expect_err_contains "(not sharded)"
expect_eq "$(grep -o '"loss":[0-9.]*' one-z1/metrics.jsonl)" "$(grep -o '"loss":[0-9.]*' one/metrics.jsonl)" "--zero 1 on one rank is --zero 0"
if cmp -s one/step-00000020/model.safetensors one-z1/step-00000020/model.safetensors; then ok; else fail "--zero 1 on one rank: other weights"; fi

for np in 2 3; do
  run mpirun -np $np llm-pretrain $common --zero 0 --out np$np-z0
  expect_rc 0 "-np $np --zero 0"
  expect_err_contains "(not sharded)"
  run mpirun -np $np llm-pretrain $common --zero 1 --out np$np-z1
  expect_rc 0 "-np $np --zero 1"
  expect_err_contains "(ZeRO-1 over $np ranks)"
  result=$(compare_losses np$np-z0/metrics.jsonl np$np-z1/metrics.jsonl 1e-5)
  echo "-np $np: losses of --zero 1 and --zero 0 differ by ${result##* } at most (relative)"
  expect_eq "${result% *}" "True True" "-np $np: --zero 1 follows --zero 0 (worst relative difference ${result##* })"
  for f in model optimizer; do
    result=$(close_tensors np$np-z0/step-00000020/$f.safetensors np$np-z1/step-00000020/$f.safetensors)
    echo "-np $np: $f.safetensors of --zero 1 and --zero 0 differ by ${result##* } at most"
    expect_eq "${result% *}" "True" "-np $np: $f.safetensors of --zero 1 close to --zero 0's (${result##* })"
  done
done
# The optimizer state per rank: 2 x 4 bytes per parameter, over the ranks.
run mpirun -np 2 llm-pretrain $common --zero 0 --steps 1 --out mem-z0
z0=$(grep -o 'optimizer state: [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
run mpirun -np 2 llm-pretrain $common --zero 1 --steps 1 --out mem-z1
z1=$(grep -o 'optimizer state: [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
echo "optimizer state per rank on 2 ranks: $z0 MiB with --zero 0, $z1 MiB with --zero 1"
expect_eq "$(python3 -c "print(0.45 < $z1 / $z0 < 0.55)")" "True" "2 ranks keep half the optimizer state each ($z1 of $z0 MiB)"

# Saved by ZeRO-1 on 2 ranks at step 10, resumed by one rank without it, and the other way.
run mpirun -np 2 llm-pretrain $common --zero 1 --stop-at 10 --out z1-then-z0
expect_rc 0 "--zero 1 -np 2 --stop-at 10"
expect_eq "$(cat z1-then-z0/latest)" "step-00000010" "stopped at step 10"
run llm-pretrain $common --zero 0 --out z1-then-z0 --resume
expect_rc 0 "--zero 0 -np 1 resumes it"
result=$(compare_losses np2-z1/metrics.jsonl z1-then-z0/metrics.jsonl 1e-4)
expect_eq "${result% *}" "True True" "--zero 1 -np 2 then --zero 0 -np 1 follow the uninterrupted run (${result##* })"
run llm-pretrain $common --zero 0 --stop-at 10 --out z0-then-z1
expect_rc 0 "--zero 0 -np 1 --stop-at 10"
run mpirun -np 2 llm-pretrain $common --zero 1 --out z0-then-z1 --resume
expect_rc 0 "--zero 1 -np 2 resumes it"
result=$(compare_losses one/metrics.jsonl z0-then-z1/metrics.jsonl 1e-4)
expect_eq "${result% *}" "True True" "--zero 0 -np 1 then --zero 1 -np 2 follow the uninterrupted run (${result##* })"

run llm-pretrain $common --zero 2 --out bad
expect_rc 2 "--zero 2"
expect_err_contains "--zero must be 0 or 1"
finish
