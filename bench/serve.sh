#!/bin/sh
# llm-serve under load, measured by bench/serve_load (vLLM's benchmark_serving, in C++) on the
# shape of share/llmkit/models/llama-125m with a 4096-piece tokenizer of Debian's own text (78M
# parameters, 312 MB in fp32: decode reads more than the caches hold), one training step (speed
# does not depend on what the weights learned):
#  - closed loop at concurrency 1, 8 and 32 (prompts of 32 tokens, 64 output tokens each with
#    ignore_eos), and Poisson arrivals, with a server configured for throughput (32 sequences,
#    512-row passes) and one for latency (8 sequences, 16-row passes): request throughput,
#    output tokens/s, TTFT and inter-token latency p50/p99; goals: output tokens/s at 8 >= 4x
#    at 1, p99 inter-token latency at 8 < 3x at 1;
#  - a 500-token prefix shared by every prompt, TTFT with prefix caching on and off (goal: >= 5x
#    shorter with it on);
#  - the server's peak RSS against its weights + KV pool.
# Usage: serve.sh BIN_DIR        LLMKIT_BENCH_THREADS (default 2): the server's threads;
#                                LLMKIT_BENCH_MODEL (default llama-125m): a share/llmkit/models name.
set -eu
bin=$(cd "${1:?usage: serve.sh BIN_DIR}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
threads=${LLMKIT_BENCH_THREADS:-2}
model=${LLMKIT_BENCH_MODEL:-llama-125m}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
pids=""
trap 'for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cd "$work"

{ find /usr/share/common-licenses -type f; find /usr/share/doc -maxdepth 2 -name copyright -type f; } 2>/dev/null | sort | head -400 |
  python3 -c "
import json, sys
for p in sys.stdin:
    try: t = open(p.strip(), encoding='utf-8').read()
    except Exception: continue
    if len(t) > 200: print(json.dumps({'text': t}))" > docs.jsonl
"$bin/llm-tok" train -q -o tok.model --vocab-size 4096 docs.jsonl
"$bin/llm-tok" encode -q -m tok.model -o shards docs.jsonl
"$bin/llm-pretrain" -q --model "$src/share/llmkit/models/$model.json" --train 'shards/train-*.tok' --tokenizer tok.model \
  --out base --seq-len 256 --micro-batch 1 --steps 1 --warmup 0 --eval-every 0 --threads "$threads"

# start NAME ARGS: a server on a free port; $addr, $pid
start() {
  name=$1
  shift
  "$bin/llm-serve" -q --model base --port 0 --port-file "$name.port" --threads "$threads" --stats "$name.stats.json" "$@" \
    2> "$name.err" &
  pid=$!
  pids="$pids $pid"
  i=0
  until [ -s "$name.port" ] && curl -sf "http://$(cat "$name.port")/health" > /dev/null; do
    i=$((i + 1))
    [ $i -lt 600 ] || { echo "serve.sh: $name did not start" >&2; cat "$name.err" >&2; exit 1; }
    sleep 0.1
  done
  addr=$(cat "$name.port")
}
stop() {
  kill -TERM "$1"
  wait "$1" || true
}
load() { "$bin/serve_load" "$addr" --vocab 4096 "$@"; }

echo "llm-serve, $model, $threads threads, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
# Two configurations: for throughput (32 sequences, forward passes of up to 512 rows: prefills
# go in whole) and for latency (8 sequences, 16 rows: a prefill enters a step 8 rows at a time,
# so a decode step never waits long for one).
: > runs.jsonl
for cfg in throughput latency; do
  if [ $cfg = throughput ]; then start main --max-seqs 32 --max-queue 64; else start main --max-seqs 8 --max-batch-tokens 16; fi
  load --requests 2 --concurrency 1 --prompt-tokens 16 --output-tokens 4 > /dev/null  # warm up
  for c in 1 8 32; do
    [ $cfg = throughput ] || [ $c -le 8 ] || continue
    n=$((c * 2))
    [ $n -ge 8 ] || n=8
    load --requests $n --concurrency $c --prompt-tokens 32 --output-tokens 64 --seed $c | sed "s/^{/{\"config\":\"$cfg\",/" >> runs.jsonl
  done
  [ $cfg = latency ] || load --requests 16 --rate 1 --prompt-tokens 32 --output-tokens 64 --seed 99 |
    sed "s/^{/{\"config\":\"$cfg\",/" >> runs.jsonl
  stop "$pid"
  [ $cfg = latency ] || cp main.stats.json throughput.stats.json
done
python3 - runs.jsonl throughput.stats.json <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print("%-11s %-14s %5s %9s %10s %10s %10s %10s %10s" % ("config", "load", "reqs", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99"))
for r in runs:
    name = "poisson %g/s" % r["rate"] if r["rate"] else "concurrency %d" % r["concurrency"]
    print("%-11s %-14s %5d %9.2f %10.1f %8.0fms %8.0fms %8.1fms %8.1fms" % (r["config"], name, r["requests"], r["req_per_s"],
          r["output_tok_per_s"], r["ttft_p50_ms"], r["ttft_p99_ms"], r["itl_p50_ms"], r["itl_p99_ms"]))
    assert r["ok"] == r["requests"], "failed requests: %s" % r
for cfg in ("throughput", "latency"):
    c = {r["concurrency"]: r for r in runs if not r["rate"] and r["config"] == cfg}
    print("%s: output tokens/s at concurrency 8 / 1: %.2fx (goal >= 4); p99 inter-token latency 8 / 1: %.2fx (goal < 3)" %
          (cfg, c[8]["output_tok_per_s"] / c[1]["output_tok_per_s"], c[8]["itl_p99_ms"] / c[1]["itl_p99_ms"]))
s = json.load(open(sys.argv[2]))
w, kv = s["counters"]["weight bytes"], s["counters"]["kv pool bytes"]
print("throughput server: peak RSS %.1f MiB; weights %.1f MiB + KV pool %.1f MiB = %.1f MiB" %
      (s["peak_rss_bytes"] / 2**20, w / 2**20, kv / 2**20, (w + kv) / 2**20))
PY

# A 500-token prefix shared by all prompts: TTFT with prefix caching on and off.
for mode in on off; do
  if [ $mode = on ]; then start cache --max-seqs 8; else start cache --max-seqs 8 --no-prefix-caching; fi
  load --requests 1 --concurrency 1 --prompt-tokens 516 --output-tokens 1 --shared-prefix 500 --seed 1 > /dev/null  # fills the cache
  load --requests 12 --concurrency 1 --prompt-tokens 516 --output-tokens 1 --shared-prefix 500 --seed 2 > "prefix-$mode.json"
  stop "$pid"
done
python3 - prefix-on.json prefix-off.json <<'PY'
import json, sys
on, off = (json.load(open(p)) for p in sys.argv[1:3])
print("shared 500-token prefix, TTFT p50: %.1f ms cached, %.1f ms not: %.1fx (goal >= 5)" %
      (on["ttft_p50_ms"], off["ttft_p50_ms"], off["ttft_p50_ms"] / on["ttft_p50_ms"]))
PY
