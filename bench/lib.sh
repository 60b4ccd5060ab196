# Shared by the benchmarks (sourced; run-all.sh does not run it).

# random_tokens FILE N: N random token ids below 4000 (every preset's vocabulary holds them) in
# an llm.c .bin file: a training run's speed depends on the model's vocabulary, not on which ids
# the data uses.
random_tokens() {
  python3 - "$1" "$2" <<'PY'
import random, struct, sys
rng = random.Random(1)
n = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    h = [0] * 256; h[0] = 20240520; h[1] = 1; h[2] = n
    f.write(struct.pack("<256i", *h))
    f.write(struct.pack("<%dH" % n, *(rng.randrange(4000) for _ in range(n))))
PY
}
