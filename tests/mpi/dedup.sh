# llm-dedup under mpirun with 1, 2 and 3 ranks: band keys, hashes and pairs cross ranks, the
# union-find merges across them, and the surviving documents (their parts concatenated in rank
# order), the clusters and the merged counts equal the one-process run's, also when spilling.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

# Originals with exact and edited copies scattered across the inputs, so that duplicates of a
# document sit on other ranks; one file compressed (read whole by one rank).
python3 - <<'PY'
import json, random
rng = random.Random(11)
vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))
         for _ in range(5000)]
originals = [" ".join(rng.choice(vocab) for _ in range(rng.randint(80, 300))) for _ in range(1200)]
docs = [{"id": "o%d" % i, "text": t} for i, t in enumerate(originals)]
for i in range(1800):
    src = rng.randrange(len(originals))
    w = originals[src].split()
    for _ in range(rng.choice([0, 0, 1, 2, 4, 30])):
        w[rng.randrange(len(w))] = rng.choice(vocab)
    text = " ".join(w) if rng.random() < 0.8 else " ".join(w).upper()
    docs.append({"id": "c%d-of-%d" % (i, src), "text": text})
rng.shuffle(docs)
docs.insert(500, {"id": "empty", "text": ""})
with open("a.jsonl", "w") as f:
    for d in docs[:2100]: f.write(json.dumps(d) + "\n")
with open("b.jsonl", "w") as f:
    for d in docs[2100:2550]: f.write(json.dumps(d) + "\n")
with open("c.jsonl", "w") as f:
    for d in docs[2550:]: f.write(json.dumps(d) + "\n")
PY
zstd -q --rm b.jsonl -o b.jsonl.zst
inputs="a.jsonl b.jsonl.zst c.jsonl"

run llm-dedup --lines 50 --stats one.json -o one.jsonl --clusters one-clusters.jsonl $inputs
expect_rc 0 "one process"
sort one-clusters.jsonl > one-clusters.sorted
counts='j["counters"]["docs_in"], j["counters"]["docs_out"], j["drops"]["exact_duplicate"], j["drops"]["near_duplicate"], j["counters"]["candidate_pairs"], j["counters"]["verified_pairs"]'
expect_eq "$(json one.json 'j["drops"]["near_duplicate"] > 100 and j["drops"]["exact_duplicate"] > 50')" "True" "duplicates found"
for np in 1 2 3; do
  for mem in 2G 1M; do
    rm -rf parts && mkdir parts
    run mpirun -np $np llm-dedup --lines 50 --mem $mem --stats mpi.json -o parts/ --clusters parts/clusters $inputs
    expect_rc 0 "mpirun -np $np --mem $mem"
    expect_eq "$(ls parts/part-*.jsonl | wc -l)" "$np" "parts with $np ranks"
    cat parts/part-*.jsonl | cmp -s - one.jsonl && ok || fail "-np $np --mem $mem: joined parts differ"
    cat parts/clusters* | sort | cmp -s - one-clusters.sorted && ok || fail "-np $np --mem $mem: clusters differ"
    expect_eq "$(json mpi.json "j['ranks'], $counts")" "$np $(json one.json "$counts")" "merged stats, $np ranks, --mem $mem"
    [ $mem = 1M ] && expect_eq "$(json mpi.json 'j["counters"]["spilled_bytes"] > 0')" "True" "spilled with --mem 1M"
  done
done
run mpirun -np 2 llm-dedup a.jsonl
expect_rc 2 "stdout with 2 ranks"
run_in a.jsonl mpirun -np 2 llm-dedup -o parts/
expect_rc 2 "stdin with 2 ranks"
finish
