#!/bin/sh
# llm-clean throughput and memory on real text, against `wc -w` on the same file in the same run.
# Usage: clean.sh BIN_DIR     LLMKIT_BENCH_MB (default 1000): corpus size in MB.
# Prints: MB/s per thread count, the ratio of llm-clean's wall time to wc -w's, peak RSS.
set -eu
bin=$(cd "${1:?usage: clean.sh BIN_DIR}" && pwd)
mb=${LLMKIT_BENCH_MB:-1000}
docs=/usr/share/doc/python3.11/html
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

# A corpus of real documents: the Python HTML manual's main text (extraction only), repeated with
# fresh ids up to the wanted size. Every stage then runs on real prose and code.
"$bin/llm-clean" -q --no-quality --no-pii "$docs" > "$work/seed.jsonl"
python3 - "$work/seed.jsonl" "$work/corpus.jsonl" "$mb" <<'PY'
import json, sys
seed = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
target = int(sys.argv[3]) * 1000 * 1000
n = 0
with open(sys.argv[2], "w", encoding="utf-8") as out:
    while out.tell() < target:
        for d in seed:
            out.write(json.dumps({"id": "doc-%d" % n, "text": d["text"], "url": d["id"]}, ensure_ascii=False) + "\n")
            n += 1
PY
size=$(stat -c %s "$work/corpus.jsonl")
echo "corpus: $(( size / 1000000 )) MB, $(wc -l < "$work/corpus.jsonl") documents (python3.11-doc HTML text)"

# wall SECONDS of a command, its stdout to /dev/null; peak RSS (kB) goes to $work/rss
timeit() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null
  cut -d' ' -f2 "$work/time" > "$work/rss"
  cut -d' ' -f1 "$work/time"
}
cat "$work/corpus.jsonl" > /dev/null  # warm the page cache
wc_s=$(timeit wc -w "$work/corpus.jsonl")
echo "wc -w:                 ${wc_s} s"
# The default run with 1 and 2 threads, then with --lang en: a language filter needs every
# document's language, so CLD2 runs on all of them (without one, only on the kept ones and where
# English's stop-word rule alone drops; llm-clean(1), Language identification).
for run in "1" "2" "2 --lang en"; do
  t=${run%% *}
  opts=""; [ "$run" = "$t" ] || opts=${run#* }
  s=$(timeit "$bin/llm-clean" -q --threads $t $opts --stats "$work/stats.json" "$work/corpus.jsonl")
  rss=$(cat "$work/rss")
  python3 - "$s" "$wc_s" "$size" "$rss" "$run" "$work/stats.json" <<'PY'
import json, sys
s, wc, size, rss, run = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
st = json.load(open(sys.argv[6]))
print(f"llm-clean --threads {run}: {s:.2f} s, {size / 1e6 / s:.1f} MB/s, {s / wc:.2f}x wc -w, "
      f"peak RSS {rss / 1024:.0f} MiB, kept {st['counters']['docs_out']}/{st['counters']['docs_in']} docs")
PY
done
