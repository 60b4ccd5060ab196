#!/bin/sh
# Runs each libFuzzer target for SECONDS (default 60) with a seed corpus from tests/data.
#   sh tests/fuzz/run-fuzz.sh BIN_DIR [SECONDS]
# Exits non-zero when a target crashes, leaks, times out on one input or runs out of memory;
# the reproducer is left as fuzz-artifacts/TARGET-crash-* (rerun: BIN_DIR/fuzz-TARGET FILE).
set -u
bin=${1:?usage: run-fuzz.sh BIN_DIR [SECONDS]}
secs=${2:-60}
src=$(cd "$(dirname "$0")/../.." && pwd)
data=$src/tests/data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz-artifacts

# seed DIR FILES...: copies the existing files among FILES into DIR.
seed() {
  dir=$1
  shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/"; done
  return 0
}
seed "$work/html" "$data"/html/*.html
seed "$work/warc" "$data"/warc/*.warc
seed "$work/jsonl"
find "$data" -name '*.jsonl' -size -64k | head -n 50 | while read -r f; do
  split -l 1 -a 4 "$f" "$work/jsonl/$(basename "$f")." 2>/dev/null || true
done
printf '{"id":1,"text":"a\\nb \\u00e9 \\ud83d\\ude00","meta":{"x":[1,2]}}' > "$work/jsonl/seed1"
printf '{"text":"\\"quoted\\" \\\\ tab\\t","id":"x"}' > "$work/jsonl/seed2"

status=0
for t in html warc jsonl; do
  exe=$bin/fuzz-$t
  if [ ! -x "$exe" ]; then
    echo "run-fuzz: $exe: not built" >&2
    status=1
    continue
  fi
  mkdir -p "$work/corpus-$t"
  echo "run-fuzz: fuzz-$t for ${secs}s" >&2
  if ! "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="fuzz-artifacts/$t-" \
      "$work/corpus-$t" "$work/$t" > "$work/$t.log" 2>&1; then
    echo "run-fuzz: fuzz-$t FAILED; last lines of its log:" >&2
    tail -n 40 "$work/$t.log" >&2
    status=1
  else
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$work/$t.log" >&2
  fi
done
exit $status
