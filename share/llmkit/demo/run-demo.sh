#!/bin/sh
# The demo: llmkit's pipeline on real text nobody here wrote, the HTML of the Python 3.11 manual
# (Debian package python3.11-doc, installed by install-deps.sh): llm-clean -> llm-dedup ->
# llm-tok train/encode -> llm-pretrain (a tiny Llama, about 10 minutes on 2 cores) -> llm-eval ->
# llm-serve (one completion over OpenAI's API, from curl), then a summary and a loss curve
# (loss.png). Under 30 minutes on a 2-core machine.
# Usage: run-demo.sh BIN_DIR [WORK_DIR]      (WORK_DIR defaults to ./demo-output)
#        LLMKIT_DEMO_STEPS (default 3000): training steps; fewer for a quick look.
set -eu
bin=$(cd "${1:?usage: run-demo.sh BIN_DIR [WORK_DIR]}" && pwd)
work=${2:-demo-output}
steps=${LLMKIT_DEMO_STEPS:-3000}
html=/usr/share/doc/python3.11/html
[ -d "$html" ] || { echo "run-demo: $html is missing (apt-get install python3.11-doc)" >&2; exit 1; }
mkdir -p "$work"
PATH=$bin:$PATH
start=$(date +%s)

echo "== llm-clean: $(find "$html" -name '*.html' | wc -l) HTML pages from $html"
llm-clean -q --stats "$work/clean.stats.json" --rejected "$work/rejected.jsonl.zst" \
  -o "$work/clean.jsonl.zst" "$html"
# The web-text quality rules drop most of a manual (code, tables, short reference lines): the
# report above shows which and why. The model trains on the extracted text with the rules off.
llm-clean -q --no-quality --stats "$work/corpus.stats.json" -o "$work/corpus.jsonl.zst" "$html"

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
st = json.load(open(f"{work}/clean.stats.json"))
c = st["counters"]
print(f"documents: {c['docs_in']} in, {c['docs_out']} pass the web-text quality rules, {st['dropped_total']} dropped "
      f"({st['wall_seconds']:.1f} s, peak RSS {st['peak_rss_bytes'] / 2**20:.0f} MiB); most frequent reasons:")
for reason, n in sorted(st["drops"].items(), key=lambda kv: -kv[1])[:5]:
    print(f"  {n:6d}  {reason}")
pii = {k: v for k, v in c.items() if k.startswith("pii_") and v}
if pii:
    print("PII redacted:", ", ".join(f"{k[4:]} {v}" for k, v in sorted(pii.items())))
PY

echo
echo "== llm-dedup: exact and near duplicates, and lines repeated in 20+ pages"
llm-dedup -q --lines 20 --clusters "$work/clusters.jsonl" --stats "$work/dedup.stats.json" \
  -o "$work/dedup.jsonl.zst" "$work/corpus.jsonl.zst"

echo "== llm-tok: a 4000-piece BPE tokenizer, then shards with a 5% validation split"
rm -rf "$work/shards"
llm-tok train -q -o "$work/tok.model" --vocab-size 4000 --special '<|im_start|>,<|im_end|>' \
  --stats "$work/train.stats.json" "$work/dedup.jsonl.zst"
llm-tok encode -q -m "$work/tok.model" --val-fraction 0.05 --stats "$work/encode.stats.json" \
  -o "$work/shards" "$work/dedup.jsonl.zst"
llm-tok inspect -m "$work/tok.model" "$work"/shards/*.tok

echo
echo "== llm-pretrain: llama-tiny, $steps steps of 2048 tokens (progress every 10 s)"
rm -rf "$work/run"
llm-pretrain --model llama-tiny --train "$work/shards/train-*.tok" --val "$work/shards/val-00000.tok" \
  --tokenizer "$work/tok.model" --out "$work/run" --seq-len 256 --micro-batch 8 --steps "$steps" \
  --lr 1e-3 --warmup 100 --eval-every 250 --save-every 1000 --keep 2 --sample-every "$steps" \
  --stats "$work/pretrain.stats.json" 2> "$work/pretrain.log" &
pid=$!
while kill -0 $pid 2>/dev/null; do
  sleep 10
  tail -n 1 "$work/run/metrics.jsonl" 2>/dev/null | python3 -c "
import json, sys
for l in sys.stdin:
    j = json.loads(l)
    if 'loss' in j: print(f\"  step {j['step']:5d}  loss {j['loss']:.3f}  {j['tokens_per_sec']:.0f} tok/s\", flush=True)" || true
done
wait $pid
llm-pretrain -q --plot "$work/run"

echo
echo "== llm-eval: perplexity of the validation shard"
llm-eval ppl --model "$work/run" --seq-len 256 -o "$work/eval.json" "$work/shards/val-00000.tok"

echo
echo "== llm-serve: the model behind OpenAI's API, one request from curl"
rm -f "$work/serve.address"
llm-serve -q --model "$work/run" --port 0 --port-file "$work/serve.address" --max-seqs 4 --stats "$work/serve.stats.json" &
serve_pid=$!
i=0
until [ -s "$work/serve.address" ] && curl -sf "http://$(cat "$work/serve.address")/health" > /dev/null; do
  i=$((i + 1))
  [ $i -lt 300 ] || { echo "run-demo: llm-serve did not start" >&2; kill $serve_pid; exit 1; }
  sleep 0.2
done
curl -s "http://$(cat "$work/serve.address")/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "The Python interpreter", "max_tokens": 40, "temperature": 0}' > "$work/serve.json"
kill -TERM $serve_pid
wait $serve_pid

python3 - "$work" "$start" <<'PY'
import json, sys, time
work, start = sys.argv[1], int(sys.argv[2])
def stats(name): return json.load(open(f"{work}/{name}.stats.json"))
clean, corpus, dedup, enc = stats("clean"), stats("corpus"), stats("dedup"), stats("encode")
rows = [json.loads(l) for l in open(f"{work}/run/metrics.jsonl")]
train = [r for r in rows if "loss" in r]
val = [r for r in rows if "val_loss" in r]
ev = json.load(open(f"{work}/eval.json"))
sample = [l.split("sample: ", 1)[1].strip() for l in open(f"{work}/pretrain.log") if "sample: " in l]
d = dedup["drops"]
print("\nsummary")
print(f"  pages             {clean['counters']['docs_in']} HTML pages; {corpus['counters']['docs_out']} with text, "
      f"{clean['counters']['docs_out']} of them pass the web-text quality rules")
print(f"  dedup             {dedup['counters']['docs_in']} in, {dedup['counters']['docs_out']} kept "
      f"({d.get('exact_duplicate', 0)} exact, {d.get('near_duplicate', 0)} near duplicates; "
      f"{dedup['counters'].get('lines_removed', 0)} boilerplate lines removed)")
print(f"  tokens            {enc['counters']['tokens']} ({enc['counters']['docs_train']} train and "
      f"{enc['counters']['docs_val']} val documents, {enc['derived']['bytes_per_token']:.2f} bytes per token)")
print(f"  training          {len(train)} steps, {train[-1]['tokens']} tokens, loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}, "
      f"{sum(r['tokens_per_sec'] for r in train[1:]) / max(1, len(train) - 1):.0f} tokens/s")
print(f"  validation        val_loss {val[-1]['val_loss']:.3f} at step {val[-1]['step']}; llm-eval ppl "
      f"{ev['metrics']['ppl']['value']:.1f} (loss {ev['metrics']['loss']['value']:.3f}) on {int(ev['tokens'])} tokens")
if sample:
    print(f"  sample            {sample[-1][:300]}")
served = json.load(open(f"{work}/serve.json"))
print(f"  llm-serve         \"The Python interpreter\" ->{served['choices'][0]['text'][:200]!r} "
      f"({served['usage']['completion_tokens']} tokens, finish {served['choices'][0]['finish_reason']})")
print(f"  loss curve        {work}/run/loss.png")
print(f"  wall time         {(time.time() - start) / 60:.1f} minutes")
PY
