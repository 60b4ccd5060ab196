// llm-pretrain's training loop (lib/model/pretrain.cpp): data-parallel over MPI ranks (the
// optimizer state optionally sharded over them, ZeRO-1), AdamW with warmup and a decay
// schedule, gradient accumulation to a fixed global batch, metrics, evaluation, checkpoints and
// resumption.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace llmkit {

struct PretrainConfig {
  std::string model = "llama-tiny";  // preset or config.json
  std::vector<std::string> train;    // shard paths or glob patterns
  std::vector<std::string> val;
  std::string out;
  std::string init;       // checkpoint directory or model.safetensors to start from
  std::string tokenizer;  // copied into checkpoints (and used by --sample-every)
  bool resume = false;
  int seq_len = 256;
  int micro_batch = 8;
  int64_t batch_tokens = 0;  // 0: seq_len * micro_batch * ranks
  int64_t steps = 1000;
  double lr = 3e-4, min_lr_frac = 0.1;
  int64_t warmup = 100;
  std::string schedule = "cosine";  // cosine, linear, constant, wsd
  double wsd_decay_frac = 0.2;      // wsd: the last fraction of steps decays linearly
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, clip = 1.0;
  int64_t sample_tokens = 32;  // --sample-every: tokens generated after a prompt from the data
  int64_t stop_at = 0;  // save and exit 0 after this step (a time slice of a longer run)
  int64_t eval_every = 100, eval_batches = 8, save_every = 0, sample_every = 0;
  int keep = 0;
  int max_bad_steps = 5;  // NaN/inf steps in a row before giving up
  uint64_t seed = 0;
  bool verify_shards = true;
  std::string device = "auto";     // cpu, cuda, cuda:N, auto (make_backend)
  std::string precision = "bf16";  // the GPU's matmul compute type
  std::string save_dtype = "fp32";  // model.safetensors in checkpoints: fp32 or bf16
  bool recompute = false;          // recompute the MLP's activations in the backward pass
  double peak_tflops = 0;          // MFU's denominator; 0: known GPU's bf16 peak, or measured on the CPU
  // 1: ZeRO-1, each rank keeps AdamW's moments of its segment of the parameters only (and
  // updates only those weights); 0: every rank keeps all of them. Checkpoints are the same.
  int zero = 0;
};

// Learning rate at `step` (0-based) for the schedule.
double learning_rate(const PretrainConfig& cfg, int64_t step);

class Stats;
// Runs training; returns 0 at the end, 1 when stopped by a signal after saving a checkpoint.
// Counts steps, tokens, skipped (non-finite) steps and checkpoints in `stats`.
int run_pretrain(const PretrainConfig& cfg, Stats& stats);

// Draws RUN/metrics.jsonl into RUN/loss.png with share/llmkit/plot-metrics.gp (gnuplot); `run`
// may be the metrics file itself (loss.png then goes beside it).
void plot_metrics(const std::string& run);

// Measured sgemm rate of this process (FLOP/s), the denominator of MFU on the CPU.
double measure_sgemm_flops();
// Dense bf16 tensor-core peak of a GPU by its name (FLOP/s; 0 when not known): the
// denominator of MFU on a GPU, as llm.c and the PaLM paper count it.
double gpu_peak_flops(const std::string& device_name);

}  // namespace llmkit
