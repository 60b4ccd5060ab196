#!/bin/sh
# llm-pretrain's parallel layouts on the CPU over MPI: per-rank weights, gradients and optimizer state (the
# start's memory line), step time, and the floats each step sends through the tensor- and
# data-parallel groups' collectives (metrics tp_floats, dp_floats) against the formula:
#   tensor parallel, per step: accumulation x (B T) x ((4 layers + 2) hidden + tp + 1)
#     four all-reduces of B T x hidden per block (two forward, two backward), one for the
#     embedding and one for the LM head's input gradient, and the vocabulary-parallel
#     cross-entropy's all-gather of tp log-sum-exps and all-reduce of the target logit per token;
#   data parallel, per step: the trainable slice's gradients once (all-reduce), or twice with
#     --zero 1 (reduce to each segment's owner, then the all-gather of the updated weights), or
#     with --zero 2 once per micro-batch and the all-gather, and with --zero 3 the blocks'
#     parameters gathered twice more (forward and backward) and the other tensors once.
# Step times of more ranks than cores (tp 2 x dp 2 on a 2-core machine) share the cores: compare
# them with each other's memory, not as speed.
# Usage: parallel.sh BIN_DIR     LLMKIT_BENCH_STEPS (default 4): steps per layout (first excluded).
set -eu
bin=$(cd "${1:?usage: parallel.sh BIN_DIR}" && pwd)
steps=${LLMKIT_BENCH_STEPS:-4}
command -v mpirun >/dev/null || { echo "parallel: mpirun not found: skipped"; exit 0; }
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

. "$(dirname "$0")/lib.sh"
random_tokens "$work/tokens.bin" 200000

model=llama-25m seq=128 micro=4 batch=8
echo "$model, global batch $batch rows of $seq (micro-batch $micro), fp32 on the CPU, $(nproc) cores"
printf '%-16s %9s %9s %12s %8s %12s %12s %12s %12s\n' layout "weights" "gradients" "optimizer" "ms/step" "tp floats" "formula" "dp floats" "formula"
run() {  # NAME NP LLM-PRETRAIN OPTIONS...
  name=$1 np=$2
  shift 2
  launch=""
  [ "$np" -gt 1 ] && launch="mpirun -np $np"
  threads=$(( $(nproc) / np )); [ "$threads" -lt 1 ] && threads=1
  $launch "$bin/llm-pretrain" --model $model --train "$work/tokens.bin" --out "$work/$name" --seq-len $seq \
    --micro-batch $micro --batch-size $batch --steps "$steps" --warmup 1 --eval-every 0 --no-verify --threads $threads \
    --precision fp32 "$@" 2> "$work/$name.err"
  python3 - "$work/$name" "$np" "$@" <<'PY'
import json, re, sys
run, np, opts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
err = open(run + ".err").read()
tp = int(opts[opts.index("--tp") + 1]) if "--tp" in opts else 1
zero = int(opts[opts.index("--zero") + 1]) if "--zero" in opts else 0
dp = np // tp
w = float(re.search(r"weights ([0-9.]+) MiB", err).group(1))
g = float(re.search(r"gradients ([0-9.]+) MiB", err).group(1))
o = float(re.search(r"optimizer state: ([0-9.]+) MiB", err).group(1))
params = float(re.search(r"([0-9.]+)M trainable parameters", err).group(1)) * 1e6
rows = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"loss"' in l][1:]
seq, micro, batch, layers, hidden = 128, 4, 8, 8, 384
ms = sum(seq * batch / r["tokens_per_sec"] * 1000 for r in rows) / len(rows)
accum = batch // (micro * dp)
N = micro * seq
tp_formula = accum * N * ((4 * layers + 2) * hidden + tp + 1) if tp > 1 else 0
# The slice's gradient buffer, from the optimizer state (8 bytes per float, 1/dp of it with ZeRO-1).
grads = o * 2**20 / 8 * (dp if zero >= 1 and dp > 1 else 1)
dp_formula = {0: 1, 1: 2, 2: accum + 1, 3: accum}[zero] * grads if dp > 1 else 0
if zero == 3 and dp > 1:  # llama-25m's blocks: gathered for the forward, and but the last for the backward
    C, F, kv = 384, 1024, 128
    block = 2 * C + 2 * C * C + 2 * kv * C + 3 * C * F
    dp_formula += accum * (2 * layers - 1) * block + (grads - layers * block)  # and the tensors outside them after the step
tpf = sum(r.get("tp_floats", 0) for r in rows) / len(rows)
dpf = sum(r.get("dp_floats", 0) for r in rows) / len(rows)
name = run.rsplit("/", 1)[1]
print(f"{name:16s} {w:5.1f} MiB {g:5.1f} MiB {o:8.2f} MiB {ms:8.0f} {tpf:12.0f} {tp_formula:12.0f} {dpf:12.0f} {dp_formula:12.0f}")
PY
}
run one-rank 1
run dp2 2
run dp2-zero1 2 --zero 1
run dp2-zero2 2 --zero 2
run dp2-zero3 2 --zero 3
run tp2 2 --tp 2
run tp2xdp2-zero2 4 --tp 2 --zero 2
