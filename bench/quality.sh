#!/bin/sh
# llm-clean's quality rules on the labelled acceptance set (tests/data/quality/): the share of
# real clean prose kept, by language, and of junk dropped, as tests/cli/quality_set.sh
# requires (95% and 90%). Usage: quality.sh BIN_DIR
set -eu
bin=$(cd "${1:?usage: quality.sh BIN_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../tests/data/quality
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
"$bin/llm-clean" -q --rejected "$work/rejected.jsonl" -o "$work/kept.jsonl" "$data/acceptance.jsonl.zst"
python3 "$data/score.py" "$work/kept.jsonl" "$work/rejected.jsonl"
