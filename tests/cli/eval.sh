# llm-eval end to end on a model trained here: ppl on a shard equals the val_loss llm-pretrain
# logged, ppl on text, mc and gen reports and sample logs, bad input.
. "$(dirname "$0")/lib.sh"

python3 - <<'PY'
import json, random
rng = random.Random(5)
words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "its", "home", "one", "two", "three"]
with open("docs.jsonl", "w") as f:
    for i in range(300):
        f.write(json.dumps({"id": i, "text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))}) + "\n")
with open("mc.jsonl", "w") as f:
    for i in range(6):
        f.write(json.dumps({"id": "q%d" % i, "context": "the cat sat on the", "choices": ["mat", "zebra crossing lights"], "gold": 0}) + "\n")
with open("gen.jsonl", "w") as f:
    for i in range(3):
        f.write(json.dumps({"prompt": "the cat sat on", "answer": "#### %d" % i}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 docs.jsonl
run llm-tok encode -m tok.model --val-fraction 0.2 -o shards docs.jsonl
expect_rc 0 "shards"
run llm-pretrain --train 'shards/train-*.tok' --val shards/val-00000.tok --tokenizer tok.model --out run \
  --seq-len 32 --micro-batch 4 --steps 30 --eval-every 30 --eval-batches 3 --lr 3e-3 --warmup 3
expect_rc 0 "train"

# The loss on the val shard over the windows llm-pretrain evaluated: exactly its val_loss.
run llm-eval ppl --model run --seq-len 32 --batch-size 4 --max-tokens $((3 * 4 * 32)) shards/val-00000.tok
expect_rc 0 "ppl on a shard"
cp "$T/out" ppl.json
expect_eq "$(python3 -c "
import json, math
r = json.load(open('ppl.json'))
v = [json.loads(l)['val_loss'] for l in open('run/metrics.jsonl') if 'val_loss' in l][-1]
m = r['metrics']
print(abs(m['loss']['value'] - v) < 1e-5, abs(m['ppl']['value'] - math.exp(m['loss']['value'])) < 1e-9, r['tokens'], r['examples'], r['type'])")" \
  "True True 384 12 ppl" "ppl equals llm-pretrain's val_loss"
# With no options but the model: the windows are those of training (trainer_state.json's
# seq_len, 32, not the model's context of 512), so a run that validated on the whole shard
# logged the loss llm-eval reports; the text report shows the window length.
run llm-pretrain --train 'shards/train-*.tok' --val shards/val-00000.tok --out run2 \
  --seq-len 32 --micro-batch 4 --steps 4 --eval-every 4 --eval-batches 1000 --lr 3e-3 --warmup 1
expect_rc 0 "train, validating on the whole shard"
run llm-eval ppl --model run2 shards/val-00000.tok
expect_rc 0 "ppl with the defaults"
cp "$T/out" ppl2.json
expect_eq "$(python3 -c "
import json
r = json.load(open('ppl2.json'))
v = [json.loads(l)['val_loss'] for l in open('run2/metrics.jsonl') if 'val_loss' in l][-1]
print(r['seq_len'], abs(r['metrics']['loss']['value'] - v) < 1e-5, type(r['tokens']).__name__)")" "32 True int" "the default window reproduces val_loss"
run llm-eval ppl --model run2 --format text shards/val-00000.tok
expect_out_contains "tokens scored in windows of 32"
run llm-eval ppl --model run2 --seq-len 16 --stride 8 --format text shards/val-00000.tok
expect_out_contains "tokens scored in windows of 16, stride 8"
run llm-eval ppl --model run/step-00000030 --seq-len 32 --stride 16 --max-tokens 200 shards/val-00000.tok
expect_rc 0 "sliding windows"

# ppl on text: loss, bits per byte, word perplexity, consistent with each other.
run llm-eval ppl --model run --limit 20 --log-samples ppl.log docs.jsonl
expect_rc 0 "ppl on JSONL"
cp "$T/out" text.json
expect_eq "$(python3 -c "
import json, math
r = json.load(open('text.json')); m = {k: v['value'] for k, v in r['metrics'].items()}
rows = [json.loads(l) for l in open('ppl.log')]
nll = sum(x['nll'] for x in rows); b = sum(x['bytes'] for x in rows); w = sum(x['words'] for x in rows)
print(len(rows), abs(m['bits_per_byte'] - nll / b / math.log(2)) < 1e-9, abs(m['word_perplexity'] - math.exp(nll / w)) < 1e-6)")" \
  "20 True True" "text metrics"

# Multiple choice: report fields, per-example log.
run llm-eval mc --model run --log-samples mc.log --num-fewshot 2 mc.jsonl
expect_rc 0 "mc"
cp "$T/out" mc.json
expect_eq "$(json mc.json 'j["type"], j["examples"], j["num_fewshot"], sorted(j["metrics"]), j["metrics"]["acc"]["value"] >= 0')" \
  "mc 6 2 ['acc', 'acc_norm'] True" "mc report"
expect_eq "$(jsonl mc.log 'd["id"], len(d["loglikelihoods"]), d["gold"], d["context"].count("the cat sat on the mat")')" \
  "$(printf 'q0 2 0 2\nq1 2 0 2\nq2 2 0 2\nq3 2 0 2\nq4 2 0 2\nq5 2 0 2')" "mc log with two shots"
run llm-eval mc --model run --format text mc.jsonl
expect_out_contains "acc_norm"

# Generation with stop sequences.
run llm-eval gen --model run --until '\n' --until mat --max-gen-tokens 8 --log-samples gen.log gen.jsonl
expect_rc 0 "gen"
expect_eq "$(jsonl gen.log 'd["finish"] in ("stop", "eos", "length"), "mat" not in d["generation"]' | sort -u)" "True True" "stops"
cp "$T/out" gen.json
expect_eq "$(json gen.json 'sorted(j["metrics"])')" "['exact_match,flexible-extract', 'exact_match,strict-match']" "gen metrics"

# Progress: a line per batch with LLMKIT_PROGRESS_SECONDS=0, then the final one.
LLMKIT_PROGRESS_SECONDS=0 run llm-eval mc --model run --batch-size 2 mc.jsonl
expect_rc 0 "mc with progress lines"
expect_eq "$(grep -cE '^llm-eval: [246]/6 examples, [0-9]+ tokens, [0-9]+ tokens/s' "$T/err")" "4" "progress lines (3 batches, and the final one)"
expect_eq "$(tail -1 "$T/err" | grep -cE '^llm-eval: 6/6 examples, [0-9]+ tokens, [0-9]+ tokens/s, [0-9.]+ s$')" "1" "the final progress line"

# A stopped or killed run resumes from its cache (OUT.cache), and its report and sample log
# are an uninterrupted run's, byte for byte.
python3 -c "
import json
for i in range(150): print(json.dumps({'id': 'g%d' % i, 'prompt': 'the cat sat on the mat and the dog %d' % i, 'answer': '#### %d' % (i % 3)}))" > long.jsonl
gen_opts="--batch-size 1 --max-gen-tokens 12 --until mat --log-samples"
run llm-eval gen --model run $gen_opts ref.log -o ref.json long.jsonl
expect_rc 0 "uninterrupted generation"
expect_no_file ref.json.cache
# cache_lines FILE N: waits until FILE holds N lines or more (a header and N-1 blocks).
cache_lines() {
  for i in $(seq 1 6000); do
    [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ] && return 0
    sleep 0.01
  done
  return 1
}
llm-eval gen --model run $gen_opts res.log -o res.json long.jsonl 2>"$T/err" &
pid=$!
cache_lines res.json.cache 4 && kill -TERM $pid
wait $pid; rc=$?
expect_rc 1 "SIGTERM"
expect_err_contains "of 150 examples; their results are kept in res.json.cache: the same command continues from there"
expect_no_file res.json; expect_no_file res.log
before=$(wc -l < res.json.cache)
llm-eval gen --model run $gen_opts res.log -o res.json long.jsonl 2>"$T/err" &
pid=$!
cache_lines res.json.cache $((before + 3)) && kill -KILL $pid
wait $pid 2>/dev/null
expect_eq "$([ "$(wc -l < res.json.cache)" -gt "$before" ] && echo grew)" "grew" "the killed run added to the cache"
printf '{"block": 140, "rows": [{"ind' >> res.json.cache  # what a kill inside a write leaves
run llm-eval gen --model run $gen_opts res.log -o res.json long.jsonl
expect_rc 0 "resumed"
expect_err_contains "llm-eval: resuming from res.json.cache: "
expect_eq "$(python3 -c "
import json
a, b = json.load(open('ref.json')), json.load(open('res.json'))
print(a['metrics'] == b['metrics'], a['examples'] == b['examples'] == 150)")" "True True" "the resumed report is the uninterrupted one's"
cmp -s ref.log res.log && ok || fail "the resumed sample log differs from the uninterrupted one"
expect_no_file res.json.cache
# A cache of another evaluation (other options) is not used.
llm-eval gen --model run $gen_opts other.log -o other.json --num-fewshot 1 long.jsonl 2>/dev/null &
pid=$!
cache_lines other.json.cache 3 && kill -KILL $pid
wait $pid 2>/dev/null
run llm-eval gen --model run $gen_opts other.log -o other.json long.jsonl
expect_rc 0 "another evaluation's cache"
expect_err_contains "other.json.cache: the cache of another evaluation (model, task files or options differ): not used, replaced"
cmp -s ref.log other.log && ok || fail "a run after another evaluation's cache differs from the uninterrupted one"
# --no-cache keeps none; --cache names it when the report goes to standard output.
run llm-eval mc --model run --no-cache -o nc.json mc.jsonl
expect_rc 0 "--no-cache"; expect_no_file nc.json.cache
run llm-eval mc --model run --cache mine.cache --cache other.cache --no-cache mc.jsonl
expect_rc 2 "--cache with --no-cache"

# Outputs are checked before the work.
run llm-eval mc --model run --log-samples run mc.jsonl
expect_rc 1 "--log-samples DIR"; expect_out_empty
expect_err_contains "llm-eval: run: --log-samples: is a directory; give the name of the file to write"
run llm-eval mc --model run -o nowhere/mc.json mc.jsonl
expect_rc 1 "-o into a missing directory"
expect_err_contains "llm-eval: nowhere: -o: cannot write nowhere/mc.json here"

# Bad input.
run llm-eval mc --model run docs.jsonl
expect_rc 1 "docs are not mc rows"
expect_err_contains "docs.jsonl:1: not a multiple-choice row"
run llm-eval mc --model run shards/val-00000.tok
expect_rc 1 "mc on a token shard"
expect_err_contains "llm-eval: shards/val-00000.tok: an llmkit token shard, not JSONL multiple-choice rows: token shards are read by llm-eval ppl"
printf '{"context": "x", "choices": ["a"], "gold": 0}\n{"context": "x", choices}\n' > badjson.jsonl
run llm-eval mc --model run badjson.jsonl
expect_rc 1 "invalid JSON"
expect_err_contains "llm-eval: badjson.jsonl:2: not a JSON object: invalid JSON at byte 18 of the line"
expect_err_lacks "json.exception"
printf '{"context": "x", "choices": ["a"], "gold": 3}\n' > badgold.jsonl
run llm-eval mc --model run badgold.jsonl
expect_rc 1 "gold out of range"
expect_err_contains "gold 3 is not an index"
run llm-eval ppl --model nowhere shards/val-00000.tok
expect_rc 1 "no model"
run llm-eval gen --model run --regex '(' gen.jsonl
expect_rc 2 "bad --regex"
run llm-eval frobnicate --model run x
expect_rc 2 "unknown task type"
run llm-eval ppl shards/val-00000.tok
expect_rc 2 "no --model"
run llm-eval ppl --model run --device cpu --seq-len 32 --batch-size 4 --max-tokens $((3 * 4 * 32)) shards/val-00000.tok
expect_rc 0 "--device cpu"
expect_eq "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['metrics']['loss']['value'] == json.load(open('ppl.json'))['metrics']['loss']['value'])" "$T/out")" "True" "--device cpu: the same loss"
if ! nvidia-smi >/dev/null 2>&1; then
  run llm-eval ppl --model run --device cuda shards/val-00000.tok
  expect_rc 1 "--device cuda without a GPU"; expect_err_contains "cuda"
fi
run llm-eval ppl --model run --device tpu shards/val-00000.tok
expect_rc 2 "--device tpu"
run llm-eval ppl --model run --precision fp8 shards/val-00000.tok
expect_rc 2 "--precision fp8"
finish
