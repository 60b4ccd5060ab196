// llm-pretrain: next-token prediction or masked-language modelling on token shards, an objective
// on the shared training loop (llmkit/trainer.hpp); see llmkit/pretrain.hpp.
#include "llmkit/pretrain.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <cstring>

#include "../backend/dropout.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/classify.hpp"
#include "llmkit/data.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/model.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/trainer.hpp"

namespace llmkit {

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

// Every target of every window is trained (MLM: every masked token); the step's loss is the mean
// over the global batch (MLM: of each micro-batch's mean over its masked tokens).
class PretrainObjective final : public Objective {
 public:
  explicit PretrainObjective(const PretrainConfig& cfg) : cfg_(cfg) {}

  std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) override {
    if (cfg_.train.empty()) throw UsageError("--train SHARDS is required");
    const bool llmc_init = resume_dir.empty() && !cfg_.init.empty() && is_llmc_checkpoint(cfg_.init);
    ModelConfig mc = llmc_init ? llmc_config(cfg_.init)
                     : ModelConfig::load(!resume_dir.empty()                              ? resume_dir
                                         : !cfg_.init.empty() && is_directory(cfg_.init) ? cfg_.init
                                                                                         : cfg_.model);
    train_ = std::make_unique<TokenData>(expand_shard_patterns(cfg_.train), cfg_.seq_len, cfg_.verify_shards);
    if (!cfg_.val.empty()) val_ = std::make_unique<TokenData>(expand_shard_patterns(cfg_.val), cfg_.seq_len, cfg_.verify_shards);
    // The tokenizer against the shards, before anything is written.
    if (!cfg_.tokenizer.empty()) {
      tokenizer_ = std::make_unique<Tokenizer>(cfg_.tokenizer);
      for (const TokenData* d : {train_.get(), val_.get()})
        if (d && d->tokenizer_hash() && d->tokenizer_hash() != tokenizer_->hash())
          throw Error(cfg_.tokenizer, std::string("is not the tokenizer the ") + (d == train_.get() ? "training" : "validation") +
                                          " shards were made with (" + d->paths()[0] + ")");
    }
    if (val_ && train_->tokenizer_hash() && val_->tokenizer_hash() && train_->tokenizer_hash() != val_->tokenizer_hash())
      throw Error(val_->paths()[0], "was made with another tokenizer than the training shards (" + train_->paths()[0] + ")");
    // The vocabulary comes from the shards when the model does not fix it by its weights.
    if (cfg_.init.empty() && resume_dir.empty() && train_->vocab_size() > 0) mc.vocab_size = static_cast<int>(train_->vocab_size());
    if (train_->vocab_size() > static_cast<uint64_t>(mc.vocab_size))
      throw Error(train_->paths()[0], "vocabulary of " + std::to_string(train_->vocab_size()) + " is larger than the model's " +
                                          std::to_string(mc.vocab_size));
    // RoPE has no table: a Llama trains at any length. GPT-2's learned positions stop at max_seq.
    if (cfg_.seq_len > mc.max_seq && mc.family == ModelConfig::Family::llama) mc.max_seq = cfg_.seq_len;
    if (cfg_.nsp && !mlm_) throw UsageError("--nsp goes with --objective mlm");
    // The next-sentence head: asked for, or the checkpoint resumed or started from has it.
    if (mlm_ && resume_dir.empty() && cfg_.init.empty()) mc.nsp = cfg_.nsp;
    if (mc.nsp != cfg_.nsp)
      throw UsageError(std::string(mc.nsp ? "the model has a next-sentence head: give --nsp" : "--nsp: the model has no next-sentence head") +
                       " (a run resumes, and --init continues, with the head it has)");
    if (mlm_ != mc.encoder())
      throw UsageError(mlm_ ? "--objective mlm trains an encoder: --model bert-tiny, bert-base or a BERT config.json"
                            : "a BERT encoder trains with --objective mlm (it does not predict the next token)");
    if (mlm_) {
      if (!tokenizer_) throw UsageError("--objective mlm needs --tokenizer (the vocab.txt, for [CLS], [MASK] and the special pieces)");
      vocab_ = MlmVocab::from_tokenizer(*tokenizer_);
      if (cfg_.nsp && cfg_.seq_len < 5) throw UsageError("--nsp needs --seq-len 5 or more ([CLS] A [SEP] B [SEP])");
    }
    ModelOptions options = t.model_options();  // this rank's tensor-parallel slice
    options.recompute_mlp = cfg_.recompute;
    auto model = std::make_unique<Model>(mc, t.backend(), options);
    if (!resume_dir.empty()) return model;  // the loop loads the checkpoint
    if (llmc_init) load_llmc(cfg_.init, *model);
    else if (!cfg_.init.empty()) load_model(is_directory(cfg_.init) ? cfg_.init + "/model.safetensors" : cfg_.init, *model);
    else model->init(cfg_.seed);
    return model;
  }

  int64_t rows_per_step(const Trainer& t) const override {
    if (cfg_.batch_tokens <= 0) return Objective::rows_per_step(t);
    const int64_t unit = static_cast<int64_t>(cfg_.seq_len) * cfg_.micro_batch * t.ranks();
    if (cfg_.batch_tokens % unit != 0)
      throw UsageError("--batch-tokens must be a multiple of seq-len x micro-batch x ranks (" + std::to_string(unit) + ")");
    return cfg_.batch_tokens / cfg_.seq_len;
  }

  std::string describe(const Trainer& t) const override {
    const uint64_t global = static_cast<uint64_t>(t.state().batch_sequences);
    if (global > train_->windows() && t.leader())
      LLMKIT_WARN("one step takes %llu sequences of %d tokens, more than the %llu windows the training shards hold: "
                  "every step sees some of them twice or more (lower --batch-tokens, or give more data)",
                  static_cast<unsigned long long>(global), cfg_.seq_len, static_cast<unsigned long long>(train_->windows()));
    char line[256];
    snprintf(line, sizeof line, "%s: %.2fM parameters, %llu training tokens",
             (!cfg_.init.empty() && is_directory(cfg_.init) ? cfg_.init : cfg_.model).c_str(),
             static_cast<double>(t.model().num_params_unpadded()) / 1e6, static_cast<unsigned long long>(train_->tokens()));
    return line;
  }

  void begin_step(Trainer&, uint64_t) override { loss_ = nsp_ = nsp_right_ = 0; }

  // One micro-batch of windows from the shuffled order; each rank's gradient is scaled so that
  // their sum is the global batch's mean.
  void micro_step(Trainer& t, uint64_t first) override {
    const int B = cfg_.micro_batch, T = cfg_.seq_len;
    in_.resize(static_cast<size_t>(B) * T);
    tgt_.resize(in_.size());
    for (int b = 0; b < B; ++b) {
      int32_t *in = in_.data() + static_cast<size_t>(b) * T, *tgt = tgt_.data() + static_cast<size_t>(b) * T;
      train_->shuffled(first + static_cast<uint64_t>(b), cfg_.seed, in, tgt);
      if (mlm_) mask_row(*train_, in, tgt, b, static_cast<uint64_t>(t.state().step), first + static_cast<uint64_t>(b));
    }
    Model& m = t.model();
    if (cfg_.nsp) m.set_token_types(types_);
    m.forward(in_.data(), tgt_.data(), B, T);
    const double parts = static_cast<double>(t.accumulation()) * t.ranks();
    loss_ += m.mean_loss() / static_cast<double>(t.accumulation());
    if (!cfg_.nsp) return m.backward_mean(static_cast<float>(1.0 / parts));
    // With NSP its loss's gradient too, the global batch's mean over rows.
    std::vector<float> dvalue(2 * in_.size(), 0.0f);
    nsp_ += nsp_scores(m, B, &dvalue, static_cast<double>(B) * parts) / B / static_cast<double>(t.accumulation());
    m.backward_mean(static_cast<float>(1.0 / parts), dvalue.data());
  }

  double end_step(Trainer& t) override {
    if (t.ranks() > 1) {
      loss_ = t.comm().allreduce_sum_double(loss_) / t.ranks();
      nsp_ = t.comm().allreduce_sum_double(nsp_) / t.ranks();
      nsp_right_ = t.comm().allreduce_sum_double(nsp_right_);
    }
    return loss_ + nsp_;  // BertForPreTraining's total loss
  }

  void step_metrics(Trainer& t, nlohmann::json& line) override {
    if (!cfg_.nsp) return;
    line["mlm_loss"] = loss_;
    line["nsp_loss"] = nsp_;
    line["nsp_accuracy"] = nsp_right_ / static_cast<double>(t.state().batch_sequences);
  }

  uint64_t step_tokens(const Trainer& t) const override {
    return static_cast<uint64_t>(t.state().batch_sequences) * static_cast<uint64_t>(cfg_.seq_len);
  }

  nlohmann::json evaluate(Trainer& t) override {
    if (!val_) return nullptr;
    const int B = cfg_.micro_batch, T = cfg_.seq_len, R = t.ranks();
    const uint64_t windows = std::min<uint64_t>(val_->windows(), static_cast<uint64_t>(cfg_.eval_batches) * B);
    std::vector<int32_t> in(static_cast<size_t>(B) * T), tgt(in.size()), best(in.size());
    // MLM: the same masks at every evaluation (step 0's draws), and the share of masked tokens
    // the model's top prediction restores.
    double sum = 0, count = 0, correct = 0, nsp_sum = 0, nsp_correct = 0, nsp_rows = 0;
    for (uint64_t w0 = static_cast<uint64_t>(t.rank()) * B; w0 < windows; w0 += static_cast<uint64_t>(R) * B) {
      const int rows = static_cast<int>(std::min<uint64_t>(B, windows - w0));
      for (int b = 0; b < rows; ++b) {
        int32_t *row = in.data() + static_cast<size_t>(b) * T, *target = tgt.data() + static_cast<size_t>(b) * T;
        val_->window(w0 + static_cast<uint64_t>(b), row, target);
        if (mlm_) mask_row(*val_, row, target, b, 0, w0 + static_cast<uint64_t>(b));
      }
      Model& m = t.model();
      if (cfg_.nsp) m.set_token_types(std::vector<int32_t>(types_.begin(), types_.begin() + static_cast<long>(rows) * T));
      m.forward(in.data(), tgt.data(), rows, T);
      if (cfg_.nsp) {
        const double right = nsp_right_;
        nsp_sum += nsp_scores(m, rows, nullptr, 1.0);
        nsp_correct += nsp_right_ - right;
        nsp_rows += rows;
      }
      const size_t N = static_cast<size_t>(rows) * T;
      const double targets = static_cast<double>(std::count_if(tgt.begin(), tgt.begin() + static_cast<long>(N), [](int32_t x) { return x >= 0; }));
      sum += m.mean_loss() * targets;
      count += targets;
      if (mlm_) {
        m.argmax(best.data());
        for (size_t i = 0; i < N; ++i) correct += tgt[i] >= 0 && best[i] == tgt[i];
      }
    }
    if (R > 1) {
      sum = t.comm().allreduce_sum_double(sum);
      count = t.comm().allreduce_sum_double(count);
      correct = t.comm().allreduce_sum_double(correct);
      nsp_sum = t.comm().allreduce_sum_double(nsp_sum);
      nsp_correct = t.comm().allreduce_sum_double(nsp_correct);
      nsp_rows = t.comm().allreduce_sum_double(nsp_rows);
    }
    nlohmann::json out = {{"val_loss", count > 0 ? sum / count : NAN}};
    if (mlm_) out["val_accuracy"] = count > 0 ? correct / count : NAN;
    if (cfg_.nsp && nsp_rows > 0) {
      out["val_nsp_loss"] = nsp_sum / nsp_rows;
      out["val_nsp_accuracy"] = nsp_correct / nsp_rows;
    }
    return out;
  }

  // A continuation of the first validation (else training) window's first 8 tokens, sampled at
  // temperature 1 from the top 40 tokens, seeded by the step: how the model writes at this
  // point. Recomputes the whole sequence per token (the KV-cached engine belongs to inference).
  void sample(Trainer& t) override {
    if (t.rank() != 0) return;
    if (mlm_) return fill_masks(t);
    Model& m = t.model();
    const TokenData& d = val_ ? *val_ : *train_;
    std::vector<int32_t> in(static_cast<size_t>(cfg_.seq_len)), tgt(in.size());
    d.window(0, in.data(), tgt.data());
    const int prompt = std::min(8, cfg_.seq_len);
    std::vector<int32_t> seq(in.begin(), in.begin() + prompt);
    std::mt19937_64 rng(cfg_.seed * 7919 + static_cast<uint64_t>(t.state().step));
    const int V = m.config().vocab_size;
    while (static_cast<int64_t>(seq.size()) < prompt + cfg_.sample_tokens && static_cast<int>(seq.size()) < m.config().max_seq) {
      m.forward(seq.data(), nullptr, 1, static_cast<int>(seq.size()));
      const std::vector<float> l = m.logits_row(seq.size() - 1);  // the last position's, on the host
      std::vector<int> order(static_cast<size_t>(V));
      for (int i = 0; i < V; ++i) order[static_cast<size_t>(i)] = i;
      const int k = std::min(40, V);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return l[a] > l[b]; });
      std::vector<double> p(static_cast<size_t>(k));
      for (int i = 0; i < k; ++i)
        p[static_cast<size_t>(i)] = std::exp(static_cast<double>(l[order[static_cast<size_t>(i)]] - l[order[0]]));
      std::discrete_distribution<int> pick(p.begin(), p.end());
      seq.push_back(order[static_cast<size_t>(pick(rng))]);
    }
    std::string text;
    if (tokenizer_) {
      std::vector<uint32_t> ids(seq.begin(), seq.end());
      text = tokenizer_->decode(ids.data(), prompt) + " |> " + tokenizer_->decode(ids.data() + prompt, ids.size() - prompt);
    } else {
      for (size_t i = 0; i < seq.size(); ++i)
        text += (i ? " " : "") + std::to_string(seq[i]) + (static_cast<int>(i) + 1 == prompt ? " |>" : "");
    }
    for (char& c : text)
      if (c == '\n') c = ' ';
    if (t.leader()) LLMKIT_INFO("step %5lld  sample: %s", static_cast<long long>(t.state().step), text.c_str());
  }

 private:
  // An MLM row from a window (row b of the micro-batch, `index` in the run's order): [CLS] and
  // the window's first T - 1 tokens, masked. With NSP, [CLS] A [SEP] B [SEP] instead: A the
  // window's first a tokens (a drawn in 1..T-4), B the T - 3 - a after them (IsNext, label 0) or,
  // half the time, the first ones of another window of `data` (NotNext, 1); token types 0 to
  // A's [SEP], 1 after. The draws come from (seed, step, index) as the masks do.
  void mask_row(const TokenData& data, int32_t* row, int32_t* targets, int b, uint64_t step, uint64_t index) {
    const int T = cfg_.seq_len;
    if (!cfg_.nsp) {
      std::memmove(row + 1, row, static_cast<size_t>(T - 1) * sizeof(int32_t));
      row[0] = vocab_.cls_id;
      return mlm_mask(row, targets, T, vocab_, cfg_.mlm, cfg_.seed, step, index);
    }
    const uint64_t key = counter_hash(counter_hash(cfg_.seed ^ 0x4E5350ull, step), index);
    const int a = 1 + static_cast<int>(counter_hash(key, 0) % static_cast<uint64_t>(T - 4)), nb = T - 3 - a;
    const bool next = (counter_hash(key, 1) & 1) == 0;
    std::vector<int32_t> window(row, row + T), other(static_cast<size_t>(T)), unused(static_cast<size_t>(T));
    if (!next) {  // another window: the drawn one, or the one after when that is this one
      const uint64_t k = counter_hash(key, 2) % data.windows();
      data.window(k, other.data(), unused.data());
      if (data.windows() > 1 && other == window) data.window((k + 1) % data.windows(), other.data(), unused.data());
    }
    const int32_t* second = next ? window.data() + a : other.data();
    int p = 0;
    row[p++] = vocab_.cls_id;
    for (int i = 0; i < a; ++i) row[p++] = window[static_cast<size_t>(i)];
    row[p++] = vocab_.sep_id;
    for (int i = 0; i < nb; ++i) row[p++] = second[i];
    row[p++] = vocab_.sep_id;
    types_.resize(std::max(types_.size(), static_cast<size_t>(b + 1) * T));
    nsp_labels_.resize(std::max(nsp_labels_.size(), static_cast<size_t>(b + 1)));
    for (int i = 0; i < T; ++i) types_[static_cast<size_t>(b) * T + i] = i <= a + 1 ? 0 : 1;
    nsp_labels_[static_cast<size_t>(b)] = next ? 0 : 1;
    mlm_mask(row, targets, T, vocab_, cfg_.mlm, cfg_.seed, step, index);
  }

  // The NSP head's loss summed over B rows (its logits at each row's [CLS]), its correct
  // predictions added to nsp_right_, and with dvalue the gradient of that sum / `rows`.
  double nsp_scores(const Model& m, int B, std::vector<float>* dvalue, double rows) {
    const std::vector<float> v = m.values();
    const size_t T = static_cast<size_t>(cfg_.seq_len);
    double loss = 0;
    for (int r = 0; r < B; ++r) {
      const size_t at = static_cast<size_t>(r) * T * 2;  // the row's [CLS]
      const int gold = nsp_labels_[static_cast<size_t>(r)];
      int predicted = 0;
      loss += label_cross_entropy(v.data() + at, 2, gold, predicted, dvalue ? dvalue->data() + at : nullptr, 1.0 / rows);
      nsp_right_ += predicted == gold;
    }
    return loss;
  }

  // An encoder's --sample-every: the first validation (else training) window masked as this
  // step masks it, and each of its first masked tokens with the model's top prediction.
  void fill_masks(Trainer& t) {
    Model& m = t.model();
    const TokenData& d = val_ ? *val_ : *train_;
    const int T = cfg_.seq_len;
    std::vector<int32_t> in(static_cast<size_t>(T)), tgt(in.size()), best(in.size());
    d.window(0, in.data(), tgt.data());
    mask_row(d, in.data(), tgt.data(), 0, static_cast<uint64_t>(t.state().step), 0);
    if (cfg_.nsp) m.set_token_types(std::vector<int32_t>(types_.begin(), types_.begin() + T));
    m.forward(in.data(), nullptr, 1, T);
    m.argmax(best.data());
    std::string text;
    int shown = 0, right = 0, masked = 0;
    for (int i = 0; i < T; ++i) {
      if (tgt[static_cast<size_t>(i)] < 0) continue;
      ++masked;
      right += best[static_cast<size_t>(i)] == tgt[static_cast<size_t>(i)];
      if (shown++ < 8)
        text += " " + tokenizer_->piece(static_cast<uint32_t>(tgt[static_cast<size_t>(i)])) + "->" +
                tokenizer_->piece(static_cast<uint32_t>(best[static_cast<size_t>(i)]));
    }
    if (t.leader()) LLMKIT_INFO("step %5lld  masked %d, restored %d:%s", static_cast<long long>(t.state().step), masked, right, text.c_str());
  }


  const PretrainConfig& cfg_;
  const bool mlm_ = cfg_.objective == "mlm";  // after cfg_
  MlmVocab vocab_;
  std::vector<int32_t> types_, nsp_labels_;  // NSP: the micro-batch's token types and labels
  double nsp_ = 0, nsp_right_ = 0;
  std::unique_ptr<TokenData> train_, val_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<int32_t> in_, tgt_;
  double loss_ = 0;
};

}  // namespace

int run_pretrain(const PretrainConfig& cfg, Stats& stats) {
  PretrainObjective objective(cfg);
  return Trainer(cfg, objective, stats).run();
}

}  // namespace llmkit
