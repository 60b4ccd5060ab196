# llm-pretrain --zero 1 (ZeRO-1: AdamW's moments sharded over the ranks), --zero 2 (ZeRO-2:
# and the summed gradients, each block's reduced as its backward ends) and --zero 3 (ZeRO-3: and
# the parameters, each block's gathered before it runs): on 2 and 3 ranks they
# follow --zero 0 step for step (relative 1e-5) to the same weights and moments, log the
# optimizer state, gradients and weights they keep per rank, write checkpoints that --zero 0 on one rank
# resumes and resume theirs; on one rank they are --zero 0 exactly.
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
  for z in 1 2 3; do
    run mpirun -np $np llm-pretrain $common --zero $z --out np$np-z$z
    expect_rc 0 "-np $np --zero $z"
    expect_err_contains "(ZeRO-$z over $np ranks)"
    result=$(compare_losses np$np-z0/metrics.jsonl np$np-z$z/metrics.jsonl 1e-5)
    echo "-np $np: losses of --zero $z and --zero 0 differ by ${result##* } at most (relative)"
    expect_eq "${result% *}" "True True" "-np $np: --zero $z follows --zero 0 (worst relative difference ${result##* })"
    for f in model optimizer; do
      result=$(close_tensors np$np-z0/step-00000020/$f.safetensors np$np-z$z/step-00000020/$f.safetensors)
      echo "-np $np: $f.safetensors of --zero $z and --zero 0 differ by ${result##* } at most"
      expect_eq "${result% *}" "True" "-np $np: $f.safetensors of --zero $z close to --zero 0's (${result##* })"
    done
  done
done
# The optimizer state per rank: 2 x 4 bytes per parameter, over the ranks.
run mpirun -np 2 llm-pretrain $common --zero 0 --steps 1 --out mem-z0
z0=$(grep -o 'optimizer state: [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
run mpirun -np 2 llm-pretrain $common --zero 1 --steps 1 --out mem-z1
z1=$(grep -o 'optimizer state: [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
echo "optimizer state per rank on 2 ranks: $z0 MiB with --zero 0, $z1 MiB with --zero 1"
expect_eq "$(python3 -c "print(0.45 < $z1 / $z0 < 0.55)")" "True" "2 ranks keep half the optimizer state each ($z1 of $z0 MiB)"
# Gradients: --zero 2 keeps the blocks' in a window of one block's size and its segment of the
# sum; the embedding (llama-tiny's largest tensor, outside the blocks) stays whole.
g0=$(grep -o 'gradients [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
run mpirun -np 2 llm-pretrain $common --zero 2 --steps 1 --out mem-z2
g2=$(grep -o 'gradients [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
# llama-tiny on the 300-piece vocabulary (320 rows): its tensors, each a multiple of 16 floats.
r=$(python3 - "$g0" "$g2" <<'PY'
import sys
C, F, V, L, kv = 128, 352, 320, 4, 64
block = 2 * C + C * C * 2 + 2 * kv * C + 3 * C * F  # norms, q and o, k and v, gate, up and down
total = V * C + L * block + C
window = V * C + block + C + total / 2  # embedding and final norm, one block, half the sum
mib = lambda floats: floats * 4 / 2**20
print(abs(float(sys.argv[1]) - mib(total)) < 0.06, abs(float(sys.argv[2]) - mib(window)) < 0.06, f"{mib(total):.2f} {mib(window):.2f}")
PY
)
echo "gradients per rank on 2 ranks: $g0 MiB with --zero 1, $g2 MiB with --zero 2 (from the layout: ${r#* * })"
expect_eq "${r% * *}" "True True" "gradients per rank: --zero 1 all of them, --zero 2 one block's and half the sum"

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

# Weights: --zero 3 keeps the tensors outside the blocks, one block's window and its segment.
w0=$(grep -o 'weights [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
run mpirun -np 2 llm-pretrain $common --zero 3 --steps 1 --out mem-z3
w3=$(grep -o 'weights [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
echo "weights per rank on 2 ranks: $w0 MiB with --zero 2, $w3 MiB with --zero 3 (from the layout: ${r#* * })"
expect_eq "$w3" "$g2" "--zero 3 holds as many weights as --zero 2 gradients: one block's and half the rest"
expect_eq "$w0" "$g0" "--zero 2 holds all the weights"

# Saved by ZeRO-2 on 3 ranks at step 10, resumed by one rank without it; one rank's checkpoint
# resumed by ZeRO-3 on 2 ranks, with validation and samples (whole weights for a moment).
run llm-pretrain $common --stop-at 10 --out z0-then-z3
expect_rc 0 "one rank, --stop-at 10"
run mpirun -np 2 llm-pretrain $common --zero 3 --out z0-then-z3 --resume --val shards/train-00000.tok --eval-every 5 --sample-every 10 --tokenizer tok.model
expect_rc 0 "--zero 3 -np 2 resumes it"
expect_err_contains "step    20  sample:"
result=$(compare_losses one/metrics.jsonl z0-then-z3/metrics.jsonl 1e-4)
expect_eq "${result% *}" "True True" "one rank then --zero 3 -np 2 follow the uninterrupted run (${result##* })"

run mpirun -np 3 llm-pretrain $common --zero 2 --stop-at 10 --out z2-then-z0
expect_rc 0 "--zero 2 -np 3 --stop-at 10"
run llm-pretrain $common --zero 0 --out z2-then-z0 --resume
expect_rc 0 "--zero 0 -np 1 resumes it"
result=$(compare_losses np3-z2/metrics.jsonl z2-then-z0/metrics.jsonl 1e-4)
expect_eq "${result% *}" "True True" "--zero 2 -np 3 then --zero 0 -np 1 follow the uninterrupted run (${result##* })"

run llm-pretrain $common --zero 4 --out bad
expect_rc 2 "--zero 4"
expect_err_contains "--zero must be 0, 1, 2 or 3"
finish
