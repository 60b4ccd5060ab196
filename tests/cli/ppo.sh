# llm-ppo ppo end to end on a model llm-sft tuned and a reward model llm-rm taught to prefer the
# answer "4": the score rises; the first pass over each rollout batch has a ratio of exactly 1
# and nothing clipped (the old log-probabilities are the trainer's own, and the engine's agree);
# stopped in the middle of a rollout batch's passes, --resume is bit for bit; 1, 2 and 3 ranks
# give the same steps; LoRA (the reference is the base with the adapters off); bad input.
. "$(dirname "$0")/lib.sh"

addition_models

losses() { python3 -c "import json,sys; print(' '.join(repr(r['loss']) + ':' + repr(r['grad_norm']) for r in map(json.loads, open(sys.argv[1])) if 'loss' in r))" "$1"; }
common="--init sft --data prompts.jsonl --reward-model rm --max-new-tokens 4 --seq-len 64 --batch-size 32 --micro-batch 16 --threads 2 --eval-every 0"
run llm-ppo ppo $common --lr 1e-3 --steps 12 --ppo-epochs 3 --out p --rollouts p.jsonl --val prompts.jsonl --limit 100 --eval-every 12
expect_rc 0 "ppo"
expect_err_contains "100 prompts, 1 sample each, up to 4 new tokens (temperature 0.7); KL k1 x 0.05"
expect_err_contains "a value head"
expect_err_contains "3 passes of 1 step over each rollout batch of 32 prompts"
expect_eq "$(python3 -c "
import json
rows = list(map(json.loads, open('p/metrics.jsonl')))
s = [r for r in rows if 'loss' in r]
firsts = [r for r in s if r['step'] % 3 == 1]
print(len(s), len(firsts), firsts[-1]['objective/scores'] > firsts[0]['objective/scores'] + 1,
      all(r['ratio_max_deviation'] == 0 and r['policy/clipfrac_avg'] == 0 and r['val/ratio'] == 1 for r in firsts),
      max(r['logprob_max_deviation'] for r in firsts) < 1e-5, firsts[0]['objective/kl'] == 0, firsts[-1]['objective/kl'] > 0,
      all(k in firsts[0] for k in ['objective/kl', 'objective/entropy', 'objective/non_score_reward', 'objective/rlhf_reward',
          'objective/scores', 'policy/approxkl_avg', 'policy/clipfrac_avg', 'loss/policy_avg', 'loss/value_avg', 'val/clipfrac_avg',
          'val/ratio', 'val/ratio_var', 'val/num_eos_tokens', 'policy/entropy_avg', 'completions/mean_length', 'time/rollout', 'time/scoring', 'time/training']),
      all('objective/scores' not in r for r in s if r['step'] % 3 != 1), any(r['policy/clipfrac_avg'] > 0 for r in s),
      len([r for r in rows if 'val_reward' in r]) == 1)")" \
  "12 4 True True True True True True True True True" "the score rises; each batch's first pass has ratio 1, nothing clipped"
expect_eq "$(python3 -c "
import json
rows = [json.loads(l) for l in open('p.jsonl')]
print(len(rows), sorted(set(r['step'] for r in rows)) == [1, 4, 7, 10], all('kl' in r and 'value' in r for r in rows),
      abs(sum(r['advantage'] for r in rows[:32])) < 1e-3 * 32)")" "128 True True True" "rollouts: 4 batches of 32, advantages whitened"
# The result is a language model: llm-eval reads it (the value head is left aside).
printf '{"prompt": "add 2 and 2", "answer": "4"}\n' > one.jsonl
run llm-eval gen --model p one.jsonl --max-gen-tokens 2
expect_rc 0 "llm-eval on the PPO model"

# Stopped in the middle of a rollout batch's passes (step 5 of 3-step batches), resumed: the
# same answers, losses and weights, bit for bit.
run llm-ppo ppo $common --lr 1e-3 --steps 12 --ppo-epochs 3 --out p2 --rollouts p2.jsonl --val prompts.jsonl --limit 100 --eval-every 12 --stop-at 5
expect_file p2/step-00000005/rollouts_state.json
run llm-ppo ppo $common --lr 1e-3 --steps 12 --ppo-epochs 3 --out p2 --rollouts p2.jsonl --val prompts.jsonl --limit 100 --eval-every 12 --resume
expect_rc 0 "--resume in the middle of a rollout batch"
cmp -s p.jsonl p2.jsonl && ok || fail "the rollouts file differs after --resume"
expect_eq "$(losses p2/metrics.jsonl)" "$(losses p/metrics.jsonl)" "losses after --resume"
cmp -s p/step-00000012/model.safetensors p2/step-00000012/model.safetensors && ok || fail "weights differ after --resume"

# Several mini-batches a pass: each pass shuffles the rollout batch.
run llm-ppo ppo $common --batch-size 16 --mini-batches 2 --ppo-epochs 2 --lr 1e-3 --steps 4 --out mb
expect_rc 0 "--mini-batches 2"
expect_err_contains "2 passes of 2 steps over each rollout batch of 32 prompts"
expect_eq "$(python3 -c "import json; print(sum('objective/scores' in r for r in map(json.loads, open('mb/metrics.jsonl'))))")" "1" \
  "one rollout batch for 4 steps"
# Stopped after the first mini-batch of a pass, resumed at the second: the same shuffle, the same steps.
run llm-ppo ppo $common --batch-size 16 --mini-batches 2 --ppo-epochs 2 --lr 1e-3 --steps 4 --out mb2 --stop-at 1
run llm-ppo ppo $common --batch-size 16 --mini-batches 2 --ppo-epochs 2 --lr 1e-3 --steps 4 --out mb2 --resume
expect_rc 0 "--resume in the middle of a pass"
expect_eq "$(losses mb2/metrics.jsonl)" "$(losses mb/metrics.jsonl)" "losses after --resume in the middle of a pass"

# LoRA: the reference is the base with the adapters off; the value head is kept with the
# optimizer state, so a stopped run resumes bit for bit.
run llm-ppo ppo $common --lora-rank 4 --lr 3e-3 --steps 4 --ppo-epochs 2 --out l
expect_rc 0 "LoRA"
expect_eq "$(json l/step-00000004/adapter_config.json "j['task_type']")" "CAUSAL_LM" "the adapter is a language model's"
run llm-ppo ppo $common --lora-rank 4 --lr 3e-3 --steps 4 --ppo-epochs 2 --out l2 --stop-at 3
run llm-ppo ppo $common --lora-rank 4 --lr 3e-3 --steps 4 --ppo-epochs 2 --out l2 --resume
expect_rc 0 "LoRA --resume"
cmp -s l/step-00000004/optimizer.safetensors l2/step-00000004/optimizer.safetensors && ok || fail "LoRA state differs after --resume"

# 1, 2 and 3 ranks: the same rollouts (seeded by their place in the run), whitening and
# normalisation over the whole batch: the same steps up to rounding.
if command -v mpirun > /dev/null; then
  r="--batch-size 48 --micro-batch 8 --lr 1e-3 --steps 4 --ppo-epochs 2"
  run llm-ppo ppo $common $r --out n1
  for n in 2 3; do
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 run mpirun -np $n --oversubscribe llm-ppo ppo $common $r --threads 1 --out n$n
    expect_rc 0 "-np $n"
  done
  expect_eq "$(python3 -c "
import json
a, b, c = ([r for r in map(json.loads, open(p + '/metrics.jsonl')) if 'loss' in r] for p in ('n1', 'n2', 'n3'))
close = lambda x, y: abs(x - y) <= 1e-4 * max(abs(x), abs(y), 1e-3)
print(len(a) == len(b) == len(c) == 4, all(close(x['loss'], y['loss']) and close(x['loss'], z['loss']) and close(x['grad_norm'], z['grad_norm'])
      for x, y, z in zip(a, b, c)), a[0]['objective/scores'] == b[0]['objective/scores'] == c[0]['objective/scores'])")" \
    "True True True" "1, 2 and 3 ranks"
  run llm-ppo ppo $common $r --out n3 --resume --steps 8
  expect_rc 0 "a 3-rank run resumed at a batch's start on 1 rank"
fi

# Bad input.
run llm-ppo ppo $common --kl-estimator k2 --out b1 --steps 1
expect_rc 2 "an unknown estimator"
expect_err_contains "--kl-estimator must be k1 or k3"
run llm-ppo ppo $common --cliprange 0 --out b2 --steps 1
expect_rc 2 "no clip range"
run llm-ppo ppo $common --ppo-epochs 0 --out b3 --steps 1
expect_rc 2 "no pass"
run llm-ppo ppo $common --mini-batches 0 --out b4 --steps 1
expect_rc 2 "no mini-batch"
run llm-ppo ppo $common --gamma 1.5 --out b5 --steps 1
expect_rc 2 "gamma above 1"
run llm-ppo ppo --init sft --data prompts.jsonl --max-new-tokens 4 --seq-len 64 --out b6 --steps 1
expect_rc 2 "no reward"
expect_err_contains "give a reward"
if command -v mpirun > /dev/null; then
  run llm-ppo ppo $common --lr 1e-3 --steps 12 --ppo-epochs 3 --out p3 --stop-at 5
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 run mpirun -np 2 --oversubscribe llm-ppo ppo $common --lr 1e-3 --steps 12 \
    --ppo-epochs 3 --threads 1 --out p3 --resume
  expect_rc 1 "resumed in the middle of a rollout batch on other ranks"
  expect_err_contains "resume it on as many"
fi
finish
