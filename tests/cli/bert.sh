# BERT end to end on real text (Debian's licence texts): a WordPiece vocabulary, shards,
# llm-pretrain --objective mlm learns masked tokens well above the majority (unigram) baseline,
# llm-eval mlm reproduces its validation figures exactly, a resumed run gives the same losses,
# the checkpoint is BertForMaskedLM's, and the wrong model or objective is refused.
. "$(dirname "$0")/lib.sh"

licence_docs docs.jsonl
[ "$(wc -l < docs.jsonl)" -gt 300 ] && ok || fail "too little licence text in /usr/share/common-licenses"
run llm-tok train --model-type wordpiece -o vocab.txt --vocab-size 1000 docs.jsonl
expect_rc 0 "wordpiece vocabulary"
run llm-tok encode -m vocab.txt --val-fraction 0.1 -o shards docs.jsonl
expect_rc 0 "shards"
cat > bert.json <<'JSON'
{"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 1000, "hidden_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256, "max_position_embeddings": 64,
 "type_vocab_size": 2}
JSON
common="--model bert.json --objective mlm --tokenizer vocab.txt --train shards/train-00000.tok --val shards/val-00000.tok --seq-len 64 --micro-batch 32 --lr 2e-3 --warmup 30 --threads 2"
run llm-pretrain $common --steps 500 --eval-every 250 --sample-every 250 --out a
expect_rc 0 "mlm pretraining"
expect_eq "$(grep -c 'masked [0-9]*, restored [0-9]*:' "$T/err")" "2" "fill-mask samples"
expect_eq "$(json a/step-00000500/config.json 'j["architectures"][0], j["model_type"], j["hidden_act"], j["type_vocab_size"]')" \
  "BertForMaskedLM bert gelu 2" "config.json"
# The vocabulary as transformers' BertTokenizer reads it: vocab.txt and its tokenizer_config.json.
cmp -s vocab.txt a/step-00000500/vocab.txt && ok || fail "vocab.txt in the checkpoint"
expect_no_file a/step-00000500/tokenizer.model
expect_eq "$(json a/step-00000500/tokenizer_config.json 'j["tokenizer_class"], j["do_lower_case"], j["mask_token"], j["model_max_length"]')" \
  "BertTokenizer True [MASK] 64" "tokenizer_config.json"
expect_eq "$(python3 - a/step-00000500/model.safetensors <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n, = struct.unpack_from("<Q", b, 0)
h = json.loads(b[8:8 + n])
h.pop("__metadata__", None)
print(h["bert.embeddings.word_embeddings.weight"]["shape"], h["cls.predictions.bias"]["shape"],
      h["bert.encoder.layer.1.output.LayerNorm.weight"]["shape"], h["bert.embeddings.token_type_embeddings.weight"]["shape"], len(h))
PY
)" "[1000, 64] [1000] [64] [2, 64] 42" "model.safetensors: BertForMaskedLM's names"

# llm-eval mlm on the validation shard: the same masks (seed 0, step 0's draws) and windows as
# llm-pretrain's evaluation, so the same loss and accuracy; well above always guessing the most
# frequent masked token.
run llm-eval mlm --model a shards/val-00000.tok
expect_rc 0 "llm-eval mlm"
cp "$T/out" eval.json
expect_eq "$(python3 - <<'PY'
import json
e = json.load(open("eval.json"))
v = [json.loads(l) for l in open("a/metrics.jsonl") if "val_accuracy" in l][-1]
m = e["metrics"]
acc, base = m["masked_accuracy"]["value"], m["majority_accuracy"]["value"]
print(f"MLM, 500 steps: masked_accuracy {acc:.4f} (majority baseline {base:.4f}), masked_loss {m['masked_loss']['value']:.4f}, "
      f"pseudo_perplexity {m['pseudo_perplexity']['value']:.1f}", file=open("figures", "a"))
print(abs(acc - v["val_accuracy"]) < 1e-6, abs(m["masked_loss"]["value"] - v["val_loss"]) < 1e-5,
      acc > 1.6 * base, 1 < m["pseudo_perplexity"]["value"] < 1000, e["seq_len"])
PY
)" "True True True True 64" "masked accuracy above the majority baseline, as llm-pretrain measured it"
run llm-eval mlm --model a --limit 5 --format text docs.jsonl
expect_rc 0 "llm-eval mlm on JSONL"
expect_out_contains "pseudo_perplexity"

# Stopped after 6 steps and resumed: the masks are drawn from (seed, step, row), so the same losses.
run llm-pretrain $common --steps 12 --save-every 6 --out full
run llm-pretrain $common --steps 6 --save-every 6 --out half
run llm-pretrain $common --steps 12 --save-every 6 --out half --resume
expect_rc 0 "resume"
losses() { python3 -c "import json,sys; print(' '.join(str(json.loads(l)['loss']) for l in open(sys.argv[1]) if '\"loss\"' in l))" "$1"; }
expect_eq "$(losses half/metrics.jsonl)" "$(losses full/metrics.jsonl)" "losses after --resume"
cmp -s full/step-00000012/model.safetensors half/step-00000012/model.safetensors && ok || fail "weights differ after resume"

# Next-sentence prediction beside MLM (BertForPreTraining): [CLS] A [SEP] B [SEP] rows, the NSP
# head's loss and accuracy logged, its tensors in the checkpoint, the same losses after a resume.
run llm-pretrain $common --nsp --steps 12 --eval-every 12 --save-every 6 --out nsp
expect_rc 0 "--nsp"
expect_eq "$(python3 - <<'PY'
import json, struct
rows = [json.loads(l) for l in open("nsp/metrics.jsonl")]
step = [r for r in rows if "nsp_loss" in r][-1]
val = [r for r in rows if "val_nsp_accuracy" in r][-1]
b = open("nsp/step-00000012/model.safetensors", "rb").read()
n, = struct.unpack_from("<Q", b, 0)
h = json.loads(b[8:8 + n])
print(abs(step["loss"] - step["mlm_loss"] - step["nsp_loss"]) < 1e-4, 0.4 < step["nsp_loss"] < 1.5, 0 <= val["val_nsp_accuracy"] <= 1,
      h["cls.seq_relationship.weight"]["shape"], "bert.pooler.dense.weight" in h, "cls.predictions.bias" in h)
PY
)" "True True True [2, 64] True True" "NSP metrics and BertForPreTraining's tensors"
expect_eq "$(json nsp/step-00000012/config.json 'j["architectures"][0]')" "BertForPreTraining" "config.json with --nsp"
run llm-pretrain $common --nsp --steps 6 --save-every 6 --out nsp2
run llm-pretrain $common --nsp --steps 12 --eval-every 12 --save-every 6 --out nsp2 --resume
expect_rc 0 "--nsp resumed"
expect_eq "$(losses nsp2/metrics.jsonl)" "$(losses nsp/metrics.jsonl)" "NSP losses after --resume"
# The NSP head learns where the pairs tell: documents each on one of 20 topics (words of their
# own), so that a B from another window is mostly off A's topic.
python3 - <<'PY'
import json, random
rng = random.Random(1)
topics = [[f"t{k}w{j}" for j in range(30)] for k in range(20)]
with open("topics.jsonl", "w") as f:
    for i in range(300):
        t = topics[rng.randrange(20)]
        f.write(json.dumps({"text": " ".join(rng.choice(t) for _ in range(400))}) + "\n")
PY
run llm-tok train --model-type wordpiece -o tvocab.txt --vocab-size 800 topics.jsonl
run llm-tok encode -m tvocab.txt --val-fraction 0.1 -o tshards topics.jsonl
sed 's/"vocab_size": 1000/"vocab_size": 800/' bert.json > tbert.json
run llm-pretrain --model tbert.json --objective mlm --nsp --tokenizer tvocab.txt --train tshards/train-00000.tok \
  --val tshards/val-00000.tok --seq-len 64 --micro-batch 32 --lr 2e-3 --warmup 30 --steps 400 --eval-every 400 --threads 2 --out tnsp
expect_rc 0 "--nsp on topical documents"
expect_eq "$(python3 -c "
import json
v = [json.loads(l) for l in open('tnsp/metrics.jsonl') if 'val_nsp_accuracy' in l][-1]
print(f\"NSP on topical documents, 400 steps: val_nsp_accuracy {v['val_nsp_accuracy']:.4f}\", file=open('figures', 'a'))
print(v['val_nsp_accuracy'] > 0.75)")" "True" "next-sentence accuracy well above chance"
run llm-pretrain $common --steps 14 --out nsp --resume
expect_rc 2 "resuming an NSP run without --nsp"; expect_err_contains "the model has a next-sentence head: give --nsp"
run llm-eval mlm --model nsp --limit 3 shards/val-00000.tok
expect_rc 0 "llm-eval mlm on a BertForPreTraining checkpoint"

run llm-pretrain $common --whole-word --mlm-probability 0.2 --steps 4 --eval-every 4 --out ww
expect_rc 0 "--whole-word"
expect_eq "$(python3 -c "
import json
v = [json.loads(l) for l in open('ww/metrics.jsonl') if 'val_accuracy' in l][-1]
print(0 <= v['val_accuracy'] <= 1)")" "True" "whole-word masking's evaluation"
run llm-pretrain $common --mlm-probability 1.5 --steps 1 --out ww2
expect_rc 2 "--mlm-probability outside (0, 1)"

# Refusals: the objective must fit the model; MLM needs the vocabulary; an encoder does not
# take the decoders' evaluations.
run llm-pretrain --model llama-tiny --objective mlm --tokenizer vocab.txt --train shards/train-00000.tok --out r1 --steps 1
expect_rc 2 "mlm on a decoder"; expect_err_contains "--objective mlm trains an encoder"
run llm-pretrain --model bert.json --train shards/train-00000.tok --out r2 --steps 1
expect_rc 2 "a BERT on next tokens"; expect_err_contains "a BERT encoder trains with --objective mlm"
run llm-pretrain --model bert.json --objective mlm --train shards/train-00000.tok --out r3 --steps 1
expect_rc 2 "mlm without the vocabulary"; expect_err_contains "needs --tokenizer"
run llm-pretrain $common --objective nsp --out r4 --steps 1
expect_rc 2 "unknown objective"
run llm-eval ppl --model a shards/val-00000.tok
expect_rc 2 "ppl of an encoder"; expect_err_contains "score it with llm-eval mlm"
echo '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}' > chat.jsonl
run llm-sft --init a --data chat.jsonl --out r5 --steps 1
expect_rc 2 "llm-sft on an encoder"; expect_err_contains "is a BERT encoder: tuning on next tokens needs a decoder"
run llm-quant --model a --type q8_0 -o a.gguf
expect_rc 2 "GGUF of an encoder"; expect_no_file a.gguf
echo "figures:"
cat figures
finish
