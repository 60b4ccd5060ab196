#!/bin/sh
# llm-quant on the CPU: a 25M-parameter Llama trained here for 800 steps on Debian's own text,
# written as GGUF in every type, and for each type:
#  - file size, bits per weight, validation perplexity (llm-eval ppl on the same held-out shard,
#    the weights read back from the file) and its increase over the fp32 checkpoint (goals:
#    Q8_0 within 0.5%, Q4_K_M within 5%);
#  - prompt processing and decode tokens/s of llmkit's engine and of llama.cpp (node-llama-cpp,
#    when share/llmkit/install-peers.sh installed it) on the same file, prompts and thread count
#    (1: llama.cpp's threads spin), and llmkit / llama.cpp.
# llmkit reads a GGUF file into fp32 weights today (quantized matmuls are not built yet): its
# speed is the same for every type.
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
printf '%-7s %9s %6s %10s %8s   %-28s %-28s %s\n' type MiB bpw perplexity increase "llmkit pp / decode tok/s" "llama.cpp pp / decode tok/s" "ratio pp / decode"
for t in f32 f16 bf16 q8_0 q6_k q5_k_m q4_k_m q4_0; do
  "$bin/llm-quant" --model base --type "$t" -o m-$t.gguf 2> /dev/null
  bpw=$("$bin/llm-quant" inspect m-$t.gguf | awk '$1 == "all" {print $6}')
  mib=$(python3 -c "import os; print(f'{os.path.getsize(\"m-$t.gguf\") / 2**20:.1f}')")
  p=$(ppl m-$t.gguf)
  ours=$(OMP_NUM_THREADS=1 "$bin/decode" m-$t.gguf 128 64)
  theirs='{}'
  if [ -f "$peers/node_modules/node-llama-cpp/package.json" ] && command -v node > /dev/null; then
    theirs=$(LLMKIT_PEERS=$peers node "$src/tests/peers/llama_cpp_speed.mjs" "$PWD/m-$t.gguf" 128 64 1)
  fi
  python3 - "$t" "$mib" "$bpw" "$p" "$base_ppl" "$ours" "$theirs" <<'PY'
import json, sys
t, mib, bpw, p, base, ours, theirs = sys.argv[1:]
o, l = json.loads(ours), json.loads(theirs)
inc = (float(p) / float(base) - 1) * 100
a = f"{o['pp_tokens_per_s']:8.0f} / {o['decode_tokens_per_s']:6.1f}"
b = f"{l['pp_tokens_per_s']:8.0f} / {l['decode_tokens_per_s']:6.1f}" if l else "(no llama.cpp)"
r = f"{o['pp_tokens_per_s'] / l['pp_tokens_per_s']:.2f}x / {o['decode_tokens_per_s'] / l['decode_tokens_per_s']:.2f}x" if l else ""
print(f"{t:7s} {mib:>9s} {bpw:>6s} {float(p):10.3f} {inc:+7.2f}%   {a:28s} {b:28s} {r}")
PY
done
