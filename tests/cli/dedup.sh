# llm-dedup end to end: exact (normalised) and near duplicates in English and Chinese, keep
# policies, verification, line dedup, clusters, the S-curve, bad input, spills, signals.
. "$(dirname "$0")/lib.sh"

# A small corpus with known duplicates. Words come from a seeded generator, so every original
# is distinct from the others (Jaccard of 5-gram shingles near 0).
python3 - <<'PY'
import json, random
rng = random.Random(5)
vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
         for _ in range(4000)]
def para(n): return " ".join(rng.choice(vocab) for _ in range(n))
def edit(text, k):  # k word substitutions
    w = text.split()
    for _ in range(k): w[rng.randrange(len(w))] = rng.choice(vocab)
    return " ".join(w)
han = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长"
def zh(n): return "".join(rng.choice(han) for _ in range(n))
docs = []
A, B, C, D = para(300), para(250), para(200), para(220)
Z = zh(400)
docs += [
  {"id": "A", "text": A},
  {"id": "B", "text": B, "meta": {"keep": [1, 2]}},
  {"id": "A-upper", "text": "  " + A.upper().replace(" ", "\t ", 3)},   # exact after normalising
  {"id": "C", "text": C},
  {"id": "B-near", "text": edit(B, 3)},                                  # near (J ~ 0.95)
  {"id": "empty1", "text": ""},
  {"id": "Z", "text": Z},
  {"id": "Z-near", "text": Z[:150] + "好" + Z[151:300] + "心" + Z[301:]}, # Chinese near copy
  {"id": "empty2", "text": ""},
  {"id": "C-far", "text": edit(C, 60)},                                  # J well below 0.8
  {"id": "D", "text": D},
  {"id": "D-longer", "text": D + " " + para(8)},                         # near, longer
  {"id": "A-exact", "text": A},
]
with open("corpus.jsonl", "w", encoding="utf-8") as f:
    for d in docs: f.write(json.dumps(d, ensure_ascii=False) + "\n")
PY

ids() { jsonl "$1" 'd["id"]' | tr '\n' ' '; }

# Defaults: exact + near, first kept, survivors unchanged and in order.
run llm-dedup --stats stats.json -o out.jsonl --clusters clusters.jsonl corpus.jsonl
expect_rc 0
expect_eq "$(ids out.jsonl)" "A B C empty1 Z empty2 C-far D " "survivors"
grep -F '"id": "B"' corpus.jsonl > b.orig
grep -F '"id": "B"' out.jsonl | cmp -s - b.orig && ok || fail "kept document changed"
expect_eq "$(json stats.json 'j["drops"]["exact_duplicate"], j["drops"]["near_duplicate"], j["counters"]["docs_empty"]')" \
          "2 3 2" "drops"
expect_eq "$(json stats.json 'j["counters"]["docs_in"], j["counters"]["docs_out"]')" "13 8" "counts"
expect_eq "$(json stats.json 'j["derived"]["false_candidate_rate"] >= 0')" "True" "false-candidate rate"
expect_err_contains "13 documents in, 8 out"
# Clusters: every member names the kept document's number; exact copies are flagged.
expect_eq "$(jsonl clusters.jsonl 'd["id"], d["cluster"], d["kept"], d["exact"]' | sort | tr '\n' '|')" \
  "A 0 True False|A-exact 0 False True|A-upper 0 False True|B 1 True False|B-near 1 False False|D 10 True False|D-longer 10 False False|Z 6 True False|Z-near 6 False False|" \
  "clusters"
expect_eq "$(jsonl clusters.jsonl 'd["id"], 0.8 <= d["similarity"] < 1' | grep -c True)" "3" \
  "near copies' similarity to the kept document"
expect_eq "$(jsonl clusters.jsonl 'd["id"], d["similarity"]' | grep -c ' 1.0$')" "6" "kept and exact: similarity 1"

# The same run again gives the same bytes; so does a tiny memory budget.
run llm-dedup -o again.jsonl corpus.jsonl
cmp -s out.jsonl again.jsonl && ok || fail "not deterministic"
run llm-dedup --mem 1M -o small-mem.jsonl corpus.jsonl
cmp -s out.jsonl small-mem.jsonl && ok || fail "--mem 1M changed the output"

# Switches.
run llm-dedup --no-exact --no-near corpus.jsonl
cmp -s "$T/out" corpus.jsonl && ok || fail "with everything off the output is the input"
run llm-dedup --no-near corpus.jsonl
expect_eq "$(ids "$T/out")" "A B C B-near empty1 Z Z-near empty2 C-far D D-longer " "--no-near"
run llm-dedup --no-near --normalize none corpus.jsonl
expect_eq "$(ids "$T/out")" "A B A-upper C B-near empty1 Z Z-near empty2 C-far D D-longer " "--normalize none"
run llm-dedup --keep longest corpus.jsonl
expect_eq "$(ids "$T/out" | grep -o ' D[-a-z]* ')" " D-longer " "--keep longest"
expect_eq "$(wc -l < "$T/out")" "8" "--keep longest: as many survivors"
run llm-dedup --threshold 0.99 corpus.jsonl
expect_eq "$(ids "$T/out")" "A B C B-near empty1 Z Z-near empty2 C-far D D-longer " "--threshold 0.99"
run llm-dedup --no-verify --stats nv.json corpus.jsonl
expect_rc 0 "--no-verify"
expect_eq "$(json nv.json '"verified_pairs" in j["counters"]')" "False" "--no-verify verifies nothing"

# Standard input and a pipe are copied and read like files; messages name them.
run_in corpus.jsonl llm-dedup
cmp -s "$T/out" out.jsonl && ok || fail "stdin output differs"
(head -3 corpus.jsonl; echo '{"text": broken'; echo '{"id": "no-text"}'; printf '{"id":"bad-utf8","text":"x\377y"}\n') > bad.jsonl
run llm-dedup --stats bad.json bad.jsonl
expect_rc 0 "malformed lines are skipped"
expect_err_contains "bad.jsonl:4: skipped: invalid_json"
expect_err_contains "bad.jsonl:5: skipped: missing_text"
expect_eq "$(json bad.json 'j["drops"]["malformed:invalid_json"], j["drops"]["malformed:missing_text"], j["counters"]["docs_in"]')" \
          "1 1 4" "malformed counted"
expect_eq "$(grep -c 'skipped' "$T/err")" "2" "each malformed line reported once"
run llm-dedup --strict bad.jsonl
expect_rc 1 "--strict"
run_in bad.jsonl llm-dedup
expect_err_contains "(stdin):4: skipped: invalid_json"

# Line dedup: the menu and cookie lines are in 6 documents; --lines 3 removes them.
python3 - <<'PY'
import json
with open("menus.jsonl", "w") as f:
    for i in range(6):
        t = ("Home | Products | Contact\nArticle %d: %s\nWe use cookies 2024.\n" %
             (i, " ".join("".join(chr(97 + (i * 7 + k * 3 + j) % 26) for j in range(6)) for k in range(12))))
        f.write(json.dumps({"id": i, "text": t}) + "\n")
    f.write(json.dumps({"id": "menu-only", "text": "Home | Products | Contact\nWe use cookies 2023."}) + "\n")
PY
run llm-dedup --lines 3 --stats lines.json menus.jsonl
expect_rc 0 "--lines"
expect_eq "$(jsonl "$T/out" 'd["text"].count("Home"), d["text"].count("cookies"), d["text"].startswith("Article")' | sort -u)" \
          "0 0 True" "menu lines removed"
expect_eq "$(json lines.json 'j["counters"]["lines_removed"], j["drops"]["empty_after_line_dedup"]')" "14 1" "line stats"
run llm-dedup --lines 8 menus.jsonl
cmp -s "$T/out" menus.jsonl && ok || fail "--lines 8: nothing is that frequent"

# The S-curve.
run llm-dedup --explain
expect_rc 0 "--explain"
expect_out_contains "14 bands x 8 rows = 112 hash functions"
expect_out_contains "      0.80        0.9235"
expect_out_contains "steepest at s = (1/14)^(1/8) = 0.719"
if command -v gnuplot >/dev/null; then
  run llm-dedup --plot curve.png --bands 20 --rows 5
  expect_rc 0 "--plot"
  expect_eq "$(head -c 4 curve.png | od -An -c | tr -d ' ')" "211PNG" "PNG written"
fi

# Usage errors.
for bad in "--bands 0" "--rows -1" "--threshold 1.5" "--keep middle" "--lines 1" "--mem 10k" "--normalize nfd"; do
  run llm-dedup $bad corpus.jsonl
  expect_rc 2 "$bad"
done
run llm-dedup missing.jsonl
expect_rc 1 "missing input"
expect_err_contains "missing.jsonl"

# Temporary files: a directory that cannot hold them is a clear error; nothing is left behind.
run llm-dedup --tmp /nonexistent-llmkit corpus.jsonl
expect_rc 1 "unusable --tmp"
expect_err_contains "/nonexistent-llmkit"
mkdir tmp
python3 - <<'PY'
import json, random
rng = random.Random(9)
vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for i in range(20000)]
with open("big.jsonl", "w") as f:
    for i in range(6000):
        f.write(json.dumps({"id": i, "text": " ".join(rng.choice(vocab) for _ in range(120))}) + "\n")
PY
run llm-dedup --mem 1M --tmp tmp --stats spill.json -o big-out.jsonl big.jsonl
expect_rc 0 "spilling run"
expect_eq "$(json spill.json 'j["counters"]["spilled_bytes"] > 1000000')" "True" "band keys spilled"
expect_eq "$(wc -l < big-out.jsonl)" "6000" "all distinct documents kept"
expect_eq "$(ls -A tmp | wc -l)" "0" "no temporary files left"

# A full --tmp file system: a clear error naming it (where this test may mount a small tmpfs).
mkdir full
if mount -t tmpfs -o size=64k tmpfs full 2>/dev/null; then
  run llm-dedup --mem 1M --tmp full -o full-out.jsonl big.jsonl
  expect_rc 1 "full --tmp"
  expect_err_contains "full: writing"
  expect_err_contains "No space left on device"
  expect_no_file full-out.jsonl
  expect_eq "$(ls -A full | wc -l)" "0" "nothing left on the full file system"
  umount full
fi

# Stats count bytes uncompressed on both sides, the compressed figures beside them.
zstd -q -f "$DATA/jsonl/sample.jsonl" -o packed.jsonl.zst
run llm-dedup --stats packed.json -o packed-out.jsonl.zst packed.jsonl.zst
expect_rc 0 "dedup of a compressed input"
expect_eq "$(json packed.json 'j["counters"]["bytes_in"], j["counters"]["bytes_in_compressed"], j["counters"]["bytes_out"], j["counters"]["bytes_out_compressed"]')" \
          "$(wc -c < "$DATA/jsonl/sample.jsonl") $(wc -c < packed.jsonl.zst) $(zstdcat packed-out.jsonl.zst | wc -c) $(wc -c < packed-out.jsonl.zst)" "dedup stats in bytes"

# Outputs are checked before the work.
run llm-dedup --clusters nowhere/c.jsonl -o d.jsonl "$DATA/jsonl/sample.jsonl"
expect_rc 1 "--clusters into a missing directory"; expect_no_file d.jsonl
expect_err_contains "llm-dedup: nowhere: --clusters: cannot write nowhere/c.jsonl here"
run llm-dedup --tmp "$DATA/jsonl/sample.jsonl" "$DATA/jsonl/sample.jsonl"
expect_rc 1 "--tmp FILE"; expect_err_contains "--tmp: exists and is not a directory"

# Input of the wrong kind is named, with what to run first, instead of an empty success.
run llm-dedup -o wrong.jsonl "$DATA/warc/sample.warc.gz"
expect_rc 1 "WARC input"; expect_no_file wrong.jsonl
expect_err_contains "llm-dedup: $DATA/warc/sample.warc.gz: a WARC file (gzip-compressed), not JSONL documents: run llm-clean on it first, to extract the text (llm-clean -o docs.jsonl.zst $DATA/warc/sample.warc.gz)"
run_in "$DATA/html/article.html" llm-dedup
expect_rc 1 "HTML on stdin"; expect_out_empty
expect_err_contains "an HTML or XML file, not JSONL documents: run llm-clean on it first"
head -c 4000 /dev/zero | gzip > zeros.jsonl.gz
run llm-dedup zeros.jsonl.gz
expect_rc 1 "binary input"
expect_err_contains "llm-dedup: zeros.jsonl.gz: binary data (gzip-compressed), not JSONL documents: give JSONL documents, one JSON object a line (llmkit-jsonl(5))"

# A killed run leaves no output and no temporary files: here killed while it copies a stalled
# standard input (the read is interrupted), with part of the input already in its copy.
mkfifo stall
(cat big.jsonl; cat stall) | llm-dedup --tmp tmp -o killed.jsonl 2>kill.err &
pid=$!
# Once it copies standard input into --tmp (an unnamed file there), it has its signal handlers,
# however slow the machine: a fixed sleep could look for it too early.
for i in $(seq 1 6000); do
  dpid=$(pgrep -P $$ -x llm-dedup)
  [ -n "$dpid" ] && ls -l /proc/$dpid/fd 2>/dev/null | grep -q "$PWD/tmp/" && break
  sleep 0.01
done
kill -TERM $dpid 2>/dev/null
start=$(date +%s)
echo > stall  # releases the writer; the command must already have stopped
wait $pid
rc=$?
expect_eq "$rc" "1" "exit status after SIGTERM"
expect_eq "$(( $(date +%s) - start < 5 ))" "1" "stopped promptly"
expect_no_file killed.jsonl
expect_eq "$(ls -A . | grep -c 'killed')" "0" "no partial output"
expect_eq "$(ls -A tmp | wc -l)" "0" "no temporary files after SIGTERM"
finish
