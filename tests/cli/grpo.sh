# llm-ppo grpo end to end on a model llm-sft tuned: a format reward is learnt (the share of
# answers that start with "4" rises from chance to most), the engine's log-probabilities are
# the trainer's (the first iteration's ratio within 1e-5 of 1, nothing clipped), the rollouts
# file, a reward command, --resume bit for bit (rollouts are seeded by their place in the run),
# 1 and 2 ranks, and bad input refused.
. "$(dirname "$0")/lib.sh"

addition_models
printf '{broken\n{"question": "no prompt"}\n' >> prompts.jsonl
printf 'import json, sys\nfor l in sys.stdin:\n    print(1 if json.loads(l)["response"].strip().isdigit() else 0)\n' > score.py  # a reward command: 1 for a number

common="--init sft --data prompts.jsonl --group-size 8 --max-new-tokens 4 --seq-len 64 --batch-size 64 --micro-batch 32 --threads 2"
run llm-ppo grpo $common --reward 'rule:regex:^4' --lr 1e-3 --steps 24 --eval-every 0 --out g --rollouts g.jsonl
expect_rc 0 "grpo"
expect_err_contains "prompts.jsonl:201: invalid JSON"
expect_err_contains "prompts.jsonl:202: a prompt row has a \"prompt\""
expect_err_contains "200 prompts, 8 samples each, up to 4 new tokens"
expect_eq "$(python3 -c "
import json
s = [r for r in map(json.loads, open('g/metrics.jsonl')) if 'loss' in r]
first, last = sum(r['reward'] for r in s[:3]) / 3, sum(r['reward'] for r in s[-3:]) / 3
print(len(s), first < 0.4, last > 0.8, max(r['ratio_max_deviation'] for r in s) < 1e-5, max(r['clip_ratio'] for r in s) == 0,
      all(k in s[0] for k in ['reward', 'reward_std', 'rewards/rule:regex:^4/mean', 'completions/mean_length',
          'completions/clipped_ratio', 'frac_reward_zero_std', 'time/rollout', 'time/scoring', 'time/training']))")" \
  "24 True True True True True" "the format learnt; sampling's log-probs are the trainer's"
expect_eq "$(python3 -c "
import json
rows = [json.loads(l) for l in open('g.jsonl')]
groups = {}
for r in rows: groups.setdefault((r['step'], r['prompt']), []).append(r['advantage'])
print(len(rows), rows[0]['row']['answer'] is not None, all(abs(sum(a)) < 1e-9 for a in groups.values()),
      all(r['finish'] in ('stop', 'eos', 'length') for r in rows))")" "1536 True True True" \
  "rollouts: 24 steps x 64 answers, advantages summing to 0 in each group"

# mu = 2 passes over each rollout batch (TRL's num_iterations): answers every other step; the
# second pass trains on the old log-probabilities (the ratio moves off 1).
run llm-ppo grpo $common --reward 'rule:regex:^4' --lr 1e-3 --steps 4 --num-iterations 2 --eval-every 0 --out mu --rollouts mu.jsonl
expect_rc 0 "--num-iterations 2"
expect_err_contains "2 passes of 1 step over each rollout batch of 8 prompts"
expect_eq "$(python3 -c "
import json
s = [r for r in map(json.loads, open('mu/metrics.jsonl')) if 'loss' in r]
print([r['step'] for r in s if 'reward' in r], s[0]['ratio_max_deviation'] < 1e-5, s[1]['ratio_max_deviation'] > 1e-3, 0 < s[0]['entropy'] < 6,
      sorted(set(json.loads(l)['step'] for l in open('mu.jsonl'))))")" "[1, 3] True True True [1, 3]" "rollouts at steps 1 and 3"

# A reward command and a rule together, weighted.
run llm-ppo grpo $common --reward rule:exact --reward-cmd "python3 score.py" --reward-weights 1,0.5 --lr 1e-3 --steps 2 --eval-every 0 --out c
expect_rc 0 "a reward command"
expect_eq "$(python3 -c "
import json
s = [r for r in map(json.loads, open('c/metrics.jsonl')) if 'loss' in r][0]
print(abs(s['reward'] - (s['rewards/rule:exact/mean'] + 0.5 * s['rewards/cmd:python3 score.py/mean'])) < 1e-9)")" "True" \
  "the weighted sum of the rewards"

# A reward model as the reward (rm/, taught to prefer the answer "4"), then GRPO on it.
run llm-ppo grpo $common --reward-model rm --lr 1e-3 --steps 16 --eval-every 0 --out rmg
expect_rc 0 "grpo on a reward model"
expect_eq "$(python3 -c "
import json
s = [r for r in map(json.loads, open('rmg/metrics.jsonl')) if 'loss' in r]
first, last = sum(r['reward'] for r in s[:3]) / 3, sum(r['reward'] for r in s[-3:]) / 3
print(len(s), last > first + 0.5, 'rewards/model:rm/mean' in s[0])")" "16 True True" "the reward model's score rises"
run llm-ppo grpo $common --reward-model base --out rmbad --steps 1
expect_rc 1 "a language model as the reward model"
expect_err_contains "is not a reward model"

# Stopped and resumed: the same rollouts and losses, bit for bit.
run llm-ppo grpo $common --reward 'rule:regex:^4' --lr 1e-3 --steps 24 --eval-every 0 --out g2 --stop-at 9 --rollouts g2.jsonl
run llm-ppo grpo $common --reward 'rule:regex:^4' --lr 1e-3 --steps 24 --eval-every 0 --out g2 --resume --rollouts g2.jsonl
expect_rc 0 "--resume"
cmp -s g.jsonl g2.jsonl && ok || fail "the rollouts file differs after --resume"
rewards() { python3 -c "import json,sys; print(' '.join(repr(r['reward']) + ':' + repr(r['loss']) for r in map(json.loads, open(sys.argv[1])) if 'loss' in r))" "$1"; }
expect_eq "$(rewards g2/metrics.jsonl)" "$(rewards g/metrics.jsonl)" "rewards and losses after --resume"

# Two ranks: the first step's answers are the same (seeded by their place in the run, from the
# same weights) and so is its gradient; later, the weights differ in their last bits (sums in
# another order), which can change a sampled token.
if command -v mpirun > /dev/null; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 run mpirun -np 2 llm-ppo grpo $common --reward 'rule:regex:^4' \
    --lr 1e-3 --steps 6 --eval-every 0 --threads 1 --out np2
  expect_rc 0 "-np 2"
  expect_eq "$(python3 -c "
import json
a, b = ([r for r in map(json.loads, open(p + '/metrics.jsonl')) if 'loss' in r][:6] for p in ('g', 'np2'))
print(a[0]['reward'] == b[0]['reward'], abs(a[0]['grad_norm'] - b[0]['grad_norm']) < 1e-5 * a[0]['grad_norm'],
      max(abs(x['reward'] - y['reward']) for x, y in zip(a, b)) < 0.25)")" \
    "True True True" "2 ranks: the same first step; then close (rounding may change a later sample)"
fi

# Bad input.
run llm-ppo grpo $common --out b1 --steps 1
expect_rc 2 "no reward"
expect_err_contains "give a reward"
run llm-ppo grpo $common --reward rule:length --out b2 --steps 1
expect_rc 2 "an unknown rule"
run llm-ppo grpo $common --reward rule:exact --group-size 1 --out b3 --steps 1
expect_rc 2 "a group of one"
run llm-ppo grpo $common --reward rule:exact --batch-size 60 --micro-batch 20 --out b4 --steps 1
expect_rc 2 "a batch that is not whole groups"
run llm-ppo grpo $common --reward-cmd "exit 3" --out b5 --steps 1
expect_rc 1 "a failing reward command"
expect_err_contains "cmd:exit 3: exited with status 3"
run llm-ppo grpo $common --reward rule:exact --reward-weights 1,2 --out b6 --steps 1
expect_rc 2 "weights for rewards not given"
run llm-ppo grpo $common --reward rule:exact --lora-rank 4 --lora-dropout 0.1 --out b7 --steps 1
expect_rc 2 "dropout under grpo"
finish
