// llm-pretrain's training loop; see llmkit/pretrain.hpp.
#include "llmkit/pretrain.hpp"

#include <cblas.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <random>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "llmkit/checkpoint.hpp"
#include "llmkit/data.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/model.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/parallel.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

double learning_rate(const PretrainConfig& c, int64_t step) {
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

double measure_sgemm_flops() {
  const int n = 1024;
  std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(a), c(a.size());
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * static_cast<double>(n) / s);
  }
  return best;
}

double gpu_peak_flops(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("H100") && (has("PCIe") || has("PCIE"))) return 756e12;
  if (has("H100") || has("H200") || has("GH200")) return 989e12;  // SXM: HBM3/HBM3e, 700 W
  if (has("A100")) return 312e12;
  if (has("L40S")) return 362e12;
  if (has("A10G") || has("A10")) return 125e12;
  return 0;
}

void plot_metrics(const std::string& run) {
  // The run directory, or its metrics.jsonl (or any metrics file: loss.png goes beside it).
  const bool file = !is_directory(run) && (file_size(run) > 0 || has_suffix(run, ".jsonl"));
  const std::string dir = file ? std::filesystem::path(run).parent_path().string() : run;
  const std::string metrics = file ? run : run + "/metrics.jsonl", png = (dir.empty() ? "." : dir) + "/loss.png";
  if (file_size(metrics) == 0) throw Error(metrics, "no metrics to plot");
  check_output_file(png, "--plot");
  for (const std::string& s : {metrics, png})
    if (s.find('\'') != std::string::npos) throw UsageError("--plot: a path with a quote");
  std::string cmd = "gnuplot -e \"metrics='" + metrics + "'; output='" + png + "'\" '" +
                    data_file("plot-metrics.gp") + "' 2>&1";
  FILE* gp = popen(cmd.c_str(), "r");
  if (!gp) throw Error("gnuplot", errno_message("cannot run gnuplot", errno));
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof buf, gp)) out += buf;
  int rc = pclose(gp);
  if (rc != 0)
    throw Error("gnuplot", (rc >> 8) == 127 ? "not found (Debian: apt-get install gnuplot-nox)" : "failed: " + out);
  LLMKIT_INFO("wrote %s", png.c_str());
}

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

// The training run of one rank.
class Trainer {
 public:
  Trainer(const PretrainConfig& cfg, Stats& stats)
      : cfg_(cfg), comm_(Comm::world()), stats_(stats),
        be_(make_backend(cfg.device, cfg.precision, comm_.local_rank())) {}
  ~Trainer() {
    if (metrics_fd_ >= 0) ::close(metrics_fd_);
    for (float* p : {m_, v_})
      if (p) be_->release(p);
  }
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  int run();

 private:
  void setup();
  void setup_optimizer();
  void load_optimizer_state(const std::string& dir);
  double train_step();
  void reduce_gradients();
  double gradient_norm();
  void optimizer_step(double lr, float clip_scale, int64_t t);
  double evaluate();
  void sample();
  void save(bool final);
  void log_metrics(const std::string& line);

  const PretrainConfig& cfg_;
  Comm& comm_;
  Stats& stats_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<TokenData> train_, val_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Collectives> coll_;
  // The part of the flat parameter buffer whose AdamW state this rank keeps and updates,
  // [lo_, hi_): with ZeRO-1 over several ranks its segment (counts_ has every rank's), else all.
  bool sharded_ = false;
  std::vector<size_t> counts_;
  size_t lo_ = 0, hi_ = 0;
  float* m_ = nullptr;  // AdamW's moments of [lo_, hi_), in the backend's memory
  float* v_ = nullptr;
  TrainerState state_;
  int64_t accum_ = 1, per_rank_ = 0;
  int metrics_fd_ = -1;
  void open_metrics(int64_t resumed_step);
  double peak_flops_ = 0;
  int bad_in_row_ = 0;
  bool finished_ = false;  // resumed at the last step: nothing to do
  bool on_gpu() const { return std::string(be_->name()) == "cuda"; }
};

void Trainer::setup() {
  const int R = comm_.size();
  if (cfg_.out.empty()) throw UsageError("--out DIR is required");
  if (cfg_.train.empty()) throw UsageError("--train SHARDS is required");
  // A resumed run's model is the checkpoint's; otherwise --init's directory or --model.
  std::string resume_dir = cfg_.resume ? latest_checkpoint(cfg_.out) : "";
  if (!cfg_.resume && !latest_checkpoint(cfg_.out).empty())
    throw Error(cfg_.out, "holds a run already: give --resume to continue it, or another --out");
  if (!resume_dir.empty()) {
    // A run already at or past --steps: nothing is trained, and nothing is written (saving it
    // again as "final" rewrote latest and the metrics).
    const std::string ts = resume_dir + "/trainer_state.json";
    const int64_t at = TrainerState::from_json(read_file(ts), ts).step;
    if (at > cfg_.steps)
      throw Error(resume_dir, "is at step " + std::to_string(at) + ", past --steps " + std::to_string(cfg_.steps) +
                                  ": nothing to train (to go on, give --steps above " + std::to_string(at) +
                                  "; the schedule follows --steps)");
    if (at == cfg_.steps) {
      if (comm_.rank() == 0)
        LLMKIT_INFO("%s is at step %lld, the last of --steps: nothing to do", resume_dir.c_str(), static_cast<long long>(at));
      finished_ = true;
      return;
    }
  }
  const bool llmc_init = resume_dir.empty() && !cfg_.init.empty() && is_llmc_checkpoint(cfg_.init);
  ModelConfig mc = llmc_init ? llmc_config(cfg_.init)
                   : ModelConfig::load(!resume_dir.empty() ? resume_dir
                                       : !cfg_.init.empty() && is_directory(cfg_.init) ? cfg_.init
                                                                                        : cfg_.model);
  train_ = std::make_unique<TokenData>(expand_shard_patterns(cfg_.train), cfg_.seq_len, cfg_.verify_shards);
  if (!cfg_.val.empty()) val_ = std::make_unique<TokenData>(expand_shard_patterns(cfg_.val), cfg_.seq_len, cfg_.verify_shards);
  // The vocabulary comes from the shards when the model does not fix it by its weights.
  // The tokenizer against the shards, before anything is written (a failed check left an empty
  // run directory behind).
  if (!cfg_.tokenizer.empty()) {
    tokenizer_ = std::make_unique<Tokenizer>(cfg_.tokenizer);
    for (const TokenData* d : {train_.get(), val_.get()})
      if (d && d->tokenizer_hash() && d->tokenizer_hash() != tokenizer_->hash())
        throw Error(cfg_.tokenizer, std::string("is not the tokenizer the ") + (d == train_.get() ? "training" : "validation") +
                                        " shards were made with (" + d->paths()[0] + ")");
  }
  if (val_ && train_->tokenizer_hash() && val_->tokenizer_hash() && train_->tokenizer_hash() != val_->tokenizer_hash())
    throw Error(val_->paths()[0], "was made with another tokenizer than the training shards (" + train_->paths()[0] + ")");
  if (cfg_.init.empty() && resume_dir.empty() && train_->vocab_size() > 0)
    mc.vocab_size = static_cast<int>(train_->vocab_size());
  if (train_->vocab_size() > static_cast<uint64_t>(mc.vocab_size))
    throw Error(train_->paths()[0], "vocabulary of " + std::to_string(train_->vocab_size()) +
                                        " is larger than the model's " + std::to_string(mc.vocab_size));
  // RoPE has no table: a Llama trains at any length. GPT-2's learned positions stop at max_seq.
  if (cfg_.seq_len > mc.max_seq && mc.family == ModelConfig::Family::llama) mc.max_seq = cfg_.seq_len;
  ModelOptions options;
  options.recompute_mlp = cfg_.recompute;
  model_ = std::make_unique<Model>(mc, *be_, options);

  const int64_t global = (cfg_.batch_tokens > 0 ? cfg_.batch_tokens : static_cast<int64_t>(cfg_.seq_len) * cfg_.micro_batch * R) / cfg_.seq_len;
  if (global * cfg_.seq_len != (cfg_.batch_tokens > 0 ? cfg_.batch_tokens : global * cfg_.seq_len) ||
      global % (static_cast<int64_t>(cfg_.micro_batch) * R) != 0)
    throw UsageError("--batch-tokens must be a multiple of seq-len x micro-batch x ranks (" +
                     std::to_string(static_cast<int64_t>(cfg_.seq_len) * cfg_.micro_batch * R) + ")");
  per_rank_ = global / R;
  accum_ = per_rank_ / cfg_.micro_batch;
  // Settings that run but rarely do what was meant.
  if (comm_.rank() == 0 && cfg_.warmup > 0 && cfg_.warmup >= cfg_.steps)
    LLMKIT_WARN("--warmup %lld is not below --steps %lld: the learning rate never reaches --lr (it ends at %.3g)",
                static_cast<long long>(cfg_.warmup), static_cast<long long>(cfg_.steps),
                cfg_.lr * static_cast<double>(cfg_.steps) / static_cast<double>(cfg_.warmup));
  if (comm_.rank() == 0 && static_cast<uint64_t>(global) > train_->windows())
    LLMKIT_WARN("one step takes %lld sequences of %d tokens, more than the %llu windows the training shards hold: "
                "every step sees some of them twice or more (lower --batch-tokens, or give more data)",
                static_cast<long long>(global), cfg_.seq_len, static_cast<unsigned long long>(train_->windows()));
  state_.world_size = R;
  state_.seed = cfg_.seed;
  state_.seq_len = cfg_.seq_len;
  state_.batch_sequences = global;

  setup_optimizer();
  if (!resume_dir.empty()) {
    TrainerState s = load_checkpoint(resume_dir, *model_, nullptr, nullptr);
    load_optimizer_state(resume_dir);
    if (s.seed != cfg_.seed)
      throw Error(resume_dir, "was trained with --seed " + std::to_string(s.seed) + " (the data order); give the same");
    if (s.seq_len != cfg_.seq_len || s.batch_sequences != global)
      throw Error(resume_dir, "was trained with seq-len " + std::to_string(s.seq_len) + " and " +
                                  std::to_string(s.batch_sequences) + " sequences per batch; give the same");
    if (s.world_size != R && comm_.rank() == 0)
      LLMKIT_INFO("resuming a %d-rank run on %d ranks: the batches are the same sequences", s.world_size, R);
    state_.step = s.step;
    state_.cursor = s.cursor;
    state_.tokens_seen = s.tokens_seen;
    if (comm_.rank() == 0) LLMKIT_INFO("resumed from %s at step %lld", resume_dir.c_str(), static_cast<long long>(s.step));
  } else if (llmc_init) {
    load_llmc(cfg_.init, *model_);
  } else if (!cfg_.init.empty()) {
    load_model(is_directory(cfg_.init) ? cfg_.init + "/model.safetensors" : cfg_.init, *model_);
  } else {
    model_->init(cfg_.seed);
  }
  if (comm_.rank() == 0) {
    LLMKIT_INFO("%s: %.2fM parameters, %llu training tokens, global batch %lld x %d tokens (%lld micro-batches of %d per rank, %d rank%s)",
                (!cfg_.init.empty() && is_directory(cfg_.init) ? cfg_.init : cfg_.model).c_str(),
                static_cast<double>(model_->num_params_unpadded()) / 1e6,
                static_cast<unsigned long long>(train_->tokens()), static_cast<long long>(global), cfg_.seq_len,
                static_cast<long long>(accum_), cfg_.micro_batch, R, R > 1 ? "s" : "");
    const size_t largest = *std::max_element(counts_.begin(), counts_.end());
    const double mib = 2.0 * sizeof(float) * static_cast<double>(largest) / (1 << 20);
    if (sharded_)
      LLMKIT_INFO("optimizer state: %.2f MiB per rank (ZeRO-1 over %d ranks)", mib, R);
    else
      LLMKIT_INFO("optimizer state: %.2f MiB per rank (not sharded)", mib);
  }
  // The run directory, once everything it depends on has been read and checked: a run that
  // cannot start leaves none behind.
  if (comm_.rank() == 0) {
    std::filesystem::create_directories(cfg_.out);
    // Temporary checkpoint directories of a save that was killed are of no use.
    for (const auto& e : std::filesystem::directory_iterator(cfg_.out)) {
      std::string n = e.path().filename().string();
      if (n.rfind(".step-", 0) == 0 && has_suffix(n, ".tmp")) std::filesystem::remove_all(e.path());
    }
  }
  comm_.barrier();
  open_metrics(state_.step);
  const std::string device = be_->device_name();
  peak_flops_ = cfg_.peak_tflops > 0 ? cfg_.peak_tflops * 1e12 : on_gpu() ? gpu_peak_flops(device) : measure_sgemm_flops();
  if (comm_.rank() == 0) {
    LLMKIT_INFO("device: %s%s%s", device.c_str(), on_gpu() ? ", matmuls in " : "", on_gpu() ? cfg_.precision.c_str() : "");
    if (peak_flops_ <= 0) LLMKIT_WARN("the peak FLOP/s of %s is not known: give --peak-tflops for MFU", device.c_str());
  }
}

// AdamW's moments, zero at first. With ZeRO-1 over several ranks a rank keeps those of its
// segment only: 8 bytes per parameter divided by the ranks instead of 8 bytes per parameter.
void Trainer::setup_optimizer() {
  const size_t n = model_->num_params();
  const int R = comm_.size();
  // NCCL between GPUs; MPI between CPUs (and for one rank, where nothing is exchanged).
  coll_ = on_gpu() && R > 1 ? make_nccl_collectives(comm_) : make_mpi_collectives(comm_);
  sharded_ = cfg_.zero == 1 && R > 1;
  counts_ = sharded_ ? segment_counts(n, R) : std::vector<size_t>{n};
  lo_ = 0;
  for (int r = 0; sharded_ && r < comm_.rank(); ++r) lo_ += counts_[static_cast<size_t>(r)];
  hi_ = lo_ + counts_[sharded_ ? static_cast<size_t>(comm_.rank()) : 0];
  m_ = be_->alloc(hi_ - lo_);
  v_ = be_->alloc(hi_ - lo_);
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
    throw Error(cfg_.out + "/metrics.jsonl", errno_message("write failed", errno));
}

// The metrics of steps after the checkpoint a run resumes from are dropped: they are redone.
void Trainer::open_metrics(int64_t resumed_step) {
  if (comm_.rank() != 0) return;
  const std::string path = cfg_.out + "/metrics.jsonl";
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

double Trainer::train_step() {
  const int B = cfg_.micro_batch, T = cfg_.seq_len;
  std::vector<int32_t> in(static_cast<size_t>(B) * T), tgt(in.size());
  model_->zero_grad();
  double loss = 0;
  const uint64_t base = state_.cursor + static_cast<uint64_t>(comm_.rank()) * static_cast<uint64_t>(per_rank_);
  for (int64_t a = 0; a < accum_; ++a) {
    for (int b = 0; b < B; ++b)
      train_->shuffled(base + static_cast<uint64_t>(a * B + b), cfg_.seed, in.data() + static_cast<size_t>(b) * T,
                       tgt.data() + static_cast<size_t>(b) * T);
    model_->forward(in.data(), tgt.data(), B, T);
    loss += model_->mean_loss() / static_cast<double>(accum_);
    // The last micro-batch's backward starts each layer's all-reduce (ZeRO-1: reduce-scatter) as
    // soon as the layer's gradients are final, overlapping communication with the layers still
    // to go.
    const bool overlap = a + 1 == accum_ && comm_.size() > 1;
    if (overlap)
      model_->set_gradient_hook([this](size_t off, size_t n) {
        if (sharded_) coll_->reduce_range_start(model_->grads(), counts_, off, n);
        else coll_->allreduce_sum_start(model_->grads() + off, n);
      });
    model_->backward_mean(1.0f / static_cast<float>(accum_));
    if (overlap) model_->set_gradient_hook(nullptr);
  }
  reduce_gradients();
  if (comm_.size() > 1) loss = comm_.allreduce_sum_double(loss) / comm_.size();
  return loss;
}

// The mean of the ranks' gradients: everywhere, or with ZeRO-1 on this rank's segment only, the
// part its optimizer reads (the rest of the buffer is left unspecified).
void Trainer::reduce_gradients() {
  const int R = comm_.size();
  if (R == 1) return;
  coll_->wait();  // the all-reduces (reduce-scatters) train_step's backward started
  be_->scale(model_->grads() + lo_, 1.0f / static_cast<float>(R), hi_ - lo_);
}

// The norm of the whole gradient; with ZeRO-1 from the sums of squares of every rank's segment.
double Trainer::gradient_norm() {
  double squares = be_->sum_squares(model_->grads() + lo_, hi_ - lo_);
  if (sharded_) squares = comm_.allreduce_sum_double(squares);
  return std::sqrt(squares);
}

// AdamW on this rank's part of the parameters, tensor by tensor (weight decay is per tensor),
// for the 1-based step t; with ZeRO-1 the updated segments then go to every rank.
void Trainer::optimizer_step(double lr, float clip_scale, int64_t t) {
  float* w = model_->weights();
  const float* g = model_->grads();
  for (const ParamSpec& s : model_->params()) {
    const size_t b = std::max(s.offset, lo_), e = std::min(s.offset + s.size, hi_);
    if (b >= e) continue;
    be_->adamw(w + b, g + b, m_ + (b - lo_), v_ + (b - lo_), e - b, static_cast<float>(lr),
               static_cast<float>(cfg_.beta1), static_cast<float>(cfg_.beta2), static_cast<float>(cfg_.eps),
               s.decay ? static_cast<float>(cfg_.weight_decay) : 0.0f, t, clip_scale);
  }
  if (sharded_) coll_->all_gather(w, counts_);
  be_->parameters_changed();  // a GPU's bf16 copy of the weights is made again before use
}

double Trainer::evaluate() {
  if (!val_) return NAN;
  const int B = cfg_.micro_batch, T = cfg_.seq_len, R = comm_.size();
  const uint64_t windows = std::min<uint64_t>(val_->windows(), static_cast<uint64_t>(cfg_.eval_batches) * B);
  std::vector<int32_t> in(static_cast<size_t>(B) * T), tgt(in.size());
  double sum = 0, count = 0;
  for (uint64_t w0 = static_cast<uint64_t>(comm_.rank()) * B; w0 < windows; w0 += static_cast<uint64_t>(R) * B) {
    int rows = static_cast<int>(std::min<uint64_t>(B, windows - w0));
    for (int b = 0; b < rows; ++b)
      val_->window(w0 + static_cast<uint64_t>(b), in.data() + static_cast<size_t>(b) * T, tgt.data() + static_cast<size_t>(b) * T);
    model_->forward(in.data(), tgt.data(), rows, T);
    sum += model_->mean_loss() * rows;
    count += rows;
  }
  if (R > 1) {
    sum = comm_.allreduce_sum_double(sum);
    count = comm_.allreduce_sum_double(count);
  }
  return count > 0 ? sum / count : NAN;
}

// A continuation of the first validation (else training) window's first 8 tokens, sampled at
// temperature 1 from the top 40 tokens, seeded by the step: how the model writes at this point.
// Recomputes the whole sequence per token (the KV-cached engine belongs to inference).
void Trainer::sample() {
  if (comm_.rank() != 0) return;
  const TokenData& d = val_ ? *val_ : *train_;
  std::vector<int32_t> in(static_cast<size_t>(cfg_.seq_len)), tgt(in.size());
  d.window(0, in.data(), tgt.data());
  const int prompt = std::min(8, cfg_.seq_len);
  std::vector<int32_t> seq(in.begin(), in.begin() + prompt);
  std::mt19937_64 rng(cfg_.seed * 7919 + static_cast<uint64_t>(state_.step));
  const int V = model_->config().vocab_size, Vp = model_->config().padded_vocab();
  std::vector<float> l(static_cast<size_t>(Vp));  // the last position's logits, on the host
  while (static_cast<int64_t>(seq.size()) < prompt + cfg_.sample_tokens &&
         static_cast<int>(seq.size()) < model_->config().max_seq) {
    model_->forward(seq.data(), nullptr, 1, static_cast<int>(seq.size()));
    be_->download(l.data(), model_->logits() + (seq.size() - 1) * static_cast<size_t>(Vp), l.size());
    std::vector<int> order(static_cast<size_t>(V));
    for (int i = 0; i < V; ++i) order[static_cast<size_t>(i)] = i;
    const int k = std::min(40, V);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return l[a] > l[b]; });
    std::vector<double> p(static_cast<size_t>(k));
    for (int i = 0; i < k; ++i) p[static_cast<size_t>(i)] = std::exp(static_cast<double>(l[order[static_cast<size_t>(i)]] - l[order[0]]));
    std::discrete_distribution<int> pick(p.begin(), p.end());
    seq.push_back(order[static_cast<size_t>(pick(rng))]);
  }
  std::string text;
  if (tokenizer_) {
    std::vector<uint32_t> ids(seq.begin(), seq.end());
    text = tokenizer_->decode(ids.data(), prompt) + " |> " + tokenizer_->decode(ids.data() + prompt, ids.size() - prompt);
  } else {
    for (size_t i = 0; i < seq.size(); ++i) text += (i ? " " : "") + std::to_string(seq[i]) + (static_cast<int>(i) + 1 == prompt ? " |>" : "");
  }
  for (char& c : text)
    if (c == '\n') c = ' ';
  LLMKIT_INFO("step %5lld  sample: %s", static_cast<long long>(state_.step), text.c_str());
}

// A backend array on the host: in place when the backend's memory is the host's, else copied.
const float* on_host(Backend& be, float* p, size_t n, std::vector<float>& copy) {
  if (const float* h = be.host_view(p)) return h;
  copy.resize(n);
  be.download(copy.data(), p, n);
  return copy.data();
}

// Rank 0 writes the checkpoint. It holds all the moments, in the same layout whatever the
// sharding: with ZeRO-1 the segments are gathered to it first.
void Trainer::save(bool final) {
  stats_.add("checkpoints");
  const bool root = comm_.rank() == 0;
  std::vector<float> m_copy, v_copy, m_all, v_all;
  const float* m = nullptr;
  const float* v = nullptr;
  if (root || sharded_) {
    m = on_host(*be_, m_, hi_ - lo_, m_copy);
    v = on_host(*be_, v_, hi_ - lo_, v_copy);
  }
  if (sharded_) {
    m_all.resize(root ? model_->num_params() : 0);
    v_all.resize(m_all.size());
    comm_.gatherv(m, m_all.data(), counts_);
    comm_.gatherv(v, v_all.data(), counts_);
    m = m_all.data();
    v = v_all.data();
  }
  if (root) {
    g_saving_step = state_.step;
    std::string dir = save_checkpoint(cfg_.out, *model_, m, v, state_, cfg_.tokenizer, cfg_.keep,
                                      cfg_.save_dtype == "bf16" ? "BF16" : "F32");
    g_steps_saved = state_.step;
    g_saving_step = -1;
    LLMKIT_INFO("saved %s%s", dir.c_str(), final ? " (final)" : "");
  }
  comm_.barrier();
}

int Trainer::run() {
  g_run_dir = cfg_.out;
  g_rank = comm_.rank();
  watch_stop_signals(on_stop_signal);
  setup();
  if (finished_) return 0;
  g_steps_done = state_.step;
  if (state_.step > 0) g_steps_saved = state_.step;  // resumed from that checkpoint
  const int T = cfg_.seq_len;
  const double flops = model_->flops_per_step(cfg_.micro_batch, T) * static_cast<double>(accum_);
  char line[512];
  while (state_.step < cfg_.steps) {
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
    double loss = train_step();
    double norm = gradient_norm();
    const int64_t step = state_.step;
    state_.cursor += static_cast<uint64_t>(state_.batch_sequences);
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      ++bad_in_row_;
      stats_.add("steps_skipped");
      if (comm_.rank() == 0)
        LLMKIT_WARN("step %lld: loss %g, gradient norm %g: step skipped", static_cast<long long>(step + 1), loss, norm);
      if (bad_in_row_ >= cfg_.max_bad_steps)
        throw Error("", std::to_string(bad_in_row_) + " steps in a row with a non-finite loss or gradient: giving up (lower --lr?)");
      ++state_.step;
      g_steps_done = state_.step;
      continue;
    }
    bad_in_row_ = 0;
    const float clip_scale = cfg_.clip > 0 && norm > cfg_.clip ? static_cast<float>(cfg_.clip / norm) : 1.0f;
    const double lr = learning_rate(cfg_, step);
    optimizer_step(lr, clip_scale, step + 1);
    ++state_.step;
    g_steps_done = state_.step;
    const uint64_t tokens = static_cast<uint64_t>(state_.batch_sequences) * static_cast<uint64_t>(T);
    state_.tokens_seen += tokens;
    stats_.add("steps");
    stats_.add("tokens", static_cast<int64_t>(tokens));
    be_->synchronize();  // a GPU's step ends when its queued kernels do
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    double tps = static_cast<double>(tokens) / secs;
    double mfu = peak_flops_ > 0 ? flops / secs / peak_flops_ : 0.0;
    const size_t device_mem = be_->peak_memory();
    snprintf(line, sizeof line,
             "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6f,\"tokens\":%llu,\"tokens_per_sec\":%.1f,"
             "\"mfu\":%.4f,\"peak_rss\":%lld%s}",
             static_cast<long long>(state_.step), loss, lr, norm, static_cast<unsigned long long>(state_.tokens_seen), tps, mfu,
             static_cast<long long>(peak_rss_bytes()),
             device_mem ? (",\"peak_device_mem\":" + std::to_string(device_mem)).c_str() : "");
    log_metrics(line);
    if (comm_.rank() == 0)
      LLMKIT_INFO("step %5lld/%lld  loss %.4f  lr %.3g  norm %.3f  %.0f tok/s  mfu %.1f%%  %.0f ms",
                  static_cast<long long>(state_.step), static_cast<long long>(cfg_.steps), loss, lr, norm, tps, 100 * mfu,
                  secs * 1000);
    if (val_ && cfg_.eval_every > 0 && (state_.step % cfg_.eval_every == 0 || state_.step == cfg_.steps)) {
      double vl = evaluate();
      snprintf(line, sizeof line, "{\"step\":%lld,\"val_loss\":%.6f}", static_cast<long long>(state_.step), vl);
      log_metrics(line);
      if (comm_.rank() == 0) LLMKIT_INFO("step %5lld  val_loss %.4f", static_cast<long long>(state_.step), vl);
    }
    if (cfg_.sample_every > 0 && state_.step % cfg_.sample_every == 0) sample();
    if (cfg_.stop_at > 0 && state_.step == cfg_.stop_at && state_.step < cfg_.steps) {
      save(false);
      if (comm_.rank() == 0) LLMKIT_INFO("stopped at step %lld (--stop-at); --resume continues", static_cast<long long>(state_.step));
      return 0;
    }
    if (cfg_.save_every > 0 && state_.step % cfg_.save_every == 0 && state_.step < cfg_.steps) save(false);
  }
  save(true);
  return 0;
}

}  // namespace

int run_pretrain(const PretrainConfig& cfg, Stats& stats) { return Trainer(cfg, stats).run(); }

}  // namespace llmkit
