#!/bin/sh
# llm-pretrain speed and memory on the CPU: the measured sgemm peak and kernel, then tokens/s,
# step time and MFU (model FLOPs / step time / sgemm peak) for llama-tiny, llama-25m, gpt2-124m
# and bert-base (masked-language modelling at T=128, as BERT's first phase), and peak RSS against parameters + gradients + AdamW moments + activations, and where
# a gpt2-124m step's time goes.
# Against llm.c's CPU trainer, in the same run: gpt2-124m at B=4, T=64, both on the same random
# tokens from the same random weights, both on all cores. llm.c is public
# (github.com/karpathy/llm.c); give LLMC_DIR, a checkout where its `make train_gpt2` has been
# run (this script does not build other projects' code); without it, that comparison is skipped.
# Usage: pretrain.sh BIN_DIR     LLMKIT_BENCH_STEPS (default 6): steps per model (first excluded).
set -eu
bin=$(cd "${1:?usage: pretrain.sh BIN_DIR}" && pwd)
steps=${LLMKIT_BENCH_STEPS:-6}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

. "$(dirname "$0")/lib.sh"
random_tokens "$work/tokens.bin" 400000

# A WordPiece vocabulary of bert-base's size (30522 pieces, the specials where BERT's are) for
# the masked-language-model run.
python3 - "$work/vocab.txt" <<'PY'
import sys
pieces = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
pieces += [f"w{i}" for i in range(30522 - len(pieces))]
open(sys.argv[1], "w").write("\n".join(pieces) + "\n")
PY

run() {  # MODEL SEQ MICRO [llm-pretrain options]
  model=$1 seq=$2 micro=$3
  shift 3
  /usr/bin/time -f "%M" -o "$work/rss" "$bin/llm-pretrain" -q --model "$model" --train "$work/tokens.bin" \
    --out "$work/run-$model-$seq" --seq-len "$seq" --micro-batch "$micro" --steps "$steps" --warmup 1 \
    --eval-every 0 --no-verify "$@" 2>/dev/null
  python3 - "$work/run-$model-$seq/metrics.jsonl" "$model" "$seq" "$micro" "$(cat "$work/rss")" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][1:]  # the first step warms up
model, seq, micro, rss_kb = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tps = sum(r["tokens_per_sec"] for r in rows) / len(rows)
mfu = sum(r["mfu"] for r in rows) / len(rows)
step_s = seq * micro / tps
print(f"{model:10s} B={micro:<2d} T={seq:<4d} {step_s * 1000:8.0f} ms/step {tps:9.0f} tok/s  MFU {100 * mfu:5.1f}%  "
      f"peak RSS {rss_kb / 1024:6.0f} MiB", end="")
if model == "gpt2-124m" and seq == 64 and micro == 4:
    open(sys.argv[1].rsplit("/", 2)[0] + "/gpt2-step-s", "w").write(str(step_s))
print()
PY
}

"$bin/sgemm_peak"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}; LLMKIT_GEMM=${LLMKIT_GEMM:-(auto)}"
run llama-tiny 256 8
run llama-25m 256 8
run gpt2-124m 64 4
run gpt2-124m 256 4
run bert-base 128 8 --objective mlm --tokenizer "$work/vocab.txt"

# Memory model for gpt2-124m, B=4, T=64: 4 bytes x (parameters x 4 [weights, gradients, m, v])
# plus activations, against the peak RSS measured above.
"$bin/sgemm_peak" --memory gpt2-124m 4 64
"$bin/sgemm_peak" --breakdown gpt2-124m 4 64

# llm.c's train_gpt2 (B=4, T=64 fixed in its main()) in a directory of its own: a GPT-2 124M
# checkpoint in its format (random weights, as llm-pretrain starts from) and the token files it
# reads. Its step times are read from its output; it is stopped after step 5.
if [ -n "${LLMC_DIR:-}" ] && [ -x "$LLMC_DIR/train_gpt2" ]; then
  mkdir -p "$work/llmc/dev/data/tinyshakespeare"
  python3 - "$work/llmc" "$work/tokens.bin" <<'PY'
import array, random, shutil, struct, sys
d = sys.argv[1]
V, Vp, C, L, NH, maxT = 50257, 50304, 768, 12, 12, 1024
n = Vp * C + maxT * C + L * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C
rng = random.Random(1)
block = array.array("f", (rng.gauss(0, 0.02) for _ in range(1 << 20)))
with open(d + "/gpt2_124M.bin", "wb") as f:
    h = [0] * 256; h[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
    f.write(struct.pack("<256i", *h))
    left = n
    while left > 0:
        k = min(left, len(block)); f.write(block[:k].tobytes()); left -= k
for name in ("train", "val"):
    shutil.copy(sys.argv[2], f"{d}/dev/data/tinyshakespeare/tiny_shakespeare_{name}.bin")
PY
  (cd "$work/llmc" && OMP_NUM_THREADS=$(nproc) "$LLMC_DIR/train_gpt2" 2>&1 | awk '/^step [0-9]+: /{print; if ($2 == "5:") exit}') > "$work/llmc.out" || true
  python3 - "$work/llmc.out" "$work/gpt2-step-s" <<'PY'
import re, sys
ms = [float(m.group(2)) for m in (re.match(r"step (\d+): .*took ([0-9.]+) ms", l) for l in open(sys.argv[1])) if m and int(m.group(1)) > 0]
if not ms:
    print("llm.c: train_gpt2 printed no step times:", open(sys.argv[1]).read()[-500:]); sys.exit(0)
llmc = sum(ms) / len(ms) / 1000
ours = float(open(sys.argv[2]).read())
print(f"llm.c train_gpt2 gpt2-124m B=4 T=64: {llmc * 1000:.0f} ms/step (mean of steps 1-{len(ms)}); "
      f"llm-pretrain {ours * 1000:.0f} ms/step: {llmc / ours:.2f}x llm.c's speed, same machine, same run")
PY
else
  echo "llm.c: skipped (give LLMC_DIR, a checkout of karpathy/llm.c with train_gpt2 built, to compare in this run)"
fi