// llm-pretrain: trains a decoder-only transformer (Llama or GPT-2 shape) from scratch on token
// shards, data parallel over MPI ranks (NCCL between GPUs), with checkpoints and resumption.

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/options.hpp"
#include "llmkit/pretrain.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

int pretrain_main(int argc, char** argv) {
  PretrainConfig cfg;
  int64_t seq = cfg.seq_len, micro = cfg.micro_batch, keep = cfg.keep, bad = cfg.max_bad_steps, zero = cfg.zero;
  bool no_verify = false;
  std::string plot;
  OptionParser op("llm-pretrain", "llm-pretrain --train SHARDS --out DIR [OPTIONS]",
                  "Trains a decoder-only transformer from scratch on token shards (llm-tok encode, or\n"
                  "llm.c .bin files), data parallel over MPI ranks, writing OUT/metrics.jsonl and\n"
                  "checkpoints OUT/step-NNNNNNNN/ (Hugging Face safetensors).");
  op.section("Model and data");
  op.string("model", 0, "NAME|FILE", &cfg.model,
            "llama-tiny (default), llama-25m, gpt2-124m, llama-125m, or a config.json");
  op.value("train", 0, "SHARDS", [&](const std::string& v) { cfg.train.push_back(v); },
           "training shards: paths or quoted glob patterns (repeatable)");
  op.value("val", 0, "SHARDS", [&](const std::string& v) { cfg.val.push_back(v); },
           "validation shards (repeatable)");
  op.string("tokenizer", 0, "MODEL", &cfg.tokenizer, "SentencePiece model copied into every checkpoint");
  op.string("out", 'o', "DIR", &cfg.out, "run directory: metrics.jsonl, step-NNNNNNNN/, latest");
  op.string("init", 0, "PATH", &cfg.init,
            "start from these weights: a checkpoint directory or a model.safetensors");
  op.flag("resume", 0, &cfg.resume, "continue from OUT's latest checkpoint");
  op.flag("no-verify", 0, &no_verify, "skip the shards' payload checksums at start");
  op.section("Batch");
  op.integer("seq-len", 0, "T", &seq, "tokens per sequence (default 256)");
  op.integer("micro-batch", 0, "B", &micro, "sequences per forward pass and rank (default 8)");
  op.integer("batch-tokens", 0, "N", &cfg.batch_tokens,
             "tokens per optimizer step over all ranks; gradient accumulation makes up the\n"
             "rest (default seq-len x micro-batch x ranks)");
  op.section("Optimizer and schedule");
  op.number("lr", 0, "LR", &cfg.lr, "peak learning rate (default 3e-4)");
  op.integer("warmup", 0, "STEPS", &cfg.warmup, "linear warmup steps (default 100)");
  op.integer("steps", 0, "N", &cfg.steps, "optimizer steps (default 1000)");
  op.string("schedule", 0, "NAME", &cfg.schedule, "after warmup: cosine (default), linear, constant, wsd");
  op.number("min-lr-frac", 0, "F", &cfg.min_lr_frac, "final learning rate as a fraction of --lr (default 0.1)");
  op.number("weight-decay", 0, "W", &cfg.weight_decay,
            "AdamW decoupled weight decay on matrices; none on norms, biases, embeddings (default 0.1)");
  op.number("beta1", 0, "B1", &cfg.beta1, "AdamW beta1 (default 0.9)");
  op.number("beta2", 0, "B2", &cfg.beta2, "AdamW beta2 (default 0.95)");
  op.number("eps", 0, "E", &cfg.eps, "AdamW epsilon (default 1e-8)");
  op.number("clip", 0, "NORM", &cfg.clip, "clip the global gradient norm to this (default 1.0; 0: off)");
  op.integer("zero", 0, "0|1", &zero,
             "1: ZeRO-1, each MPI rank keeps and updates AdamW's moments of its\n"
             "segment of the parameters only (default 0: every rank all of them)");
  op.integer("max-bad-steps", 0, "N", &bad, "give up after N steps in a row with NaN/inf (default 5)");
  op.section("Device");
  op.string("device", 0, "DEV", &cfg.device,
            "auto (default: cuda when a GPU is visible, else cpu), cpu, cuda (GPU number\n"
            "local rank modulo the GPUs visible: one MPI rank per GPU), cuda:N");
  op.string("precision", 0, "P", &cfg.precision,
            "GPU: bf16 (default: bf16 activations and tensor-core matmuls, fp32 master\n"
            "weights, gradients and AdamW state, fp32 sums), tf32, fp32 (all fp32)");
  op.flag("recompute", 0, &cfg.recompute,
          "recompute the MLP's activations in the backward pass instead of keeping them\n"
          "(less memory: 3 x ffn floats per token and layer; 10 to 15% more FLOPs)");
  op.number("peak-tflops", 0, "X", &cfg.peak_tflops,
            "the device's peak TFLOP/s, MFU's denominator (default: the known bf16 peak of\n"
            "the GPU; on the CPU, a measured sgemm)");
  op.section("Evaluation and checkpoints");
  op.integer("eval-every", 0, "N", &cfg.eval_every, "validation loss every N steps (default 100)");
  op.integer("eval-batches", 0, "N", &cfg.eval_batches, "micro-batches of validation windows (default 8)");
  op.integer("save-every", 0, "N", &cfg.save_every, "checkpoint every N steps (default: only at the end)");
  op.integer("keep", 0, "N", &keep, "keep the newest N checkpoints (default 0: all)");
  op.string("save-dtype", 0, "T", &cfg.save_dtype,
            "model.safetensors of checkpoints in fp32 (default) or bf16 (half the size; the\n"
            "fp32 weights then go into optimizer.safetensors, so --resume stays exact)");
  op.integer("sample-every", 0, "N", &cfg.sample_every,
             "every N steps print a continuation the model samples after 8 tokens of validation\n"
             "data (decoded with --tokenizer when given)");
  op.string("plot", 0, "RUN", &plot,
            "draw RUN/metrics.jsonl into RUN/loss.png with gnuplot and exit (no training);\n"
            "RUN may also be the metrics file itself");
  op.integer("stop-at", 0, "STEP", &cfg.stop_at,
             "save a checkpoint and exit 0 after this step, the schedule still that of --steps\n"
             "(--resume continues)");
  op.epilog(
      "Signals: SIGTERM, SIGINT and SIGUSR1 (Slurm's --signal=USR1@120) stop the run after the\n"
      "step under way with a checkpoint, exit 1; --resume continues from it. A second one stops\n"
      "at once without it (exit 128 + signal), saying which steps are lost.\n\n"
      "Exit status: 0 done, 1 runtime error or stopped by a signal, 2 usage error. See\n"
      "llm-pretrain(1).\n\n"
      "Example:\n"
      "  llm-pretrain --model llama-tiny --train 'shards/train-*.tok' --val shards/val-00000.tok \\\n"
      "    --out runs/r1 --seq-len 256 --micro-batch 8 --batch-tokens 16384 --steps 2000");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!plot.empty()) {
    plot_metrics(plot);
    return 0;
  }
  if (!rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (shards go after --train)");
  if (seq < 1 || seq > 1 << 20) throw UsageError("--seq-len must be in 1..1048576");
  if (micro < 1) throw UsageError("--micro-batch must be at least 1");
  if (cfg.steps < 1) throw UsageError("--steps must be at least 1");
  if (cfg.warmup < 0) throw UsageError("--warmup must be 0 or more");
  if (!(cfg.lr > 0)) throw UsageError("--lr must be positive");
  if (cfg.schedule != "cosine" && cfg.schedule != "linear" && cfg.schedule != "constant" && cfg.schedule != "wsd")
    throw UsageError("--schedule: use cosine, linear, constant or wsd");
  if (!(cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 && cfg.beta2 < 1)) throw UsageError("--beta1/--beta2 must be in [0, 1)");
  if (cfg.batch_tokens < 0) throw UsageError("--batch-tokens must be positive");
  if (cfg.eval_batches < 1) throw UsageError("--eval-batches must be at least 1");
  if (cfg.eval_every < 0 || cfg.save_every < 0 || cfg.stop_at < 0 || cfg.sample_every < 0 || keep < 0 || bad < 1)
    throw UsageError("--eval-every, --save-every, --stop-at and --keep must be 0 or more, --max-bad-steps 1 or more");
  if (zero != 0 && zero != 1) throw UsageError("--zero must be 0 or 1");
  if (cfg.precision != "bf16" && cfg.precision != "tf32" && cfg.precision != "fp32")
    throw UsageError("--precision must be bf16, tf32 or fp32");
  if (cfg.save_dtype != "fp32" && cfg.save_dtype != "bf16") throw UsageError("--save-dtype must be fp32 or bf16");
  if (cfg.peak_tflops < 0) throw UsageError("--peak-tflops must be positive");
  cfg.seq_len = static_cast<int>(seq);
  cfg.zero = static_cast<int>(zero);
  cfg.micro_batch = static_cast<int>(micro);
  cfg.keep = static_cast<int>(keep);
  cfg.max_bad_steps = static_cast<int>(bad);
  cfg.seed = op.common().seed;
  cfg.verify_shards = !no_verify;
  check_output_dir(cfg.out, "--out");
  Stats stats;
  int rc = run_pretrain(cfg, stats);
  // Every rank counted the same steps: rank 0's counts are the run's.
  stats.write(op.common().stats_file, "llm-pretrain", Comm::world());
  return rc;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-pretrain", argc, argv, pretrain_main); }
