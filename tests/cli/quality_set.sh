# llm-clean's quality rules on the acceptance set (tests/data/quality/): real clean prose in
# English and Chinese from Debian's documentation and real or real-based junk, labelled. At
# least 95% of each language's prose must be kept and 90% of the junk dropped; the figures
# are printed (bench/quality.sh prints the same).
. "$(dirname "$0")/lib.sh"

set_file=$DATA/quality/acceptance.jsonl.zst
run llm-clean -q --stats stats.json --rejected rejected.jsonl -o kept.jsonl "$set_file"
expect_rc 0 "llm-clean"
expect_eq "$(( $(wc -l < kept.jsonl) + $(wc -l < rejected.jsonl) ))" "$(zstdcat "$set_file" | wc -l)" "every document kept or dropped"
# Without --rejected (and --lang) the language of a document the rules drop whatever it is is
# not looked for: the same documents are kept, with the same fields, for the same reasons.
run llm-clean -q --stats stats2.json -o kept2.jsonl "$set_file"
expect_rc 0 "llm-clean without --rejected"
cmp -s kept.jsonl kept2.jsonl && ok || fail "kept documents differ without --rejected"
expect_eq "$(json stats2.json 'sorted(j["drops"].items())')" "$(json stats.json 'sorted(j["drops"].items())')" "drop reasons without --rejected"
run python3 "$DATA/quality/score.py" kept.jsonl rejected.jsonl --check
cat "$T/out"
expect_rc 0 "acceptance figures"
# The labels are what the set says they are: both languages and both labels are there.
expect_out_contains "prose kept, en: "
expect_out_contains "prose kept, zh: "
expect_out_contains "junk dropped: "
finish
