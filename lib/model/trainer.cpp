// The one training loop; see llmkit/trainer.hpp.
#include "llmkit/trainer.hpp"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/parallel.hpp"
#include "llmkit/pretrain.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

double learning_rate(const TrainerOptions& c, int64_t step) {
  const double min_lr = c.lr * c.min_lr_frac;
  if (step < c.warmup) return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup);
  if (c.schedule == "constant") return c.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, c.steps - c.warmup));
  const double progress = std::min(1.0, static_cast<double>(step - c.warmup) / span);
  if (c.schedule == "linear") return c.lr - (c.lr - min_lr) * progress;
  if (c.schedule == "wsd") {  // warmup, stable, then a linear decay over the last fraction
    const int64_t decay_start = c.steps - static_cast<int64_t>(c.wsd_decay_frac * static_cast<double>(c.steps));
    if (step < decay_start) return c.lr;
    const double p = static_cast<double>(step - decay_start) / static_cast<double>(std::max<int64_t>(1, c.steps - decay_start));
    return c.lr - (c.lr - min_lr) * std::min(1.0, p);
  }
  return min_lr + 0.5 * (c.lr - min_lr) * (1.0 + std::cos(M_PI * progress));  // cosine
}

// ---- Options ---------------------------------------------------------------------------------------

namespace {
std::string g(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}
}  // namespace

void add_trainer_options(OptionParser& op, TrainerOptions& o, int64_t& micro, int64_t& seq, int64_t& keep, int64_t& bad,
                         int64_t& zero) {
  micro = o.micro_batch;
  seq = 0;  // not given: the default
  keep = o.keep;
  bad = o.max_bad_steps;
  zero = o.zero;
  op.section("Run");
  op.string("out", 'o', "DIR", &o.out, "run directory: metrics.jsonl, step-NNNNNNNN/, latest");
  op.flag("resume", 0, &o.resume, "continue from OUT's latest checkpoint");
  op.section("Batch");
  op.integer("seq-len", 0, "T", &seq, "tokens per row (default " + std::to_string(o.seq_len) + ")");
  op.integer("micro-batch", 0, "B", &micro, "rows per forward pass and rank (default " + std::to_string(o.micro_batch) + ")");
  op.integer("batch-size", 0, "N", &o.batch_rows,
             "rows per optimizer step over all ranks; gradient accumulation makes up the\n"
             "rest (default micro-batch x ranks)");
  op.section("Optimizer and schedule");
  op.number("lr", 0, "LR", &o.lr, "peak learning rate (default " + g(o.lr) + ")");
  op.integer("warmup", 0, "STEPS", &o.warmup, "linear warmup steps (default " + std::to_string(o.warmup) + ")");
  op.integer("steps", 0, "N", &o.steps, "optimizer steps (default " + std::to_string(o.steps) + ")");
  op.string("schedule", 0, "NAME", &o.schedule, "after warmup: cosine, linear, constant, wsd (default " + o.schedule + ")");
  op.number("min-lr-frac", 0, "F", &o.min_lr_frac, "final learning rate as a fraction of --lr (default " + g(o.min_lr_frac) + ")");
  op.number("weight-decay", 0, "W", &o.weight_decay,
            "AdamW decoupled weight decay on matrices; none on norms, biases, embeddings\n(default " + g(o.weight_decay) + ")");
  op.number("beta1", 0, "B1", &o.beta1, "AdamW beta1 (default " + g(o.beta1) + ")");
  op.number("beta2", 0, "B2", &o.beta2, "AdamW beta2 (default " + g(o.beta2) + ")");
  op.number("eps", 0, "E", &o.eps, "AdamW epsilon (default " + g(o.eps) + ")");
  op.number("clip", 0, "NORM", &o.clip, "clip the global gradient norm to this (default " + g(o.clip) + "; 0: off)");
  op.integer("zero", 0, "0-3", &zero,
             "1: ZeRO-1, each data-parallel rank keeps and updates AdamW's moments of\n"
             "its segment of the trainable parameters only; 2: ZeRO-2, and of their summed\n"
             "gradients, each block's reduced as its backward ends; 3: ZeRO-3, and of the\n"
             "parameters, each block's gathered before it runs (CPU) (default 0: every\n"
             "rank all of them)");
  op.integer("tp", 0, "N", &o.tp,
             "tensor parallel over N adjacent MPI ranks (one node's GPUs): each holds 1/N of\n"
             "every block's attention heads and MLP units and of the vocabulary; the ranks\n"
             "are world/N data-parallel groups of N (default 1)");
  op.integer("max-bad-steps", 0, "N", &bad, "give up after N steps in a row with NaN/inf (default " + std::to_string(o.max_bad_steps) + ")");
  op.section("Device");
  op.string("device", 0, "DEV", &o.device,
            "auto (default: cuda when a GPU is visible, else cpu), cpu, cuda (GPU number\n"
            "local rank modulo the GPUs visible: one MPI rank per GPU), cuda:N");
  op.string("precision", 0, "P", &o.precision,
            "GPU: bf16 (default: bf16 activations and tensor-core matmuls, fp32 master\n"
            "weights, gradients and AdamW state, fp32 sums), tf32, fp32 (all fp32)");
  op.flag("recompute", 0, &o.recompute,
          "recompute the MLP's activations in the backward pass instead of keeping them\n"
          "(less memory: 3 x ffn floats per token and layer; 10 to 15% more FLOPs)");
  op.number("peak-tflops", 0, "X", &o.peak_tflops,
            "the device's peak TFLOP/s, MFU's denominator (default: the known bf16 peak of\n"
            "the GPU; on the CPU, a measured sgemm)");
  op.section("Evaluation and checkpoints");
  op.integer("eval-every", 0, "N", &o.eval_every, "validation every N steps (default " + std::to_string(o.eval_every) + ")");
  op.integer("save-every", 0, "N", &o.save_every, "checkpoint every N steps (default: only at the end)");
  op.integer("keep", 0, "N", &keep, "keep the newest N checkpoints (default 0: all)");
  op.string("save-dtype", 0, "T", &o.save_dtype,
            "model.safetensors of checkpoints in fp32 (default) or bf16 (half the size; the\n"
            "fp32 weights then go into optimizer.safetensors, so --resume stays exact)");
  op.integer("stop-at", 0, "STEP", &o.stop_at,
             "save a checkpoint and exit 0 after this step, the schedule still that of --steps\n"
             "(--resume continues)");
}

void check_trainer_options(TrainerOptions& o, int64_t micro, int64_t seq, int64_t keep, int64_t bad, int64_t zero) {
  o.seq_len_given = seq != 0;
  if (seq == 0) seq = o.seq_len;
  if (seq < 1 || seq > 1 << 20) throw UsageError("--seq-len must be in 1..1048576");
  if (micro < 1) throw UsageError("--micro-batch must be at least 1");
  if (o.batch_rows < 0) throw UsageError("--batch-size must be positive");
  if (o.steps < 1) throw UsageError("--steps must be at least 1");
  if (o.warmup < 0) throw UsageError("--warmup must be 0 or more");
  if (!(o.lr > 0)) throw UsageError("--lr must be positive");
  if (o.schedule != "cosine" && o.schedule != "linear" && o.schedule != "constant" && o.schedule != "wsd")
    throw UsageError("--schedule: use cosine, linear, constant or wsd");
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) throw UsageError("--beta1/--beta2 must be in [0, 1)");
  if (o.eval_every < 0 || o.save_every < 0 || o.stop_at < 0 || o.sample_every < 0 || keep < 0 || bad < 1)
    throw UsageError("--eval-every, --save-every, --stop-at and --keep must be 0 or more, --max-bad-steps 1 or more");
  if (zero < 0 || zero > 3) throw UsageError("--zero must be 0, 1, 2 or 3");
  if (o.tp < 1 || o.tp > 4096) throw UsageError("--tp must be in 1..4096");
  if (o.precision != "bf16" && o.precision != "tf32" && o.precision != "fp32")
    throw UsageError("--precision must be bf16, tf32 or fp32");
  if (o.save_dtype != "fp32" && o.save_dtype != "bf16") throw UsageError("--save-dtype must be fp32 or bf16");
  if (o.peak_tflops < 0) throw UsageError("--peak-tflops must be positive");
  if (o.out.empty()) throw UsageError("--out DIR is required");
  o.seq_len = static_cast<int>(seq);
  o.micro_batch = static_cast<int>(micro);
  o.keep = static_cast<int>(keep);
  o.max_bad_steps = static_cast<int>(bad);
  o.zero = static_cast<int>(zero);
  check_output_dir(o.out, "--out");
}

int64_t Objective::rows_per_step(const Trainer& t) const {
  return t.options().batch_rows > 0 ? t.options().batch_rows : static_cast<int64_t>(t.options().micro_batch) * t.ranks();
}

double Objective::step_flops(const Trainer& t) const {
  return t.model().flops_per_step(t.options().micro_batch, t.options().seq_len) * static_cast<double>(t.accumulation());
}

// ---- Signals ------------------------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

// What a second stop signal needs to know, kept where the signal-watching thread can read it
// whatever the trainer is doing (watch_stop_signals).
std::atomic<int64_t> g_steps_done{0}, g_steps_saved{-1}, g_saving_step{-1};
std::string g_run_dir;  // set once before the watch starts
int g_rank = 0;

// The temporary files and directories a save under way leaves in the run directory:
// .step-NNNNNNNN.tmp/ and .NAME.tmp.XXXXXX.
void remove_partial_files(const std::string& out) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(out, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() > 1 && n[0] == '.' && (has_suffix(n, ".tmp") || n.find(".tmp.") != std::string::npos))
      std::filesystem::remove_all(e.path(), ec);
  }
}

// The first stop signal is acknowledged at once (the loop stops after the step under way and
// writes a checkpoint); a second stops at once, saying what is lost, and removes partial files.
void on_stop_signal(int sig, int count) {
  const long long done = g_steps_done, saved = g_steps_saved, saving = g_saving_step;
  if (count == 1) {
    if (g_rank == 0)
      LLMKIT_WARN("signal %d: stopping after the step under way (step %lld), then writing a checkpoint; "
                  "a second signal stops at once, without it",
                  sig, done + 1);
    return;
  }
  if (g_rank == 0) {
    std::string lost;
    if (saving >= 0) lost = "the checkpoint of step " + std::to_string(saving) + " being written is abandoned, and ";
    const long long since = saved >= 0 ? saved : 0, n = done - since;
    const std::string from = saved >= 0 ? "the checkpoint of step " + std::to_string(saved) : "the start";
    lost += n <= 0   ? std::string("no step is lost")
            : n == 1 ? "the step since " + from + " is not saved"
                     : "the " + std::to_string(n) + " steps since " + from + " are not saved";
    LLMKIT_WARN("a second stop signal (%d): stopping at once; %s", sig, lost.c_str());
    remove_partial_files(g_run_dir);
  }
  hard_exit(128 + sig);
}

// A backend array on the host: in place when the backend's memory is the host's, else copied.
const float* on_host(Backend& be, float* p, size_t n, std::vector<float>& copy) {
  if (const float* h = be.host_view(p)) return h;
  copy.resize(n);
  be.download(copy.data(), p, n);
  return copy.data();
}

}  // namespace

// ---- The loop -------------------------------------------------------------------------------------------

// The ranks as Megatron-LM orders them: a tensor-parallel group is tp adjacent ranks (on one
// node, where NVLink joins its GPUs), and rank r is tensor-parallel rank r % tp of data-parallel
// rank r / tp.
Trainer::Trainer(const TrainerOptions& opts, Objective& objective, Stats& stats)
    : opts_(opts), obj_(objective), comm_(Comm::world()), stats_(stats),
      be_(make_backend(opts.device, opts.precision, comm_.local_rank())) {
  const int W = comm_.size(), tp = static_cast<int>(opts_.tp);
  if (W % tp)
    throw UsageError("--tp " + std::to_string(tp) + " needs a multiple of " + std::to_string(tp) + " MPI ranks (the world is " +
                     "data-parallel x tensor-parallel ranks); this run has " + std::to_string(W));
  tp_ = comm_.split(comm_.rank() / tp, comm_.rank() % tp);
  dp_ = comm_.split(comm_.rank() % tp, comm_.rank() / tp);
  tp_coll_ = on_gpu() && tp > 1 ? make_nccl_collectives(*tp_) : make_mpi_collectives(*tp_);
  // NCCL between GPUs; MPI between CPUs (and for one rank, where nothing is exchanged). Over the
  // data-parallel group: the gradients (and with ZeRO-3 the parameters) of the same slice.
  coll_ = on_gpu() && dp_->size() > 1 ? make_nccl_collectives(*dp_) : make_mpi_collectives(*dp_);
  if (opts_.zero == 3 && on_gpu())
    throw UsageError("--zero 3 runs on the CPU backend so far: on GPUs give --zero 2 (and --tp for a model that does not fit)");
}

ModelOptions Trainer::model_options() {
  ModelOptions o;
  o.tp.size = tp_->size();
  o.tp.rank = tp_->rank();
  o.tp.coll = tp_coll_.get();
  o.tp.comm = tp_.get();
  o.gradient_window = opts_.zero >= 2 && dp_->size() > 1;
  o.zero3 = opts_.zero == 3 && dp_->size() > 1 ? coll_.get() : nullptr;
  return o;
}

Trainer::~Trainer() {
  obj_.release(*this);
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
  for (float* p : {m_, v_, gshard_})
    if (p) be_->release(p);
}

int Trainer::ranks() const { return dp_->size(); }
int Trainer::rank() const { return dp_->rank(); }
bool Trainer::leader() const { return comm_.rank() == 0; }
bool Trainer::on_gpu() const { return std::string(be_->name()) == "cuda"; }

void Trainer::setup() {
  const int R = dp_->size();  // data-parallel ranks: each takes its share of the rows
  // A resumed run's model is the checkpoint's; otherwise what the objective builds.
  const std::string resume_dir = opts_.resume ? latest_checkpoint(opts_.out) : "";
  if (!opts_.resume && !latest_checkpoint(opts_.out).empty())
    throw Error(opts_.out, "holds a run already: give --resume to continue it, or another --out");
  model_ = obj_.build(*this, resume_dir);
  if (!resume_dir.empty()) {
    // A run already at or past --steps: nothing is trained, and nothing is written (saving it
    // again as "final" would rewrite latest and the metrics).
    const std::string ts = resume_dir + "/trainer_state.json";
    const int64_t at = TrainerState::from_json(read_file(ts), ts).step;
    if (at > opts_.steps)
      throw Error(resume_dir, "is at step " + std::to_string(at) + ", past --steps " + std::to_string(opts_.steps) +
                                  ": nothing to train (to go on, give --steps above " + std::to_string(at) +
                                  "; the schedule follows --steps)");
    if (at == opts_.steps) {
      if (comm_.rank() == 0)
        LLMKIT_INFO("%s is at step %lld, the last of --steps: nothing to do", resume_dir.c_str(), static_cast<long long>(at));
      finished_ = true;
      return;
    }
  }

  const int64_t global = obj_.rows_per_step(*this);
  if (global % (static_cast<int64_t>(opts_.micro_batch) * R) != 0)
    throw UsageError("--batch-size must be a multiple of micro-batch x ranks (" +
                     std::to_string(static_cast<int64_t>(opts_.micro_batch) * R) + ")");
  per_rank_ = global / R;
  accum_ = per_rank_ / opts_.micro_batch;
  state_.world_size = R;
  state_.tensor_parallel = tp_->size();
  state_.seed = opts_.seed;
  state_.seq_len = opts_.seq_len;
  state_.batch_sequences = global;

  setup_optimizer();
  if (!resume_dir.empty()) {
    TrainerState s = load_checkpoint(resume_dir, *model_, nullptr, nullptr);
    load_optimizer_state(resume_dir);
    if (s.seed != opts_.seed)
      throw Error(resume_dir, "was trained with --seed " + std::to_string(s.seed) + " (the data order); give the same");
    if (s.seq_len != opts_.seq_len || s.batch_sequences != global)
      throw Error(resume_dir, "was trained with seq-len " + std::to_string(s.seq_len) + " and " +
                                  std::to_string(s.batch_sequences) + " sequences per batch; give the same");
    if (s.world_size != R && comm_.rank() == 0)
      LLMKIT_INFO("resuming a %d-rank run on %d ranks: the batches are the same sequences", s.world_size, R);
    if (s.tensor_parallel != tp_->size() && comm_.rank() == 0)
      LLMKIT_INFO("resuming a run saved with --tp %d on --tp %d: the checkpoint's whole tensors are sliced again", s.tensor_parallel,
                  tp_->size());
    state_.step = s.step;
    state_.cursor = s.cursor;
    state_.tokens_seen = s.tokens_seen;
    if (comm_.rank() == 0) LLMKIT_INFO("resumed from %s at step %lld", resume_dir.c_str(), static_cast<long long>(s.step));
  }
  if (zero3_) model_->shard();  // from here each rank holds its segment of the parameters
  if (comm_.rank() == 0) {
    LLMKIT_INFO("%s, global batch %lld rows of %d (%lld micro-batch%s of %d per rank, %d rank%s)", obj_.describe(*this).c_str(),
                static_cast<long long>(global), opts_.seq_len, static_cast<long long>(accum_), accum_ == 1 ? "" : "es", opts_.micro_batch, R,
                R > 1 ? "s" : "");
    const size_t largest = *std::max_element(counts_.begin(), counts_.end());
    const double mib = 2.0 * sizeof(float) * static_cast<double>(largest) / (1 << 20);
    const double trainable = static_cast<double>(model_->num_trainable_unpadded()) / 1e6;
    const int tp = tp_->size();
    char split[96] = "";
    if (tp > 1) snprintf(split, sizeof split, " (this rank's slice: tensor parallel over %d ranks, %d data-parallel groups)", tp, R);
    if (sharded_)
      LLMKIT_INFO("%.2fM trainable parameters%s; optimizer state: %.2f MiB per rank (ZeRO-%d over %d ranks)", trainable, split, mib,
                  zero3_ ? 3 : zero2_ ? 2 : 1, R);
    else
      LLMKIT_INFO("%.2fM trainable parameters%s; optimizer state: %.2f MiB per rank (not sharded)", trainable, split, mib);
    // The memory budget per rank, as the model counts it (the process's libraries and the data
    // come on top).
    // ZeRO-3: the tensors outside the blocks, one block's window and this rank's segment.
    const double w = static_cast<double>(model_->weight_buffer_floats() + (zero3_ ? largest : 0)) *
                     (on_gpu() && opts_.precision == "bf16" ? 6 : 4) / (1 << 20);
    // ZeRO-2: the model's window and the gradients outside the blocks, and this rank's segment.
    const double g = static_cast<double>(model_->grad_buffer_floats() + (zero2_ ? largest : 0)) * 4 / (1 << 20);
    const double a = static_cast<double>(model_->activation_bytes(opts_.micro_batch, opts_.seq_len)) / (1 << 20);
    const double other = obj_.other_models_mib(*this);
    char others[64] = "";
    if (other > 0) snprintf(others, sizeof others, ", other models %.1f MiB", other);
    LLMKIT_INFO("memory per rank: weights %.1f MiB%s, gradients %.1f MiB, optimizer %.1f MiB, activations %.1f MiB%s; %.1f MiB in all",
                w, on_gpu() && opts_.precision == "bf16" ? " (with their bf16 copy)" : "", g, mib, a, others, w + g + mib + a + other);
    // Settings that run but rarely do what was meant.
    if (opts_.warmup > 0 && opts_.warmup >= opts_.steps)
      LLMKIT_WARN("--warmup %lld is not below --steps %lld: the learning rate never reaches --lr (it ends at %.3g)",
                  static_cast<long long>(opts_.warmup), static_cast<long long>(opts_.steps),
                  opts_.lr * static_cast<double>(opts_.steps) / static_cast<double>(opts_.warmup));
  }
  // The run directory, once everything it depends on has been read and checked: a run that
  // cannot start leaves none behind.
  if (comm_.rank() == 0) {
    std::filesystem::create_directories(opts_.out);
    // Temporary checkpoint directories of a save that was killed are of no use.
    for (const auto& e : std::filesystem::directory_iterator(opts_.out)) {
      std::string n = e.path().filename().string();
      if (n.rfind(".step-", 0) == 0 && has_suffix(n, ".tmp")) std::filesystem::remove_all(e.path());
    }
  }
  comm_.barrier();
  open_metrics(state_.step);
  const std::string device = be_->device_name();
  peak_flops_ = opts_.peak_tflops > 0 ? opts_.peak_tflops * 1e12 : on_gpu() ? gpu_peak_flops(device) : be_->matmul_peak_flops();
  const char* peak_from = opts_.peak_tflops > 0 ? "--peak-tflops" : on_gpu() ? "the GPU's bf16 peak" : "measured";
  {
    // A start line in the metrics: where this (re)start ran, and what MFU is measured against.
    nlohmann::json start = {{"step", state_.step}, {"event", "start"}, {"device", device},
                            {"matmul", be_->matmul_kernel()}, {"peak_flops", peak_flops_}, {"peak_flops_from", peak_from},
                            {"ranks", comm_.size()}, {"data_parallel", dp_->size()}, {"tensor_parallel", tp_->size()},
                            {"threads", omp_get_max_threads()}};
    log_metrics(start.dump());
  }
  if (comm_.rank() == 0) {
    LLMKIT_INFO("device: %s; matmuls: %s; MFU against %.0f GFLOP/s (%s)", device.c_str(), be_->matmul_kernel().c_str(),
                peak_flops_ / 1e9, peak_from);
    if (peak_flops_ <= 0) LLMKIT_WARN("the peak FLOP/s of %s is not known: give --peak-tflops for MFU", device.c_str());
  }
}

// AdamW's moments of the trainable tensors, zero at first. With ZeRO-1 over several ranks a
// rank keeps those of its segment only: 8 bytes per trainable parameter divided by the ranks.
void Trainer::setup_optimizer() {
  const size_t n = model_->num_grads();
  const int R = dp_->size();
  sharded_ = opts_.zero >= 1 && R > 1;
  zero2_ = opts_.zero >= 2 && R > 1;
  zero3_ = opts_.zero == 3 && R > 1;
  if (zero2_ && n != model_->num_params())
    throw UsageError("--zero " + std::to_string(opts_.zero) + " shards the gradients of a model trained whole: with frozen tensors "
                     "(LoRA, a frozen base) give --zero 1, whose gradients are those of the trainable tensors only");
  counts_ = sharded_ ? segment_counts(n, R) : std::vector<size_t>{n};
  lo_ = 0;
  for (int r = 0; sharded_ && r < dp_->rank(); ++r) lo_ += counts_[static_cast<size_t>(r)];
  hi_ = lo_ + counts_[sharded_ ? static_cast<size_t>(dp_->rank()) : 0];
  m_ = be_->alloc(std::max<size_t>(1, hi_ - lo_));
  v_ = be_->alloc(std::max<size_t>(1, hi_ - lo_));
  if (zero2_) gshard_ = be_->alloc(std::max<size_t>(1, hi_ - lo_));
}

// This rank's part of a checkpoint's moments: checkpoints hold all of them, whatever the
// sharding and the number of ranks they were saved with.
void Trainer::load_optimizer_state(const std::string& dir) {
  const size_t n = hi_ - lo_;
  std::vector<float> m(n), v(n);
  load_moments(dir, *model_, lo_, hi_, m.data(), v.data());
  be_->upload(m_, m.data(), n);
  be_->upload(v_, v.data(), n);
}

// Appends a line to OUT/metrics.jsonl with one write(), so a killed run leaves whole lines.
void Trainer::log_metrics(const std::string& line) {
  if (comm_.rank() != 0) return;
  std::string l = line + "\n";
  if (::write(metrics_fd_, l.data(), l.size()) != static_cast<ssize_t>(l.size()))
    throw Error(opts_.out + "/metrics.jsonl", errno_message("write failed", errno));
}

// The metrics of steps after the checkpoint a run resumes from are dropped: they are redone.
void Trainer::open_metrics(int64_t resumed_step) {
  if (comm_.rank() != 0) return;
  const std::string path = opts_.out + "/metrics.jsonl";
  std::string kept;
  if (resumed_step > 0 && file_size(path) > 0) {
    std::string all = read_file(path);
    for (size_t b = 0; b < all.size();) {
      size_t e = all.find('\n', b);
      if (e == std::string::npos) break;  // a partial last line
      std::string l = all.substr(b, e - b);
      size_t k = l.find("\"step\":");
      if (k != std::string::npos && std::stoll(l.substr(k + 7)) <= resumed_step) kept += l + "\n";
      b = e + 1;
    }
  }
  write_file_atomic(path, kept);
  metrics_fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (metrics_fd_ < 0) throw Error(path, errno_message("cannot open", errno));
}

// The step's micro-batches: this rank's rows of the global batch, the last one's backward
// starting each layer's all-reduce (ZeRO-1: reduce-scatter) as soon as the layer's gradients
// are final, overlapping communication with the layers still to go.
double Trainer::train_step() {
  model_->zero_grad();
  if (zero2_) be_->zero(gshard_, hi_ - lo_);
  obj_.begin_step(*this, state_.cursor);
  const uint64_t base = state_.cursor + static_cast<uint64_t>(dp_->rank()) * static_cast<uint64_t>(per_rank_);
  for (int64_t a = 0; a < accum_; ++a) {
    const bool last = a + 1 == accum_, overlap = last && dp_->size() > 1;
    if (zero2_)  // the blocks' gradients of every micro-batch, the rest's of the step, into this rank's segment
      model_->set_gradient_hook([this, last](size_t off, size_t n) { reduce_into_shard(off, n, last); });
    else if (overlap)
      model_->set_gradient_hook([this](size_t off, size_t n) {
        if (n == 0) return;
        if (sharded_) coll_->reduce_range_start(model_->grads() + off, counts_, off, n);
        else coll_->allreduce_sum_start(model_->grads() + off, n);
      });
    obj_.micro_step(*this, base + static_cast<uint64_t>(a * opts_.micro_batch));
    model_->set_gradient_hook(nullptr);
  }
  reduce_gradients();
  return obj_.end_step(*this);
}

// ZeRO-2: a range of the gradients a backward pass has finished, reduced to the ranks whose
// segments hold it and added to this rank's part of the step's sum: a block's at once (the
// model's window is the next block's), the others' (embeddings, heads) once, after the step's
// last micro-batch, as they add up in the model until then.
void Trainer::reduce_into_shard(size_t off, size_t n, bool last) {
  if (n == 0 || (!last && !model_->in_gradient_window(off))) return;
  float* src = model_->grad_at(off);
  coll_->reduce_range_start(src, counts_, off, n);
  coll_->wait();
  const size_t b = std::max(off, lo_), e = std::min(off + n, hi_);
  if (b < e) be_->accumulate(gshard_ + (b - lo_), src + (b - off), e - b);
}

const float* Trainer::gradient(size_t offset) { return zero2_ ? gshard_ + (offset - lo_) : model_->grads() + offset; }

// The sum of the ranks' gradients (objectives scale theirs so that the sum is the step's
// gradient): everywhere, or with ZeRO-1 on this rank's segment only, the part its optimizer
// reads (the rest of the buffer is left unspecified).
void Trainer::reduce_gradients() {
  if (dp_->size() == 1) return;
  coll_->wait();  // the all-reduces (reduce-scatters) the last backward started
}

// The norm of the whole gradient; with ZeRO-1 from the sums of squares of every rank's segment.
// Under tensor parallelism a split tensor's squares are summed over the group's slices, and a
// replicated tensor's (the same on every rank of the group) are counted once.
double Trainer::gradient_norm() {
  if (tp_->size() == 1) {
    double squares = be_->sum_squares(gradient(lo_), hi_ - lo_);
    if (sharded_) squares = dp_->allreduce_sum_double(squares);
    return std::sqrt(squares);
  }
  double split = 0, replicated = 0;
  for (const ParamSpec& s : model_->params()) {
    if (!s.trainable()) continue;
    const size_t b = std::max(s.grad_offset, lo_), e = std::min(s.grad_offset + s.size, hi_);
    if (b >= e) continue;
    (Model::tp_split(model_->config(), s.name) >= 0 ? split : replicated) += be_->sum_squares(gradient(b), e - b);
  }
  if (sharded_) replicated = dp_->allreduce_sum_double(replicated);
  split = sharded_ ? comm_.allreduce_sum_double(split) : tp_->allreduce_sum_double(split);
  return std::sqrt(split + replicated);
}

// AdamW on this rank's part of the trainable parameters, tensor by tensor (weight decay is per
// tensor), for the 1-based step t; with ZeRO-1 the updated segments then go to every rank.
void Trainer::optimizer_step(double lr, float clip_scale, int64_t t) {
  float* w = model_->weights();
  for (const ParamSpec& s : model_->params()) {
    if (!s.trainable()) continue;
    const size_t b = std::max(s.grad_offset, lo_), e = std::min(s.grad_offset + s.size, hi_);
    if (b >= e) continue;
    // ZeRO-3: this rank's segment of the weights (the two layouts are one: nothing is frozen).
    float* p = zero3_ ? model_->weight_shard() + (b - lo_) : w + s.offset + (b - s.grad_offset);
    be_->adamw(p, gradient(b), m_ + (b - lo_), v_ + (b - lo_), e - b, static_cast<float>(lr),
               static_cast<float>(opts_.beta1), static_cast<float>(opts_.beta2), static_cast<float>(opts_.eps),
               s.decay ? static_cast<float>(opts_.weight_decay) : 0.0f, t, clip_scale);
  }
  if (zero3_) {
    model_->sync_replicated();  // the blocks' are gathered when they next run
  } else if (sharded_) {
    if (model_->num_grads() == model_->num_params()) {
      coll_->all_gather(w, counts_);  // nothing frozen: the two layouts are one
    } else {
      // The trainable weights in the gradient buffer's layout (the gradients are spent), gathered
      // there and copied back.
      float* staging = model_->grads();
      for (const ParamSpec& s : model_->params())
        if (s.trainable()) be_->copy(staging + s.grad_offset, w + s.offset, s.size);
      coll_->all_gather(staging, counts_);
      for (const ParamSpec& s : model_->params())
        if (s.trainable()) be_->copy(w + s.offset, staging + s.grad_offset, s.size);
    }
  }
  be_->parameters_changed();  // a GPU's bf16 copy of the weights is made again before use
}

// Whole weights on every rank for as long as it lives (ZeRO-3 gathers them, then goes back to
// the segments): for the passes the ranks do not run alike (evaluation, samples) and for
// checkpoints. Collective.
namespace {
class WholeWeights {
 public:
  WholeWeights(Model& m, bool sharded) : m_(m), sharded_(sharded) {
    if (sharded_) m_.materialize();
  }
  ~WholeWeights() {
    if (sharded_) m_.shard();
  }
  WholeWeights(const WholeWeights&) = delete;
  WholeWeights& operator=(const WholeWeights&) = delete;

 private:
  Model& m_;
  bool sharded_;
};
}  // namespace

// A tensor-parallel model put together on the host: its whole tensors and moments.
struct Trainer::Whole {
  std::unique_ptr<Backend> host;
  std::unique_ptr<Model> model;
  std::vector<float> m, v;
};

// Rank 0 writes the checkpoint. It holds all the moments, in the same layout whatever the
// sharding: with ZeRO-1 the segments are gathered to it first. Under tensor parallelism the
// first data-parallel group's slices are put together on rank 0 first, so checkpoints hold
// whole tensors whatever the layout.
void Trainer::save(bool final) {
  stats_.add("checkpoints");
  WholeWeights whole_weights(*model_, zero3_);
  obj_.before_save(*this);
  const bool root = comm_.rank() == 0;
  std::vector<float> m_copy, v_copy, m_all, v_all;
  const float* m = nullptr;
  const float* v = nullptr;
  // The first rank of each data-parallel group ends with its model slice's moments (with
  // ZeRO-1 gathered from the group's segments); under tensor parallelism they all send them.
  const bool dp_root = dp_->rank() == 0;
  if (root || sharded_ || (dp_root && tp_->size() > 1)) {
    m = on_host(*be_, m_, hi_ - lo_, m_copy);
    v = on_host(*be_, v_, hi_ - lo_, v_copy);
  }
  if (sharded_) {
    m_all.resize(dp_root ? model_->num_grads() : 0);
    v_all.resize(m_all.size());
    dp_->gatherv(m, m_all.data(), counts_);
    dp_->gatherv(v, v_all.data(), counts_);
    m = m_all.data();
    v = v_all.data();
  }
  Model* model = model_.get();
  Whole whole;
  if (tp_->size() > 1 && dp_root && assemble_tensor_parallel(m, v, whole)) {
    model = whole.model.get();
    m = whole.m.data();
    v = whole.v.data();
  }
  if (root) {
    g_saving_step = state_.step;
    std::string dir = save_checkpoint(opts_.out, *model, m, v, state_, opts_.tokenizer, opts_.keep,
                                      opts_.save_dtype == "bf16" ? "BF16" : "F32",
                                      [&](const std::string& tmp) { obj_.save_extra(*this, tmp); });
    g_steps_saved = state_.step;
    g_saving_step = -1;
    LLMKIT_INFO("saved %s%s", dir.c_str(), final ? " (final)" : "");
  }
  comm_.barrier();
}

// The tensor-parallel group's slices (weights, and the moments m and v in the gradient layout)
// sent to its first rank, which puts each tensor together in `out`; true there.
bool Trainer::assemble_tensor_parallel(const float* m, const float* v, Whole& out) {
  const bool root = tp_->rank() == 0;
  const size_t np = model_->num_params(), ng = model_->num_grads();
  std::vector<float> w_copy;
  const float* w = on_host(*be_, model_->weights(), np, w_copy);
  const size_t R = static_cast<size_t>(tp_->size());
  std::vector<float> w_all(root ? np * R : 0), m_all(root ? ng * R : 0), v_all(root ? ng * R : 0);
  tp_->gatherv(w, w_all.data(), std::vector<size_t>(R, np));
  tp_->gatherv(m, m_all.data(), std::vector<size_t>(R, ng));
  tp_->gatherv(v, v_all.data(), std::vector<size_t>(R, ng));
  if (!root) return false;
  out.host = make_backend("cpu", "fp32");
  ModelOptions o = model_->options();
  o.tp = TensorParallel{};
  out.model = std::make_unique<Model>(model_->config(), *out.host, o);
  Model& whole = *out.model;
  whole.freeze([&](const std::string& name) { return model_->is_frozen(name); });
  out.m.assign(whole.num_grads(), 0.0f);
  out.v.assign(whole.num_grads(), 0.0f);
  auto slices = [&](const std::vector<float>& all, size_t stride, size_t offset) {
    std::vector<const float*> p;
    for (size_t r = 0; r < R; ++r) p.push_back(all.data() + r * stride + offset);
    return p;
  };
  for (const ParamSpec& s : model_->params()) {
    const ParamSpec& f = whole.param(s.name);
    model_->unshard(s, slices(w_all, np, s.offset), whole.weights() + f.offset);
    if (!s.trainable()) continue;
    model_->unshard(s, slices(m_all, ng, s.grad_offset), out.m.data() + f.grad_offset);
    model_->unshard(s, slices(v_all, ng, s.grad_offset), out.v.data() + f.grad_offset);
  }
  return true;
}

int Trainer::run() {
  g_run_dir = opts_.out;
  g_rank = comm_.rank();
  watch_stop_signals(on_stop_signal);
  setup();
  if (finished_) return 0;
  g_steps_done = state_.step;
  if (state_.step > 0) g_steps_saved = state_.step;  // resumed from that checkpoint
  char line[512];
  while (state_.step < opts_.steps) {
    // Every rank stops at the same step (a signal may reach the ranks at different times).
    const bool stop = comm_.size() > 1 ? comm_.allreduce_max(stop_requested() ? 1 : 0) > 0 : stop_requested();
    if (stop) {
      save(false);
      if (comm_.rank() == 0)
        LLMKIT_WARN("stopped by signal %d at step %lld; the checkpoint is saved, --resume continues",
                    std::max(stop_signal(), 0), static_cast<long long>(state_.step));
      return 1;
    }
    auto t0 = Clock::now();
    const uint64_t tp_floats = tp_->floats(), dp_floats = dp_->floats();
    const double loss = train_step();
    const double norm = gradient_norm();
    const int64_t step = state_.step;
    state_.cursor += static_cast<uint64_t>(state_.batch_sequences);
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++bad_in_row_;
      stats_.add("steps_skipped");
      if (comm_.rank() == 0)
        LLMKIT_WARN("step %lld: loss %g, gradient norm %g: step skipped", static_cast<long long>(step + 1), loss, norm);
      if (bad_in_row_ >= opts_.max_bad_steps)
        throw Error("", std::to_string(bad_in_row_) + " steps in a row with a non-finite loss or gradient: giving up (lower --lr?)");
      ++state_.step;
      g_steps_done = state_.step;
      continue;
    }
    bad_in_row_ = 0;
    const float clip_scale = opts_.clip > 0 && norm > opts_.clip ? static_cast<float>(opts_.clip / norm) : 1.0f;
    const double lr = learning_rate(opts_, step);
    optimizer_step(lr, clip_scale, step + 1);
    ++state_.step;
    g_steps_done = state_.step;
    const uint64_t tokens = obj_.step_tokens(*this);
    state_.tokens_seen += tokens;
    stats_.add("steps");
    stats_.add("tokens", static_cast<int64_t>(tokens));
    be_->synchronize();  // a GPU's step ends when its queued kernels do
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double tps = static_cast<double>(tokens) / secs;
    const double mfu = peak_flops_ > 0 ? obj_.step_flops(*this) / secs / peak_flops_ : 0.0;
    const size_t device_mem = be_->peak_memory();
    snprintf(line, sizeof line,
             "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,\"tokens\":%llu,\"tokens_per_sec\":%.1f,"
             "\"mfu\":%.4f,\"peak_rss\":%lld%s",
             static_cast<long long>(state_.step), loss, lr, norm, static_cast<unsigned long long>(state_.tokens_seen), tps, mfu,
             static_cast<long long>(peak_rss_bytes()),
             device_mem ? (",\"peak_device_mem\":" + std::to_string(device_mem)).c_str() : "");
    nlohmann::json extra = nlohmann::json::object();
    // Floats through the MPI collectives of the tensor- and data-parallel groups this step (the
    // optimizer's gather included; NCCL's on GPUs are not counted).
    if (!on_gpu() && tp_->size() > 1) extra["tp_floats"] = tp_->floats() - tp_floats;
    if (!on_gpu() && dp_->size() > 1) extra["dp_floats"] = dp_->floats() - dp_floats;
    obj_.step_metrics(*this, extra);
    std::string text = line;
    for (auto it = extra.begin(); it != extra.end(); ++it) text += ",\"" + it.key() + "\":" + it.value().dump();
    log_metrics(text + "}");
    if (comm_.rank() == 0)
      LLMKIT_INFO("step %5lld/%lld  loss %.4f  lr %.3g  norm %.3f  %.0f tok/s  mfu %.1f%%  %.0f ms",
                  static_cast<long long>(state_.step), static_cast<long long>(opts_.steps), loss, lr, norm, tps, 100 * mfu,
                  secs * 1000);
    if (opts_.eval_every > 0 && (state_.step % opts_.eval_every == 0 || state_.step == opts_.steps)) {
      nlohmann::json ev;
      {
        WholeWeights whole_weights(*model_, zero3_);  // evaluations run unequal passes on the ranks
        ev = obj_.evaluate(*this);
      }
      if (ev.is_object() && !ev.empty()) {
        std::string l = "{\"step\":" + std::to_string(state_.step);
        for (auto it = ev.begin(); it != ev.end(); ++it) {
          char num[64];
          if (it.value().is_number_float()) snprintf(num, sizeof num, "%.6f", it.value().get<double>());
          l += ",\"" + it.key() + "\":" + (it.value().is_number_float() ? std::string(num) : it.value().dump());
        }
        log_metrics(l + "}");
        if (comm_.rank() == 0) {
          std::string shown;
          for (auto it = ev.begin(); it != ev.end(); ++it)
            shown += "  " + it.key() + " " + (it.value().is_number_float() ? g(it.value().get<double>()) : it.value().dump());
          LLMKIT_INFO("step %5lld%s", static_cast<long long>(state_.step), shown.c_str());
        }
      }
    }
    if (opts_.sample_every > 0 && state_.step % opts_.sample_every == 0) {
      WholeWeights whole_weights(*model_, zero3_);
      obj_.sample(*this);
    }
    if (opts_.stop_at > 0 && state_.step == opts_.stop_at && state_.step < opts_.steps) {
      save(false);
      if (comm_.rank() == 0) LLMKIT_INFO("stopped at step %lld (--stop-at); --resume continues", static_cast<long long>(state_.step));
      return 0;
    }
    if (opts_.save_every > 0 && state_.step % opts_.save_every == 0 && state_.step < opts_.steps) save(false);
  }
  save(true);
  stats_.add("runs_completed");
  return 0;
}

}  // namespace llmkit
