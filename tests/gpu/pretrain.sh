# llm-pretrain on real GPUs (CTest label gpu; skipped, exit 77, without one): the GPU tracks the
# CPU's loss curve (fp32 matmuls within 1e-3, bf16 within 3e-2, relative), is deterministic
# (two runs, the same losses bit for bit), checkpoints resume across devices, --recompute
# changes nothing, and with two GPUs NCCL data parallelism (--zero 0 and 1) follows one GPU.
. "$(dirname "$0")/../cli/lib.sh"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
[ "${gpus:-0}" -ge 1 ] || { echo "no GPU (nvidia-smi): skipped"; exit 77; }

word_shards 400
common="--model llama-tiny --train shards/train-00000.tok --seq-len 64 --micro-batch 4 --batch-tokens 512 --lr 2e-3 --warmup 2 --steps 20 --eval-every 0"

losses() { python3 -c "import json,sys; print(' '.join(str(json.loads(l)['loss']) for l in open(sys.argv[1]) if '\"loss\"' in l))" "$1"; }

run llm-pretrain $common --device cpu --out cpu
expect_rc 0 "CPU reference"
run llm-pretrain $common --device cuda --precision fp32 --out fp32
expect_rc 0 "GPU, fp32 matmuls"
expect_err_contains "device: "
r=$(compare_losses cpu/metrics.jsonl fp32/metrics.jsonl 1e-3); echo "fp32 vs CPU: $r"
expect_eq "${r% *}" "True True" "fp32 matmuls track the CPU"
run llm-pretrain $common --device cuda --out bf16
expect_rc 0 "GPU, bf16 matmuls"
r=$(compare_losses cpu/metrics.jsonl bf16/metrics.jsonl 3e-2); echo "bf16 vs CPU: $r"
expect_eq "${r% *}" "True True" "bf16 matmuls track the CPU"
run llm-pretrain $common --device cuda --out bf16b
expect_eq "$(losses bf16b/metrics.jsonl)" "$(losses bf16/metrics.jsonl)" "deterministic: the same losses twice"
run llm-pretrain $common --device cuda --recompute --out re
expect_eq "$(losses re/metrics.jsonl)" "$(losses bf16/metrics.jsonl)" "--recompute: the same losses"
expect_eq "$(python3 -c "import json; print('peak_device_mem' in [r for r in map(json.loads, open('bf16/metrics.jsonl')) if 'loss' in r][0])")" "True" "peak_device_mem"

# Across devices: 10 steps on the GPU, the rest on the CPU, against the CPU alone.
run llm-pretrain $common --device cuda --precision fp32 --stop-at 10 --out x
run llm-pretrain $common --device cpu --resume --out x
expect_rc 0 "a GPU checkpoint resumed on the CPU"
r=$(compare_losses cpu/metrics.jsonl x/metrics.jsonl 1e-3); echo "GPU then CPU vs CPU: $r"
expect_eq "${r% *}" "True True" "resumed across devices"

if [ "$gpus" -ge 2 ] && command -v mpirun >/dev/null; then
  for z in 0 1; do
    run mpirun -np 2 llm-pretrain $common --device cuda --precision fp32 --zero $z --out nccl$z
    expect_rc 0 "2 GPUs, NCCL, --zero $z"
    r=$(compare_losses fp32/metrics.jsonl nccl$z/metrics.jsonl 1e-4); echo "2 GPUs --zero $z vs 1 GPU: $r"
    expect_eq "${r% *}" "True True" "2 GPUs (--zero $z) follow one"
  done
else
  echo "one GPU: the NCCL checks need two (skipped)"
fi
finish
