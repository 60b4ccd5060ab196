// The one training loop of every trainer (lib/model/trainer.cpp): llm-pretrain, llm-sft, llm-rm
// and llm-ppo are objectives on it. The loop owns the model's optimizer (AdamW over the
// trainable tensors only, schedules, clipping, non-finite steps skipped), data parallelism over
// MPI ranks (all-reduce overlapped with the backward pass, ZeRO-1), gradient accumulation to a
// global batch, signals, metrics, evaluation and checkpoints with bit-exact resumption on the
// CPU. An objective says what a micro-batch feeds forward and backward, what it evaluates and
// what it adds to the metrics and the checkpoint.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmkit/backend.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/model.hpp"

namespace llmkit {

class Comm;
class OptionParser;
class Stats;

// The options every trainer takes, declared once (add_trainer_options).
struct TrainerOptions {
  std::string out, init, tokenizer;
  bool resume = false;
  int seq_len = 256;
  bool seq_len_given = false;  // --seq-len on the command line (else the command's default)
  int micro_batch = 8;
  int64_t batch_rows = 0;  // rows (sequences) per optimizer step over all ranks; 0: micro-batch x ranks
  int64_t steps = 1000;
  double lr = 3e-4, min_lr_frac = 0.1;
  int64_t warmup = 100;
  std::string schedule = "cosine";  // cosine, linear, constant, wsd
  double wsd_decay_frac = 0.2;
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, clip = 1.0;
  int64_t eval_every = 100, save_every = 0, stop_at = 0, sample_every = 0;
  int keep = 0;
  int max_bad_steps = 5;
  uint64_t seed = 0;
  std::string device = "auto", precision = "bf16", save_dtype = "fp32";
  bool recompute = false;
  double peak_tflops = 0;
  int zero = 0;
  // Tensor-parallel ranks (--tp): the world is (world / tp) data-parallel groups of tp ranks.
  int64_t tp = 1;
};

// Learning rate at `step` (0-based) for the schedule.
double learning_rate(const TrainerOptions& o, int64_t step);

// Adds the shared options to a command's parser (defaults from `o`), and checks them after
// parsing (UsageError naming the flag).
void add_trainer_options(OptionParser& op, TrainerOptions& o, int64_t& micro, int64_t& seq, int64_t& keep, int64_t& bad,
                         int64_t& zero);
void check_trainer_options(TrainerOptions& o, int64_t micro, int64_t seq, int64_t keep, int64_t bad, int64_t zero);

class Trainer;

// What a trainer trains: the model it builds, a step's micro-batches, evaluation, metrics.
class Objective {
 public:
  virtual ~Objective() = default;
  // The model to train, built on `be`: from `resume_dir`'s checkpoint config when resuming
  // (the loop then loads weights and optimizer state), else initialised or loaded (--init).
  // Freezes what is not trained. Reads the data.
  virtual std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) = 0;
  // Sequences (rows) a step consumes from the data stream, over all ranks.
  virtual int64_t rows_per_step(const Trainer& t) const;
  // Before a step's micro-batches: rows cursor .. cursor + rows_per_step() - 1 (the global
  // batch), e.g. to count the batch's trained tokens for the loss's normaliser.
  virtual void begin_step(Trainer& t, uint64_t cursor) { (void)t, (void)cursor; }
  // One micro-batch of this rank: rows `first` .. first + micro_batch - 1 of the stream, forward
  // and backward (gradients accumulate; scaled so the step's gradient is the objective's).
  virtual void micro_step(Trainer& t, uint64_t first) = 0;
  // After the step's micro-batches, before the update: the step's loss over all ranks (a
  // collective), used for the non-finite check and the metrics' "loss".
  virtual double end_step(Trainer& t) = 0;
  // More fields for the step's metrics line (rank 0's, after end_step), and tokens the step
  // trained on (the "tokens" count).
  virtual void step_metrics(Trainer& t, nlohmann::json& line) { (void)t, (void)line; }
  virtual uint64_t step_tokens(const Trainer& t) const = 0;
  // Model FLOPs of this rank's step (MFU); by default the model's forward and backward over
  // --accumulation micro-batches of --micro-batch rows of --seq-len.
  virtual double step_flops(const Trainer& t) const;
  // Evaluation: fields of an evaluation line ({"val_loss": ...}); empty when nothing to do.
  virtual nlohmann::json evaluate(Trainer& t) { (void)t; return nullptr; }
  // A sample of the model's writing, logged every --sample-every steps.
  virtual void sample(Trainer& t) { (void)t; }
  // Saving: what the checkpoint directory gets besides the loop's files (an adapter, a
  // tokenizer_config.json); the run's summary log line at start.
  virtual void save_extra(Trainer& t, const std::string& dir) { (void)t, (void)dir; }
  // Called on every rank before a checkpoint is written (save_extra runs on rank 0 only): a
  // collective place to gather what the checkpoint needs from all ranks.
  virtual void before_save(Trainer& t) { (void)t; }
  virtual std::string describe(const Trainer& t) const = 0;
  // Frees what the objective holds in the trainer's backend (a teacher, a reference model):
  // the trainer calls it before its backend goes.
  virtual void release(Trainer& t) { (void)t; }
  // MiB the objective's other models hold per rank (a teacher: weights and activations), for
  // the memory budget printed at start.
  virtual double other_models_mib(const Trainer& t) const { (void)t; return 0; }
};

class Trainer {
 public:
  Trainer(const TrainerOptions& opts, Objective& objective, Stats& stats);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  // Trains; 0 at the end (or --stop-at), 1 when stopped by a signal after saving a checkpoint.
  int run();

  const TrainerOptions& options() const { return opts_; }
  const Objective& objective() const { return obj_; }
  // The run's length when the objective decides it (llm-sft --epochs), during build().
  void set_steps(int64_t steps) { opts_.steps = steps; }
  Backend& backend() { return *be_; }
  Model& model() { return *model_; }
  const Model& model() const { return *model_; }
  // The data-parallel group this rank is in: objectives split data and sum their metrics over
  // it (a tensor-parallel group's ranks see the same rows and compute the same sums).
  Comm& comm() { return *dp_; }
  const Comm& comm() const { return *dp_; }
  Stats& stats() { return stats_; }
  int ranks() const;  // data-parallel ranks
  int rank() const;   // this rank's place among them
  // The one rank that logs and writes (the world's rank 0).
  bool leader() const;
  int tensor_parallel() const { return static_cast<int>(opts_.tp); }
  // What objectives build their model with: this rank's tensor-parallel slice (the group's
  // collectives), to which they add their own options.
  ModelOptions model_options();
  int64_t accumulation() const { return accum_; }
  bool on_gpu() const;  // the backend is a GPU's
  int64_t rows_per_rank() const { return per_rank_; }
  const TrainerState& state() const { return state_; }
  // Appends a line to OUT/metrics.jsonl (rank 0).
  void log_metrics(const std::string& line);

 private:
  void setup();
  void setup_optimizer();
  void load_optimizer_state(const std::string& dir);
  double train_step();
  void reduce_gradients();
  double gradient_norm();
  void optimizer_step(double lr, float clip_scale, int64_t t);
  void save(bool final);
  void open_metrics(int64_t resumed_step);

  TrainerOptions opts_;
  Objective& obj_;
  Comm& comm_;
  Stats& stats_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<class Collectives> coll_;  // over the data-parallel group
  // The data-parallel group (ranks with the same tensor-parallel rank) and the tensor-parallel
  // group (adjacent ranks: one node's GPUs), with the latter's collectives.
  std::unique_ptr<Comm> dp_, tp_;
  std::unique_ptr<class Collectives> tp_coll_;
  struct Whole;
  bool assemble_tensor_parallel(const float* m, const float* v, Whole& out);
  // The part of the gradient buffer whose AdamW state this rank keeps and updates, [lo_, hi_):
  // with ZeRO-1 over several ranks its segment (counts_ has every rank's), else all.
  bool sharded_ = false;
  // ZeRO-2: the gradients of [lo_, hi_) summed over the data-parallel group and the step's
  // micro-batches, in the backend's memory (the model holds one block's gradients at a time).
  bool zero2_ = false, zero3_ = false;  // ZeRO-3: the model's parameters sharded too
  float* gshard_ = nullptr;
  void reduce_into_shard(size_t offset, size_t n, bool last);
  const float* gradient(size_t offset);  // of [lo_, hi_), wherever the step's sum is
  std::vector<size_t> counts_;
  size_t lo_ = 0, hi_ = 0;
  float* m_ = nullptr;  // AdamW's moments of [lo_, hi_), in the backend's memory
  float* v_ = nullptr;
  TrainerState state_;
  int64_t accum_ = 1, per_rank_ = 0;
  int metrics_fd_ = -1;
  double peak_flops_ = 0;
  int bad_in_row_ = 0;
  bool finished_ = false;  // resumed at the last step: nothing to do
};

}  // namespace llmkit
