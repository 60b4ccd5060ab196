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
printf "\noutputs in %s/: clean.jsonl.zst, rejected.jsonl.zst, clean.stats.json\n" "$work"
