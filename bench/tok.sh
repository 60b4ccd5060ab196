#!/bin/sh
# llm-tok: encoding speed against spm_encode (Debian's sentencepiece) on the same model and text,
# measured in the same run, and training memory with and without --sample on ~100 MB of text.
# Usage: tok.sh BIN_DIR     LLMKIT_BENCH_MB (default 100): text size in MB.
set -eu
bin=$(cd "${1:?usage: tok.sh BIN_DIR}" && pwd)
mb=${LLMKIT_BENCH_MB:-100}
work=$(mktemp -d /tmp/llmkit-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
command -v spm_encode >/dev/null || { echo "spm_encode not found (apt-get install sentencepiece)"; exit 1; }

# Real text: the Python manual's lines, shuffled into distinct documents up to the size wanted.
"$bin/llm-clean" -q --no-quality --no-pii /usr/share/doc/python3.11/html > "$work/seed.jsonl"
python3 - "$work" "$mb" <<'PY'
import json, random, sys
work, mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
lines = [s for l in open(f"{work}/seed.jsonl", encoding="utf-8") for s in json.loads(l)["text"].split("\n") if s.strip()]
with open(f"{work}/text.txt", "w", encoding="utf-8") as t, open(f"{work}/docs.jsonl", "w", encoding="utf-8") as j:
    n = 0
    while t.tell() < mb * 1_000_000:
        # two real lines joined: distinct sentences, as in a web corpus (SentencePiece keeps
        # one copy of each distinct sentence, so repeats would hide the memory it needs)
        doc = [rng.choice(lines) + " " + rng.choice(lines) for _ in range(rng.randint(5, 60))]
        for s in doc: t.write(s + "\n")
        # one JSONL document per line of text, so both tools encode exactly the same strings
        for s in doc: j.write(json.dumps({"id": n, "text": s}, ensure_ascii=False) + "\n"); n += 1
PY
size=$(stat -c %s "$work/text.txt")
echo "text: $(( size / 1000000 )) MB, $(wc -l < "$work/text.txt") lines (python3.11-doc sentences)"

# secs CMD...: wall seconds; peak RSS in kB to $work/rss
secs() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null
  cut -d' ' -f2 "$work/time" > "$work/rss"
  cut -d' ' -f1 "$work/time"
}

echo "== training (BPE, 32000 pieces)"
s=$(secs "$bin/llm-tok" train -q -o "$work/tok.model" --vocab-size 32000 --sample 100000 "$work/docs.jsonl")
echo "llm-tok train --sample 100000: ${s} s, peak RSS $(( $(cat "$work/rss") / 1024 )) MiB"
s=$(secs "$bin/llm-tok" train -q -o "$work/all.model" --vocab-size 32000 --sample 0 "$work/docs.jsonl")
echo "llm-tok train --sample 0 (all lines): ${s} s, peak RSS $(( $(cat "$work/rss") / 1024 )) MiB"

echo "== encoding the same lines with the same model"
cat "$work/text.txt" "$work/docs.jsonl" > /dev/null
spm=$(secs sh -c "spm_encode --model '$work/tok.model' --output_format=id < '$work/text.txt'")
echo "spm_encode:                 ${spm} s, $(python3 -c "print(f'{$size / 1e6 / $spm:.1f}')") MB/s"
for t in 1 2; do
  s=$(secs "$bin/llm-tok" encode -q --threads $t -m "$work/tok.model" -o "$work/shards-$t" "$work/docs.jsonl")
  python3 -c "print(f'llm-tok encode --threads $t: $s s, {$size / 1e6 / $s:.1f} MB/s, {$spm / $s:.2f}x spm_encode')"
done
"$bin/llm-tok" encode -q -m "$work/tok.model" --output-format ids "$work/docs.jsonl" > "$work/ours.ids"
spm_encode --model "$work/tok.model" --output_format=id < "$work/text.txt" > "$work/spm.ids"
cmp -s "$work/ours.ids" "$work/spm.ids" && echo "ids identical to spm_encode on all $(wc -l < "$work/text.txt") lines"
