# share/llmkit/experiments/Makefile: the stages run in order on real text, a second make does
# nothing, a stale input redoes only the stages after it, a changed knob reruns its stage and
# those after it (training afresh), the warmup follows --steps, an interrupted run resumes; and
# the same under MPIRUN (per-rank parts handed from stage to stage).
. "$(dirname "$0")/lib.sh"
[ -d /usr/share/doc/python3.11/html/library ] || { echo "python3.11-doc missing: skipped"; exit 77; }
command -v make >/dev/null || { echo "make missing: skipped"; exit 77; }
mkdir in
cp /usr/share/doc/python3.11/html/library/a[b-s]*.html in/
mk="make -f $SRC/share/llmkit/experiments/Makefile INPUT=in BIN=$BIN STEPS=12 VOCAB=500 SEQ_LEN=64 MICRO_BATCH=4 BATCH_TOKENS=256"
# The commands a make run started, in order, from its output.
ran() { grep -oE '^(\S+/)?llm-[a-z]+( train| encode)?' "$T/out" | sed 's#.*/##' | tr '\n' ',' | sed 's/,$//'; }
max_lr() { python3 -c "import json,sys; print(max(json.loads(l)['lr'] for l in open(sys.argv[1]) if '\"lr\"' in l))" "$1"; }

run $mk -j2 all
expect_rc 0 "make all"
for f in clean/docs/part-00000.jsonl.zst dedup/docs/part-00000.jsonl.zst tok/tok.model shards/.done \
         shards/train-00000.tok shards/val-00000.tok runs/r1/.done eval/r1-ppl.json; do
  expect_file experiment/$f
done
expect_eq "$(cat experiment/runs/r1/latest)" "step-00000012" "trained to the end"
expect_eq "$(json experiment/eval/r1-ppl.json 'j["type"], j["metrics"]["ppl"]["value"] > 1')" "ppl True" "evaluated"
# The warmup is a tenth of the run (1 step of 12): the learning rate reaches --lr.
expect_eq "$(max_lr experiment/runs/r1/metrics.jsonl)" "0.001" "the peak learning rate is reached"
run $mk all
expect_rc 0 "make again"; expect_eq "$(ran)" "" "a second make runs nothing"

# A newer tokenizer makes the shards, the run and the evaluation stale, not the cleaning; the
# run starts afresh on the new shards instead of resuming the old one.
before=$(stat -c %Y experiment/clean/.done)
sleep 1
touch experiment/tok/tok.model
run $mk all
expect_rc 0 "remake after a change"
expect_eq "$(stat -c %Y experiment/clean/.done)" "$before" "cleaning not redone"
expect_eq "$(ran)" "llm-tok encode,llm-pretrain,llm-eval" "encode, train, evaluate"
expect_err_lacks "resumed from"
expect_eq "$(grep -c '"step":1,' experiment/runs/r1/metrics.jsonl)" "1" "one run in the metrics"

# A changed knob reruns its stage and those after it: LR the training afresh and the evaluation;
# VOCAB the tokenizer, the shards, the training and the evaluation; CLEAN_FLAGS everything.
run $mk LR=2e-3 all
expect_rc 0 "LR changed"
expect_eq "$(ran)" "llm-pretrain,llm-eval" "LR: train and evaluate"
expect_eq "$(max_lr experiment/runs/r1/metrics.jsonl)" "0.002" "the new learning rate, from step 1"
expect_err_lacks "resumed from"
run $mk LR=2e-3 all
expect_eq "$(ran)" "" "the same knobs again: nothing to do"
run $mk LR=2e-3 VOCAB=400 all
expect_rc 0 "VOCAB changed"
expect_eq "$(ran)" "llm-tok train,llm-tok encode,llm-pretrain,llm-eval" "VOCAB: tokenizer and after"
run $mk LR=2e-3 VOCAB=400 STEPS=20 all
expect_eq "$(ran)" "llm-pretrain,llm-eval" "STEPS: train and evaluate"
expect_eq "$(cat experiment/runs/r1/latest)" "step-00000020" "trained to the new end"
run $mk LR=2e-3 VOCAB=400 STEPS=20 CLEAN_FLAGS='--no-quality --no-pii' all
expect_eq "$(ran)" "llm-clean,llm-dedup,llm-tok train,llm-tok encode,llm-pretrain,llm-eval" "CLEAN_FLAGS: everything"

# A finished run is not trained again when its stamp is lost; an interrupted one resumes (its
# knobs and shards are the same): here make and llm-pretrain are stopped by a SIGTERM to the
# process group (as Ctrl-C does) once a checkpoint is saved.
rm experiment/runs/r1/.done experiment/eval/r1-ppl.json
run $mk LR=2e-3 VOCAB=400 STEPS=20 CLEAN_FLAGS='--no-quality --no-pii' all
expect_rc 0 "a finished run"
expect_err_contains "experiment/runs/r1/step-00000020 is at step 20, the last of --steps: nothing to do"
expect_file experiment/eval/r1-ppl.json
setsid $mk LR=2e-3 VOCAB=400 STEPS=40 SAVE_EVERY=3 CLEAN_FLAGS='--no-quality --no-pii' all >/dev/null 2>&1 &
pid=$!
# (the checkpoint's directory appears before `latest` names it: wait for both)
for i in $(seq 1 6000); do [ -d experiment/runs/r1/step-00000003 ] && [ -f experiment/runs/r1/latest ] && break; sleep 0.01; done
kill -TERM -- -$pid; wait $pid
expect_eq "$([ -f experiment/runs/r1/latest ] && [ ! -f experiment/runs/r1/.done ] && echo stopped)" "stopped" "stopped midway"
run $mk LR=2e-3 VOCAB=400 STEPS=40 SAVE_EVERY=3 CLEAN_FLAGS='--no-quality --no-pii' all
expect_rc 0 "resume"
expect_err_contains "resumed from experiment/runs/r1/step-000"
expect_eq "$(cat experiment/runs/r1/latest)" "step-00000040" "trained to the end"

if command -v gnuplot >/dev/null; then
  run $mk plots
  expect_rc 0 "plots"
  expect_file experiment/runs/r1/loss.png
fi

# Under MPI: every data-parallel stage on 2 ranks, each writing its part.
if command -v mpirun >/dev/null; then
  run $mk OUT=mpi MPIRUN="mpirun -np 2" BATCH_TOKENS=512 -j2 all
  expect_rc 0 "make all under mpirun -np 2"
  for f in clean/docs/part-00000.jsonl.zst clean/docs/part-00001.jsonl.zst dedup/docs/part-00001.jsonl.zst \
           shards/train-00000-00000.tok shards/train-00001-00000.tok runs/r1/.done eval/r1-ppl.json; do
    expect_file mpi/$f
  done
  expect_eq "$(ls mpi/shards | grep -c '^val-')" "1" "one validation shard"
  expect_eq "$(json mpi/eval/r1-ppl.json 'j["ranks"], j["metrics"]["ppl"]["value"] > 1')" "2 True" "evaluated on 2 ranks"
  # The same documents as one process wrote, in the same order.
  llm-clean -q --no-quality in > one.jsonl
  zstdcat mpi/clean/docs/part-00000.jsonl.zst mpi/clean/docs/part-00001.jsonl.zst > two.jsonl
  [ -s one.jsonl ] && cmp -s one.jsonl two.jsonl && ok || fail "the 2 ranks' cleaned parts differ from one process's output"
fi
finish
