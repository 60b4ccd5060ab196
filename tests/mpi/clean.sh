# llm-clean under mpirun with 1, 2 and 3 ranks: the parts, concatenated in rank order, equal the
# one-process output, and rank 0's merged stats count every document once.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

# One large JSONL file (split by byte ranges), a zstd file and an HTML file (split whole).
python3 - "$DATA/jsonl/sample.jsonl" <<'PY'
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
with open("big.jsonl", "w", encoding="utf-8") as f:
    for i in range(300):
        d = dict(docs[i % len(docs)]); d["id"] = f"big-{i}"
        f.write(json.dumps(d, ensure_ascii=False) + "\n")
with open("small.jsonl", "w", encoding="utf-8") as f:
    for i in range(40):
        d = dict(docs[i % len(docs)]); d["id"] = f"small-{i}"
        f.write(json.dumps(d, ensure_ascii=False) + "\n")
PY
zstd -q small.jsonl -o small.jsonl.zst
cp "$DATA/html/article.html" page.html
inputs="big.jsonl small.jsonl.zst page.html big.jsonl"

run llm-clean --stats one.json -o one.jsonl $inputs
expect_rc 0 "one process"
n_one=$(wc -l < one.jsonl)
for np in 1 2 3; do
  rm -rf parts && mkdir parts
  run mpirun -np $np llm-clean --stats mpi$np.json -o parts/ $inputs
  expect_rc 0 "mpirun -np $np"
  expect_eq "$(ls parts | wc -l)" "$np" "parts with $np ranks"
  cat parts/part-*.jsonl > joined.jsonl
  cmp -s joined.jsonl one.jsonl && ok || fail "-np $np: joined parts differ from the one-process output"
  expect_eq "$(json mpi$np.json 'j["ranks"], j["counters"]["docs_in"], j["counters"]["docs_out"], j["counters"]["bytes_in"], j["counters"]["bytes_out"]' )" \
            "$np $(json one.json 'j["counters"]["docs_in"], j["counters"]["docs_out"], j["counters"]["bytes_in"], j["counters"]["bytes_out"]')" "merged stats, $np ranks"
done
expect_eq "$(grep -c . one.jsonl)" "$n_one" "sanity"
# Two compressed files on two ranks go one to each, though the first is the smaller (by their
# first bytes both went to rank 0).
head -30 big.jsonl | zstd -q > first.jsonl.zst
tail -40 big.jsonl | zstd -q > second.jsonl.zst
rm -rf two && run mpirun -np 2 llm-clean --no-quality -o two/ first.jsonl.zst second.jsonl.zst
expect_rc 0 "two compressed files on two ranks"
expect_eq "$(jsonl two/part-00000.jsonl 'd["id"]' | head -1) $(jsonl two/part-00001.jsonl 'd["id"]' | head -1)" \
          "big-0 big-260" "one file per rank"

# A filter that drops every document is warned about once, with the counts of all ranks.
rm -rf none && run mpirun -np 2 llm-clean --lang de -o none/ $inputs
expect_rc 0 "--lang de on 2 ranks"
expect_eq "$(grep -c 'warning: every document was dropped' "$T/err")" "1" "one warning from 2 ranks"
expect_err_contains "every document was dropped ($(json one.json 'j["counters"]["docs_in"]') in, 0 out)"

# Standard output cannot take several ranks' documents.
run mpirun -np 2 llm-clean big.jsonl
expect_rc 2 "stdout with 2 ranks"
finish
