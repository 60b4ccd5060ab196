# llm-pretrain end to end on shards made by llm-tok: loss falls, metrics and checkpoints as
# documented (safetensors read by a reader written from the spec, Hugging Face names), a run
# killed with SIGKILL and resumed gives bit-identical losses, bad input is refused.
. "$(dirname "$0")/lib.sh"

python3 - <<'PY'
import json, random
rng = random.Random(3)
words = ["the", "model", "learns", "to", "predict", "next", "token", "from", "data", "and", "text", "of", "a", "shard"]
with open("docs.jsonl", "w") as f:
    for i in range(400):
        f.write(json.dumps({"id": i, "text": " ".join(rng.choice(words) for _ in range(rng.randint(20, 80)))}) + "\n")
PY
run llm-tok train -o tok.model --vocab-size 300 docs.jsonl
expect_rc 0 "tokenizer"
run llm-tok encode -m tok.model --val-fraction 0.1 -o shards docs.jsonl
expect_rc 0 "shards"

common="--model llama-tiny --train shards/train-*.tok --val shards/val-00000.tok --seq-len 32 --micro-batch 4 --batch-tokens 256 --lr 3e-3 --warmup 2 --eval-every 4 --threads 2"
run llm-pretrain $common --tokenizer tok.model --steps 12 --out a
expect_rc 0 "train 12 steps"
expect_eq "$(wc -l < a/metrics.jsonl)" "16" "a start line, 12 step lines and 3 eval lines"
expect_eq "$(python3 -c "
import json
r = json.loads(open('a/metrics.jsonl').readline())
print(r['event'], r['step'], r['device'], r['ranks'], r['threads'], r['peak_flops'] > 1e9, r['peak_flops_from'], len(r['matmul']) > 0)")" \
  "start 0 cpu 1 2 True measured True" "the start line: device, matmul kernel, the sgemm rate MFU is measured against"
expect_eq "$(python3 -c "
import json
rows = [json.loads(l) for l in open('a/metrics.jsonl')]
steps = [r for r in rows if 'loss' in r]
keys = set(steps[0])
print(sorted(keys) == sorted(['step','loss','lr','grad_norm','tokens','tokens_per_sec','mfu','peak_rss']),
      abs(steps[0]['loss'] - __import__('math').log(300)) < 0.3, steps[-1]['loss'] < steps[0]['loss'] - 1,
      steps[-1]['tokens'] == 12 * 256, [r['step'] for r in rows if 'val_loss' in r])")" \
  "True True True True [4, 8, 12]" "metrics"
expect_eq "$(cat a/latest)" "step-00000012" "latest"
expect_eq "$(ls a/step-00000012 | tr '\n' ' ')" "config.json model.safetensors optimizer.safetensors tokenizer.model trainer_state.json " "checkpoint files"
cmp -s tok.model a/step-00000012/tokenizer.model && ok || fail "tokenizer copied"
# The safetensors header, read as the spec says: u64 length, JSON, Hugging Face names and shapes.
expect_eq "$(python3 - a/step-00000012/model.safetensors <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n, = struct.unpack_from("<Q", b, 0)
h = json.loads(b[8:8 + n])
h.pop("__metadata__", None)
print(h["model.embed_tokens.weight"]["shape"], h["model.layers.3.self_attn.k_proj.weight"]["shape"],
      h["model.layers.0.mlp.down_proj.weight"]["shape"], h["model.norm.weight"]["dtype"], len(h),
      max(v["data_offsets"][1] for v in h.values()) == len(b) - 8 - n)
PY
)" "[300, 128] [64, 128] [128, 352] F32 38 True" "model.safetensors"
expect_eq "$(json a/step-00000012/trainer_state.json 'j["step"], j["cursor"], j["tokens_seen"], j["world_size"]')" "12 96 3072 1" "trainer state"
expect_eq "$(json a/step-00000012/config.json 'j["architectures"][0], j["vocab_size"], j["num_key_value_heads"]')" "LlamaForCausalLM 300 2" "config.json"

# Killed with SIGKILL after step 7 of 40 and resumed: the same losses and weights, bit for bit.
run llm-pretrain $common --steps 40 --out full
expect_rc 0 "uninterrupted 40 steps"
# wait_steps RUN N: waits until RUN/metrics.jsonl has N step lines (for a minute at most, however
# loaded the machine: a cap on the polls alone would fire early on a slow one).
wait_steps() {
  local end=$(($(date +%s) + 60))
  while [ "$(date +%s)" -lt "$end" ]; do
    [ -f "$1/metrics.jsonl" ] && [ "$(grep -c '"loss"' "$1/metrics.jsonl")" -ge "$2" ] && return 0
    sleep 0.005
  done
  fail "$1 did not reach step $2 in a minute"
  return 1
}
llm-pretrain $common --steps 40 --save-every 3 --out b 2>/dev/null &
pid=$!
wait_steps b 7
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
case "$(cat b/latest 2>/dev/null)" in
  step-0000000[3-9]|step-0000001[0-9]) ok ;;
  *) fail "the run was not killed midway (latest: $(cat b/latest 2>/dev/null))" ;;
esac
run llm-pretrain $common --steps 40 --save-every 3 --out b --resume
expect_rc 0 "resume"
expect_err_contains "resumed from"
# Resumed at or past --steps: nothing is trained or rewritten.
before=$(stat -c %Y.%y b/latest b/metrics.jsonl b/step-00000040/trainer_state.json | tr '\n' ' ')
sleep 1
run llm-pretrain $common --steps 40 --save-every 3 --out b --resume
expect_rc 0 "resume a finished run"
expect_err_contains "b/step-00000040 is at step 40, the last of --steps: nothing to do"
expect_err_lacks "saved"
run llm-pretrain $common --steps 30 --save-every 3 --out b --resume
expect_rc 1 "resume with --steps below the checkpoint's"
expect_err_contains "llm-pretrain: b/step-00000040: is at step 40, past --steps 30: nothing to train (to go on, give --steps above 40; the schedule follows --steps)"
expect_eq "$(stat -c %Y.%y b/latest b/metrics.jsonl b/step-00000040/trainer_state.json | tr '\n' ' ')" "$before" "nothing rewritten"
losses() { python3 -c "import json,sys; print(' '.join(str(json.loads(l).get('loss', json.loads(l).get('val_loss'))) for l in open(sys.argv[1]) if 'event' not in json.loads(l)))" "$1"; }
expect_eq "$(losses b/metrics.jsonl)" "$(losses full/metrics.jsonl)" "losses after kill -9 and --resume"
cmp -s full/step-00000040/model.safetensors b/step-00000040/model.safetensors && ok || fail "final weights differ after resume"

# Samples and the loss plot.
run llm-pretrain $common --tokenizer tok.model --steps 4 --sample-every 2 --out s
expect_rc 0 "--sample-every"
expect_eq "$(grep -c 'sample: .* |> ' "$T/err")" "2" "a sample every 2 steps"
if command -v gnuplot >/dev/null; then
  run llm-pretrain --plot s
  expect_rc 0 "--plot"
  expect_eq "$(head -c 4 s/loss.png | od -An -c | tr -d ' ')" "211PNG" "loss.png"
fi
run llm-pretrain --plot nowhere
expect_rc 1 "--plot without metrics"
if command -v gnuplot >/dev/null; then
  rm s/loss.png
  run llm-pretrain --plot s/metrics.jsonl
  expect_rc 0 "--plot RUN/metrics.jsonl"
  expect_err_contains "wrote s/loss.png"
  expect_file s/loss.png
fi

# Refusals.
run llm-pretrain $common --steps 2 --out a
expect_rc 1 "an existing run without --resume"
expect_err_contains "holds a run already"
run llm-pretrain $common --steps 2 --out c --batch-tokens 100
expect_rc 2 "batch not a multiple"
run llm-pretrain --train 'nothing-*.tok' --out d
expect_rc 1 "no shards"
expect_err_contains "nothing-*.tok: no token shard matches"
cp shards/train-00000.tok bad.tok
python3 -c "b=bytearray(open('bad.tok','rb').read()); b[300]^=4; open('bad.tok','wb').write(b)"
run llm-pretrain --train bad.tok --out e --steps 1
expect_rc 1 "damaged shard"
expect_err_contains "bad.tok: damaged shard"
run llm-pretrain --model gpt2-124m --init a/step-00000012/model.safetensors --train shards/train-00000.tok --out f --steps 1
expect_rc 1 "init from a checkpoint of another shape"
expect_err_contains "model.safetensors: tensor transformer.wte.weight is missing"
run llm-pretrain --init a/step-00000012 $common --steps 14 --out h
expect_rc 0 "init from a checkpoint directory (its config.json)"
expect_eq "$(python3 -c "import json; print([r for r in map(json.loads, open('h/metrics.jsonl')) if 'loss' in r][0]['loss'] < 5)")" "True" "starts from the trained weights"
run llm-pretrain $common --steps 2 --out docs.jsonl
expect_rc 1 "--out FILE"; expect_err_contains "llm-pretrain: docs.jsonl: --out: exists and is not a directory"
expect_err_lacks "parameters"
# An unknown preset is a usage error; a tokenizer that did not make the shards is refused
# before the run directory is made.
run llm-pretrain --model llama-7t --train 'shards/train-*.tok' --out p1 --steps 1
expect_rc 2 "unknown --model preset"
expect_err_contains "llm-pretrain: --model: no such model preset 'llama-7t' (llama-tiny, llama-25m, gpt2-124m, llama-125m, bert-tiny, bert-base) or config.json"
expect_no_file p1
llm-tok train -q -o other.model --vocab-size 280 docs.jsonl
run llm-pretrain $common --tokenizer other.model --steps 1 --out p2
expect_rc 1 "--tokenizer of other shards"
expect_err_contains "llm-pretrain: other.model: is not the tokenizer the training shards were made with (shards/train-00000.tok)"
expect_no_file p2
run llm-pretrain --model gpt2-124m --init a/step-00000012/model.safetensors --train shards/train-00000.tok --out p3 --steps 1
expect_rc 1 "--init of another shape"; expect_no_file p3
# Settings that run but rarely do what was meant are warned about: a warmup as long as the run,
# a step larger than the data.
run llm-pretrain $common --steps 2 --warmup 5 --out w1
expect_rc 0 "warmup above the steps"
expect_err_contains "llm-pretrain: warning: --warmup 5 is not below --steps 2: the learning rate never reaches --lr (it ends at 0.0012)"
head -8 docs.jsonl > few.jsonl
llm-tok encode -q -m tok.model -o few few.jsonl
run llm-pretrain --train few/train-00000.tok --seq-len 32 --micro-batch 4 --batch-tokens 4096 --steps 1 --warmup 0 --out w2
expect_rc 0 "a step larger than the data"
expect_err_contains "llm-pretrain: warning: one step takes 128 sequences of 32 tokens, more than the "
expect_err_contains "windows the training shards hold: every step sees some of them twice or more"
run llm-pretrain $common --steps 4 --out w3
expect_err_lacks "warning"
run llm-pretrain $common --schedule sideways --out g
expect_rc 2 "--schedule"

# Devices: recomputing the MLP changes nothing but memory; a GPU asked for where there is none
# is a clear error; auto falls back to the CPU.
run llm-pretrain $common --steps 6 --out r0 --device cpu
expect_rc 0 "--device cpu"
run llm-pretrain $common --steps 6 --out r1 --device auto --recompute
expect_rc 0 "--device auto --recompute"
expect_eq "$(losses r1/metrics.jsonl)" "$(losses r0/metrics.jsonl)" "--recompute: the same losses"
cmp -s r0/step-00000006/model.safetensors r1/step-00000006/model.safetensors || fail "--recompute: other weights"
if ! nvidia-smi >/dev/null 2>&1; then
  run llm-pretrain $common --steps 1 --out r2 --device cuda
  expect_rc 1 "--device cuda without a GPU"
  expect_err_contains "cuda:"
fi
# bf16 checkpoints: half the model file, and --resume still exact (fp32 master weights kept).
run llm-pretrain $common --steps 6 --stop-at 3 --save-dtype bf16 --out r5
expect_rc 0 "--save-dtype bf16"
expect_eq "$(python3 -c "
import json, struct
f = open('r5/step-00000003/model.safetensors', 'rb'); n = struct.unpack('<Q', f.read(8))[0]
print(sorted({v['dtype'] for k, v in json.loads(f.read(n)).items() if k != '__metadata__'}))")" "['BF16']" "bf16 model.safetensors"
run llm-pretrain $common --steps 6 --save-dtype bf16 --resume --out r5
expect_rc 0 "resume a bf16 checkpoint"
expect_eq "$(losses r5/metrics.jsonl)" "$(losses r0/metrics.jsonl)" "bf16 checkpoints: the same losses after --resume"
run llm-pretrain $common --steps 1 --out r6 --save-dtype fp16
expect_rc 2 "--save-dtype fp16"
run llm-pretrain $common --steps 1 --out r3 --device tpu
expect_rc 2 "--device tpu"
run llm-pretrain $common --steps 1 --out r4 --precision fp8
expect_rc 2 "--precision fp8"

# Ctrl-C: the first is acknowledged at once, and the run stops after the step under way with a
# checkpoint (exit 1); a second stops at once, says what is lost, leaves no partial file (exit
# 128 + 2).
llm-pretrain $common --steps 100000 --out int1 2>int1.err &
pid=$!
wait_steps int1 3 && kill -INT $pid
wait $pid; rc=$?
expect_rc 1 "one SIGINT"
ack=$(grep -n -m1 'signal 2: stopping after the step under way (step [0-9]*), then writing a checkpoint; a second signal stops at once, without it' int1.err | cut -d: -f1)
saved=$(grep -n 'saved int1/step-' int1.err | cut -d: -f1)
expect_eq "$([ -n "$ack" ] && [ -n "$saved" ] && [ "$ack" -lt "$saved" ] && echo yes)" "yes" "acknowledged at once, before the checkpoint"
grep -q 'second stop signal' int1.err && fail "one SIGINT taken for two" || ok
expect_eq "$(cat int1/latest 2>/dev/null | cut -c1-5)" "step-" "a checkpoint after one SIGINT"
llm-pretrain $common --steps 100000 --save-every 2 --out int2 2>int2.err &
pid=$!
# (Two signals of one kind sent at once may reach the process as one; a SIGINT and a SIGTERM
# are two, whatever the timing.)
wait_steps int2 5 && { kill -INT $pid; kill -TERM $pid; }
wait $pid; rc=$?
expect_eq "$(case $rc in 130|143) echo 128+signal;; *) echo $rc;; esac)" "128+signal" "exit status after a second stop signal"
grep -qE 'a second stop signal \((2|15)\): stopping at once; (the checkpoint of step [0-9]+ being written is abandoned, and )?the (step|[0-9]+ steps) since the checkpoint of step [0-9]+ (is|are) not saved' int2.err \
  && ok || fail "what a second stop signal abandons: $(cat int2.err)"
expect_eq "$(ls -A int2 | grep -c '^\.')" "0" "no partial files after a second stop signal"
run llm-pretrain $common --steps 6 --resume --out int2
expect_rc 0 "resume after a second stop signal"

# --config: a JSON object of long options, the command line winning; bad keys named.
cat > cfg.json <<'JSON'
{"model": "llama-tiny", "train": ["shards/train-00000.tok"], "seq-len": 32, "micro-batch": 4, "steps": 3, "lr": 3e-3,
 "warmup": 1, "eval-every": 0, "recompute": true}
JSON
run llm-pretrain --config cfg.json --steps 2 --out cf --threads 2
expect_rc 0 "--config"
expect_eq "$(grep -c '"loss"' cf/metrics.jsonl)" "2" "the command line's --steps wins over the file's"
echo '{"learning-rate": 1}' > badcfg.json
run llm-pretrain --config badcfg.json --out cg
expect_rc 2 "--config with an unknown key"
expect_err_contains "llm-pretrain: --config badcfg.json: unknown option \"learning-rate\" (see --help)"
echo '{"recompute": 1}' > badcfg.json
run llm-pretrain --config badcfg.json --out cg
expect_rc 2 "--config: a flag that is not true or false"
expect_err_contains "\"recompute\" is a flag: true or false"
if command -v gnuplot >/dev/null; then
  run llm-pretrain --plot cf/metrics.jsonl
  expect_rc 0 "--plot a metrics file"
  expect_file cf/loss.png
fi
finish
