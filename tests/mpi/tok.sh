# llm-tok encode under mpirun with 1, 2 and 3 ranks and 1 or 2 threads: the shards' token
# streams, read in name order, are the same as one process's, split for split; so are the counts.
. "$(dirname "$0")/../cli/lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }

python3 - <<'PY'
import json, random
rng = random.Random(4)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(3000)]
with open("a.jsonl", "w") as f:
    for i in range(1500):
        f.write(json.dumps({"id": "a%d" % i, "text": " ".join(rng.choice(words) for _ in range(rng.randint(5, 120)))}) + "\n")
with open("b.jsonl", "w") as f:
    for i in range(500):
        f.write(json.dumps({"id": "b%d" % i, "text": "\n".join(" ".join(rng.choice(words) for _ in range(9)) for _ in range(4))}) + "\n")
PY
zstd -q --rm b.jsonl -o b.jsonl.zst
run llm-tok train -o tok.model --vocab-size 600 a.jsonl
expect_rc 0 "train"

cat > stream.py <<'PY'
import glob, struct, sys
def tokens(d, split):
    out = []
    for p in sorted(glob.glob(f"{d}/{split}-*.tok")):
        b = open(p, "rb").read()
        tb, = struct.unpack_from("<I", b, 12); n, = struct.unpack_from("<Q", b, 24)
        out += struct.unpack_from("<%d%s" % (n, "H" if tb == 2 else "I"), b, 128)
    return out
import hashlib
for split in ("train", "val"):
    t = tokens(sys.argv[1], split)
    print(split, len(t), hashlib.sha1(str(t).encode()).hexdigest()[:12])
PY
counts='j["counters"]["docs_in"], j["counters"]["tokens"], j["counters"]["docs_val"]'
run llm-tok encode -m tok.model --val-fraction 0.1 --shard-tokens 5000 --stats one.json -o one a.jsonl b.jsonl.zst a.jsonl
expect_rc 0 "one process"
python3 stream.py one > one.txt
for np in 1 2 3; do
  for t in 1 2; do
    rm -rf parts
    run mpirun -np $np llm-tok encode --threads $t -m tok.model --val-fraction 0.1 --shard-tokens 5000 --stats mpi.json -o parts a.jsonl b.jsonl.zst a.jsonl
    expect_rc 0 "-np $np --threads $t"
    python3 stream.py parts > mpi.txt
    cmp -s one.txt mpi.txt && ok || fail "-np $np --threads $t: token streams differ: $(cat mpi.txt) vs $(cat one.txt)"
    expect_eq "$(json mpi.json "j['ranks'], $counts")" "$np $(json one.json "$counts")" "merged counts, -np $np"
  done
done
[ "$(ls parts | grep -c 'train-00002-')" -ge 1 ] && ok || fail "rank 2 wrote no shard"
# A small corpus gets its one validation document, the input's last, whatever the ranks.
head -7 a.jsonl > small.jsonl
run llm-tok encode -m tok.model --val-fraction 0.005 -o small1 small.jsonl
python3 stream.py small1 > small1.txt
expect_eq "$(grep -c '^val [1-9]' small1.txt)" "1" "one process: a validation document"
for np in 2 3; do
  run mpirun -np $np llm-tok encode -m tok.model --val-fraction 0.005 --stats small.json -o small$np small.jsonl
  expect_rc 0 "small corpus, -np $np"
  python3 stream.py small$np > smallmpi.txt
  cmp -s small1.txt smallmpi.txt && ok || fail "small corpus, -np $np: $(cat smallmpi.txt) vs $(cat small1.txt)"
  expect_eq "$(json small.json 'j["counters"]["docs_val"]')" "1" "small corpus, -np $np: one validation document"
done
finish
