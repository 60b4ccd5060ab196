# llm-rm end to end: a reward model from a language model llm-pretrain made (its LM head
# dropped, a score head created), trained on planted preferences (a sum over a word) to at
# least 95% held-out accuracy; Hugging Face's LlamaForSequenceClassification files; TRL's
# metric names; llm-rm score on the saved model gives the rewards the run measured; resume bit
# for bit; bad input refused.
. "$(dirname "$0")/lib.sh"

python3 - <<'PY'
import json, random
rng = random.Random(5)
words = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "red", "blue", "ran", "to", "house", "tree"]
with open("docs.jsonl", "w") as f:
    for i in range(300):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))}) + "\n")
def pair():
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return {"prompt": [{"role": "user", "content": f"add {a} and {b}"}],
            "chosen": [{"role": "assistant", "content": str(a + b)}],
            "rejected": [{"role": "assistant", "content": rng.choice(words)}]}
with open("prefs.jsonl", "w") as f, open("val.jsonl", "w") as g:
    for i in range(200): f.write(json.dumps(pair()) + "\n")
    for i in range(60): g.write(json.dumps(pair()) + "\n")
with open("texts.jsonl", "w") as f:
    f.write(json.dumps({"text": "the cat sat on the mat", "id": 1}) + "\n")
    f.write("{broken\n")
    f.write(json.dumps({"messages": [{"role": "user", "content": "add 1 and 2"}, {"role": "assistant", "content": "3"}]}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 --special '<|im_start|>,<|im_end|>' docs.jsonl
run llm-tok encode -m tok.model -o shards docs.jsonl
run llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 64 \
  --micro-batch 8 --steps 8 --lr 3e-3 --warmup 2 --eval-every 0 --threads 2
expect_rc 0 "the base model"

common="--init base --data prefs.jsonl --val val.jsonl --seq-len 64 --micro-batch 8 --batch-size 16 --threads 2 --lr 3e-3"
run llm-rm $common --out rm --steps 20 --eval-every 10 --center-rewards 0.01
expect_rc 0 "llm-rm"
expect_err_contains "a new score head; 200 pairs"
expect_eq "$(python3 -c "
import json
rows = [json.loads(l) for l in open('rm/metrics.jsonl')]
s = [r for r in rows if 'loss' in r]
v = [r for r in rows if 'val_loss' in r]
names = ['accuracy', 'margin', 'mean_reward', 'min_reward', 'max_reward']
print(len(s), all(n in s[-1] for n in names), all('val_' + n in v[-1] for n in names), s[-1]['loss'] < s[0]['loss'],
      v[-1]['val_accuracy'] >= 0.95, s[-1]['min_reward'] <= s[-1]['mean_reward'] <= s[-1]['max_reward'])")" \
  "20 True True True True True" "metrics: held-out accuracy >= 95%"
expect_eq "$(ls rm/step-00000020 | tr '\n' ' ')" \
  "config.json model.safetensors optimizer.safetensors tokenizer.model tokenizer_config.json trainer_state.json " "a checkpoint"
expect_eq "$(json rm/step-00000020/config.json 'j["architectures"], j["num_labels"]')" "['LlamaForSequenceClassification'] 1" \
  "Hugging Face's sequence classifier"
python3 - rm/step-00000020/model.safetensors > names.txt <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
for k in sorted(h):
    if k != "__metadata__": print(k, h[k]["shape"])
PY
expect_eq "$(grep -c '^score.weight \[1, 128\]$' names.txt) $(grep -c lm_head names.txt)" "1 0" "score.weight, no LM head"

# The saved model scores the validation pairs as the run did at its last evaluation.
run llm-rm score --model rm -o scored.jsonl val.jsonl
expect_rc 0 "llm-rm score"
expect_eq "$(python3 -c "
import json
rows = [json.loads(l) for l in open('scored.jsonl')]
v = [json.loads(l) for l in open('rm/metrics.jsonl') if 'val_loss' in l][-1]
acc = sum(r['chosen_reward'] > r['rejected_reward'] for r in rows) / len(rows)
margin = sum(r['chosen_reward'] - r['rejected_reward'] for r in rows) / len(rows)
print(len(rows), 'prompt' in rows[0], abs(acc - v['val_accuracy']) < 1e-6, abs(margin - v['val_margin']) < 1e-4 * max(1, abs(margin)))")" \
  "60 True True True" "the saved model's rewards are the run's"
run llm-rm score --model rm/step-00000020 texts.jsonl
expect_rc 0 "chat rows scored"
expect_err_contains "texts.jsonl:2: invalid JSON"
expect_eq "$(python3 -c "
import json, sys
rows = [json.loads(l) for l in open('$T/out')]
print(len(rows), rows[0]['id'], all(isinstance(r['reward'], float) for r in rows))")" "2 1 True" "a reward per chat row"

# Stopped and resumed: the same losses, bit for bit.
run llm-rm $common --out rm2 --steps 20 --eval-every 10 --center-rewards 0.01 --stop-at 7
run llm-rm $common --out rm2 --steps 20 --eval-every 10 --center-rewards 0.01 --resume
expect_rc 0 "--resume"
losses() { python3 -c "import json,sys; print(' '.join(repr(r['loss']) for r in map(json.loads, open(sys.argv[1])) if 'loss' in r))" "$1"; }
expect_eq "$(losses rm2/metrics.jsonl)" "$(losses rm/metrics.jsonl)" "losses after --resume"

# LoRA: the adapters and the score head (PEFT's modules_to_save) trained, saved as PEFT does;
# scored through the adapter and merged, the same rewards.
run llm-rm $common --out lora --lora-rank 8 --lr 1e-2 --steps 12 --eval-every 12
expect_rc 0 "LoRA reward model"
expect_eq "$(ls lora/step-00000012 | tr '\n' ' ')" \
  "adapter_config.json adapter_model.safetensors config.json llmkit_base.json optimizer.safetensors tokenizer.model tokenizer_config.json trainer_state.json " \
  "an adapter checkpoint, no copy of the base"
expect_eq "$(json lora/step-00000012/adapter_config.json 'j["task_type"], j["modules_to_save"]')" "SEQ_CLS ['score']" "PEFT's SEQ_CLS config"
python3 - lora/step-00000012/adapter_model.safetensors > names.txt <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
for k in sorted(h):
    if k != "__metadata__": print(k, h[k]["shape"])
PY
expect_eq "$(grep -c '^base_model.model.score.weight \[1, 128\]$' names.txt)" "1" "the score head in the adapter"
run llm-rm score --model lora -o lora.jsonl val.jsonl
expect_rc 0 "scored through the adapter"
run llm-sft merge lora -o lora-merged
expect_rc 0 "merged"
expect_eq "$(json lora-merged/config.json 'j["architectures"]')" "['LlamaForSequenceClassification']" "a merged reward model"
run llm-rm score --model lora-merged -o merged.jsonl val.jsonl
expect_eq "$(python3 -c "
import json
a = [json.loads(l) for l in open('lora.jsonl')]
b = [json.loads(l) for l in open('merged.jsonl')]
v = [json.loads(l) for l in open('lora/metrics.jsonl') if 'val_loss' in l][-1]
print(max(abs(x['chosen_reward'] - y['chosen_reward']) for x, y in zip(a, b)) < 1e-4,
      abs(sum(r['chosen_reward'] > r['rejected_reward'] for r in a) / len(a) - v['val_accuracy']) < 1e-6, v['val_accuracy'] >= 0.9)")" \
  "True True True" "adapter and merged give the run's rewards"
run llm-rm $common --out lora2 --lora-rank 8 --lr 1e-2 --steps 12 --eval-every 12 --stop-at 5
run llm-rm $common --out lora2 --lora-rank 8 --lr 1e-2 --steps 12 --eval-every 12 --resume
expect_rc 0 "LoRA --resume"
expect_eq "$(losses lora2/metrics.jsonl)" "$(losses lora/metrics.jsonl)" "LoRA losses after --resume"

# A reward model as the start of another: its score head is read, not made anew.
run llm-rm --init rm --data prefs.jsonl --seq-len 64 --micro-batch 8 --steps 1 --threads 2 --out rm3
expect_rc 0 "from a reward model"
expect_err_contains "its score head"

# Bad input.
run llm-rm score --model base val.jsonl
expect_rc 1 "scoring with a language model"
expect_err_contains "is not a reward model"
run llm-rm $common --micro-batch 3 --batch-size 6 --out odd --steps 1
expect_rc 2 "an odd micro-batch"
run llm-rm --init base --data docs.jsonl --seq-len 64 --micro-batch 2 --steps 1 --out notprefs
expect_rc 1 "chat rows as pairs"
expect_err_contains "no example to train on"
finish
