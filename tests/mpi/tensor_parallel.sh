# llm-pretrain --tp (Megatron-style tensor parallel): with the same global batch, tp=2 and
# tp=2 x dp=2 (with ZeRO-3) follow the one-rank loss curve within 1e-5 relative over 20 steps (fp32, CPU) for
# Llama (GQA, tied vocabulary-parallel embedding), GPT-2 (biases, learned positions) and BERT
# (post-LN, masked-language modelling and next-sentence heads, validation accuracy); the
# checkpoints hold whole tensors equal to the one-rank run's; a run stopped on one layout
# resumes on another; each rank holds half the weights and optimizer state; layouts that do not
# split are usage errors that name the fix.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

word_shards 300
# 8 sequences per step: 4 per data-parallel rank with dp=2.
common="--train shards/train-00000.tok --seq-len 32 --micro-batch 2 --batch-tokens 256 --lr 2e-3 --warmup 2 --steps 20 --threads 1 --precision fp32"
cat > gpt2-mini.json <<'EOF'
{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 4000, "n_embd": 64, "n_layer": 2,
 "n_head": 4, "n_positions": 64, "layer_norm_epsilon": 1e-5}
EOF

# Checkpoints are compared up to 1e-3 relative to each tensor's largest magnitude. Not tighter:
# AdamW divides each gradient by its own running magnitude, so rounding noise in near-zero
# gradients (a key bias's, whose exact gradient is zero) becomes visible in the weights after 20
# steps while the losses agree to 1e-6.
mib() { grep -o "$1 [0-9.]* MiB" "$T/err" | head -1 | grep -o '[0-9.]*'; }

for model in llama-tiny gpt2-mini.json; do
  name=${model%.json}
  run llm-pretrain --model $model $common --out $name-one
  expect_rc 0 "$name: one rank"
  w1=$(mib "weights"); o1=$(grep -o 'optimizer state: [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
  run mpirun -np 2 llm-pretrain --model $model $common --tp 2 --out $name-tp2
  expect_rc 0 "$name: --tp 2"
  expect_err_contains "tensor parallel over 2 ranks, 1 data-parallel groups"
  w2=$(mib "weights"); o2=$(grep -o 'optimizer state: [0-9.]* MiB' "$T/err" | grep -o '[0-9.]*')
  echo "$name: per rank, weights $w1 MiB on one rank, $w2 MiB with --tp 2; optimizer state $o1 and $o2 MiB"
  # The optimizer state is printed to 0.01 MiB, the weights to 0.1 MiB (llama-tiny's 3 MiB only).
  expect_eq "$(python3 -c "print(0.49 < $o2 / $o1 < 0.55 and ('$name' != 'llama-tiny' or 0.49 < $w2 / $w1 < 0.55))")" "True" \
    "$name: a --tp 2 rank holds about half the weights and optimizer state ($w2 of $w1, $o2 of $o1 MiB)"
  result=$(compare_losses $name-one/metrics.jsonl $name-tp2/metrics.jsonl 1e-5)
  echo "$name: --tp 2 against one rank: worst relative loss difference ${result##* }"
  expect_eq "${result% *}" "True True" "$name: --tp 2 follows one rank (${result##* })"
  result=$(close_tensors $name-one/step-00000020/model.safetensors $name-tp2/step-00000020/model.safetensors 1e-3)
  expect_eq "${result% *}" "True" "$name: --tp 2's checkpoint holds the one-rank run's whole tensors (${result##* })"
  expect_eq "$(json $name-tp2/step-00000020/trainer_state.json 'j["world_size"], j["tensor_parallel"]')" "1 2" "$name: trainer state of --tp 2"
done

# tp=2 x dp=2 on 4 ranks, with ZeRO-3 over the data-parallel groups (the parameters, gradients
# and moments of each slice sharded over its group).
run mpirun -np 4 llm-pretrain --model llama-tiny $common --tp 2 --zero 3 --out tp2dp2
expect_rc 0 "--tp 2 on 4 ranks"
expect_err_contains "tensor parallel over 2 ranks, 2 data-parallel groups"
expect_err_contains "(ZeRO-3 over 2 ranks)"
result=$(compare_losses llama-tiny-one/metrics.jsonl tp2dp2/metrics.jsonl 1e-5)
echo "--tp 2 x dp 2 against one rank: worst relative loss difference ${result##* }"
expect_eq "${result% *}" "True True" "--tp 2 x dp 2 follows one rank (${result##* })"
grad1=$(jsonl llama-tiny-one/metrics.jsonl 'd.get("grad_norm", "")' | tr '\n' ' ')
grad4=$(jsonl tp2dp2/metrics.jsonl 'd.get("grad_norm", "")' | tr '\n' ' ')
expect_eq "$(python3 -c "
a = [float(x) for x in '$grad1'.split()]; b = [float(x) for x in '$grad4'.split()]
print(len(a) == len(b) == 20 and max(abs(x - y) / x for x, y in zip(a, b)) < 1e-4)")" "True" "--tp 2 x dp 2: the gradient norms are one rank's"

# Stopped on one layout, resumed on another: the same curve.
run mpirun -np 2 llm-pretrain --model llama-tiny $common --tp 2 --stop-at 10 --out tp2-then-one
expect_rc 0 "--tp 2 --stop-at 10"
run llm-pretrain --model llama-tiny $common --out tp2-then-one --resume
expect_rc 0 "one rank resumes the --tp 2 run"
expect_err_contains "resuming a run saved with --tp 2 on --tp 1"
result=$(compare_losses llama-tiny-one/metrics.jsonl tp2-then-one/metrics.jsonl 1e-5)
expect_eq "${result% *}" "True True" "--tp 2 then one rank follow the one-rank run (${result##* })"
run llm-pretrain --model llama-tiny $common --stop-at 10 --out one-then-tp2
expect_rc 0 "one rank --stop-at 10"
run mpirun -np 4 llm-pretrain --model llama-tiny $common --tp 2 --out one-then-tp2 --resume
expect_rc 0 "--tp 2 x dp 2 resumes the one-rank run"
result=$(compare_losses llama-tiny-one/metrics.jsonl one-then-tp2/metrics.jsonl 1e-5)
expect_eq "${result% *}" "True True" "one rank then --tp 2 x dp 2 follow the one-rank run (${result##* })"

# BERT (post-LN: each branch's gradient is summed over the ranks before the residual's is added)
# with masked-language modelling and the next-sentence head: the same losses, validation
# accuracy (the greedy token over the vocabulary shards) and next-sentence figures.
licence_docs licences.jsonl > /dev/null
run llm-tok train --model-type wordpiece -o vocab.txt --vocab-size 1000 licences.jsonl
run llm-tok encode -m vocab.txt --val-fraction 0.1 -o bshards licences.jsonl
expect_rc 0 "WordPiece shards"
cat > bert.json <<'EOF'
{"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 1000, "hidden_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256, "max_position_embeddings": 64}
EOF
bert="--model bert.json --objective mlm --nsp --tokenizer vocab.txt --train bshards/train-00000.tok --val bshards/val-00000.tok
  --seq-len 32 --micro-batch 4 --batch-size 8 --lr 2e-3 --warmup 2 --steps 20 --eval-every 10 --threads 1"
run llm-pretrain $bert --out bert-one
expect_rc 0 "BERT, one rank"
run mpirun -np 2 llm-pretrain $bert --tp 2 --out bert-tp2
expect_rc 0 "BERT, --tp 2"
result=$(python3 - <<'PY'
import json
a, b = ([json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l or "val_loss" in l] for d in ("bert-one", "bert-tp2"))
keys = ("loss", "mlm_loss", "nsp_loss", "val_loss", "val_accuracy", "val_nsp_loss", "val_nsp_accuracy")
worst = max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-9) for x, y in zip(a, b) for k in keys if k in x)
print(len(a) == len(b) == 22, worst < 1e-5, f"{worst:.2e}")
PY
)
echo "BERT (MLM and next sentence): --tp 2 against one rank: worst relative difference ${result##* }"
expect_eq "${result% *}" "True True" "BERT: --tp 2 follows one rank in training and validation (${result##* })"

# The layouts that do not split.
run mpirun -np 3 llm-pretrain --model llama-tiny $common --tp 2 --out bad-world
expect_rc 2 "--tp 2 on 3 ranks"
expect_err_contains "--tp 2 needs a multiple of 2 MPI ranks (the world is data-parallel x tensor-parallel ranks); this run has 3"
run mpirun -np 4 llm-pretrain --model llama-tiny $common --tp 4 --out bad-kv
expect_rc 2 "--tp 4 with 2 key/value heads"
expect_err_contains "2 key/value heads (grouped-query attention) do not split over 4 ranks"
expect_err_contains "give a divisor of 2: 1, 2"
cat > six-heads.json <<'EOF'
{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 4000, "n_embd": 96, "n_layer": 1,
 "n_head": 6, "n_positions": 64}
EOF
run mpirun -np 4 llm-pretrain --model six-heads.json $common --tp 4 --out bad-heads
expect_rc 2 "--tp 4 with 6 heads"
expect_err_contains "6 attention heads do not split over 4 ranks (give a divisor of 6: 1, 2, 3, 6)"
if [ -e bad-world ] || [ -e bad-kv ] || [ -e bad-heads ]; then fail "a refused layout left a run directory"; else ok; fi
finish
