#!/usr/bin/env bash
# The Slurm scripts on a real Slurm cluster of one node, brought up on this machine for the test:
# munged, slurmctld and slurmd started from a temporary directory, with their own munge key,
# slurm.conf, ports, state and logs, and torn down at the end, whatever happens.
#
#  1. slurm/llm-pipeline submits clean -> dedup -> tok -> pretrain -> eval on 150 generated
#     documents (10 of them copies or near copies): every job ends COMPLETED, each starting after
#     the one before ended, and every output is there (a finite loss in the report).
#  2. A chain whose input is a truncated .zst: clean fails, and the four jobs after it are
#     cancelled (--kill-on-invalid-dep), never run, and leave nothing behind.
#  3. pretrain.sbatch on its own, sent SIGUSR1 as --signal=B:USR1@120 would send it before a
#     time limit: llm-pretrain saves a checkpoint, the job requeues itself and resumes, and the
#     losses are those of a run that was never stopped.
#
# Usage: LLMKIT_BIN=build/bin LLMKIT_SRC=. bash tests/slurm/run.sh   (make test-slurm does this)
# Needs Debian's slurm-wlm and munge (installed with apt-get when missing and run as root) and
# root, since the daemons run as root here. Exits 77 (skipped) when Slurm cannot be brought up,
# saying why. The jobs run with LLMKIT_SRUN_MPI=none (one task, plain srun), so that PMIx is not
# needed; LLMKIT_TEST_SRUN_MPI=pmix LLMKIT_TEST_NTASKS=2 runs them as MPI ranks instead.
set -u
# lib.sh changes to a scratch directory: make the paths absolute first.
LLMKIT_BIN=$(cd "${LLMKIT_BIN:?LLMKIT_BIN must point at the build bin directory}" && pwd) || exit 1
LLMKIT_SRC=$(cd "${LLMKIT_SRC:?LLMKIT_SRC must point at the source tree}" && pwd) || exit 1
export LLMKIT_BIN LLMKIT_SRC
# shellcheck source=../cli/lib.sh
. "$LLMKIT_SRC/tests/cli/lib.sh"
pipeline=$SRC/slurm/llm-pipeline
test_mpi=${LLMKIT_TEST_SRUN_MPI:-none}
test_ntasks=${LLMKIT_TEST_NTASKS:-1}
started=$(date +%s)
note() { echo "slurm-test: $*"; }

# ---- teardown, on every exit ----
C=$T/cluster
pids=()
hosts_line=""
teardown() {
  local pid i jobs
  if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ] && [ ${#pids[@]} -gt 0 ]; then
    jobs=$(squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null
      for i in $(seq 1 20); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.5
      done
    fi
  fi
  # newest first: slurmd, slurmctld, munged
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null
  done
  if [ -n "$hosts_line" ]; then
    sed -i "\|^$hosts_line\$|d" /etc/hosts
  fi
  if [ "${LLMKIT_TEST_KEEP:-0}" = 1 ]; then
    echo "slurm-test: kept $T" >&2
  else
    rm -rf "$T"
  fi
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
skip() {
  echo "SKIP: $*" >&2
  exit 77
}
# show_logs: the daemons' logs, for a cluster that did not come up.
show_logs() {
  local f
  for f in "$C"/log/*; do
    [ -s "$f" ] || continue
    echo "--- $f (last lines):" >&2
    tail -n 15 "$f" >&2
  done
}

# ---- Slurm and munge, installed when missing ----
need_pkgs=""
for c in slurmctld slurmd sbatch scontrol squeue sinfo scancel srun; do
  command -v "$c" >/dev/null 2>&1 || need_pkgs="slurm-wlm"
done
for c in munged munge; do
  command -v "$c" >/dev/null 2>&1 || need_pkgs="$need_pkgs munge"
done
if [ -n "$need_pkgs" ]; then
  [ "$(id -u)" -eq 0 ] || skip "Slurm or munge is not installed (apt-get install slurm-wlm munge) and this is not root"
  note "installing slurm-wlm munge"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq slurm-wlm munge >"$T/apt.log" 2>&1; then
    apt-get update -qq >>"$T/apt.log" 2>&1
    apt-get install -y -qq slurm-wlm munge >>"$T/apt.log" 2>&1 ||
      skip "apt-get install slurm-wlm munge failed: $(tail -n 3 "$T/apt.log")"
  fi
fi
[ "$(id -u)" -eq 0 ] || skip "the test runs slurmd and munged as root, and this is not root"

# ---- munged with its own key and socket ----
mkdir -p "$C/munge" "$C/run" "$C/state" "$C/spool" "$C/log" "$C/etc"
chmod 711 "$T" # munged wants every directory above its socket searchable by all
chmod 700 "$C/munge"
chmod 755 "$C" "$C/run"
if ! mungekey -c -k "$C/munge/munge.key" >/dev/null 2>&1; then
  dd if=/dev/urandom of="$C/munge/munge.key" bs=1024 count=1 2>/dev/null
fi
chmod 400 "$C/munge/munge.key"
sock=$C/run/munge.sock
munged -F --socket="$sock" --key-file="$C/munge/munge.key" --pid-file="$C/munge/munged.pid" \
  --log-file="$C/log/munged.log" --seed-file="$C/munge/munged.seed" >"$C/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do
  [ -S "$sock" ] && break
  sleep 0.25
done
munge -n -S "$sock" 2>/dev/null | unmunge -S "$sock" >/dev/null 2>&1 || {
  show_logs
  skip "munged did not start (see its log above)"
}

# ---- slurm.conf ----
node=$(hostname -s)
if ! getent hosts "$node" >/dev/null 2>&1; then
  hosts_line="127.0.0.1 $node # llmkit slurm test"
  echo "$hosts_line" >>/etc/hosts
fi
read -r ctld_port slurmd_port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
mem=$(free -m | awk '/^Mem:/ {print $2}')
mem=$((mem > 2048 ? mem - 1024 : mem / 2))
cpus=$(nproc)
export SLURM_CONF=$C/etc/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=llmkittest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/run/slurmctld.pid
SlurmdPidFile=$C/run/slurmd.pid
SlurmctldLogFile=$C/log/slurmctld.log
SlurmdLogFile=$C/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# ---- slurmctld and slurmd, in the foreground of background jobs ----
slurmctld -D -f "$SLURM_CONF" >"$C/log/slurmctld.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do
  scontrol ping 2>/dev/null | grep -q UP && break
  sleep 0.25
done
scontrol ping 2>/dev/null | grep -q UP || {
  show_logs
  skip "slurmctld did not start (see its log above)"
}
slurmd -D -f "$SLURM_CONF" -N "$node" >"$C/log/slurmd.out" 2>&1 &
pids+=($!)
state=""
for _ in $(seq 1 120); do
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || {
  show_logs
  skip "the Slurm node did not become idle (state '$state'; see the logs above)"
}
note "Slurm $(sinfo -V | cut -d' ' -f2) up in $(($(date +%s) - started)) s: node $node, $cpus CPUs, ${mem} MB, ports $ctld_port/$slurmd_port"

# ---- helpers for jobs ----
# job_field ID FIELD: FIELD of `scontrol show job`, empty for a job Slurm no longer knows.
job_field() {
  scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}
terminal() {
  case $1 in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | BOOT_FAIL | DEADLINE | OUT_OF_MEMORY | "") return 0 ;;
  esac
  return 1
}
# wait_jobs SECONDS ID...: waits until every job has ended (or is gone); 1 on timeout.
wait_jobs() {
  local limit=$1 id s all
  shift
  for _ in $(seq 1 $((limit * 2))); do
    all=1
    for id in "$@"; do
      s=$(job_field "$id" JobState)
      terminal "$s" || all=0
    done
    [ "$all" -eq 1 ] && return 0
    sleep 0.5
  done
  return 1
}
# dump_jobs ID...: states and logs, after a failed check.
dump_jobs() {
  local id
  for id in "$@"; do
    scontrol show job "$id" 2>&1 | grep -E 'JobId|JobState|ExitCode|StartTime' >&2
  done
}
dump_logs() {
  local f
  for f in "$1"/logs/*.out; do
    [ -f "$f" ] || continue
    echo "--- $f:" >&2
    tail -n 20 "$f" >&2
  done
}
# docs_in DIR: the documents of the part files in DIR.
docs_in() { cat "$1"/part-*.jsonl 2>/dev/null | wc -l; }

# ---- the corpus: 150 documents of English-like prose, 10 of them copies or near copies ----
python3 - "$T/docs.jsonl" <<'PY'
import json, random, sys
rng = random.Random(11)
dets = ["the", "a", "our", "their", "one", "that", "every", "this"]
adjs = ["old", "young", "careful", "quiet", "northern", "wooden", "busy", "small", "famous", "patient",
        "broken", "bright", "narrow", "local", "distant", "early", "heavy", "gentle", "ancient", "modern",
        "curious", "tired", "honest", "proud", "silent", "golden", "frozen", "crowded", "empty", "strange"]
people = ["farmer", "teacher", "neighbour", "committee", "company", "council", "grandmother", "reader",
          "merchant", "baker", "guide", "student", "gardener", "nurse", "engineer", "captain", "painter",
          "doctor", "librarian", "carpenter", "mayor", "poet", "shepherd", "sailor", "tailor", "clerk"]
things = ["gate", "letter", "market", "map", "field", "festival", "clock", "room", "train", "wall",
          "report", "garden", "meeting", "record", "path", "square", "storm", "lamp", "photograph", "tree",
          "song", "cellar", "budget", "roof", "bridge", "river", "harbour", "chapel", "mill", "orchard"]
verbs = ["opened", "repaired", "described", "visited", "planned", "measured", "painted", "studied",
         "carried", "explained", "protected", "announced", "collected", "improved", "remembered", "recorded",
         "welcomed", "delivered", "replaced", "organised", "followed", "examined", "celebrated", "finished",
         "noticed", "admired", "cleaned", "moved", "sold", "built", "found", "lost", "watched", "praised"]
preps = ["near", "behind", "beside", "across", "under", "above", "beyond", "inside", "outside", "along"]
whens = ["in spring", "in winter", "at dawn", "at noon", "on Monday", "on Friday", "in March",
         "before lunch", "after supper", "last year", "that week", "at night", "by evening"]
conj = ["because", "although", "since", "while", "and", "but", "so", "until", "after", "before"]
def np(pool):
    return [rng.choice(dets)] + ([rng.choice(adjs)] if rng.random() < 0.7 else []) + [rng.choice(pool)]
def clause():
    w = np(people) + [rng.choice(verbs)] + np(things)
    if rng.random() < 0.5:
        w += [rng.choice(preps)] + np(things)
    if rng.random() < 0.4:
        w += rng.choice(whens).split()
    return w
def sentence():
    w = clause() + ([rng.choice(conj)] + clause() if rng.random() < 0.6 else [])
    s = " ".join(w)
    return s[0].upper() + s[1:] + ("?" if rng.random() < 0.05 else ".")
def doc():
    return "\n\n".join(" ".join(sentence() for _ in range(rng.randint(4, 8)))
                       for _ in range(rng.randint(3, 6)))
docs = [doc() for _ in range(140)]
rows = [{"id": f"doc-{i:04d}", "text": t} for i, t in enumerate(docs)]
for i in range(0, 10, 2):
    rows.append({"id": f"copy-{i:04d}", "text": docs[i]})
    words = docs[i + 1].split(" ")
    words[len(words) // 2] = "unexpectedly"
    rows.append({"id": f"near-{i + 1:04d}", "text": " ".join(words)})
with open(sys.argv[1], "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
PY
expect_eq "$(wc -l <"$T/docs.jsonl")" 150 "generated documents"

# ---- llm-pipeline without Slurm: --help, usage errors, --dry-run ----
run "$pipeline" --help
expect_rc 0 "llm-pipeline --help"
expect_out_contains "--kill-on-invalid-dep=yes"
run "$pipeline" --workdir "$T/x" --steps ten "$T/docs.jsonl"
expect_rc 2 "--steps ten"
expect_err_contains "--steps: bad value 'ten'"
run "$pipeline" --workdir "$T/x" "$T/missing.jsonl"
expect_rc 1 "a missing input"
run "$pipeline" --dry-run --workdir "$T/dry" --steps 20 --model llama-tiny "$T/docs.jsonl"
expect_rc 0 "--dry-run"
expect_eq "$(grep -c '^[a-z]*=$(sbatch ' "$T/out")" 5 "--dry-run: five sbatch commands"
expect_out_contains "--dependency=afterok:\$clean "
expect_out_contains "--dependency=afterok:\$pretrain "
expect_out_contains "LLMKIT_HOME=$SRC,"
expect_out_contains "LLMKIT_STEPS=20"
expect_no_file "$T/dry"
expect_eq "$(squeue -h | wc -l)" 0 "--dry-run submits nothing"

# ---- requests no node can meet: said before anything is submitted ----
run "$pipeline" --workdir "$T/big" --cpus-per-task 4096 "$T/docs.jsonl"
expect_rc 1 "--cpus-per-task larger than any node"
expect_err_contains "llm-pipeline: the clean job asks for more than Slurm can give here (sbatch --test-only: "
expect_err_contains "give --cpus-per-task and --ntasks (and --nodes) that fit the nodes"
expect_eq "$(squeue -h | wc -l)" 0 "a request no node can meet: nothing submitted"
if [ "$cpus" -lt 32 ]; then  # the scripts' own request, 4 tasks of 8 cores, on a smaller node
  run "$pipeline" --workdir "$T/default" "$T/docs.jsonl"
  expect_rc 1 "the scripts' default request on a node of $cpus CPUs"
  expect_err_contains "give --cpus-per-task and --ntasks"
  expect_eq "$(squeue -h | wc -l)" 0 "the default request on a small node: nothing submitted"
fi

# ---- 1. the whole pipeline ----
common=(--steps 20 --seq-len 64 --micro-batch 4 --vocab-size 500 --val-fraction 0.1
  --model llama-tiny --ntasks "$test_ntasks" --cpus-per-task 1)
W=$T/work
t0=$(date +%s)
run env LLMKIT_SRUN_MPI="$test_mpi" LLMKIT_SAVE_EVERY=10 "$pipeline" --workdir "$W" "${common[@]}" "$T/docs.jsonl"
expect_rc 0 "llm-pipeline"
stages=(clean dedup tok pretrain eval)
ids=()
for s in "${stages[@]}"; do
  id=$(awk -v s="$s" '$1 == s {print $2}' "$T/out")
  expect_eq "$(echo "$id" | grep -cE '^[0-9]+$')" 1 "job id of $s"
  ids+=("$id")
done
expect_eq "$(wc -l <"$T/out")" 5 "one line per job"
if wait_jobs 300 "${ids[@]}"; then ok; else fail "the pipeline's jobs did not end within 300 s"; fi
note "pipeline: $(($(date +%s) - t0)) s"
prev_end=""
for i in "${!stages[@]}"; do
  s=${stages[i]} id=${ids[i]}
  expect_eq "$(job_field "$id" JobState)" COMPLETED "state of the $s job $id"
  expect_eq "$(job_field "$id" ExitCode)" 0:0 "exit code of the $s job"
  start=$(job_field "$id" StartTime) end=$(job_field "$id" EndTime)
  if [ -n "$prev_end" ]; then
    if [[ ! $start < $prev_end ]]; then ok; else fail "$s started at $start, before the job before it ended ($prev_end)"; fi
  fi
  prev_end=$end
  expect_file "$W/logs/llm-$s-$id.out"
  if grep -q ": done" "$W/logs/llm-$s-$id.out" 2>/dev/null; then ok; else fail "the $s log has no 'done' line"; fi
done
[ "$failures" -eq 0 ] || { dump_jobs "${ids[@]}"; dump_logs "$W"; }
clean_docs=$(docs_in "$W/clean")
dedup_docs=$(docs_in "$W/dedup")
expect_eq "$clean_docs" 150 "documents after clean"
expect_eq "$dedup_docs" 140 "documents after dedup (5 copies and 5 near copies removed)"
for f in stats/clean.json stats/dedup.json stats/tok-train.json stats/tok-encode.json \
  stats/pretrain.json tok.model eval.json; do
  expect_file "$W/$f"
done
# one process writes train-00000.tok, rank R of several train-RRRRR-00000.tok
for split in train val; do
  if compgen -G "$W/shards/$split-*.tok" >/dev/null; then ok; else fail "no $split shards in $W/shards"; fi
done
run llm-tok inspect -m "$W/tok.model" "$W"/shards/*.tok
expect_rc 0 "the shards check out"
expect_eq "$(cat "$W/run/latest" 2>/dev/null)" step-00000020 "latest checkpoint"
expect_file "$W/run/step-00000020/model.safetensors"
expect_file "$W/run/step-00000010/model.safetensors" # LLMKIT_SAVE_EVERY=10 reached the job
expect_eq "$(grep -c '"loss"' "$W/run/metrics.jsonl" 2>/dev/null)" 20 "training steps in metrics.jsonl"
expect_eq "$(json "$W/eval.json" 'j["type"], j["seq_len"], j["model"].endswith("run/step-00000020")')" \
  "ppl 64 True" "eval report"
expect_eq "$(json "$W/eval.json" '__import__("math").isfinite(j["metrics"]["loss"]["value"]) and j["metrics"]["loss"]["value"] > 0')" \
  True "eval loss is finite"
expect_eq "$(grep -c '"val_loss"' "$W/run/metrics.jsonl")" 1 "one validation at the end"

# ---- 2. a failing chain: clean fails, nothing after it runs ----
zstd -q -c "$T/docs.jsonl" | head -c 3000 >"$T/bad.jsonl.zst"
F=$T/fail
t0=$(date +%s)
run env LLMKIT_SRUN_MPI="$test_mpi" "$pipeline" --workdir "$F" "${common[@]}" "$T/bad.jsonl.zst"
expect_rc 0 "llm-pipeline on a bad input submits"
fids=()
for s in "${stages[@]}"; do
  fids+=("$(awk -v s="$s" '$1 == s {print $2}' "$T/out")")
done
if wait_jobs 120 "${fids[@]}"; then ok; else fail "the failing chain's jobs did not end within 120 s"; fi
note "failing chain: $(($(date +%s) - t0)) s"
expect_eq "$(job_field "${fids[0]}" JobState)" FAILED "state of the clean job on a bad input"
if grep -q "truncated zstd stream" "$F/logs/llm-clean-${fids[0]}.out" 2>/dev/null; then ok; else fail "the clean log does not say why"; fi
for i in 1 2 3 4; do
  s=$(job_field "${fids[i]}" JobState)
  if [ -z "$s" ] || [ "$s" = CANCELLED ]; then ok; else fail "the ${stages[i]} job after a failed clean is '$s', not CANCELLED or gone"; fi
  reason=$(job_field "${fids[i]}" Reason)
  if [ -z "$s" ] || [ "$reason" = DependencyNeverSatisfied ]; then ok; else fail "the ${stages[i]} job was cancelled for '$reason'"; fi
  expect_no_file "$F/logs/llm-${stages[i]}-${fids[i]}.out"
done
for f in dedup shards tok.model run eval.json; do
  expect_no_file "$F/$f"
done
[ "$failures" -eq 0 ] || { dump_jobs "${fids[@]}"; dump_logs "$F"; }

# ---- 3. pretrain.sbatch stopped before a time limit: checkpoint, requeue, resume ----
# Slurm would send SIGUSR1 to the batch script 120 s before --time (--signal=B:USR1@120);
# scancel --batch --signal=USR1 sends the same now.
t0=$(date +%s)
steps=400
pt_env=(LLMKIT_WORKDIR="$W" LLMKIT_RUN_DIR="$W/run-requeue" LLMKIT_MODEL=llama-tiny
  LLMKIT_STEPS="$steps" LLMKIT_SEQ_LEN=64 LLMKIT_MICRO_BATCH=4 LLMKIT_SAVE_EVERY=1000
  LLMKIT_SRUN_MPI=none LLMKIT_HOME="$SRC")
run env "${pt_env[@]}" sbatch --parsable --ntasks=1 --ntasks-per-node=1 --cpus-per-task=1 \
  --chdir="$W" --output="$W/logs/%x-%j.out" "$SRC/slurm/pretrain.sbatch"
expect_rc 0 "sbatch pretrain.sbatch"
pj=$(cut -d';' -f1 "$T/out")
for _ in $(seq 1 240); do
  n=$(grep -sc '"loss"' "$W/run-requeue/metrics.jsonl" || true)
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.25
done
scancel --batch --signal=USR1 "$pj"
for _ in $(seq 1 120); do
  [ "$(job_field "$pj" Restarts)" = 1 ] && [ "$(job_field "$pj" JobState)" = PENDING ] && break
  sleep 0.25
done
expect_eq "$(job_field "$pj" JobState) $(job_field "$pj" Restarts)" "PENDING 1" "pretrain job requeued after SIGUSR1"
# A requeued job waits about 2 minutes before it may start again (Slurm's begin time for
# requeued jobs); make it eligible sooner. Not at once: slurmd refuses to launch a job again in
# the second its credential was revoked ("Job credential revoked").
sleep 3
scontrol update JobId="$pj" StartTime=now >/dev/null 2>&1
if wait_jobs 180 "$pj"; then ok; else fail "the requeued pretrain job did not end within 180 s"; fi
note "requeue: $(($(date +%s) - t0)) s"
log=$W/logs/llm-pretrain-$pj.out
expect_eq "$(job_field "$pj" JobState) $(job_field "$pj" Restarts)" "COMPLETED 1" "requeued pretrain job"
for msg in "SIGUSR1: the time limit is near" "stopped by signal 10" "requeueing job $pj" \
  "(restart 1)" "resuming from the checkpoint" "resumed from" "done: $W/run-requeue"; do
  if grep -qF -- "$msg" "$log" 2>/dev/null; then ok; else fail "the requeued job's log lacks '$msg'"; fi
done
expect_eq "$(cat "$W/run-requeue/latest" 2>/dev/null)" "step-$(printf %08d $steps)" "latest after the requeue"
# Resuming is exact on the CPU: the losses are those of a run that was never stopped.
run llm-pretrain --model llama-tiny --train "$W/shards/train-*.tok" --val "$W/shards/val-*.tok" \
  --eval-every 100 --out "$T/straight" --steps $steps --seq-len 64 --micro-batch 4 \
  --batch-tokens 256 --threads 1 -q
expect_rc 0 "an uninterrupted run"
# losses METRICS: step:loss for every loss line of a metrics.jsonl, validation lines included
# (not the start lines, one per (re)start).
losses() { python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if "loss" in r or "val_loss" in r:
        print("%d:%r" % (r["step"], r["loss"] if "loss" in r else r["val_loss"]))' "$1"; }
expect_eq "$(losses "$W/run-requeue/metrics.jsonl" | wc -l)" $((steps + steps / 100)) "metrics lines of the requeued run"
if [ "$(losses "$W/run-requeue/metrics.jsonl")" = "$(losses "$T/straight/metrics.jsonl")" ]; then
  ok
else
  fail "the requeued run's losses differ from those of an uninterrupted run"
fi
[ "$failures" -eq 0 ] || { dump_logs "$W"; show_logs; }

note "$(($(date +%s) - started)) s in all"
finish
