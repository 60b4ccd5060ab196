// llm-pretrain (lib/model/pretrain.cpp): next-token prediction (a decoder) or masked-language
// modelling (an encoder, BERT) on token shards, an objective on the shared training loop (llmkit/trainer.hpp: data parallel over MPI ranks, ZeRO-1, AdamW,
// schedules, accumulation, metrics, evaluation, checkpoints and resumption).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llmkit/mlm.hpp"
#include "llmkit/trainer.hpp"

namespace llmkit {

// llm-pretrain's options: the shared trainer's, and its data.
struct PretrainConfig : TrainerOptions {
  std::string model = "llama-tiny";  // preset or config.json
  std::vector<std::string> train;    // shard paths or glob patterns
  std::vector<std::string> val;
  int64_t batch_tokens = 0;     // 0: seq_len * micro_batch * ranks (or --batch-size rows)
  int64_t eval_batches = 8;     // micro-batches of validation windows
  int64_t sample_tokens = 32;   // --sample-every: tokens generated after a prompt from the data
  bool verify_shards = true;
  // "clm": next-token prediction (Llama, GPT-2); "mlm": BERT's masked tokens. Each MLM row is
  // [CLS] and seq_len - 1 tokens of a window of the shards (documents end in [SEP]), masked
  // afresh every step by mlm (seeded by the run's seed, the step and the row).
  std::string objective = "clm";
  MlmConfig mlm;
  // mlm: also next-sentence prediction (BertForPreTraining): each row [CLS] A [SEP] B [SEP], B
  // the text after A or, half the time, from another window; the loss adds its cross-entropy.
  bool nsp = false;
};

class Stats;
// Runs training; returns 0 at the end, 1 when stopped by a signal after saving a checkpoint.
// Counts steps, tokens, skipped (non-finite) steps and checkpoints in `stats`.
int run_pretrain(const PretrainConfig& cfg, Stats& stats);

// Draws RUN/metrics.jsonl into RUN/loss.png with share/llmkit/plot-metrics.gp (gnuplot); `run`
// may be the metrics file itself (loss.png then goes beside it).
void plot_metrics(const std::string& run);

// Dense bf16 tensor-core peak of a GPU by its name (FLOP/s; 0 when not known): the
// denominator of MFU on a GPU, as llm.c and the PaLM paper count it.
double gpu_peak_flops(const std::string& device_name);

}  // namespace llmkit
