# llm-sft --task classify end to end on real text: which language a passage of Debian's
# translated man pages is in. A WordPiece vocabulary and a small BERT pretrained (MLM) on the
# unlabelled passages, then fine-tuned on a few thousand labelled ones, reach high held-out
# accuracy and macro-F1; a decoder (last-token pooling) learns the same task; LoRA saves the head
# as PEFT's modules_to_save; bad rows and options are refused. Without enough translated man
# pages on the machine (a slim image drops them) the test is SKIPPED.
. "$(dirname "$0")/lib.sh"

python3 - <<'PY'
import glob, gzip, json, random, re, sys
rng = random.Random(5)
rows = {}
for lang in ["de", "fr", "it", "nl", "pt", "sv"]:
    words = []
    for p in sorted(glob.glob(f"/usr/share/man/{lang}/man*/*.gz")):
        try:
            t = gzip.open(p, "rt", errors="replace").read()
        except OSError:
            continue
        for line in t.splitlines():
            if line.startswith((".", "'")) or not line.strip():
                continue
            line = re.sub(r"\\f[BIRP]|\\f\(..|\\\(..|\\[-&e|^]|\\s[-+]?\d", " ", line)
            words += re.sub(r"\\.", " ", line).split()
    passages = [" ".join(words[i:i + rng.randint(12, 30)]) for i in range(0, len(words) - 30, 30)]
    rng.shuffle(passages)  # from every page of the language, not the first few
    if len(passages) >= 1500:
        rows[lang] = passages
langs = sorted(rows)[:6]
if len(langs) < 4:
    open("skip", "w").write(f"translated man pages in {len(langs)} languages")
    sys.exit(0)
labelled = [{"text": t, "label": l} for l in langs for t in rows[l][:600]]
rng.shuffle(labelled)
with open("train.jsonl", "w") as f:
    for r in labelled[:len(labelled) * 5 // 6]: f.write(json.dumps(r, ensure_ascii=False) + "\n")
with open("val.jsonl", "w") as f:
    for r in labelled[len(labelled) * 5 // 6:]: f.write(json.dumps(r, ensure_ascii=False) + "\n")
with open("docs.jsonl", "w") as f:  # the rest, unlabelled: the pretraining text
    for l in langs:
        for t in rows[l][600:2600]: f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
PY
if [ -f skip ]; then
  echo "SKIPPED: $(cat skip) (need 4 with 1500 passages)"
  exit 77
fi
run llm-tok train --model-type wordpiece -o vocab.txt --vocab-size 2000 docs.jsonl
expect_rc 0 "wordpiece vocabulary"
run llm-tok encode -m vocab.txt --val-fraction 0.05 -o shards docs.jsonl
cat > bert.json <<'JSON'
{"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 2000, "hidden_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256, "max_position_embeddings": 64}
JSON
run llm-pretrain --model bert.json --objective mlm --tokenizer vocab.txt --train shards/train-00000.tok --seq-len 64 \
  --micro-batch 32 --lr 2e-3 --warmup 30 --steps 300 --threads 2 --out mlm
expect_rc 0 "mlm pretraining"

tune="--data train.jsonl --val val.jsonl --seq-len 48 --micro-batch 32 --epochs 2 --lr 2e-3 --eval-every 1000 --threads 2"
# Six epochs for the BERT: after 300 MLM steps the tiny encoder is barely past unigram statistics
# and its [CLS] head learns slowly; two epochs reach 0.91 on one CPU and 0.56 on another (the
# rounding of the matrix products differs), six reach 0.9 on both.
run llm-sft --task classify --init mlm $(echo $tune | sed 's/--epochs 2/--epochs 6/') --out cls
expect_rc 0 "classification fine-tune"
expect_err_contains "a new [CLS] (pooler, classifier) head"
expect_eq "$(python3 - <<'PY'
import json
v = [json.loads(l) for l in open("cls/metrics.jsonl") if "val_accuracy" in l][-1]
steps = [json.loads(l) for l in open("cls/metrics.jsonl") if '"loss"' in l]
print(f"BERT classifier: val_accuracy {v['val_accuracy']:.4f} val_macro_f1 {v['val_macro_f1']:.4f}", file=open("figures", "a"))
print(v["val_accuracy"] > 0.8, v["val_macro_f1"] > 0.7, "accuracy" in steps[-1], steps[-1]["loss"] < steps[0]["loss"])
PY
)" "True True True True" "held-out accuracy and macro-F1 of the language classifier"
last=$(cat cls/latest)
expect_eq "$(json cls/$last/config.json 'j["architectures"][0], j["num_labels"], len(j["id2label"]), j["label2id"][j["id2label"]["0"]]')" \
  "BertForSequenceClassification $(python3 -c "import json; print(len({json.loads(l)['label'] for l in open('train.jsonl')}))") $(python3 -c "import json; print(len({json.loads(l)['label'] for l in open('train.jsonl')}))") 0" \
  "config.json: BertForSequenceClassification with the languages as labels"
expect_eq "$(python3 - cls/$last/model.safetensors <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n, = struct.unpack_from("<Q", b, 0)
h = json.loads(b[8:8 + n])
print(h["bert.pooler.dense.weight"]["shape"], h["classifier.weight"]["shape"][1], "cls.predictions.bias" in h)
PY
)" "[64, 64] 64 False" "the pooler and classifier, no MLM head"

cmp -s vocab.txt cls/$last/vocab.txt && ok || fail "the classifier's vocab.txt"
expect_eq "$(json cls/$last/tokenizer_config.json 'j["tokenizer_class"]')" "BertTokenizer" "the classifier's tokenizer_config.json"

# llm-eval classify: the same predictions on the held-out rows (padded to each batch's longest
# row instead of --seq-len: BERT keeps the padding out of its attention), logged per row.
run llm-eval classify --model cls --log-samples pred.jsonl val.jsonl
expect_rc 0 "llm-eval classify"
cp "$T/out" eval.json
expect_eq "$(python3 - <<'PY'
import json
e = json.load(open("eval.json"))
v = [json.loads(l) for l in open("cls/metrics.jsonl") if "val_accuracy" in l][-1]
rows = [json.loads(l) for l in open("pred.jsonl")]
print(abs(e["metrics"]["accuracy"]["value"] - v["val_accuracy"]) < 1e-6, abs(e["metrics"]["macro_f1"]["value"] - v["val_macro_f1"]) < 1e-6,
      len(rows) == e["examples"], sum(map(sum, e["confusion"])) == e["labelled"], abs(sum(rows[0]["probabilities"]) - 1) < 1e-6)
PY
)" "True True True True True" "llm-eval classify reproduces the validation figures"
run llm-eval ppl --model cls val.jsonl
expect_rc 2 "ppl of a classifier"; expect_err_contains "evaluate it with llm-eval classify"

# A decoder classifies on its last token: a llama-tiny pretrained a little on the same text.
run llm-tok train -o sp.model --vocab-size 1000 docs.jsonl
run llm-tok encode -m sp.model -o spshards docs.jsonl
run llm-pretrain --model llama-tiny --tokenizer sp.model --train spshards/train-00000.tok --seq-len 64 --micro-batch 16 \
  --lr 3e-3 --warmup 5 --steps 40 --threads 2 --out lm
expect_rc 0 "decoder pretraining"
run llm-sft --task classify --init lm $tune --out dcls
expect_rc 0 "decoder classification"
expect_err_contains "a new last-token score head"
expect_eq "$(python3 -c "
import json
v = [json.loads(l) for l in open('dcls/metrics.jsonl') if 'val_accuracy' in l][-1]
print(f\"decoder classifier: val_accuracy {v['val_accuracy']:.4f} val_macro_f1 {v['val_macro_f1']:.4f}\", file=open('figures', 'a'))
print(v['val_accuracy'] > 0.6)")" "True" "the decoder's held-out accuracy"
expect_eq "$(json dcls/$(cat dcls/latest)/config.json 'j["architectures"][0]')" "LlamaForSequenceClassification" "decoder config.json"
run llm-eval classify --model dcls val.jsonl
expect_rc 0 "llm-eval classify, a decoder"
cp "$T/out" deval.json
expect_eq "$(python3 -c "
import json
e = json.load(open('deval.json'))
v = [json.loads(l) for l in open('dcls/metrics.jsonl') if 'val_accuracy' in l][-1]
print(abs(e['metrics']['accuracy']['value'] - v['val_accuracy']) < 1e-6)")" "True" "the decoder's figures reproduced"

# LoRA: the adapters and the whole head (PEFT's modules_to_save), resumed the same way.
run llm-sft --task classify --init mlm $tune --lora-rank 4 --out lora
expect_rc 0 "LoRA classification"
expect_eq "$(json lora/$(cat lora/latest)/adapter_config.json 'j["task_type"], j["modules_to_save"]')" "SEQ_CLS ['classifier', 'pooler']" "adapter_config.json"
lora_weights=$(sed -n 's/.*memory per rank: weights \([0-9.]*\) MiB.*/\1/p' "$T/err")
# QLoRA: the encoder's matrices held as NF4 blocks under the adapters (the embeddings stay fp32).
run llm-sft --task classify --init mlm $(echo $tune | sed 's/--epochs 2/--steps 10/') --lora-rank 4 --qlora nf4 --out qlora
expect_rc 0 "QLoRA classification"
expect_err_contains "QLoRA: the base's matrices held as nf4 blocks"
qlora_weights=$(sed -n 's/.*memory per rank: weights \([0-9.]*\) MiB.*/\1/p' "$T/err")
expect_eq "$(python3 -c "print($qlora_weights < 0.8 * $lora_weights)")" "True" "NF4 weights ($qlora_weights MiB) below fp32's ($lora_weights MiB)"
echo "QLoRA NF4: weights $qlora_weights MiB, LoRA on fp32: $lora_weights MiB" >> figures

# Refusals.
printf '{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n' > one.jsonl
run llm-sft --task classify --init mlm --data one.jsonl --out r1 --steps 1
expect_rc 1 "one label"; expect_err_contains "1 distinct label(s)"
run llm-sft --task classify --init mlm $tune --packing --out r2
expect_rc 2 "--packing"
run llm-sft --task nli --init mlm $tune --out r3
expect_rc 2 "unknown task"
printf '{"text": "a", "label": "de"}\n{"text": "b", "label": 3.5}\n{"text": "c"}\n{"text": "d", "label": "fr"}\n' > bad.jsonl
run llm-sft --task classify --init mlm --data bad.jsonl --out r4 --steps 1 --seq-len 16
expect_rc 0 "malformed rows skipped"
expect_err_contains "bad.jsonl:2"
expect_err_contains "bad.jsonl:3"
run llm-sft --task classify --init mlm --data bad.jsonl --out r5 --steps 1 --seq-len 16 --strict
expect_rc 1 "--strict"
echo "figures (6 languages, $(wc -l < train.jsonl) training rows, $(wc -l < val.jsonl) held out):"
cat figures
finish
