#!/bin/sh
# llm-quant on the CPU: a 25M-parameter Llama trained here for 800 steps on Debian's own text,
# written as GGUF in every type, and for each type:
#  - file size, bits per weight, validation perplexity (llm-eval ppl on the same held-out shard,
#    the weights read back from the file) and its increase over the fp32 checkpoint (goals:
#    Q8_0 within 0.5%, Q4_K_M within 5%);
#  - prompt processing (128 tokens) and decode (64) tokens/s of llmkit's engine and of llama.cpp
#    (node-llama-cpp, when share/llmkit/install-peers.sh installed it) on the same file, prompts
#    and thread count (1: llama.cpp's threads spin), the best of three alternating runs each, and
#    llmkit / llama.cpp (goals: decode >= 1.0x, prompt processing >= 0.8x);
#  - llmkit's decode as a share of the memory-bandwidth limit (weight bytes per token over the
#    read rate one thread measures in the same run; goal 70%), and how much its peak RSS grew
#    past the libraries' with the model, next to the weights' and the KV cache's bytes.
# Then Q4_K_M and Q4_0 again, calibrated on the training shards: with an importance matrix
# (llm-quant imatrix, --imatrix: llama.cpp's calibration) and by GPTQ (--gptq), against
# round-to-nearest.
# Then the speed alone for Q8_0 and Q4_K_M of a 125M-parameter Llama (share/llmkit/models/
# llama-125m, one training step: speed does not depend on what the weights learned).
# llmkit holds a GGUF file's quantized matrices in their blocks (the F32, F16 and BF16 files in
# fp32) and multiplies them with its own kernels (llm-eval logs which ones this CPU gets).
# Usage: quant.sh BIN_DIR     LLMKIT_BENCH_STEPS (default 800): pretraining steps.
set -eu
bin=$(cd "${1:?usage: quant.sh BIN_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
peers=${LLMKIT_PEERS:-$src/build/peers}
steps=${LLMKIT_BENCH_STEPS:-800}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

# Text: the licences and copyright files of the installed packages.
{ find /usr/share/common-licenses -type f; find /usr/share/doc -maxdepth 2 -name copyright -type f; } 2>/dev/null | sort |
  python3 -c "
import json, sys
for p in sys.stdin:
    try: t = open(p.strip(), encoding='utf-8').read()
    except Exception: continue
    if len(t) > 200: print(json.dumps({'text': t}))" > docs.jsonl
# A Llama of 25M parameters whose rows are whole 256-value blocks (hidden 512, intermediate 1536),
# so that the K types apply to every matrix.
cat > model.json <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512, "num_hidden_layers": 6,
 "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 1536, "max_position_embeddings": 512,
 "vocab_size": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
"$bin/llm-tok" train -q -o tok.model --vocab-size 4096 docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards --val-fraction 0.02 docs.jsonl
"$bin/llm-pretrain" -q --model model.json --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 256 \
  --micro-batch 8 --steps "$steps" --lr 2e-3 --warmup 30 --eval-every 0
val=$(ls shards/val-*.tok | head -1)
ppl() { "$bin/llm-eval" ppl --model "$1" --seq-len 256 --limit 64 "$val" 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['metrics']['ppl']['value'])"; }
base_ppl=$(ppl base)
echo "a 25M Llama (hidden 512, 6 layers, GQA; $steps steps on Debian licence and copyright files), validation perplexity $base_ppl (fp32 checkpoint); 1 thread for speed"
speed() {  # MODEL_FILE -> llmkit's and llama.cpp's JSON on one line each: the best of three runs
  # of each, alternating, so that a busy moment of the machine does not decide a ratio
  python3 - "$1" "$bin" "$src" "$peers" <<'PY'
import json, os, subprocess, sys
f, bin_dir, src, peers = sys.argv[1:]
have_peer = os.path.isfile(f"{peers}/node_modules/node-llama-cpp/package.json") and subprocess.run(["sh", "-c", "command -v node"], capture_output=True).returncode == 0
best = [None, None]
def keep(i, o):
    if best[i] is None: best[i] = o
    else:
        for k in ("pp_tokens_per_s", "decode_tokens_per_s"): best[i][k] = max(best[i][k], o[k])
for _ in range(3):
    keep(0, json.loads(subprocess.run([f"{bin_dir}/decode", f, "128", "64"], env=dict(os.environ, OMP_NUM_THREADS="1"),
                                      capture_output=True, text=True, check=True).stdout))
    if have_peer:
        keep(1, json.loads(subprocess.run(["node", f"{src}/tests/peers/llama_cpp_speed.mjs", os.path.abspath(f), "128", "64", "1"],
                                          env=dict(os.environ, LLMKIT_PEERS=peers), capture_output=True, text=True, check=True).stdout))
print(json.dumps(best[0]))
print(json.dumps(best[1] or {}))
PY
}
row() {  # TYPE MIB BPW PPL BASE_PPL SPEED_JSON_LINES
  python3 - "$@" <<'PY'
import json, sys
t, mib, bpw, p, base, speeds = sys.argv[1:]
o, l = (json.loads(x) for x in speeds.splitlines())
inc = f"{(float(p) / float(base) - 1) * 100:+7.2f}%" if p != "-" else "       -"
ppl = f"{float(p):10.3f}" if p != "-" else "         -"
a = f"{o['pp_tokens_per_s']:6.0f} / {o['decode_tokens_per_s']:6.1f}"
b = f"{l['pp_tokens_per_s']:6.0f} / {l['decode_tokens_per_s']:6.1f}" if l else "(no llama.cpp)"
r = f"{o['pp_tokens_per_s'] / l['pp_tokens_per_s']:.2f}x / {o['decode_tokens_per_s'] / l['decode_tokens_per_s']:.2f}x" if l else "-"
bw = o['decode_tokens_per_s'] / o['bandwidth_limit_tokens_per_s'] * 100
mem = f"{o['peak_rss_growth_bytes'] / 2**20:5.0f} / {o['weight_bytes'] / 2**20:5.1f} + {o['kv_cache_bytes'] / 2**20:4.1f}"
print(f"{t:7s} {mib:>7s} {bpw:>6s} {ppl} {inc}   {a:16s} {b:16s} {r:13s} {bw:5.0f}%   {mem}")
PY
}
printf '%-7s %7s %6s %10s %8s   %-16s %-16s %-13s %6s   %s\n' type MiB bpw perplexity increase "llmkit pp/dec" "llama.cpp pp/dec" "ratio pp/dec" "bw" "RSS growth / weights + KV MiB"
for t in f32 f16 bf16 q8_0 q6_k q5_k_m q4_k_m q4_0; do
  "$bin/llm-quant" --model base --type "$t" -o m-$t.gguf 2> /dev/null
  bpw=$("$bin/llm-quant" inspect m-$t.gguf | awk '$1 == "all" {print $6}')
  mib=$(python3 -c "import os; print(f'{os.path.getsize(\"m-$t.gguf\") / 2**20:.1f}')")
  row "$t" "$mib" "$bpw" "$(ppl m-$t.gguf)" "$base_ppl" "$(speed m-$t.gguf)"
done

# Calibration, on 100 windows of 256 training tokens: llama.cpp's importance matrix (llm-quant
# imatrix), and GPTQ (llm-quant --gptq, its blocks' scales chosen with the same importance), for
# the 4-bit types; the same file sizes, so the perplexity is the comparison with round-to-nearest
# above. GPTQ's line gives the output error over the calibration inputs that it minimizes.
"$bin/llm-quant" imatrix -q --model base --seq-len 256 --chunks 100 -o imatrix.gguf shards/train-*.tok
for t in q4_k_m q4_0; do
  "$bin/llm-quant" --model base --type "$t" --imatrix imatrix.gguf -o m-$t-imat.gguf 2> /dev/null
  "$bin/llm-quant" --model base --type "$t" --gptq --seq-len 256 --chunks 100 -o m-$t-gptq.gguf shards/train-*.tok 2> gptq.log
  for how in imat gptq; do
    bpw=$("$bin/llm-quant" inspect m-$t-$how.gguf | awk '$1 == "all" {print $6}')
    mib=$(python3 -c "import os; print(f'{os.path.getsize(\"m-$t-$how.gguf\") / 2**20:.1f}')")
    row "$t+$how" "$mib" "$bpw" "$(ppl m-$t-$how.gguf)" "$base_ppl" "$(speed m-$t-$how.gguf)"
  done
  sed -n "s/^llm-quant: GPTQ: /  $t GPTQ: /p" gptq.log
done

# A 125M-parameter Llama: speed only.
"$bin/llm-pretrain" -q --model "$src/share/llmkit/models/llama-125m.json" --train 'shards/train-*.tok' --tokenizer tok.model \
  --out big --seq-len 64 --micro-batch 1 --steps 1 --warmup 0 --eval-every 0 2> /dev/null
echo "a 125M Llama (hidden 768, 12 layers, vocabulary 32000; one training step), 1 thread"
for t in q8_0 q4_k_m; do
  "$bin/llm-quant" --model big --type "$t" -o big-$t.gguf 2> /dev/null
  bpw=$("$bin/llm-quant" inspect big-$t.gguf | awk '$1 == "all" {print $6}')
  mib=$(python3 -c "import os; print(f'{os.path.getsize(\"big-$t.gguf\") / 2**20:.1f}')")
  row "$t" "$mib" "$bpw" - 1 "$(speed big-$t.gguf)"
done
