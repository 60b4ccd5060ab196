# llm-ppo dpo end to end: planted preferences (the sum over a word) on a model
# llm-pretrain made: at step 1 the policy is its reference (loss ln 2, rewards 0), the
# preference accuracy on held-out pairs rises, TRL's metric names, the reference kept with the
# run and --stop-at/--resume bit for bit, LoRA, and bad input refused.
. "$(dirname "$0")/lib.sh"

python3 - <<'PY'
import json, random
rng = random.Random(3)
words = ["the", "cat", "dog", "sat", "on", "mat", "a", "big", "small", "red", "blue", "ran", "to", "house", "tree"]
with open("docs.jsonl", "w") as f:
    for i in range(300):
        f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))}) + "\n")
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        f.write(json.dumps({"text": f"add {a} and {b} {a + b}"}) + "\n")
def pair(i):
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    wrong = rng.choice(words)  # the planted preference: a number, not a word
    if i % 2:  # conversations, their prompt implicit
        user = {"role": "user", "content": f"add {a} and {b}"}
        return {"chosen": [user, {"role": "assistant", "content": str(a + b)}],
                "rejected": [user, {"role": "assistant", "content": str(wrong)}]}
    return {"prompt": [{"role": "user", "content": f"add {a} and {b}"}],
            "chosen": [{"role": "assistant", "content": str(a + b)}],
            "rejected": [{"role": "assistant", "content": str(wrong)}], "source": "sums"}
with open("prefs.jsonl", "w") as f, open("val.jsonl", "w") as g:
    for i in range(200): f.write(json.dumps(pair(i)) + "\n")
    for i in range(40): g.write(json.dumps(pair(i)) + "\n")
with open("bad.jsonl", "w") as f:
    f.write(json.dumps(pair(0)) + "\n")
    f.write(json.dumps({"prompt": "add 1 and 1 ", "chosen": "2", "rejected": "2"}) + "\n")
    f.write("{oops\n")
    f.write(json.dumps({"prompt": "add 1 and 1 ", "chosen": "2", "rejected": "3"}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 --special '<|im_start|>,<|im_end|>' docs.jsonl
run llm-tok encode -m tok.model -o shards docs.jsonl
run llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --tokenizer tok.model --out base --seq-len 64 \
  --micro-batch 8 --steps 12 --lr 3e-3 --warmup 2 --eval-every 0 --threads 2
expect_rc 0 "the base model"

common="--init base --data prefs.jsonl --seq-len 64 --micro-batch 8 --batch-size 16 --threads 2"
run llm-ppo dpo $common --val val.jsonl --out dpo --lr 5e-3 --beta 0.1 --steps 24 --eval-every 8
expect_rc 0 "dpo"
expect_err_contains "200 pairs"
expect_err_contains "reference: the starting model's log-probabilities of 480 answers"
expect_eq "$(python3 -c "
import json, math
rows = [json.loads(l) for l in open('dpo/metrics.jsonl')]
s = [r for r in rows if 'loss' in r]
v = [r for r in rows if 'val_loss' in r]
names = ['rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected']
print(len(s), abs(s[0]['loss'] - math.log(2)) < 1e-6 and s[0]['rewards/accuracies'] == 0, abs(s[0]['rewards/chosen']) < 1e-6, abs(s[0]['rewards/margins']) < 1e-6,
      all(n in s[-1] for n in names), s[-1]['loss'] < s[0]['loss'], len(v) == 3,
      all('val_' + n in v[-1] for n in names), v[-1]['val_rewards/accuracies'] >= 0.9, v[-1]['val_rewards/margins'] > 0)")" \
  "24 True True True True True True True True True" "metrics: ln 2 at step 1, accuracy rises"
expect_eq "$(ls dpo/step-00000024 | tr '\n' ' ')" \
  "config.json model.safetensors optimizer.safetensors reference_logps.json tokenizer.model tokenizer_config.json trainer_state.json " \
  "a checkpoint with the reference's log-probabilities"

# Stopped and resumed: the reference read, not computed again; the same losses, bit for bit.
run llm-ppo dpo $common --val val.jsonl --out dpo2 --lr 5e-3 --beta 0.1 --steps 24 --eval-every 8 --stop-at 10
expect_rc 0 "--stop-at 10"
run llm-ppo dpo $common --val val.jsonl --out dpo2 --lr 5e-3 --beta 0.1 --steps 24 --eval-every 8 --resume
expect_rc 0 "--resume"
expect_err_contains "reference: the log-probabilities of dpo2/step-00000010/reference_logps.json"
losses() { python3 -c "import json,sys; print(' '.join(repr(r['loss']) for r in map(json.loads, open(sys.argv[1])) if 'loss' in r))" "$1"; }
expect_eq "$(losses dpo2/metrics.jsonl)" "$(losses dpo/metrics.jsonl)" "losses after --resume"
cmp -s dpo/step-00000024/model.safetensors dpo2/step-00000024/model.safetensors && ok || fail "weights differ after --resume"
run llm-ppo dpo --init base --data val.jsonl --seq-len 32 --micro-batch 8 --batch-size 16 --threads 2 --out dpo2 --steps 30 --resume
expect_rc 1 "resumed on other data"
expect_err_contains "was computed for other --data than these"

# LoRA, IPO: the reference is the base, the adapters start at zero.
run llm-ppo dpo $common --out lora --lora-rank 4 --loss ipo --lr 1e-2 --steps 6 --eval-every 0
expect_rc 0 "LoRA, IPO"
expect_eq "$(python3 -c "
import json
s = [r for r in map(json.loads, open('lora/metrics.jsonl')) if 'loss' in r]
print(abs(s[0]['rewards/margins']) < 1e-6, abs(s[0]['loss'] - 25.0) < 1e-6, s[-1]['loss'] < s[0]['loss'])")" \
  "True True True" "IPO at step 1: (0 - 1/(2 beta))^2 = 25"
expect_file lora/step-00000006/adapter_model.safetensors

# Bad input.
run llm-ppo dpo --init base --data bad.jsonl --seq-len 32 --micro-batch 2 --steps 1 --out bad --stats bad.json --threads 2
expect_rc 0 "malformed rows skipped"
expect_err_contains "bad.jsonl:2: \"chosen\" and \"rejected\" are the same: skipped"
expect_err_contains "bad.jsonl:3: invalid JSON"
expect_eq "$(json bad.json 'j["counters"]["examples"], j["drops"]["malformed"]')" "4 2" "two pairs, two rows skipped"
run llm-ppo dpo --init base --data bad.jsonl --seq-len 32 --micro-batch 2 --steps 1 --out bad2 --strict
expect_rc 1 "--strict"
run llm-ppo dpo $common --micro-batch 3 --batch-size 6 --out odd --steps 1
expect_rc 2 "an odd micro-batch"
expect_err_contains "--micro-batch must be even"
run llm-ppo dpo $common --loss kto --out k --steps 1
expect_rc 2 "an unknown loss"
run llm-ppo dpo $common --loss hinge --label-smoothing 0.1 --out k --steps 1
expect_rc 2 "label smoothing with hinge"
run llm-ppo dpo --init base --data docs.jsonl --seq-len 32 --micro-batch 2 --steps 1 --out notprefs
expect_rc 1 "chat rows given as preferences"
expect_err_contains "no example to train on"
run llm-ppo reinforce
expect_rc 2 "an algorithm not here"
expect_err_contains "unknown algorithm 'reinforce': this llm-ppo has dpo, grpo and ppo"
finish
