# share/llmkit/experiments/Makefile: the stages run in order on real text, a second make does
# nothing, a stale input redoes only the stages after it, an interrupted run resumes.
. "$(dirname "$0")/lib.sh"
[ -d /usr/share/doc/python3.11/html/library ] || { echo "python3.11-doc missing: skipped"; exit 77; }
command -v make >/dev/null || { echo "make missing: skipped"; exit 77; }
mkdir in
cp /usr/share/doc/python3.11/html/library/a[b-s]*.html in/
mk="make -f $SRC/share/llmkit/experiments/Makefile INPUT=in BIN=$BIN STEPS=12 VOCAB=500 SEQ_LEN=64 MICRO_BATCH=4 BATCH_TOKENS=256"
run $mk -j2 all
expect_rc 0 "make all"
for f in clean/docs.jsonl.zst dedup/docs.jsonl.zst tok/tok.model shards/.done runs/r1/.done eval/r1-ppl.json; do
  expect_file experiment/$f
done
expect_eq "$(cat experiment/runs/r1/latest)" "step-00000012" "trained to the end"
expect_eq "$(json experiment/eval/r1-ppl.json 'j["type"], j["metrics"]["ppl"]["value"] > 1')" "ppl True" "evaluated"
run $mk all
expect_out_contains "Nothing to be done"
# A newer tokenizer makes the shards, the run and the evaluation stale, not the cleaning.
before=$(stat -c %Y experiment/clean/docs.jsonl.zst)
sleep 1
touch experiment/tok/tok.model
rm -rf experiment/runs/r1
run $mk all
expect_rc 0 "remake after a change"
expect_eq "$(stat -c %Y experiment/clean/docs.jsonl.zst)" "$before" "cleaning not redone"
expect_out_contains "llm-tok encode"
expect_file experiment/eval/r1-ppl.json
if command -v gnuplot >/dev/null; then
  run $mk plots
  expect_rc 0 "plots"
  expect_file experiment/runs/r1/loss.png
fi
finish
