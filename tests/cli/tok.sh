# llm-tok end to end: train on real text (the Python manual's, when installed; generated text
# otherwise), ids identical to spm_encode, shards in the three layouts read back by readers
# written here from the published layouts, decode round trip, inspect on damaged shards, stats,
# bad input.
. "$(dirname "$0")/lib.sh"

# Training text: real lines when python3.11-doc is there, plus Chinese, plus control characters.
if [ -d /usr/share/doc/python3.11/html ]; then
  llm-clean -q --no-quality --no-pii /usr/share/doc/python3.11/html/library/s*.html > docs.jsonl
else
  python3 -c "
import json, random
rng = random.Random(1)
words = ['data', 'python', 'module', 'function', 'returns', 'the', 'value', 'of', 'a', 'list', 'string']
for i in range(300):
    print(json.dumps({'id': i, 'text': '\n'.join(' '.join(rng.choice(words) for _ in range(12)) for _ in range(20))}))
" > docs.jsonl
fi
python3 - <<'PY'
import json
han = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对"
with open("docs.jsonl", "a", encoding="utf-8") as f:
    for i in range(30):
        f.write(json.dumps({"id": "zh-%d" % i, "lang": "zh", "text": "".join(han[(i * 7 + k * 3) % len(han)] for k in range(200))}, ensure_ascii=False) + "\n")
    f.write(json.dumps({"id": "ctl", "text": "bell \u0007 and escape \u001b[31m and tab\there"}) + "\n")
PY
printf '{"id":"bad-utf8","text":"caf\351 ok"}\n' >> docs.jsonl
ndocs=$(wc -l < docs.jsonl)

run llm-tok train -o tok.model --vocab-size 800 --special '<|im_start|>,<|im_end|>' --stats train.json docs.jsonl
expect_rc 0 "train"
expect_file tok.model
expect_eq "$(json train.json 'j["counters"]["vocab_size"]')" "800" "vocabulary"
# Fixed ids: <unk> 0, <s> 1, </s> 2, <pad> 3, specials from 4.
run llm-tok encode -m tok.model --output-format ids docs.jsonl
python3 - tok.model <<'PY' > pieces.txt
import sys
# The model is a protobuf; the pieces appear in order as length-prefixed strings in field 1.
data = open(sys.argv[1], "rb").read()
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1; v |= (c & 0x7f) << s; s += 7
        if c < 0x80: return v, i
i = 0; pieces = []
while i < len(data):
    key, i = varint(data, i)
    field, wire = key >> 3, key & 7
    if wire == 2:
        n, i = varint(data, i); body = data[i:i + n]; i += n
        if field == 1:  # SentencePiece message: field 1 is the piece
            j = 0
            k, j = varint(body, j); m, j = varint(body, j)
            pieces.append(body[j:j + m].decode("utf-8"))
    elif wire == 0: _, i = varint(data, i)
    elif wire == 5: i += 4
    elif wire == 1: i += 8
print(" ".join(pieces[:6]))
PY
expect_eq "$(cat pieces.txt)" "<unk> <s> </s> <pad> <|im_start|> <|im_end|>" "special ids"

# Ids identical to spm_encode on the same lines.
python3 - <<'PY'
import json
lines = []
for l in open("docs.jsonl", encoding="utf-8", errors="replace"):
    for s in json.loads(l)["text"].split("\n"):
        if s.strip(): lines.append(s)
lines = lines[:5000]
with open("lines.txt", "w", encoding="utf-8") as t, open("lines.jsonl", "w", encoding="utf-8") as j:
    for s in lines:
        t.write(s + "\n"); j.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
PY
if command -v spm_encode >/dev/null; then
  spm_encode --model tok.model --output_format=id < lines.txt > spm.ids
  run llm-tok encode -m tok.model --output-format ids -o ours.ids lines.jsonl
  expect_rc 0 "encode ids"
  expect_eq "$(wc -l < ours.ids)" "$(wc -l < lines.txt)" "one line per document"
  cmp -s spm.ids ours.ids && ok || fail "ids differ from spm_encode ($(wc -l < lines.txt) lines)"
fi

# Shards: train/val split, document order, delimiter, round trip through decode.
run llm-tok encode -m tok.model --val-fraction 0.2 --shard-tokens 20000 --stats enc.json -o shards docs.jsonl
expect_rc 0 "encode shards"
expect_eq "$(json enc.json 'j["counters"]["docs_in"], j["counters"]["docs_train"] + j["counters"]["docs_val"], j["counters"]["docs_invalid_utf8"], j["counters"]["docs_control_chars"]')" \
          "$ndocs $ndocs 1 1" "documents counted"
expect_eq "$(json enc.json 'j["counters"]["shards"] > 2')" "True" "rolled over at --shard-tokens"
run llm-tok inspect -m tok.model shards/train-00000.tok shards/val-00000.tok
expect_rc 0 "inspect"
expect_out_contains "checksum ok"
# A reader written from llmkit-shard(5): header fields, checksum-free structure, documents.
cat > read_shard.py <<'PY'
import struct, sys
def read(path):
    b = open(path, "rb").read()
    assert b[:8] == b"LLMKTOK\0"
    ver, tb = struct.unpack_from("<II", b, 8)
    vocab, ntok, ndoc, csum, idx, tokh, hsum = struct.unpack_from("<7Q", b, 16)
    assert ver == 1 and tb in (2, 4) and len(b) == idx + 8 * ndoc
    toks = struct.unpack_from("<%d%s" % (ntok, "H" if tb == 2 else "I"), b, 128)
    ends = struct.unpack_from("<%dQ" % ndoc, b, idx)
    docs, start = [], 0
    for e in ends:
        docs.append(list(toks[start:e])); start = e
    return docs
PY
python3 - shards <<'PY' > split.txt
import glob, sys
sys.path.insert(0, ".")
from read_shard import read
train = [d for p in sorted(glob.glob(sys.argv[1] + "/train-*.tok")) for d in read(p)]
val = [d for p in sorted(glob.glob(sys.argv[1] + "/val-*.tok")) for d in read(p)]
print(len(train), len(val), all(d[-1] == 2 and 2 not in d[:-1] for d in train + val))
PY
read ntrain nval delim < split.txt
expect_eq "$((ntrain + nval))" "$ndocs" "documents in the shards"
expect_eq "$([ "$nval" -gt 0 ] && [ "$nval" -lt "$((ndocs / 2))" ] && echo yes)" "yes" "validation share ($nval of $ndocs)"
expect_eq "$delim" "True" "each document ends with </s>"
# decode gives the text back (documents in order: train shards hold the train documents in order).
run llm-tok decode -m tok.model --jsonl shards/train-00000.tok
expect_rc 0 "decode"
python3 - docs.jsonl "$T/out" shards <<'PY' > roundtrip.txt
import json, sys, glob
sys.path.insert(0, ".")
from read_shard import read
n0 = len(read(sorted(glob.glob(sys.argv[3] + "/train-*.tok"))[0]))
val_ids = set()
docs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8", errors="replace")]
dec = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
# The first train shard's documents are the first n0 documents not sent to validation.
# Without knowing the split here, check each decoded text is some input text, in input order.
texts = [d["text"] for d in docs]
pos, ok = 0, True
for t in dec:
    while pos < len(texts) and texts[pos] != t: pos += 1
    ok = ok and pos < len(texts); pos += 1
print(len(dec) == n0, ok)
PY
expect_eq "$(cat roundtrip.txt)" "True True" "decode returns the documents' text, in order"

# A small corpus and a small fraction: 52 documents at 0.5% still give a validation shard (the
# last document, since no other went there) and a training shard; one document trains, and a
# warning says there is no validation shard.
# (Fixed ids, and a fraction so small that no id hashes below it.)
python3 -c "
import json
for i in range(52): print(json.dumps({'id': 'small-%d' % i, 'text': 'document number %d of the small corpus' % i}))" > small.jsonl
run llm-tok encode -m tok.model --val-fraction 0.000001 --stats small.json -o small small.jsonl
expect_rc 0 "52 documents, a tiny fraction"
expect_eq "$(json small.json 'j["counters"]["docs_train"], j["counters"]["docs_val"]')" "51 1" "one validation document"
expect_eq "$(ls small)" "$(printf 'train-00000.tok\nval-00000.tok')" "both shards"
run llm-tok decode -m tok.model small/val-00000.tok
expect_eq "$(cat "$T/out")" "document number 51 of the small corpus" "the last document validates"
run llm-tok encode -m tok.model --val-fraction 0.995 --stats most.json -o most small.jsonl
expect_eq "$(json most.json 'j["counters"]["docs_train"] >= 1, j["counters"]["docs_val"] >= 1')" "True True" "a training document at 99.5%"
head -1 docs.jsonl > one.jsonl
run llm-tok encode -m tok.model --val-fraction 0.1 -o single one.jsonl
expect_rc 0 "one document"; expect_eq "$(ls single)" "train-00000.tok" "one document trains"
expect_err_contains "llm-tok encode: warning: one document only: it goes to the training shards, and there is no validation shard"
run llm-tok encode -m tok.model -o noval small.jsonl
expect_eq "$(ls noval)" "train-00000.tok" "no validation shard without --val-fraction"

# llm.c and Megatron layouts, read back by readers written from their published layouts.
run llm-tok encode -m tok.model --format llmc -o llmc docs.jsonl
expect_rc 0 "llm.c export"
run llm-tok encode -m tok.model --format megatron -o mega docs.jsonl
expect_rc 0 "Megatron export"
python3 - <<'PY' > exports.txt
import struct, sys
sys.path.insert(0, ".")
b = open("llmc/train-00000.bin", "rb").read()
h = struct.unpack_from("<256i", b, 0)
llmc = list(struct.unpack_from("<%dH" % h[2], b, 1024)) if h[0] == 20240520 and h[1] == 1 else None
assert len(b) == 1024 + 2 * h[2]
x = open("mega/train-00000.idx", "rb").read()
assert x[:9] == b"MMIDIDX\0\0"
version, = struct.unpack_from("<Q", x, 9); code = x[17]
nseq, ndoc = struct.unpack_from("<QQ", x, 18)
sizes = struct.unpack_from("<%di" % nseq, x, 34)
ptrs = struct.unpack_from("<%dq" % nseq, x, 34 + 4 * nseq)
docidx = struct.unpack_from("<%dq" % ndoc, x, 34 + 12 * nseq)
assert version == 1 and code == 8 and ndoc == nseq + 1 and list(docidx) == list(range(nseq + 1))
assert len(x) == 34 + 12 * nseq + 8 * ndoc
binf = open("mega/train-00000.bin", "rb").read()
mega = [list(struct.unpack_from("<%dH" % s, binf, p)) for s, p in zip(sizes, ptrs)]
assert ptrs[-1] + 2 * sizes[-1] == len(binf)
flat = [t for d in mega for t in d]
print(flat == llmc, nseq)
PY
expect_eq "$(cat exports.txt)" "True $ndocs" "llm.c and Megatron files hold the same tokens"
run llm-tok inspect llmc/train-00000.bin
expect_rc 0 "inspect llm.c"
expect_out_contains "llm.c version 1, u16 tokens"
run llm-tok decode -m tok.model llmc/train-00000.bin
expect_eq "$(wc -l < "$T/out")" "$ndocs" "decode an llm.c file by its separators"

# Damaged shards: named, and the others still reported.
cp shards/train-00000.tok flip.tok
python3 -c "
import sys
b = bytearray(open('flip.tok','rb').read()); b[200] ^= 1; open('flip.tok','wb').write(b)"
head -c 1000 shards/train-00000.tok > short.tok
run llm-tok inspect shards/val-00000.tok flip.tok short.tok
expect_rc 1 "inspect damaged"
expect_out_contains "val-00000.tok: llmkit shard"
expect_err_contains "flip.tok: damaged shard: the payload checksum does not match"
expect_err_contains "short.tok: damaged shard"
expect_err_contains "2 of 3 shards damaged"
run llm-tok inspect --no-verify flip.tok
expect_rc 0 "--no-verify skips the checksum"
run llm-tok decode -m tok.model flip.tok
expect_rc 1 "decode refuses a damaged shard"

# Another tokenizer's shard; a file that is not a model; options.
run llm-tok train -o other.model --vocab-size 500 docs.jsonl
expect_rc 0 "train another model"
run llm-tok decode -m other.model shards/train-00000.tok
expect_rc 1 "shard of another tokenizer"
expect_err_contains "made with another tokenizer"
run llm-tok inspect -m other.model shards/train-00000.tok shards/val-00000.tok flip.tok
expect_rc 1 "inspect --model with another tokenizer"
expect_err_contains "llm-tok inspect: warning: shards/train-00000.tok: made with another tokenizer (shard "
expect_err_contains "llm-tok: 1 of 3 shards damaged or not shards; 2 of 3 shards made with another tokenizer than other.model (intact, but not to be read with it)"
expect_out_contains "shards/val-00000.tok: llmkit shard"
run llm-tok inspect -m other.model shards/train-00000.tok
expect_rc 1 "inspect --model with another tokenizer, one shard"
expect_err_contains "llm-tok: 1 of 1 shards made with another tokenizer than other.model"
expect_err_lacks "damaged"
run llm-tok encode -m docs.jsonl -o x docs.jsonl
expect_rc 1 "not a model"
expect_err_contains "docs.jsonl: neither a SentencePiece model nor a WordPiece vocab.txt"
for bad in "encode -m tok.model --format gguf -o x docs.jsonl" "encode -m tok.model --val-fraction 1 -o x docs.jsonl" \
           "encode -m tok.model --dtype u8 -o x docs.jsonl" "train --vocab-size 5 -o y.model docs.jsonl" \
           "train docs.jsonl" "frobnicate" "encode docs.jsonl"; do
  run llm-tok $bad
  expect_rc 2 "llm-tok $bad"
done
run llm-tok
expect_rc 2 "no subcommand"
expect_err_contains "Subcommands:"

# A closed pipe (`| head`) stops the command quietly, with SIGPIPE's status: no error and no
# final progress line (which says the work is done). LLMKIT_PROGRESS_SECONDS=0 makes a progress
# line due at every batch, so the final one would always be drawn, whatever the machine's load;
# progress lines of batches written before the reader left may come or not, as timing decides.
for i in 1 2 3 4 5 6 7 8; do cat docs.jsonl; done > many.jsonl
progress_line='^llm-tok encode: [0-9]+ documents, [0-9.]+ [kMGTP]?B, [0-9.]+ [kMGTP]?B/s(, [0-9]+%, ETA [0-9]+m[0-9]+s)?$'
for interval in 0 5; do
  LLMKIT_PROGRESS_SECONDS=$interval llm-tok encode -m tok.model --output-format ids many.jsonl 2>pipe.err | head -1 > /dev/null
  expect_eq "${PIPESTATUS[0]}" "141" "status after the reader left (progress every $interval s)"
  expect_eq "$(grep -v -E "$progress_line" pipe.err)" "" "nothing but progress lines on stderr after the reader left ($interval s)"
done
# The same setting without a closed pipe: progress lines and the final one, ending in the time.
LLMKIT_PROGRESS_SECONDS=0 run llm-tok encode -m tok.model --output-format ids -o many.ids many.jsonl
expect_rc 0 "encode with a progress line at every batch"
periodic=$(grep -c -E "$progress_line" "$T/err")
final=$(tail -1 "$T/err" | grep -c -E '^llm-tok encode: [0-9]+ documents, [^,]+, [^,]+/s, [0-9.]+ s$')
expect_eq "$([ "$periodic" -ge 1 ] && echo yes) $final" "yes 1" "periodic lines, then the final one"
# Input of the wrong kind: named, with what to run first; nothing is written.
run llm-tok encode -m tok.model -o wrong "$DATA/warc/sample.warc.gz"
expect_rc 1 "encode a WARC file"
expect_err_contains "llm-tok: $DATA/warc/sample.warc.gz: a WARC file (gzip-compressed), not JSONL documents: run llm-clean on it first"
expect_eq "$(ls wrong 2>/dev/null | wc -l)" "0" "no shards from a WARC file"
run llm-tok train -o wrong.model --vocab-size 300 "$DATA/warc/sample.warc.gz"
expect_rc 1 "train on a WARC file"; expect_no_file wrong.model
expect_err_contains "a WARC file (gzip-compressed), not JSONL documents"
run llm-tok train -o wrong.model --vocab-size 300 --sample 0 docs.jsonl "$DATA/html/article.html"
expect_rc 1 "train on JSONL, then HTML"; expect_no_file wrong.model
expect_err_contains "article.html: an HTML or XML file, not JSONL documents: run llm-clean on it first"
run llm-tok encode -m tok.model --output-format ids shards/train-00000.tok
expect_rc 1 "encode a shard"; expect_out_empty
expect_err_contains "train-00000.tok: an llmkit token shard, not JSONL documents"
# JSONL without text: said before SentencePiece's own check would stop it.
echo '{"body": "no text field"}' > notext.jsonl
run llm-tok train -o wrong.model --vocab-size 300 --sample 0 notext.jsonl
expect_rc 1 "train without text"; expect_no_file wrong.model
expect_err_contains "llm-tok: notext.jsonl: no text to train on: 0 documents, 1 malformed lines skipped (give JSONL documents with a \"text\" string field)"

# Outputs are checked before the work: a directory where the model file goes, a file where the
# shard directory goes, a missing directory.
mkdir -p outdir
run llm-tok train -o outdir --vocab-size 300 docs.jsonl
expect_rc 1 "train -o DIR"
expect_err_contains "llm-tok: outdir: -o: is a directory; give the name of the file to write"
expect_err_lacks "training on"
run llm-tok train -o nowhere/tok.model --vocab-size 300 docs.jsonl
expect_rc 1 "train -o into a missing directory"
expect_err_contains "llm-tok: nowhere: -o: cannot write nowhere/tok.model here: No such file or directory"
run llm-tok encode -m tok.model -o docs.jsonl docs.jsonl
expect_rc 1 "encode -o FILE"
expect_err_contains "llm-tok: docs.jsonl: -o: exists and is not a directory"
run llm-tok decode -m tok.model -o outdir shards/train-00000.tok
expect_rc 1 "decode -o DIR"; expect_err_contains "outdir: -o: is a directory"
run llm-tok train -o t.model --stats outdir --vocab-size 300 docs.jsonl
expect_rc 1 "--stats DIR"; expect_no_file t.model
expect_err_contains "llm-tok: outdir: --stats: is a directory; give the name of the file to write"

# Shards of an earlier run are not mixed with new ones.
run llm-tok encode -m tok.model -o shards docs.jsonl
expect_rc 1 "encode into a directory with shards"
expect_err_contains "already holds shards"
run llm-tok train -o z.model --normalization nfd docs.jsonl
expect_rc 2 "unknown --normalization"

# WordPiece: a BERT vocab.txt (BERT's specials first, ## continuations), used by encode and
# decode like a SentencePiece model; lower-cased unless --cased, which a tokenizer_config.json
# beside the vocabulary records.
mkdir wp wpc
run llm-tok train --model-type wordpiece -o wp/vocab.txt --vocab-size 600 docs.jsonl
expect_rc 0 "train wordpiece"
expect_eq "$(head -5 wp/vocab.txt | tr '\n' ' ')" "[PAD] [UNK] [CLS] [SEP] [MASK] " "BERT's specials first"
expect_eq "$(wc -l < wp/vocab.txt)" "600" "the vocabulary size"
grep -q '^##' wp/vocab.txt && ok || fail "no ## continuation pieces"
printf '{"text": "The Value of a List"}\n{"text": "\\u4e2d\\u6587 and Caf\\u00e9, too."}\n' > wpdocs.jsonl
run llm-tok encode -m wp/vocab.txt -o wpshards wpdocs.jsonl
expect_rc 0 "encode with a vocab.txt"
run llm-tok decode -m wp/vocab.txt wpshards/train-00000.tok
expect_rc 0 "decode with a vocab.txt"
expect_out_contains "the value of a list"
expect_out_contains "cafe, too."
run llm-tok train --model-type wordpiece --cased -o wpc/vocab.txt --vocab-size 600 docs.jsonl
expect_rc 0 "train a cased wordpiece"
expect_eq "$(python3 -c "import json; print(json.load(open('wpc/tokenizer_config.json'))['do_lower_case'])")" "False" "do_lower_case"
run llm-tok encode -m wpc/vocab.txt -o wpcshards wpdocs.jsonl
run llm-tok decode -m wpc/vocab.txt wpcshards/train-00000.tok
expect_out_contains "The Value of a List"
run llm-tok train --cased -o x.model docs.jsonl
expect_rc 2 "--cased without wordpiece"

# Stats: per-language fertility from "lang".
run llm-tok stats -m tok.model --json docs.jsonl
expect_rc 0 "stats"
expect_eq "$(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['documents'], 'zh' in j['languages'], j['languages']['zh']['unit'], j['bytes_per_token'] > 1)" "$T/out")" \
          "$ndocs True character True" "stats"
finish
