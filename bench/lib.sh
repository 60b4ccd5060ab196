# Shared by the benchmarks (sourced; run-all.sh does not run it).

# random_tokens FILE N [VOCAB]: N random token ids below VOCAB (default 4000, which every
# preset's vocabulary holds) in an llm.c .bin file (version 1, 16-bit ids): a training run's
# speed depends on the model's vocabulary, not on which ids the data uses.
random_tokens() {
  python3 - "$1" "$2" "${3:-4000}" <<'PY'
import random, struct, sys
rng = random.Random(1)
n, vocab = int(sys.argv[2]), int(sys.argv[3])
with open(sys.argv[1], "wb") as f:
    h = [0] * 256; h[0] = 20240520; h[1] = 1; h[2] = n
    f.write(struct.pack("<256i", *h))
    f.write(struct.pack("<%dH" % n, *(rng.randrange(vocab) for _ in range(n))))
PY
}
