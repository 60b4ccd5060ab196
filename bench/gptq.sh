#!/bin/sh
# 4-bit calibration compared: round-to-nearest, llama.cpp's importance matrix (llm-quant imatrix,
# --imatrix) and GPTQ (--gptq), on a 7M-parameter Llama (hidden 256, 4 layers, ffn 768, every
# row whole 256-value blocks) trained here on Debian's licence and copyright texts: validation
# perplexity (llm-eval ppl on the held-out shard, 256-token windows) of each file against the
# fp32 checkpoint's, at the same size, and GPTQ's own report of the output error it minimises.
# Calibration: 100 windows of 512 training tokens for both methods.
# Usage: gptq.sh BIN_DIR     LLMKIT_BENCH_STEPS (default 600): pretraining steps.
set -eu
bin=$(cd "${1:?usage: gptq.sh BIN_DIR}" && pwd)
steps=${LLMKIT_BENCH_STEPS:-600}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
{ find /usr/share/common-licenses -type f; find /usr/share/doc -maxdepth 2 -name copyright -type f; } 2>/dev/null | sort |
  python3 -c "
import json, sys
for p in sys.stdin:
    try: t = open(p.strip(), encoding='utf-8').read()
    except Exception: continue
    if len(t) > 200: print(json.dumps({'text': t}))" > docs.jsonl
cat > model.json <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 768, "max_position_embeddings": 512,
 "vocab_size": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
"$bin/llm-tok" train -q -o tok.model --vocab-size 4096 docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards --val-fraction 0.02 docs.jsonl
"$bin/llm-pretrain" -q --model model.json --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 256 \
  --micro-batch 8 --steps "$steps" --lr 2e-3 --warmup 30 --eval-every 0
val=$(ls shards/val-*.tok | head -1)
ppl() { "$bin/llm-eval" ppl --model "$1" --seq-len 256 --limit 64 "$val" 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['metrics']['ppl']['value'])"; }
base=$(ppl base)
echo "a 7M Llama, $steps steps on Debian licence and copyright files; validation perplexity $base (fp32 checkpoint)"
"$bin/llm-quant" imatrix -q --model base --chunks 100 -o imatrix.gguf shards/train-*.tok
printf '%-7s %22s %22s %22s\n' type round-to-nearest imatrix GPTQ
for t in q4_0 q4_k_m q4_k_s; do
  "$bin/llm-quant" -q --model base --type $t -o rtn.gguf
  "$bin/llm-quant" -q --model base --type $t --imatrix imatrix.gguf -o imat.gguf 2> /dev/null
  "$bin/llm-quant" --model base --type $t --gptq --chunks 100 -o gptq.gguf shards/train-*.tok 2> gptq.log
  python3 - "$t" "$base" "$(ppl rtn.gguf)" "$(ppl imat.gguf)" "$(ppl gptq.gguf)" <<'PY'
import sys
t, base, *p = sys.argv[1:]
cells = [f"{float(x):9.3f} ({(float(x) / float(base) - 1) * 100:+6.2f}%)" for x in p]
print(f"{t:7s} " + " ".join(f"{c:>22s}" for c in cells))
PY
  sed -n "s/^llm-quant: GPTQ: /        GPTQ: /p" gptq.log
done
