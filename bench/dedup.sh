#!/bin/sh
# llm-dedup: quality (recall and precision against brute-force Jaccard), throughput with exact +
# near dedup on, scaling from 1 to 2 MPI ranks, and a run whose records are far larger than --mem.
# Usage: dedup.sh BIN_DIR     LLMKIT_BENCH_MB (default 500): throughput corpus size in MB.
# There is no peer on this machine (datatrove, text-dedup need Python packages from PyPI).
set -eu
bin=$(cd "${1:?usage: dedup.sh BIN_DIR}" && pwd)
mb=${LLMKIT_BENCH_MB:-500}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# Real sentences for the generator: the Python manual's text, when the package is there.
source_opt=""
if [ -d /usr/share/doc/python3.11/html ]; then
  "$bin/llm-clean" -q --no-quality --no-pii /usr/share/doc/python3.11/html > "$work/seed.jsonl"
  source_opt="--source $work/seed.jsonl"
fi

echo "== quality: 5000 documents (originals, exact and edited copies at known rates, 5% Chinese)"
"$bin/dedup_corpus" --docs 5000 --seed 3 $source_opt -o "$work/q.jsonl" 2>/dev/null
"$bin/llm-dedup" -q --clusters "$work/qc.jsonl" -o /dev/null "$work/q.jsonl"
"$bin/dedup_eval" "$work/q.jsonl" "$work/qc.jsonl" | sed -n '1,10p'

echo "== throughput: ${mb} MB corpus, exact + near (verified) on"
"$bin/dedup_corpus" --mb "$mb" --seed 4 $source_opt -o "$work/corpus.jsonl" 2>/dev/null
size=$(stat -c %s "$work/corpus.jsonl")
echo "corpus: $(( size / 1000000 )) MB, $(wc -l < "$work/corpus.jsonl") documents"
cat "$work/corpus.jsonl" > /dev/null  # warm the page cache

# run LABEL CMD...: wall time and peak RSS (largest process) of the command; stats in $work/s.json
run() {
  label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null
  python3 - "$label" "$size" "$work/time" "$work/s.json" <<'PY'
import json, sys
label, size = sys.argv[1], int(sys.argv[2])
secs, rss_kb = open(sys.argv[3]).read().split()[-2:]
secs = float(secs)
st = json.load(open(sys.argv[4]))
c, d = st["counters"], st["drops"]
print(f"{label:32s} {secs:7.2f} s {size / 1e6 / secs:7.1f} MB/s  peak RSS/rank "
      f"{st['peak_rss_bytes'] / 2**20:6.0f} MiB  spilled {c.get('spilled_bytes', 0) / 2**20:6.0f} MiB  "
      f"removed {d.get('exact_duplicate', 0)} exact + {d.get('near_duplicate', 0)} near")
open(sys.argv[3] + "." + label.split()[0], "w").write(str(secs))
PY
}
run "threads1 (--threads 1)" "$bin/llm-dedup" -q --threads 1 --stats "$work/s.json" -o "$work/o1.jsonl" "$work/corpus.jsonl"
run "threads2 (--threads 2)" "$bin/llm-dedup" -q --threads 2 --stats "$work/s.json" -o "$work/o2.jsonl" "$work/corpus.jsonl"
cmp -s "$work/o1.jsonl" "$work/o2.jsonl" && echo "same output with 1 and 2 threads"

mkdir -p "$work/m1" "$work/m2"
echo "== scaling: MPI ranks of one thread each"
run "np1 (mpirun -np 1)" mpirun -np 1 "$bin/llm-dedup" -q --threads 1 --stats "$work/s.json" -o "$work/m1/" "$work/corpus.jsonl"
run "np2 (mpirun -np 2)" mpirun -np 2 "$bin/llm-dedup" -q --threads 1 --stats "$work/s.json" -o "$work/m2/" "$work/corpus.jsonl"
python3 -c "import sys; a=float(open(sys.argv[1]).read()); b=float(open(sys.argv[2]).read()); print(f'1 -> 2 ranks: {a / b:.2f}x')" \
  "$work/time.np1" "$work/time.np2"
cat "$work"/m2/part-*.jsonl | cmp -s - "$work/o1.jsonl" && echo "same output with 2 ranks"

echo "== bounded memory: --mem 4M (band keys alone: $(( $(wc -l < "$work/corpus.jsonl") * 14 * 24 / 1000000 )) MB)"
run "mem4M (--mem 4M)" "$bin/llm-dedup" -q --mem 4M --tmp "$work" --stats "$work/s.json" -o "$work/o3.jsonl" "$work/corpus.jsonl"
cmp -s "$work/o1.jsonl" "$work/o3.jsonl" && echo "same output as the in-memory run"
