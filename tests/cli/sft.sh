# llm-sft end to end on a model llm-pretrain made: the masks a person checks, full fine-tuning
# and LoRA (PEFT's files and names, packing, dropout), loss falling, metrics and validation,
# --stop-at/--resume bit for bit, llm-sft merge and llm-eval on the adapter, distillation (KL from
# itself 0, JSD falling, another tokenizer refused), bad input refused.
. "$(dirname "$0")/lib.sh"

python3 - <<'PY'
import json, random
rng = random.Random(1)
words = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "red", "blue", "ran", "to", "house", "tree"]
with open("docs.jsonl", "w") as f:
    for i in range(300):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))}) + "\n")
with open("chat.jsonl", "w") as f, open("val.jsonl", "w") as g:
    for i in range(240):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        row = {"messages": [{"role": "user", "content": f"add {a} and {b}"}, {"role": "assistant", "content": f"{a + b}"}],
               "source": "sums"}
        (g if i % 8 == 0 else f).write(json.dumps(row) + "\n")
with open("mixed.jsonl", "w") as f:
    f.write(json.dumps({"prompt": "add 1 and 2 ", "completion": "3"}) + "\n")
    f.write("{not json\n")
    f.write(json.dumps({"messages": [{"role": "user", "content": "add 2 and 2"}]}) + "\n")
    f.write(json.dumps({"text": "the cat sat on the mat"}) + "\n")
    f.write(json.dumps({"prompt": [{"role": "user", "content": "add 4 and 4"}], "completion": [{"role": "assistant", "content": "8"}]}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 --special '<|im_start|>,<|im_end|>' docs.jsonl
expect_rc 0 "tokenizer with ChatML's markers"
run llm-tok train -o plain.model --vocab-size 300 docs.jsonl
run llm-tok encode -m tok.model -o shards docs.jsonl
run llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 64 \
  --micro-batch 8 --steps 12 --lr 3e-3 --warmup 2 --eval-every 0 --threads 2
expect_rc 0 "the base model"

# The masks, for a person: the assistant's answer and its end marker, nothing of the headers.
run llm-sft --init base --data chat.jsonl --show-masks 2
expect_rc 0 "--show-masks"
expect_out_contains "== chat.jsonl:1:"
expect_out_contains "<|im_start|>assistant"
expect_eq "$(grep -c '^\[\[[0-9]*<|im_end|>\]\]$' "$T/out")" "2" "two marked answers"
expect_out_lacks "[[<|im_start|>"

common="--init base --data chat.jsonl --seq-len 64 --micro-batch 4 --batch-size 16 --threads 2"
run llm-sft $common --val val.jsonl --out full --lr 2e-3 --epochs 2 --eval-every 5
expect_rc 0 "full fine-tuning, 2 epochs"
expect_err_contains "210 examples in 210 rows (one a row"
expect_eq "$(python3 -c "
import json
rows = [json.loads(l) for l in open('full/metrics.jsonl')]
steps = [r for r in rows if 'loss' in r]
val = [r for r in rows if 'val_loss' in r]
print(len(steps), sorted(set(steps[0]) - {'step','loss','lr','grad_norm','tokens','tokens_per_sec','mfu','peak_rss'}),
      steps[-1]['loss'] < steps[0]['loss'] / 2, steps[-1]['epoch'] >= 2, 0 <= steps[-1]['mean_token_accuracy'] <= 1,
      len(val) == 6, 'val_mean_token_accuracy' in val[-1], val[-1]['val_loss'] < val[0]['val_loss'])")" \
  "27 ['epoch', 'mean_token_accuracy', 'trained_tokens'] True True True True True True" "metrics"
expect_eq "$(ls full/step-00000027 | tr '\n' ' ')" \
  "config.json model.safetensors optimizer.safetensors tokenizer.model tokenizer_config.json trainer_state.json " "a full checkpoint"
expect_eq "$(json full/step-00000027/tokenizer_config.json 'j["llmkit_chat_template"], j["eos_token"], "<|im_start|>" in j["chat_template"]')" \
  "chatml </s> True" "the chat template recorded"

# LoRA with packing and dropout: PEFT's files, only the adapters trained.
lora="--lora-rank 4 --lora-alpha 8 --lora-dropout 0.1 --packing --lr 3e-3"
run llm-sft $common $lora --steps 8 --eval-every 0 --out lora
expect_rc 0 "LoRA"
expect_err_contains "LoRA rank 4"
expect_err_contains "packed"
expect_eq "$(ls lora/step-00000008 | tr '\n' ' ')" \
  "adapter_config.json adapter_model.safetensors config.json llmkit_base.json optimizer.safetensors tokenizer.model tokenizer_config.json trainer_state.json " \
  "an adapter checkpoint, no copy of the base"
expect_eq "$(json lora/step-00000008/adapter_config.json 'j["peft_type"], j["r"], j["lora_alpha"], j["lora_dropout"], j["target_modules"], j["base_model_name_or_path"].endswith("base/step-00000012")')" \
  "LORA 4 8.0 0.1 all-linear True" "adapter_config.json"
python3 - lora/step-00000008/adapter_model.safetensors > names.txt <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
for k in sorted(h):
    if k != "__metadata__": print(k, h[k]["dtype"], h[k]["shape"])
PY
expect_eq "$(wc -l < names.txt)" "56" "4 layers x 7 modules x (A, B)"
expect_eq "$(grep -c '^base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight F32 \[4, 128\]$' names.txt)" "1" "PEFT's name and shape of A"
expect_eq "$(grep -c '^base_model.model.model.layers.0.mlp.down_proj.lora_B.weight F32 \[128, 4\]$' names.txt)" "1" "PEFT's name and shape of B"
expect_eq "$(grep -c '^base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight F32 \[4, 128\]$' names.txt)" "1" "the MLP's too"

# Stopped and resumed: the same losses, bit for bit (LoRA, dropout, packing).
run llm-sft $common $lora --steps 8 --eval-every 0 --out lora2 --stop-at 3
expect_rc 0 "--stop-at 3"
run llm-sft $common $lora --steps 8 --eval-every 0 --out lora2 --resume
expect_rc 0 "--resume"
losses() { python3 -c "import json,sys; print(' '.join(repr(r['loss']) for r in map(json.loads, open(sys.argv[1])) if 'loss' in r))" "$1"; }
expect_eq "$(losses lora2/metrics.jsonl)" "$(losses lora/metrics.jsonl)" "losses after --resume"
cmp -s lora/step-00000008/adapter_model.safetensors lora2/step-00000008/adapter_model.safetensors && ok || fail "adapters differ after --resume"

# QLoRA: the same adapters trained on the base held in Q4_0 blocks (dequantized in the
# forward); the adapter is saved against the original base, and the losses stay near the fp32
# base's; stopped and resumed, the same losses bit for bit.
run llm-sft $common $lora --qlora q4_0 --steps 8 --eval-every 0 --out qlora
expect_rc 0 "QLoRA"
expect_err_contains "QLoRA: the base's matrices held as q4_0 blocks"
expect_eq "$(json qlora/step-00000008/adapter_config.json 'j["base_model_name_or_path"].endswith("base/step-00000012")')" "True" \
  "the QLoRA adapter names the fp32 base"
expect_eq "$(python3 -c "
import json, sys
f = lambda p: [r['loss'] for r in map(json.loads, open(p)) if 'loss' in r]
a, b = f('lora/metrics.jsonl'), f('qlora/metrics.jsonl')
print(len(a) == len(b), b[-1] < b[0], max(abs(x - y) / y for x, y in zip(a, b)) < 0.05)")" "True True True" \
  "QLoRA's losses fall and stay within 5% of LoRA's on the fp32 base"
run llm-sft $common $lora --qlora nf4 --steps 8 --eval-every 0 --out qlora-nf4
expect_rc 0 "QLoRA on NF4"
expect_err_contains "QLoRA: the base's matrices held as nf4 blocks"
expect_eq "$(python3 -c "
import json
f = lambda p: [r['loss'] for r in map(json.loads, open(p)) if 'loss' in r]
a, b = f('lora/metrics.jsonl'), f('qlora-nf4/metrics.jsonl')
print(len(a) == len(b), b[-1] < b[0], max(abs(x - y) / y for x, y in zip(a, b)) < 0.05)")" "True True True" \
  "QLoRA on NF4: losses fall and stay within 5% of LoRA's on the fp32 base"
run llm-sft $common $lora --qlora q4_0 --steps 8 --eval-every 0 --out qlora2 --stop-at 3
run llm-sft $common $lora --qlora q4_0 --steps 8 --eval-every 0 --out qlora2 --resume
expect_rc 0 "QLoRA --resume"
expect_eq "$(losses qlora2/metrics.jsonl)" "$(losses qlora/metrics.jsonl)" "QLoRA losses after --resume"
run llm-sft $common --qlora q4_0 --steps 1 --out qbad
expect_rc 2 "--qlora without --lora-rank"
expect_err_contains "--qlora needs --lora-rank"
run llm-sft $common --lora-rank 4 --qlora f16 --steps 1 --out qbad
expect_rc 2 "--qlora f16"
expect_err_contains "a quantized type"

# Merged, and the adapter read by llm-eval, give the same model.
run llm-sft merge lora -o merged
expect_rc 0 "merge"
expect_eq "$(ls merged | tr '\n' ' ')" "config.json model.safetensors tokenizer.model tokenizer_config.json " "a plain checkpoint"
run llm-eval ppl --model lora --seq-len 32 -o a.json shards/train-00000.tok
expect_rc 0 "llm-eval on an adapter run"
run llm-eval ppl --model merged --seq-len 32 -o m.json shards/train-00000.tok
expect_eq "$(json a.json 'round(j["metrics"]["loss"]["value"], 6)')" "$(json m.json 'round(j["metrics"]["loss"]["value"], 6)')" "adapter and merged"
run llm-eval ppl --model base --seq-len 32 -o b.json shards/train-00000.tok
[ "$(json a.json 'j["metrics"]["loss"]["value"]')" != "$(json b.json 'j["metrics"]["loss"]["value"]')" ] && ok || fail "the adapter changes nothing"
# An adapter of another base is refused.
cp -r lora/step-00000008 moved
python3 -c "
import json; p = 'moved/adapter_config.json'; j = json.load(open(p)); j['base_model_name_or_path'] = '$T/full/step-00000027'; json.dump(j, open(p, 'w'))"
run llm-eval ppl --model moved --seq-len 32 shards/train-00000.tok
expect_rc 1 "an adapter on another base"
expect_err_contains "was trained on another base than $T/full/step-00000027"

# Distillation. The student is its teacher at step 0: the divergence is 0 before the first update.
run llm-sft $common --teacher base --kd-temperature 2 --steps 2 --lr 1e-3 --eval-every 0 --out kd0
expect_rc 0 "distillation from itself"
expect_err_contains "teacher base: "
expect_err_contains "MiB, other models "
expect_err_contains "memory per rank: weights "
expect_eq "$(python3 -c "
import json
s = [r for r in map(json.loads, open('kd0/metrics.jsonl')) if 'loss' in r]
print(abs(s[0]['kd_loss']) < 1e-6, abs(s[0]['loss'] - 0.5 * s[0]['nll']) < 1e-6, s[1]['kd_loss'] > 1e-6, s[0]['nll'] > 1)")" \
  "True True True True" "KL from itself: 0, then not"
# From the fine-tuned model into LoRA adapters on the base: the divergence falls.
run llm-sft $common --teacher full --kd-loss jsd --kd-beta 0.3 --kd-alpha 0.8 --lora-rank 8 --lr 1e-2 --steps 10 \
  --eval-every 0 --out kd
expect_rc 0 "distillation into LoRA, generalised JSD"
expect_eq "$(python3 -c "
import json
s = [r for r in map(json.loads, open('kd/metrics.jsonl')) if 'loss' in r]
print(s[-1]['kd_loss'] < 0.75 * s[0]['kd_loss'], abs(s[0]['loss'] - (0.2 * s[0]['nll'] + 0.8 * s[0]['kd_loss'])) < 1e-6 * s[0]['loss'])")" \
  "True True" "the divergence falls; the loss mixes NLL and divergence"
cp -r full/step-00000027 other-tok
cp plain.model other-tok/tokenizer.model
run llm-sft $common --teacher other-tok --steps 1 --out kdbad
expect_rc 1 "a teacher with another tokenizer"
expect_err_contains "other-tok: has another tokenizer than the student's"
run llm-sft $common --kd-alpha 0.3 --steps 1 --out kdbad2
expect_rc 2 "--kd-alpha without --teacher"
run llm-sft $common --teacher base --kd-loss mse --steps 1 --out kdbad3
expect_rc 2 "an unknown --kd-loss"

# Rows of every kind; malformed ones skipped and named, or --strict.
run llm-sft --init base --data mixed.jsonl --seq-len 64 --micro-batch 2 --steps 1 --out mixed --stats mixed.json
expect_rc 0 "mixed rows"
expect_err_contains "mixed.jsonl:2: invalid JSON"
expect_err_contains "mixed.jsonl:3: nothing to train: no assistant message: skipped (--strict stops instead)"
expect_eq "$(json mixed.json 'j["counters"]["examples"], j["drops"]["malformed"]')" "3 2" "three examples, two rows skipped"
run llm-sft --init base --data mixed.jsonl --seq-len 64 --steps 1 --out strict --strict
expect_rc 1 "--strict"
expect_err_contains "llm-sft: mixed.jsonl:2: invalid JSON"
run llm-sft --init base --data mixed.jsonl --seq-len 8 --steps 1 --out long --no-truncate
expect_rc 1 "--no-truncate"
expect_err_contains "llm-sft: mixed.jsonl:1: "
expect_err_contains "tokens, more than --seq-len 8 + 1"
run llm-sft --init shards/train-00000.tok --data chat.jsonl --out badinit
expect_rc 1 "--init a file"
expect_err_contains "is not a checkpoint directory"
: > empty.jsonl
run llm-sft --init base --data empty.jsonl --seq-len 64 --out e
expect_rc 1 "empty data"
expect_err_contains "empty.jsonl: no example to train on"
run llm-sft --init base --tokenizer plain.model --data chat.jsonl --seq-len 64 --out p
expect_rc 1 "a tokenizer without ChatML's markers"
expect_err_contains "plain.model: does not hold the chatml template's markers <|im_start|>,<|im_end|> as single tokens: train the tokenizer with llm-tok train --special '<|im_start|>,<|im_end|>'"
run llm-sft --init lora --data chat.jsonl --out q
expect_rc 1 "an adapter as --init"
expect_err_contains "is an adapter: merge it into its base first"
run llm-sft $common --lora-rank 4 --lora-targets c_attn --out r
expect_rc 2 "a GPT-2 module on a Llama"
expect_err_contains "--lora-targets: 'c_attn' is not a linear module of a Llama model"
run llm-sft $common --steps 3 --epochs 1 --out s
expect_rc 2 "--steps and --epochs"
run llm-sft --data chat.jsonl --out t
expect_rc 2 "no --init"
run llm-sft --init base --data chat.jsonl --out u
expect_rc 2 "the default --seq-len above the model's context"
expect_err_contains "--seq-len 1024 is above the model's context of 512 positions (--seq-len's default: give one within it)"
finish
