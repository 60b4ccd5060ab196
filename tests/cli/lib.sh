# Helpers for CLI tests: source this file. Each test runs commands from $LLMKIT_BIN in a
# scratch directory and checks exit status, stdout and stderr.
set -u
BIN=${LLMKIT_BIN:?LLMKIT_BIN must point at the build bin directory}
SRC=${LLMKIT_SRC:?LLMKIT_SRC must point at the source tree}
DATA=$SRC/tests/data
T=$(mktemp -d /tmp/llmkit-cli-XXXXXX)
[ -n "${LLMKIT_TEST_KEEP:-}" ] || trap 'rm -rf "$T"' EXIT  # LLMKIT_TEST_KEEP=1 keeps the files
cd "$T"
PATH=$BIN:$PATH
failures=0
checks=0

# run CMD...: runs it with stdout in $T/out, stderr in $T/err, status in $rc.
run() {
  "$@" >"$T/out" 2>"$T/err" </dev/null
  rc=$?
}
# run_in FILE CMD...: the same with stdin from FILE.
run_in() {
  local input=$1
  shift
  "$@" >"$T/out" 2>"$T/err" <"$input"
  rc=$?
}
fail() {
  echo "FAIL: $*" >&2
  echo "--- stdout:" >&2; head -c 2000 "$T/out" >&2 2>/dev/null
  echo "--- stderr:" >&2; head -c 2000 "$T/err" >&2 2>/dev/null
  failures=$((failures + 1))
}
ok() { checks=$((checks + 1)); }
expect_rc() { if [ "$rc" -eq "$1" ]; then ok; else fail "${2:-} expected exit $1, got $rc"; fi; }
expect_out_contains() { if grep -qF -- "$1" "$T/out"; then ok; else fail "stdout lacks '$1'"; fi; }
expect_out_lacks() { if grep -qF -- "$1" "$T/out"; then fail "stdout has '$1'"; else ok; fi; }
expect_err_contains() { if grep -qF -- "$1" "$T/err"; then ok; else fail "stderr lacks '$1'"; fi; }
expect_err_lacks() { if grep -qF -- "$1" "$T/err"; then fail "stderr has '$1'"; else ok; fi; }
expect_err_empty() { if [ ! -s "$T/err" ]; then ok; else fail "stderr not empty"; fi; }
expect_out_empty() { if [ ! -s "$T/out" ]; then ok; else fail "stdout not empty"; fi; }
expect_eq() { if [ "$1" = "$2" ]; then ok; else fail "${3:-value}: expected '$2', got '$1'"; fi; }
expect_file() { if [ -f "$1" ]; then ok; else fail "missing file $1"; fi; }
expect_no_file() { if [ -e "$1" ]; then fail "file $1 should not exist"; else ok; fi; }
# json FILE EXPR: evaluates a Python expression on the parsed JSON document `j`.
# word_shards N: N documents of random words in docs.jsonl, a 300-piece tokenizer tok.model
# trained on them, and their shards in shards/ (train-00000.tok): a training set for the
# llm-pretrain tests.
word_shards() {
  python3 - "$1" <<'PY'
import json, random, sys
rng = random.Random(8)
words = ["alpha", "beta", "gamma", "delta", "model", "token", "rank", "step", "loss", "batch", "of", "the"]
with open("docs.jsonl", "w") as f:
    for i in range(int(sys.argv[1])):
        f.write(json.dumps({"id": i, "text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))}) + "\n")
PY
  run llm-tok train -o tok.model --vocab-size 300 docs.jsonl
  run llm-tok encode -m tok.model -o shards docs.jsonl
  expect_rc 0 "shards"
}
# compare_losses A B [TOL]: "True True WORST" when the metrics.jsonl files A and B both have 20
# step losses, each within TOL (default 1e-4) of the other's, relatively.
compare_losses() {
  python3 - "$1" "$2" "${3:-1e-4}" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
b = [json.loads(l)["loss"] for l in open(sys.argv[2]) if '"loss"' in l]
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(len(a) == len(b) == 20, worst < float(sys.argv[3]), f"{worst:.2e}")
PY
}
# close_tensors A B [TOL]: "True WORST" when two safetensors files hold float32 tensors of the
# same names and shapes that differ by at most TOL (default 1e-4) relative to the largest
# magnitude of each tensor.
close_tensors() {
  python3 - "$1" "$2" "${3:-1e-4}" <<'PY'
import json, struct, sys
from array import array
def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__": continue
        assert t["dtype"] == "F32", t["dtype"]
        b, e = t["data_offsets"]
        out[name] = (t["shape"], array("f", data[b:e]))
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
ok, worst = a.keys() == b.keys(), 0.0
for name in a:
    (sa, va), (sb, vb) = a[name], b.get(name, (None, array("f")))
    ok = ok and sa == sb and len(va) == len(vb)
    scale = max(max((abs(x) for x in va), default=0.0), 1e-30)
    worst = max([worst] + [abs(x - y) / scale for x, y in zip(va, vb)])
print(ok and worst < float(sys.argv[3]), f"{worst:.2e}")
PY
}
# licence_docs FILE: Debian's licence texts (/usr/share/common-licenses) as JSONL, one paragraph
# of more than 100 characters per row; prints the number of rows.
licence_docs() {
  python3 - "$1" <<'PY'
import glob, json, re, sys
docs = []
for p in sorted(glob.glob("/usr/share/common-licenses/*")):
    try:
        t = open(p, errors="replace").read()
    except OSError:
        continue
    docs += [x for x in (re.sub(r"\s+", " ", x).strip() for x in t.split("\n\n")) if len(x) > 100]
with open(sys.argv[1], "w") as f:
    for d in docs:
        f.write(json.dumps({"text": d}) + "\n")
print(len(docs))
PY
}
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
# jsonl_field FILE EXPR: one line per document, EXPR over `d`.
jsonl() { python3 -c "import json,sys
for l in open(sys.argv[1], encoding='utf-8'):
    d=json.loads(l); print($2)" "$1"; }
finish() {
  echo "$checks checks, $failures failures"
  [ "$failures" -eq 0 ]
  exit $?
}

# The reinforcement-learning tests' task (tests/cli/addition.py) and models: a tokenizer, a
# llama-tiny pretrained (base/) and tuned with llm-sft (sft/), and a reward model taught to prefer
# the answer "4" (rm/).
addition_models() {
  python3 "$SRC/tests/cli/addition.py"
  run llm-tok train -o tok.model --vocab-size 300 --special '<|im_start|>,<|im_end|>' docs.jsonl
  run llm-tok encode -m tok.model -o shards docs.jsonl
  run llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 64 \
    --micro-batch 8 --steps 20 --lr 3e-3 --warmup 2 --eval-every 0 --threads 2
  run llm-sft --init base --data chat.jsonl --seq-len 64 --micro-batch 8 --batch-size 16 --lr 3e-3 --steps 30 --eval-every 0 \
    --out sft --threads 2
  expect_rc 0 "the tuned model"
  run llm-rm --init sft --data prefs.jsonl --seq-len 64 --micro-batch 16 --batch-size 32 --lr 3e-3 --steps 20 --eval-every 0 --threads 2 --out rm
  expect_rc 0 "the reward model"
}
