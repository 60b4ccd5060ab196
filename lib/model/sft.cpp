// llm-sft: instruction tuning as an objective on the shared loop; see llmkit/sft.hpp.
#include "llmkit/sft.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "llmkit/adapter.hpp"
#include "llmkit/chat.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/error.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/quant.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

namespace fs = std::filesystem;

std::string tokenizer_config_json(const std::string& chat_template, int max_length) {
  const ChatTemplate t = ChatTemplate::named(chat_template);
  nlohmann::ordered_json j;
  j["tokenizer_class"] = "LlamaTokenizer";  // a SentencePiece model, as Llama's
  j["bos_token"] = "<s>";
  j["eos_token"] = "</s>";
  j["unk_token"] = "<unk>";
  j["pad_token"] = "<pad>";
  j["add_bos_token"] = false;  // the template places the document separator itself
  j["add_eos_token"] = false;
  j["additional_special_tokens"] = t.special_tokens();
  j["model_max_length"] = max_length;
  j["chat_template"] = t.jinja();
  j["llmkit_chat_template"] = t.name();
  return j.dump(2) + "\n";
}

namespace {

std::string tokenizer_path(const SftConfig& cfg, const std::string& init_dir) {
  if (!cfg.tokenizer.empty()) return cfg.tokenizer;
  if (!checkpoint_tokenizer(init_dir).empty()) return checkpoint_tokenizer(init_dir);
  throw Error(cfg.init, "has no tokenizer.model (or vocab.txt): give --tokenizer");
}

ExampleOptions example_options(const SftConfig& cfg) {
  ExampleOptions o;
  o.seq_len = cfg.seq_len;
  o.packing = cfg.packing;
  o.truncate = cfg.truncate;
  o.strict = cfg.strict;
  o.limit = cfg.limit;
  return o;
}

}  // namespace

void init_score_head(Model& m, uint64_t seed) {
  int k = 0;
  for (const std::string& name : m.head_tensors()) {
    const ParamSpec& s = m.param(name);
    std::vector<float> w(s.size, 0.0f);
    // The first tensor's stream is what a reward model's score.weight always had.
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 0x5C0E + static_cast<uint64_t>(k++));
    if (s.shape.size() == 2)
      for (float& x : w) {  // N(0, 0.02) by Box-Muller on our own uniform numbers (the standard's are not portable)
        const double u1 = (static_cast<double>(rng() >> 11) + 0.5) / 9007199254740992.0, u2 = static_cast<double>(rng() >> 11) / 9007199254740992.0;
        x = static_cast<float>(0.02 * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
      }
    m.backend().upload(m.weights() + s.offset, w.data(), w.size());
  }
  m.backend().parameters_changed();
}

std::unique_ptr<Model> build_tuned_model(const SftConfig& cfg_, Trainer& t, const std::string& resume_dir, TunedBase& base,
                                         ModelOptions options) {
  if (cfg_.init.empty()) throw UsageError("--init CHECKPOINT is required (the model to tune)");
  base.init_dir = checkpoint_dir(cfg_.init);
  const std::string& init_dir_ = base.init_dir;
  if (!is_directory(init_dir_) || file_size(init_dir_ + "/config.json") == 0)
    throw Error(cfg_.init, "is not a checkpoint directory (config.json, model.safetensors) or a run directory");
  if (is_adapter_dir(init_dir_))
    throw Error(cfg_.init, "is an adapter: merge it into its base first (llm-sft merge " + cfg_.init + " -o DIR) and give that");
  base.tokenizer = std::make_unique<Tokenizer>(tokenizer_path(cfg_, init_dir_));
  options.lora = cfg_.lora;
  const bool lora = cfg_.lora.rank > 0;
  // The base's weights: from --init, unless a full fine-tune resumes (its checkpoint has them).
  if (base.labels == 0 && ModelConfig::load(init_dir_).classifier)
    throw Error(cfg_.init, "is a sequence classifier (a reward model, no LM head): tune a language model");
  std::unique_ptr<Model> model;
  if (base.labels > 0) {
    ModelConfig mc = ModelConfig::load(lora || resume_dir.empty() ? init_dir_ : resume_dir);
    if (mc.classifier && mc.num_labels != base.labels)
      throw Error(cfg_.init, "is a classifier of " + std::to_string(mc.num_labels) + " labels, not " + std::to_string(base.labels) +
                                 (base.labels == 1 ? " (a reward model has one)" : ""));
    mc.classifier = true;
    mc.nsp = false;  // a pretrained BERT's next-sentence head gives way to the classifier (its pooler stays)
    mc.num_labels = base.labels;
    mc.labels = base.label_names;
    options.scalar_head = true;
    options.lm_head = false;
    model = std::make_unique<Model>(mc, t.backend(), options);
    if (lora || resume_dir.empty()) {
      const std::vector<std::string> head = model->head_tensors();
      base.new_score = !load_model(init_dir_ + "/model.safetensors", *model, std::set<std::string>(head.begin(), head.end())).empty();
      if (base.new_score) init_score_head(*model, cfg_.seed);
    }
  } else if (lora || resume_dir.empty()) {
    LoadedModel lm = open_model(init_dir_, t.backend(), options);
    require_decoder(*lm.model, init_dir_, "tuning on next tokens");
    model = std::move(lm.model);
  } else {
    model = std::make_unique<Model>(ModelConfig::load(resume_dir), t.backend(), options);
  }
  if (base.tokenizer->vocab_size() > static_cast<uint64_t>(model->config().vocab_size))
    throw Error(base.tokenizer->path(), "vocabulary of " + std::to_string(base.tokenizer->vocab_size()) + " is larger than the model's " +
                                            std::to_string(model->config().vocab_size));
  if (cfg_.seq_len > model->config().max_seq)
    throw UsageError("--seq-len " + std::to_string(cfg_.seq_len) + " is above the model's context of " +
                     std::to_string(model->config().max_seq) + " positions" +
                     (cfg_.seq_len_given ? "" : " (--seq-len's default: give one within it)"));
  if (lora && !resume_dir.empty() && is_adapter_dir(resume_dir)) {
    // The adapters resume on the base they were trained on, or not at all.
    const AdapterConfig a = read_adapter_config(resume_dir);
    if (!a.fingerprint.empty() && a.fingerprint != base_fingerprint(init_dir_))
      throw Error(cfg_.init, "is not the base the run's adapters were trained on (" + resume_dir + "/llmkit_base.json)");
  }
  if (!cfg_.qlora.empty()) {
    // The base quantized in memory, exactly as its GGUF file would hold it; the fp32 copy goes.
    model = quantize_model(*model, QuantScheme::named(cfg_.qlora));
    LLMKIT_INFO("QLoRA: the base's matrices held as %s blocks, %.1f MiB of weights; quantized matmuls: %s", cfg_.qlora.c_str(),
                static_cast<double>(model->weight_bytes()) / 1048576.0, model->backend().quant_kernel().c_str());
  }
  if (lora) {
    if (resume_dir.empty()) model->init_lora(cfg_.seed);
    // The adapters, and a reward model's score head in full.
    model->freeze([](const std::string& name) { return !Model::is_lora_tensor(name) && !Model::is_head_tensor(name); });
  }
  return model;
}

void save_tuned_extra(const SftConfig& cfg, Trainer& t, const TunedBase& base, const std::string& dir) {
  // A WordPiece vocabulary's tokenizer_config.json (BertTokenizer's) is written with it.
  if (!base.tokenizer->is_wordpiece())
    write_file_atomic(dir + "/tokenizer_config.json", tokenizer_config_json(cfg.chat_template, cfg.seq_len));
  if (cfg.lora.rank > 0) save_adapter(dir, t.model(), fs::absolute(base.init_dir).lexically_normal().string());
}

void add_tuning_options(OptionParser& op, SftConfig& cfg, TuningFlags& f, const std::string& data_help, bool packing) {
  op.section("Model and data");
  op.string("init", 0, "PATH", &cfg.init, "the model to tune: a checkpoint or run directory (llm-pretrain, Hugging Face)");
  op.value("data", 0, "FILE", [&cfg](const std::string& v) { cfg.data.push_back(v); }, "training " + data_help + " (repeatable)");
  op.value("val", 0, "FILE", [&cfg](const std::string& v) { cfg.val.push_back(v); }, "validation rows (repeatable)");
  op.string("tokenizer", 0, "MODEL", &cfg.tokenizer, "SentencePiece model (default: the checkpoint's tokenizer.model)");
  op.string("template", 0, "NAME", &cfg.chat_template, "chat template: chatml (default), llama2, plain");
  if (packing)
    op.flag("packing", 0, &cfg.packing,
            "pack examples into rows, best-fit decreasing, each attending to itself only\n"
            "(positions restart per example)");
  op.flag("no-truncate", 0, &f.no_truncate, "an example longer than a row stops the run (default: cut)");
  op.flag("strict", 0, &cfg.strict, "a malformed row is an error (default: skipped with a warning, counted)");
  op.number("epochs", 0, "E", &cfg.epochs, "passes over the data (default 3, unless --steps)");
  op.integer("limit", 0, "N", &cfg.limit, "train on the first N rows of the data (malformed rows not counted)");
  op.section("LoRA");
  op.integer("lora-rank", 0, "R", &f.rank, "train LoRA adapters of rank R on the frozen base (default 0: full fine-tuning)");
  op.number("lora-alpha", 0, "A", &f.alpha, "adapter scale alpha / R (default 2 R)");
  op.number("lora-dropout", 0, "P", &f.dropout, "dropout on the adapters' input (default 0)");
  op.string("lora-targets", 0, "LIST", &f.targets,
            "modules adapted: all-linear (default), or Llama's q_proj,k_proj,v_proj,o_proj,\n"
            "gate_proj,up_proj,down_proj, GPT-2's c_attn,c_proj,c_fc");
  op.flag("rslora", 0, &cfg.lora.rslora, "scale alpha / sqrt(R) (rank-stabilised LoRA)");
  op.string("qlora", 0, "TYPE", &cfg.qlora,
            "QLoRA: hold the frozen base in TYPE, the adapters in fp32: nf4 (the QLoRA\n"
            "paper's NormalFloat with double quantization) or a type of llm-quant's\n"
            "(q4_k_m, q4_0, q8_0, ...: the blocks its GGUF file has)");
  op.flag("merge", 0, &f.merge, "after training, write OUT/merged/: the base with the adapter folded in");
}

void check_tuning_options(SftConfig& cfg, const TuningFlags& f) {
  cfg.truncate = !f.no_truncate;
  if (f.rank < 0) throw UsageError("--lora-rank must be 0 or more");
  if (!(f.dropout >= 0 && f.dropout < 1)) throw UsageError("--lora-dropout must be in [0, 1)");
  cfg.lora.rank = static_cast<int>(f.rank);
  cfg.lora.alpha = static_cast<float>(f.alpha > 0 ? f.alpha : 2.0 * static_cast<double>(f.rank));
  cfg.lora.dropout = static_cast<float>(f.dropout);
  cfg.lora.targets = split_list(f.targets);
  if (f.merge && f.rank == 0) throw UsageError("--merge needs --lora-rank (a full fine-tune is a plain checkpoint already)");
  if (!cfg.qlora.empty()) {
    if (f.rank == 0) throw UsageError("--qlora needs --lora-rank: the quantized base is frozen, the adapters train");
    const QuantScheme s = QuantScheme::named(cfg.qlora);
    if (s.base == ggml::Type::f32 || s.base == ggml::Type::f16 || s.base == ggml::Type::bf16)
      throw UsageError("--qlora " + cfg.qlora + ": a quantized type (nf4, q8_0, q4_0, q4_k_m, ...); 16-bit bases are held in fp32");
  }
  if (cfg.limit < 0) throw UsageError("--limit must be 0 or more");
  if (cfg.eval_batches < 0) throw UsageError("--eval-batches must be 0 or more");
  if (cfg.epochs < 0) throw UsageError("--epochs must be positive");
  if (cfg.steps > 0 && cfg.epochs > 0) throw UsageError("give --epochs or --steps, not both");
  if (cfg.steps == 0) {
    if (cfg.epochs == 0) cfg.epochs = 3;
    cfg.steps = 1;  // decided from the data once it is read
  }
}

void finish_tuning(const SftConfig& cfg, const TuningFlags& f, int rc, const Stats& stats) {
  // Merged once the run is complete (not after --stop-at).
  if (rc == 0 && f.merge && stats.get("runs_completed") > 0 && Comm::world().rank() == 0) merge_adapter(cfg.out, cfg.out + "/merged");
}

void read_tuning_data(Trainer& t, const SftConfig& cfg, const RowEncoder& encode, int group, bool whole, const char* what,
                      std::unique_ptr<ExampleSet>& train, std::unique_ptr<ExampleSet>& val) {
  const char* pairs = "must be even: a pair is two rows, chosen and rejected";
  if (group == 2 && cfg.micro_batch % 2 != 0) throw UsageError(std::string("--micro-batch ") + pairs);
  ExampleOptions eo = example_options(cfg);
  eo.group = group;
  eo.whole = whole;
  const Stats& stats = t.stats();
  train = std::make_unique<ExampleSet>(cfg.data, encode, eo, t.stats());
  if (!cfg.val.empty()) {
    Stats val_stats;
    eo.limit = 0;
    val = std::make_unique<ExampleSet>(cfg.val, encode, eo, val_stats);
  }
  if (stats.get("examples_truncated") > 0 && t.leader())
    LLMKIT_WARN("%lld %s longer than --seq-len %d%s tokens were cut (%lld tokens); --no-truncate refuses them",
                static_cast<long long>(stats.get("examples_truncated")), what, cfg.seq_len, whole ? "" : " + 1",
                static_cast<long long>(stats.get("tokens_truncated")));
  if (cfg.epochs > 0) {
    const double rows = static_cast<double>(train->rows()), per_step = static_cast<double>(t.objective().rows_per_step(t));
    t.set_steps(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(cfg.epochs * rows / per_step))));
  }
  if (group == 2 && t.objective().rows_per_step(t) % 2 != 0) throw UsageError(std::string("--batch-size ") + pairs);
}

void for_rank_batches(Trainer& t, const SftConfig& cfg, const ExampleSet& set, uint64_t rows,
                      const std::function<void(const RowBatch&)>& f) {
  const uint64_t B = static_cast<uint64_t>(cfg.micro_batch), R = static_cast<uint64_t>(t.ranks());
  rows = rows > 0 ? std::min<uint64_t>(rows, set.rows()) : set.rows();
  for (uint64_t r0 = static_cast<uint64_t>(t.rank()) * B; r0 < rows; r0 += R * B)
    f(set.batch(r0, static_cast<int>(std::min<uint64_t>(B, rows - r0)), 0));
}

void use_trl_defaults(SftConfig& cfg, double lr) {
  cfg.lr = lr;
  cfg.warmup = 0;
  cfg.schedule = "linear";
  cfg.min_lr_frac = 0;
  cfg.weight_decay = 0;
  cfg.beta2 = 0.999;
  cfg.seq_len = 1024;
  cfg.micro_batch = 8;
  cfg.steps = 0;  // --epochs unless given
}

void default_tokenizer(SftConfig& c) {
  if (c.tokenizer.empty() && !c.init.empty()) {
    const std::string dir = checkpoint_dir(c.init);
    c.tokenizer = checkpoint_tokenizer(dir);
  }
}

int run_tuning_command(const SftConfig& cfg, const TuningFlags& f, const std::string& program, const std::string& stats_file,
                       const std::function<int(Stats&)>& run) {
  Stats stats;
  const int rc = run(stats);
  stats.write(stats_file, program, Comm::world());
  finish_tuning(cfg, f, rc, stats);
  return rc;
}

namespace {

class SftObjective final : public Objective {
 public:
  explicit SftObjective(const SftConfig& cfg) : cfg_(cfg) {}

  std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) override {
    if (cfg_.data.empty()) throw UsageError("--data FILE is required (llmkit-chat(5))");
    ModelOptions options = t.model_options();  // this rank's tensor-parallel slice
    options.recompute_mlp = cfg_.recompute;
    std::unique_ptr<Model> model = build_tuned_model(cfg_, t, resume_dir, base_, options);
    init_dir_ = base_.init_dir;
    tokenizer_ = base_.tokenizer.get();
    if (!cfg_.teacher.empty()) load_teacher(t, *model);
    encoder_ = std::make_unique<ChatEncoder>(*tokenizer_, ChatTemplate::named(cfg_.chat_template));
    read_tuning_data(t, cfg_, chat_rows(*encoder_), 1, false, "examples", train_, val_);
    return model;
  }

  std::string describe(const Trainer& t) const override {
    char line[512];
    const Model& m = t.model();
    snprintf(line, sizeof line,
             "%s: %.2fM parameters%s; %zu examples in %zu rows (%s, %.1f%% padding), %lld trained tokens, template %s; %lld step%s "
             "(%.2f epochs)",
             init_dir_.c_str(), static_cast<double>(m.num_params_unpadded()) / 1e6,
             cfg_.lora.rank > 0 ? (", LoRA rank " + std::to_string(cfg_.lora.rank)).c_str() : "", train_->examples(), train_->rows(),
             cfg_.packing ? "packed" : "one a row", 100.0 * train_->padding_fraction(), static_cast<long long>(train_->trained_tokens()),
             cfg_.chat_template.c_str(), static_cast<long long>(t.options().steps), t.options().steps == 1 ? "" : "s",
             static_cast<double>(t.options().steps) * static_cast<double>(t.state().batch_sequences) / static_cast<double>(train_->rows()));
    return line;
  }

  // The global batch's trained tokens: every rank knows the batch, so the loss is the mean over
  // them whatever the micro-batch, the accumulation and the ranks.
  void begin_step(Trainer& t, uint64_t cursor) override {
    step_trained_ = train_->trained_in(cursor, static_cast<uint64_t>(t.state().batch_sequences), cfg_.seed);
    nll_ = correct_ = kd_ = 0;
    rows_done_ = cursor + static_cast<uint64_t>(t.state().batch_sequences);
  }

  void micro_step(Trainer& t, uint64_t first) override {
    Model& m = t.model();
    const RowBatch b = train_->batch(first, cfg_.micro_batch, cfg_.seed);
    // Adapter dropout masks: a function of the tokens' places in the stream of rows, so a
    // resumed run, another micro-batch size or rank count draws the same ones.
    m.set_dropout_seed(cfg_.seed * 0x9E3779B97F4A7C15ull + 1, first * static_cast<uint64_t>(cfg_.seq_len));
    const int32_t* starts = b.starts.empty() ? nullptr : b.starts.data();
    // The teacher's logits stay in its own activations until its next forward.
    if (teacher_) teacher_->forward(b.tokens.data(), nullptr, b.B, b.T, starts);
    m.forward(b.tokens.data(), b.targets.data(), b.B, b.T, starts);
    score(m, b);
    // d(loss)/d(logp) of the NLL's share, and the divergence's weight, on each trained token.
    const double alpha = teacher_ ? cfg_.kd_alpha : 0.0;
    const float inv = step_trained_ > 0 ? 1.0f / static_cast<float>(step_trained_) : 0.0f;
    const float w_nll = -static_cast<float>(1.0 - alpha) * inv, w_kd = static_cast<float>(alpha) * inv;
    dlogp_.assign(b.targets.size(), 0.0f);
    kd_weight_.assign(b.targets.size(), 0.0f);
    for (size_t i = 0; i < b.targets.size(); ++i)
      if (b.targets[i] >= 0) {
        dlogp_[i] = w_nll;
        kd_weight_[i] = w_kd;
      }
    if (!teacher_) return m.backward(dlogp_.data());
    Model::Distillation kd;
    kd.teacher_logits = teacher_->logits();
    kd.weight = kd_weight_.data();
    kd.divergence = cfg_.divergence;
    kd_loss_.assign(b.targets.size(), 0.0f);
    kd.kd_loss = kd_loss_.data();
    m.backward(dlogp_.data(), nullptr, &kd);
    for (size_t i = 0; i < b.targets.size(); ++i)
      if (b.targets[i] >= 0) kd_ += kd_loss_[i];
  }

  double end_step(Trainer& t) override {
    if (t.ranks() > 1) {
      nll_ = t.comm().allreduce_sum_double(nll_);
      correct_ = t.comm().allreduce_sum_double(correct_);
      if (teacher_) kd_ = t.comm().allreduce_sum_double(kd_);
    }
    if (step_trained_ == 0) return 0.0;
    const double n = static_cast<double>(step_trained_);
    if (!teacher_) return nll_ / n;
    return (1.0 - cfg_.kd_alpha) * nll_ / n + cfg_.kd_alpha * kd_ / n;
  }

  void step_metrics(Trainer&, nlohmann::json& line) override {
    if (teacher_ && step_trained_ > 0) {
      line["nll"] = nll_ / static_cast<double>(step_trained_);
      line["kd_loss"] = kd_ / static_cast<double>(step_trained_);
    }
    line["mean_token_accuracy"] = step_trained_ > 0 ? std::round(correct_ / static_cast<double>(step_trained_) * 1e6) / 1e6 : 0.0;
    line["trained_tokens"] = step_trained_;
    line["epoch"] = std::round(static_cast<double>(rows_done_) / static_cast<double>(train_->rows()) * 1e4) / 1e4;
  }
  uint64_t step_tokens(const Trainer&) const override { return static_cast<uint64_t>(step_trained_); }
  double step_flops(const Trainer& t) const override {
    double f = t.model().flops_per_step(cfg_.micro_batch, cfg_.seq_len);
    if (teacher_) f += teacher_->flops_per_forward(cfg_.micro_batch, cfg_.seq_len);
    return f * static_cast<double>(t.accumulation());
  }

  nlohmann::json evaluate(Trainer& t) override {
    if (!val_) return nullptr;
    Model& m = t.model();
    m.set_dropout_seed(0);
    nll_ = correct_ = 0;
    double trained = 0;
    for_rank_batches(t, cfg_, *val_, static_cast<uint64_t>(cfg_.eval_batches) * static_cast<uint64_t>(cfg_.micro_batch),
                     [&](const RowBatch& b) {
                       m.forward(b.tokens.data(), b.targets.data(), b.B, b.T, b.starts.empty() ? nullptr : b.starts.data());
                       score(m, b);
                       trained += static_cast<double>(b.trained);
                     });
    if (t.ranks() > 1) {
      nll_ = t.comm().allreduce_sum_double(nll_);
      correct_ = t.comm().allreduce_sum_double(correct_);
      trained = t.comm().allreduce_sum_double(trained);
    }
    if (trained == 0) return nullptr;
    return {{"val_loss", nll_ / trained}, {"val_mean_token_accuracy", correct_ / trained}};
  }

  void save_extra(Trainer& t, const std::string& dir) override { save_tuned_extra(cfg_, t, base_, dir); }

 private:
  // The batch's summed negative log-likelihood and correct argmax over its targets, before the
  // backward pass turns the logits into their gradient.
  void score(Model& m, const RowBatch& b) {
    const std::vector<float> lp = m.logp();
    argmax_.resize(b.targets.size());
    m.argmax(argmax_.data());
    for (size_t i = 0; i < b.targets.size(); ++i)
      if (b.targets[i] >= 0) {
        nll_ -= lp[i];
        correct_ += argmax_[i] == b.targets[i];
      }
  }

  void release(Trainer&) override { teacher_.reset(); }
  double other_models_mib(const Trainer& t) const override {
    if (!teacher_) return 0;
    const double bytes_per_weight = t.on_gpu() && cfg_.precision == "bf16" ? 6 : 4;
    return (static_cast<double>(teacher_->num_params()) * bytes_per_weight +
            static_cast<double>(teacher_->activation_bytes(cfg_.micro_batch, cfg_.seq_len))) / (1 << 20);
  }

  // The teacher: a second model on the trainer's backend, frozen (no gradients, no optimizer
  // state), with the student's vocabulary and tokenizer.
  void load_teacher(Trainer& t, const Model& student) {
    if (t.tensor_parallel() > 1)
      throw UsageError("--teacher: distillation reads the teacher's whole logits and is not tensor-parallel: give --tp 1");
    LoadedModel lm = open_model(cfg_.teacher, t.backend());
    const ModelConfig& tc = lm.model->config();
    if (tc.vocab_size != student.config().vocab_size)
      throw Error(cfg_.teacher, "has a vocabulary of " + std::to_string(tc.vocab_size) + " tokens, the student " +
                                    std::to_string(student.config().vocab_size) + ": teacher and student must share the tokenizer");
    if (!lm.tokenizer.empty() && read_file(lm.tokenizer) != read_file(tokenizer_->path()))
      throw Error(cfg_.teacher, "has another tokenizer than the student's (" + lm.tokenizer + " differs from " + tokenizer_->path() +
                                    "): teacher and student must share it");
    if (lm.tokenizer.empty() && t.leader())
      LLMKIT_WARN("%s has no tokenizer.model: assuming it is the student's (%s)", cfg_.teacher.c_str(), tokenizer_->path().c_str());
    if (tc.classifier) throw Error(cfg_.teacher, "is a reward model (no LM head): a teacher is a language model");
    if (cfg_.seq_len > tc.max_seq)
      throw UsageError("--seq-len " + std::to_string(cfg_.seq_len) + " is above the teacher's context of " + std::to_string(tc.max_seq));
    teacher_ = std::move(lm.model);
    teacher_->freeze([](const std::string&) { return true; });
    teacher_->set_dropout_seed(0);
    if (t.leader())
      LLMKIT_INFO("teacher %s: %.2fM parameters, %s", cfg_.teacher.c_str(), static_cast<double>(teacher_->num_params_unpadded()) / 1e6,
                  cfg_.divergence.kind == Divergence::Kind::kl ? "KL" : "generalised JSD");
  }

  const SftConfig& cfg_;
  std::unique_ptr<Model> teacher_;
  std::string init_dir_;
  TunedBase base_;
  const Tokenizer* tokenizer_ = nullptr;
  std::unique_ptr<ChatEncoder> encoder_;
  std::unique_ptr<ExampleSet> train_, val_;
  int64_t step_trained_ = 0;
  uint64_t rows_done_ = 0;
  double nll_ = 0, correct_ = 0, kd_ = 0;
  std::vector<float> dlogp_, kd_weight_, kd_loss_;
  std::vector<int32_t> argmax_;
};

}  // namespace

int run_sft(const SftConfig& cfg, Stats& stats) { return train_objective<SftObjective>(cfg, stats); }

void show_masks(const SftConfig& cfg, int64_t n, std::FILE* out) {
  if (cfg.init.empty() && cfg.tokenizer.empty()) throw UsageError("--show-masks needs --init (or --tokenizer)");
  if (cfg.data.empty()) throw UsageError("--data FILE is required (llmkit-chat(5))");
  const Tokenizer tok(cfg.tokenizer.empty() ? tokenizer_path(cfg, checkpoint_dir(cfg.init)) : cfg.tokenizer);
  const ChatEncoder enc(tok, ChatTemplate::named(cfg.chat_template));
  SftConfig c = cfg;
  c.limit = n;
  c.packing = false;
  Stats stats;
  ExampleSet set(c.data, enc, example_options(c), stats);
  for (size_t i = 0; i < set.examples(); ++i) {
    const ChatExample ex = set.example(i);
    std::fprintf(out, "== %s: %zu tokens, %zu trained\n%s\n", ex.where.c_str(), ex.tokens.size(), ex.trained_tokens(),
                 enc.show(ex).c_str());
  }
}

void merge_adapter(const std::string& adapter, const std::string& out) {
  std::string dir = checkpoint_dir(adapter);
  if (!is_adapter_dir(dir)) throw Error(adapter, "holds no adapter_config.json: not a LoRA adapter or an llm-sft LoRA run");
  check_output_dir(out, "-o");
  auto be = make_cpu_backend();
  LoadedModel lm = open_model(dir, *be);  // base + adapter, merged
  fs::create_directories(out);
  write_file_atomic(out + "/config.json", lm.model->config().to_json());
  save_model(out + "/model.safetensors", *lm.model);
  if (!lm.tokenizer.empty())
    write_file_atomic(out + (has_suffix(lm.tokenizer, "/vocab.txt") ? "/vocab.txt" : "/tokenizer.model"), read_file(lm.tokenizer));
  if (file_size(dir + "/tokenizer_config.json") > 0) write_file_atomic(out + "/tokenizer_config.json", read_file(dir + "/tokenizer_config.json"));
  LLMKIT_INFO("merged %s into %s", dir.c_str(), out.c_str());
}

}  // namespace llmkit
