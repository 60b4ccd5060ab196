#!/bin/sh
# llm-pretrain's parallel layouts on the CPU over MPI: per-rank weights, gradients and optimizer state (the
# start's memory line), step time, and the floats each step sends through the tensor- and
# data-parallel groups' collectives (metrics tp_floats, dp_floats) against the formula:
#   tensor parallel, per step: accumulation x (B T) x ((4 layers + 2) hidden + tp + 1)
#     four all-reduces of B T x hidden per block (two forward, two backward), one for the
#     embedding and one for the LM head's input gradient, and the vocabulary-parallel
#     cross-entropy's all-gather of tp log-sum-exps and all-reduce of the target logit per token;
#   data parallel, per step, of the (tensor-parallel slice's) P floats, blocks' L x block and
#     the rest's P - L x block: P once (all-reduce), or twice with --zero 1 (reduce to each
#     segment's owner, then the all-gather of the updated weights); with --zero 2 the blocks'
#     reduced every micro-batch, the rest once, then the all-gather; with --zero 3 the same
#     reduces, each block gathered before its forward and its backward (the window keeps the
#     block it ends with: (2L - 2) x accumulation + 1 gathers) and the rest gathered once.
# Then the per-rank memory of llama-125m in the same layouts and more ranks (the start's memory
# line of a one-step run).
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
rows = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"loss"' in l][1:]
seq, micro, layers, hidden = 128, 4, 8, 384
batch = int(opts[opts.index("--batch-size") + 1]) if "--batch-size" in opts else 8
ms = sum(seq * batch / r["tokens_per_sec"] * 1000 for r in rows) / len(rows)
accum = batch // (micro * dp)
N = micro * seq
tp_formula = accum * N * ((4 * layers + 2) * hidden + tp + 1) if tp > 1 else 0
# llama-25m's tensor-parallel slice (every tensor a multiple of 16 floats): norms replicated,
# q/o, k/v and the MLP split, the tied 32000-row embedding split, the final norm replicated.
C, F, kv, V = hidden, 1024, 128, 32000
block = 2 * C + (2 * C * C + 2 * kv * C + 3 * C * F) // tp
P = layers * block + V * C // tp + C
blocks, rest = layers * block, P - layers * block
dp_formula = 0 if dp == 1 else {0: P, 1: 2 * P, 2: accum * blocks + rest + P,
                                3: accum * blocks + rest + ((2 * layers - 2) * accum + 1) * block + rest}[zero]
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
run dp2-zero2-accum2 2 --zero 2 --batch-size 16
run tp2 2 --tp 2
run tp2xdp2-zero2 4 --tp 2 --zero 2

echo
echo "llama-125m, per-rank memory (MiB) at start"
printf '%-16s %s\n' layout "memory line"
memory() {  # NAME NP LLM-PRETRAIN OPTIONS...
  name=$1 np=$2
  shift 2
  mpirun -np "$np" "$bin/llm-pretrain" --model llama-125m --train "$work/tokens.bin" --out "$work/big-$name" --seq-len 64 \
    --micro-batch 1 --batch-size 4 --steps 1 --warmup 1 --eval-every 0 --no-verify --threads 1 --precision fp32 "$@" 2>&1 |
    grep -o 'weights.*in all' | sed "s/^/$(printf '%-16s ' "$name")/"
}
memory dp2 2
memory dp2-zero3 2 --zero 3
memory dp4-zero3 4 --zero 3
memory tp2xdp2 4 --tp 2
memory tp2xdp2-zero3 4 --tp 2 --zero 3
