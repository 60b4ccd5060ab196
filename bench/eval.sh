#!/bin/sh
# llm-eval speed: examples/s and tokens/s for multiple choice and generation on a small model
# (llama-tiny trained a few steps on the Python manual's text), batched against unbatched, in the
# same run. Usage: eval.sh BIN_DIR
set -eu
bin=$(cd "${1:?usage: eval.sh BIN_DIR}" && pwd)
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin/llm-clean" -q --no-quality --no-pii /usr/share/doc/python3.11/html > docs.jsonl
"$bin/llm-tok" train -q -o tok.model --vocab-size 4000 docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards docs.jsonl
"$bin/llm-pretrain" -q --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out run \
  --seq-len 128 --micro-batch 8 --steps 20 --eval-every 0 2>/dev/null
python3 - <<'PY'
import json, random
rng = random.Random(2)
lines = [s for l in open("docs.jsonl") for s in json.loads(l)["text"].split("\n") if 40 < len(s) < 200]
with open("mc.jsonl", "w") as f:
    for i in range(200):
        ctx = rng.choice(lines)
        f.write(json.dumps({"context": ctx[:60], "choices": [ctx[60:120]] + [rng.choice(lines)[:60] for _ in range(3)], "gold": 0}) + "\n")
with open("gen.jsonl", "w") as f:
    for i in range(32):
        f.write(json.dumps({"prompt": rng.choice(lines)[:80], "answer": "#### 0"}) + "\n")
PY
for kind in mc gen; do
  for b in 1 16; do
    extra=""
    [ $kind = gen ] && extra="--max-gen-tokens 32"
    /usr/bin/time -f %M -o rss-$kind-$b "$bin/llm-eval" $kind --model run --batch-size $b $extra -o r-$kind-$b.json $kind.jsonl
  done
  python3 - "$kind" <<'PY'
import json, sys
k = sys.argv[1]
a, b = (json.load(open(f"r-{k}-{n}.json")) for n in (1, 16))
for n, r in ((1, a), (16, b)):
    rss = int(open(f"rss-{k}-{n}").read().split()[-1]) / 1024
    print(f"llm-eval {k} --batch-size {n:2d}: {r['examples'] / r['wall_seconds']:7.1f} examples/s, "
          f"{r['tokens_per_sec']:8.0f} tokens/s, peak RSS {rss:.0f} MiB")
print(f"  batched / unbatched: {a['wall_seconds'] / b['wall_seconds']:.2f}x")
PY
done
