#!/bin/sh
# The demo: llmkit's pipeline on real text nobody here wrote, the HTML of the Python 3.11 manual
# (Debian package python3.11-doc, installed by install-deps.sh).
# Usage: run-demo.sh BIN_DIR [WORK_DIR]      (WORK_DIR defaults to ./demo-output)
set -eu
bin=$(cd "${1:?usage: run-demo.sh BIN_DIR [WORK_DIR]}" && pwd)
work=${2:-demo-output}
html=/usr/share/doc/python3.11/html
[ -d "$html" ] || { echo "run-demo: $html is missing (apt-get install python3.11-doc)" >&2; exit 1; }
mkdir -p "$work"
PATH=$bin:$PATH

echo "== llm-clean: $(find "$html" -name '*.html' | wc -l) HTML pages from $html"
llm-clean --stats "$work/clean.stats.json" --rejected "$work/rejected.jsonl.zst" \
  -o "$work/clean.jsonl.zst" "$html"

python3 - "$work" <<'PY'
import json, subprocess, sys, collections
work = sys.argv[1]
st = json.load(open(f"{work}/clean.stats.json"))
c = st["counters"]
print(f"documents: {c['docs_in']} in, {c['docs_out']} kept, {st['dropped_total']} dropped "
      f"({st['wall_seconds']:.1f} s, peak RSS {st['peak_rss_bytes'] / 2**20:.0f} MiB)")
print("drop reasons:")
for reason, n in sorted(st["drops"].items(), key=lambda kv: -kv[1]):
    print(f"  {n:6d}  {reason}")
pii = {k: v for k, v in c.items() if k.startswith("pii_") and v}
if pii:
    print("PII redacted:", ", ".join(f"{k[4:]} {v}" for k, v in sorted(pii.items())))
docs = [json.loads(l) for l in subprocess.run(["zstd", "-dc", f"{work}/clean.jsonl.zst"],
        capture_output=True, check=True).stdout.decode().splitlines()]
langs = collections.Counter(d.get("lang", "?") for d in docs)
print("languages:", ", ".join(f"{k} {v}" for k, v in langs.most_common(5)))
if docs:
    d = next((d for d in docs if "json" in d["id"]), docs[0])
    print(f"\nsample document {d['id']} ({len(d['text'])} characters):")
    print("  " + d["text"][:600].replace("\n", "\n  "))
PY

echo
echo "== llm-dedup: exact and near duplicates (the manual has pages that repeat one another)"
llm-dedup --lines 20 --clusters "$work/clusters.jsonl" --stats "$work/dedup.stats.json" \
  -o "$work/dedup.jsonl.zst" "$work/clean.jsonl.zst"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
st = json.load(open(f"{work}/dedup.stats.json"))
c, d = st["counters"], st["drops"]
print(f"documents: {c['docs_in']} in, {c['docs_out']} kept: {d.get('exact_duplicate', 0)} exact and "
      f"{d.get('near_duplicate', 0)} near duplicates removed; {c.get('lines_removed', 0)} lines found "
      f"in 20+ documents removed ({st['wall_seconds']:.1f} s)")
rows = [json.loads(l) for l in open(f"{work}/clusters.jsonl")]
ids = {r["doc"]: r["id"] for r in rows}
removed = [r for r in rows if not r["kept"]][:5]
for r in removed:
    sim = "exact" if r["exact"] else f"J={r['similarity']:.2f}"
    print(f"  {r['id']}  duplicate of  {ids.get(r['cluster'], r['cluster'])}  ({sim})")
PY

echo
echo "== llm-tok: a 4000-piece BPE tokenizer trained on the deduplicated text, then shards"
rm -rf "$work/shards"
llm-tok train -q -o "$work/tok.model" --vocab-size 4000 --special '<|im_start|>,<|im_end|>' \
  --stats "$work/train.stats.json" "$work/dedup.jsonl.zst"
llm-tok encode -q -m "$work/tok.model" --val-fraction 0.05 --stats "$work/encode.stats.json" \
  -o "$work/shards" "$work/dedup.jsonl.zst"
llm-tok inspect -m "$work/tok.model" "$work"/shards/*.tok
llm-tok stats -m "$work/tok.model" "$work/dedup.jsonl.zst" | sed -n '1,4p'
echo "first val document, decoded:"
llm-tok decode -m "$work/tok.model" --doc 0 "$work/shards/val-00000.tok" | cut -c1-300

printf "\noutputs in %s/: clean.jsonl.zst, rejected.jsonl.zst, dedup.jsonl.zst, clusters.jsonl,\n" "$work"
printf "tok.model, shards/, *.stats.json\n"
