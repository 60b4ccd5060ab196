// llm-sft (lib/model/sft.cpp): instruction tuning on chat data (llmkit/chat.hpp) as an objective
// on the shared training loop: the masked next-token loss, averaged over the trained tokens of
// the whole global batch; full fine-tuning or LoRA adapters on a frozen base (PEFT's format);
// exact packing; distillation from a teacher model.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/examples.hpp"
#include "llmkit/model.hpp"
#include "llmkit/trainer.hpp"

namespace llmkit {

class Stats;
class Tokenizer;
class OptionParser;
class ExampleSet;
struct RowBatch;

struct SftConfig : TrainerOptions {
  std::vector<std::string> data, val;  // chat JSONL files (llmkit-chat(5))
  std::string chat_template = "chatml";
  bool packing = false;
  bool truncate = true;  // false (--no-truncate): an example longer than a row is an error
  bool strict = false;   // a malformed row stops the run
  double epochs = 0;     // > 0: the run's length in passes over the data, instead of --steps
  int64_t eval_batches = 0;  // 0: every validation row
  LoraOptions lora;      // rank 0: full fine-tuning
  // QLoRA: the frozen base's matrices held as this llm-quant type's blocks (q4_k_m, q4_0,
  // q8_0, ...; quantize_model), the adapters in fp32; empty: an fp32 base.
  std::string qlora;
  int64_t limit = 0;     // rows read at most per file set; 0: all
  // Distillation: with a teacher, the loss is (1 - kd_alpha) NLL + kd_alpha divergence, both
  // means over the trained tokens of the global batch.
  std::string teacher;   // a checkpoint, run or adapter directory; empty: none
  double kd_alpha = 0.5;
  Divergence divergence;
};

// Runs training; 0 at the end, 1 when stopped by a signal after saving a checkpoint.
int run_sft(const SftConfig& cfg, Stats& stats);

// What every post-training objective tunes (llm-sft, llm-ppo dpo, llm-rm): the model of --init
// (a full fine-tune that resumes: its checkpoint's config, the loop loads the weights), with
// LoRA adapters on the frozen base when cfg.lora.rank > 0 (initialised, or checked against the
// base they were trained on when resuming), checked against its tokenizer and --seq-len.
struct TunedBase {
  std::string init_dir;  // the checkpoint directory --init names
  std::unique_ptr<Tokenizer> tokenizer;
  // A sequence classifier (set before building): --init's transformer with a score head of
  // `labels` outputs (a reward model: 1) named label_names (none: LABEL_i) and no LM head; a
  // language model's start gets a new head, N(0, 0.02) from the seed (init_score_head). 0: a
  // language model.
  int labels = 0;
  std::vector<std::string> label_names;
  bool new_score = false;  // set by the build: the score head was initialised, not read
};
std::unique_ptr<Model> build_tuned_model(const SftConfig& cfg, Trainer& t, const std::string& resume_dir, TunedBase& base,
                                         ModelOptions options = {});
// A new score head (Model::head_tensors(): weights N(0, 0.02), biases 0), deterministic for the seed.
void init_score_head(Model& m, uint64_t seed);
// What such a model's checkpoint holds besides the loop's files: tokenizer_config.json (the
// chat template) and, under LoRA, the adapter in PEFT's files.
void save_tuned_extra(const SftConfig& cfg, Trainer& t, const TunedBase& base, const std::string& dir);
// The options of the commands that tune a model on chat data (llm-sft, llm-ppo, llm-rm),
// declared once: --init, --data, --val, --tokenizer, --template, --no-truncate, --strict,
// --epochs, --limit (and --packing where the objective packs), the LoRA options and --merge.
// check_tuning_options() puts what they say into cfg (UsageError naming the flag);
// finish_tuning() does what --merge asks once the run has ended with `rc`.
struct TuningFlags {
  int64_t rank = 0;
  double alpha = 0, dropout = 0;
  std::string targets = "all-linear";
  bool no_truncate = false, merge = false;
};
void add_tuning_options(OptionParser& op, SftConfig& cfg, TuningFlags& f, const std::string& data_help, bool packing);
void check_tuning_options(SftConfig& cfg, const TuningFlags& f);
void finish_tuning(const SftConfig& cfg, const TuningFlags& f, int rc, const Stats& stats);

// A tuning objective's data: --data (counted in the run's stats) and --val through `encode`,
// in groups of `group` examples (2: preference pairs, which also need even batches), `whole`
// examples as inputs (reward models); then a warning on the examples cut to --seq-len (`what`
// names them), and --epochs turned into the run's steps.
void read_tuning_data(Trainer& t, const SftConfig& cfg, const RowEncoder& encode, int group, bool whole, const char* what,
                      std::unique_ptr<ExampleSet>& train, std::unique_ptr<ExampleSet>& val);
// The first `rows` rows (all: 0) of an evaluation set in micro-batches of cfg.micro_batch,
// dealt round-robin to the ranks: f(batch) for this rank's, in the order of epoch 0 under
// seed 0. The evaluation of every tuning objective, and DPO's reference pass.
void for_rank_batches(Trainer& t, const SftConfig& cfg, const ExampleSet& set, uint64_t rows,
                      const std::function<void(const RowBatch&)>& f);

// Hugging Face TRL's defaults where its trainers have them (SFTConfig, DPOConfig, RewardConfig,
// GRPOConfig: no warmup, a linear schedule to 0, no weight decay, beta2 0.999, rows of 1024),
// with the trainer's learning rate.
void use_trl_defaults(SftConfig& cfg, double lr);
// --tokenizer defaulting to --init's tokenizer.model (the loop copies it into every checkpoint).
void default_tokenizer(SftConfig& cfg);
// A tuning objective run on the shared loop: its config with the default tokenizer.
template <class Obj, class Config>
int train_objective(const Config& cfg, Stats& stats) {
  Config c = cfg;
  default_tokenizer(c);
  Obj objective(c);
  return Trainer(c, objective, stats).run();
}
// The end of a tuning command: runs it, writes --stats, does what --merge asks.
int run_tuning_command(const SftConfig& cfg, const TuningFlags& f, const std::string& program, const std::string& stats_file,
                       const std::function<int(Stats&)>& run);
// Prints the first n examples of the data with their trained tokens between [[ and ]].
void show_masks(const SftConfig& cfg, int64_t n, std::FILE* out);
// A base with an adapter (an adapter directory or a run whose checkpoint holds one) merged into
// a plain checkpoint directory `out`: config.json, model.safetensors (W + scale B A),
// tokenizer.model and tokenizer_config.json.
void merge_adapter(const std::string& adapter, const std::string& out);
// tokenizer_config.json for a checkpoint trained with `chat_template` (Hugging Face's keys).
std::string tokenizer_config_json(const std::string& chat_template, int max_length);

}  // namespace llmkit
