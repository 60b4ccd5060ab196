# Results do not depend on the thread count: llm-pretrain's losses and saved weights and
# llm-eval's figures are the same bits with --threads 1, 2 and 3, with each CPU matmul kernel,
# and with OpenBLAS forced onto its Haswell kernels (OPENBLAS_CORETYPE=Haswell, as some machines
# set it), whose own threading rounds rows differently by the thread count.
. "$(dirname "$0")/lib.sh"

word_shards 120
weights() { python3 -c "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest()[:16])" "$1"; }
steplosses() { python3 -c "import json,sys; print(' '.join(repr(r['loss']) for r in map(json.loads, open(sys.argv[1])) if 'loss' in r))" "$1"; }
common="--model llama-tiny --train shards/train-00000.tok --seq-len 64 --micro-batch 3 --batch-tokens 384 --lr 2e-3 --warmup 2 --steps 4"
for setting in "" "LLMKIT_GEMM=openblas OPENBLAS_CORETYPE=Haswell" "LLMKIT_GEMM=openblas"; do
  for t in 1 2 3; do
    run env $setting llm-pretrain $common --threads $t --out "r$t"
    expect_rc 0 "train with '$setting' --threads $t"
    run env $setting llm-eval ppl --threads $t --model "r$t" --seq-len 64 --batch-size 2 -o "e$t.json" shards/train-00000.tok
    expect_rc 0 "ppl with '$setting' --threads $t"
  done
  case "$setting" in *openblas*) expect_eq "$(head -1 r1/metrics.jsonl | grep -c OpenBLAS)" "1" "kernel named in the metrics ($setting)" ;; esac
  for t in 2 3; do
    expect_eq "$(steplosses "r$t/metrics.jsonl")" "$(steplosses r1/metrics.jsonl)" "losses, --threads $t vs 1 ($setting)"
    expect_eq "$(weights "r$t/step-00000004/model.safetensors")" "$(weights r1/step-00000004/model.safetensors)" "weights, --threads $t vs 1 ($setting)"
    expect_eq "$(json "e$t.json" 'repr(j["metrics"]["loss"]["value"])')" "$(json e1.json 'repr(j["metrics"]["loss"]["value"])')" "ppl, --threads $t vs 1 ($setting)"
  done
  rm -rf r1 r2 r3
done
run env LLMKIT_GEMM=fastest llm-pretrain $common --out bad
expect_rc 1 "an unknown LLMKIT_GEMM"
expect_err_contains "LLMKIT_GEMM: 'fastest' is not a kernel: onednn, openblas, reference or auto"
finish
