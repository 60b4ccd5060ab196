// llm-ppo dpo: direct preference optimisation as an objective on the shared loop; see
// llmkit/dpo.hpp.
#include "llmkit/dpo.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "llmkit/chat.hpp"
#include "llmkit/error.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

namespace {

double log_sigmoid(double z) { return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z)); }
double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }

}  // namespace

DpoPairLoss dpo_pair_loss(const std::string& loss, double beta, double label_smoothing, double pc, double pr, double rc, double rr,
                          double len_c, double len_r) {
  DpoPairLoss r;
  if (loss == "ipo") {
    const double u = (pc - rc) / len_c - (pr - rr) / len_r;
    const double d = u - 1.0 / (2.0 * beta);
    r.loss = d * d;
    r.dchosen = 2.0 * d / len_c;
    r.drejected = -2.0 * d / len_r;
    return r;
  }
  const double u = (pc - rc) - (pr - rr);
  if (loss == "hinge") {
    const double h = 1.0 - beta * u;
    r.loss = std::max(0.0, h);
    r.dchosen = h > 0 ? -beta : 0.0;
    r.drejected = -r.dchosen;
    return r;
  }
  if (loss != "sigmoid") throw UsageError("--loss must be sigmoid, ipo or hinge, not '" + loss + "'");
  const double z = beta * u, eps = label_smoothing;
  r.loss = -(1.0 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
  r.dchosen = beta * (-(1.0 - eps) * sigmoid(-z) + eps * sigmoid(z));
  r.drejected = -r.dchosen;
  return r;
}

namespace {

// The sums a step or an evaluation reports, over pairs: added up over micro-batches and ranks.
struct PairSums {
  enum { loss, chosen_reward, rejected_reward, correct, chosen_logp, rejected_logp, pairs, count };
  double v[count] = {};
  void allreduce(Comm& c) { c.allreduce_sum(v, count); }
  double mean(int k) const { return v[pairs] > 0 ? v[k] / v[pairs] : 0.0; }
};

class DpoObjective final : public Objective {
 public:
  explicit DpoObjective(const DpoConfig& cfg) : cfg_(cfg) {}

  std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) override {
    if (cfg_.data.empty()) throw UsageError("--data FILE is required (preference rows, llmkit-chat(5))");
    if (!(cfg_.beta > 0)) throw UsageError("--beta must be positive");
    if (!(cfg_.label_smoothing >= 0 && cfg_.label_smoothing < 0.5)) throw UsageError("--label-smoothing must be in [0, 0.5)");
    if (cfg_.label_smoothing > 0 && cfg_.loss != "sigmoid") throw UsageError("--label-smoothing goes with --loss sigmoid");
    dpo_pair_loss(cfg_.loss, 1, 0, 0, 0, 0, 0, 1, 1);  // checks the loss's name
    ModelOptions options = t.model_options();  // this rank's tensor-parallel slice
    options.recompute_mlp = cfg_.recompute;
    std::unique_ptr<Model> model = build_tuned_model(cfg_, t, resume_dir, base_, options);
    encoder_ = std::make_unique<ChatEncoder>(*base_.tokenizer, ChatTemplate::named(cfg_.chat_template));
    read_tuning_data(t, cfg_, preference_rows(*encoder_), 2, false, "answers", train_, val_);
    // The reference: the starting policy's log-probabilities, computed now, or the run's.
    if (resume_dir.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      reference(t, *model, *train_, ref_train_);
      if (val_) reference(t, *model, *val_, ref_val_);
      if (t.leader())
        LLMKIT_INFO("reference: the starting model's log-probabilities of %zu answers, in %.1f s", ref_train_.size() + ref_val_.size(),
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    } else {
      read_reference(resume_dir);
      if (t.leader()) LLMKIT_INFO("reference: the log-probabilities of %s/reference_logps.json", resume_dir.c_str());
    }
    return model;
  }

  std::string describe(const Trainer& t) const override {
    char line[512];
    const Model& m = t.model();
    snprintf(line, sizeof line,
             "%s: %.2fM parameters%s; %zu pairs (%lld trained tokens), template %s; loss %s, beta %g%s; %lld step%s of %lld pairs "
             "(%.2f epochs)",
             base_.init_dir.c_str(), static_cast<double>(m.num_params_unpadded()) / 1e6,
             cfg_.lora.rank > 0 ? (", LoRA rank " + std::to_string(cfg_.lora.rank)).c_str() : "", train_->groups(),
             static_cast<long long>(train_->trained_tokens()), cfg_.chat_template.c_str(), cfg_.loss.c_str(), cfg_.beta,
             cfg_.label_smoothing > 0 ? (", label smoothing " + std::to_string(cfg_.label_smoothing).substr(0, 5)).c_str() : "",
             static_cast<long long>(t.options().steps), t.options().steps == 1 ? "" : "s",
             static_cast<long long>(t.state().batch_sequences / 2),
             static_cast<double>(t.options().steps) * static_cast<double>(t.state().batch_sequences) / static_cast<double>(train_->rows()));
    return line;
  }

  void begin_step(Trainer& t, uint64_t cursor) override {
    step_trained_ = train_->trained_in(cursor, static_cast<uint64_t>(t.state().batch_sequences), cfg_.seed);
    rows_done_ = cursor + static_cast<uint64_t>(t.state().batch_sequences);
    sums_ = PairSums{};
  }

  void micro_step(Trainer& t, uint64_t first) override {
    Model& m = t.model();
    const RowBatch b = train_->batch(first, cfg_.micro_batch, cfg_.seed);
    m.set_dropout_seed(cfg_.seed * 0x9E3779B97F4A7C15ull + 1, first * static_cast<uint64_t>(cfg_.seq_len));
    m.forward(b.tokens.data(), b.targets.data(), b.B, b.T);
    // The mean over the global batch's pairs.
    const double pairs = static_cast<double>(t.state().batch_sequences) / 2.0;
    std::vector<double> dseq;
    score(m, b, ref_train_, sums_, &dseq);
    dlogp_.assign(b.targets.size(), 0.0f);
    for (int r = 0; r < b.B; ++r)
      for (int i = 0; i < b.T; ++i) {
        const size_t at = static_cast<size_t>(r) * static_cast<size_t>(b.T) + static_cast<size_t>(i);
        if (b.targets[at] >= 0) dlogp_[at] = static_cast<float>(dseq[static_cast<size_t>(r)] / pairs);
      }
    m.backward(dlogp_.data());
  }

  double end_step(Trainer& t) override {
    if (t.ranks() > 1) sums_.allreduce(t.comm());
    return sums_.mean(PairSums::loss);
  }

  void step_metrics(Trainer&, nlohmann::json& line) override {
    put_metrics(sums_, "", line);
    line["epoch"] = std::round(static_cast<double>(rows_done_) / static_cast<double>(train_->rows()) * 1e4) / 1e4;
  }
  uint64_t step_tokens(const Trainer&) const override { return static_cast<uint64_t>(step_trained_); }

  nlohmann::json evaluate(Trainer& t) override {
    if (!val_) return nullptr;
    Model& m = t.model();
    m.set_dropout_seed(0);
    PairSums sums;
    for_rank_batches(t, cfg_, *val_, static_cast<uint64_t>(cfg_.eval_batches) * static_cast<uint64_t>(cfg_.micro_batch),
                     [&](const RowBatch& b) {
                       m.forward(b.tokens.data(), b.targets.data(), b.B, b.T);
                       score(m, b, ref_val_, sums, nullptr);
                     });
    if (t.ranks() > 1) sums.allreduce(t.comm());
    if (sums.v[PairSums::pairs] == 0) return nullptr;
    nlohmann::json j;
    put_metrics(sums, "val_", j);
    return j;
  }

  void save_extra(Trainer& t, const std::string& dir) override {
    save_tuned_extra(cfg_, t, base_, dir);
    if (t.rank() == 0) write_file_atomic(dir + "/reference_logps.json", reference_json());
  }

 private:
  // Sequence log-probabilities of each row of a batch (chosen, rejected, chosen, ...): the sums
  // over the answers' tokens, in double, and the tokens counted.
  static void sequence_logps(const Model& m, const RowBatch& b, std::vector<double>& logp, std::vector<double>& len) {
    const std::vector<float> lp = m.logp();
    logp.assign(static_cast<size_t>(b.B), 0.0);
    len.assign(static_cast<size_t>(b.B), 0.0);
    for (int r = 0; r < b.B; ++r)
      for (int i = 0; i < b.T; ++i) {
        const size_t at = static_cast<size_t>(r) * static_cast<size_t>(b.T) + static_cast<size_t>(i);
        if (b.targets[at] >= 0) {
          logp[static_cast<size_t>(r)] += lp[at];
          len[static_cast<size_t>(r)] += 1;
        }
      }
  }

  // A batch's pairs against the reference: their losses and rewards into `sums`, and with
  // `dseq` the loss's derivative in each row's sequence log-probability.
  void score(const Model& m, const RowBatch& b, const std::vector<double>& ref, PairSums& sums, std::vector<double>* dseq) const {
    std::vector<double> logp, len;
    sequence_logps(m, b, logp, len);
    if (dseq) dseq->assign(static_cast<size_t>(b.B), 0.0);
    for (int r = 0; r + 1 < b.B; r += 2) {
      const size_t c = static_cast<size_t>(r), x = c + 1;
      const uint32_t pair = b.first_example[c] / 2;
      if (b.first_example[c] % 2 != 0 || b.first_example[x] != b.first_example[c] + 1)
        throw Error("dpo", "a batch's rows are not chosen/rejected pairs");
      const double rc = ref[2 * pair], rr = ref[2 * pair + 1];
      const DpoPairLoss l = dpo_pair_loss(cfg_.loss, cfg_.beta, cfg_.label_smoothing, logp[c], logp[x], rc, rr, len[c], len[x]);
      const double chosen_reward = cfg_.beta * (logp[c] - rc), rejected_reward = cfg_.beta * (logp[x] - rr);
      sums.v[PairSums::loss] += l.loss;
      sums.v[PairSums::chosen_reward] += chosen_reward;
      sums.v[PairSums::rejected_reward] += rejected_reward;
      sums.v[PairSums::correct] += chosen_reward > rejected_reward ? 1.0 : 0.0;
      sums.v[PairSums::chosen_logp] += logp[c];
      sums.v[PairSums::rejected_logp] += logp[x];
      sums.v[PairSums::pairs] += 1;
      if (dseq) {
        (*dseq)[c] = l.dchosen;
        (*dseq)[x] = l.drejected;
      }
    }
  }

  // TRL's names.
  static void put_metrics(const PairSums& s, const std::string& prefix, nlohmann::json& j) {
    if (!prefix.empty()) j[prefix + "loss"] = s.mean(PairSums::loss);
    j[prefix + "rewards/chosen"] = s.mean(PairSums::chosen_reward);
    j[prefix + "rewards/rejected"] = s.mean(PairSums::rejected_reward);
    j[prefix + "rewards/accuracies"] = s.mean(PairSums::correct);
    j[prefix + "rewards/margins"] = s.mean(PairSums::chosen_reward) - s.mean(PairSums::rejected_reward);
    j[prefix + "logps/chosen"] = s.mean(PairSums::chosen_logp);
    j[prefix + "logps/rejected"] = s.mean(PairSums::rejected_logp);
  }

  // Every example's sequence log-probability under the model as it is (the reference), the
  // micro-batches dealt round-robin to the ranks and the results summed (each is one rank's).
  void reference(Trainer& t, Model& m, const ExampleSet& set, std::vector<double>& out) {
    m.set_dropout_seed(0);
    out.assign(set.examples(), 0.0);
    std::vector<double> logp, len;
    for_rank_batches(t, cfg_, set, 0, [&](const RowBatch& b) {
      m.forward(b.tokens.data(), b.targets.data(), b.B, b.T);
      sequence_logps(m, b, logp, len);
      for (int r = 0; r < b.B; ++r) out[b.first_example[static_cast<size_t>(r)]] = logp[static_cast<size_t>(r)];
    });
    if (t.ranks() > 1) t.comm().allreduce_sum(out.data(), out.size());
  }

  std::string reference_json() const {
    nlohmann::json j;
    j["note"] = "llm-ppo dpo: the reference model's log-probability of each answer (chosen, rejected, ...) of the data, summed over its tokens";
    j["fingerprint"] = train_->fingerprint();
    j["train"] = ref_train_;
    if (val_) {
      j["val_fingerprint"] = val_->fingerprint();
      j["val"] = ref_val_;
    }
    return j.dump() + "\n";
  }

  void read_reference(const std::string& dir) {
    const std::string path = dir + "/reference_logps.json";
    if (file_size(path) == 0) throw Error(path, "missing: the reference's log-probabilities of the run are not there");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(path));
      ref_train_ = j.at("train").get<std::vector<double>>();
      if (val_) {
        if (!j.contains("val") || j.value("val_fingerprint", "") != val_->fingerprint())
          throw Error(path, "was computed for other --val data than these");
        ref_val_ = j.at("val").get<std::vector<double>>();
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(path, std::string("invalid: ") + e.what());
    }
    if (j.value("fingerprint", "") != train_->fingerprint() || ref_train_.size() != train_->examples())
      throw Error(path, "was computed for other --data than these (the run's pairs differ): resume with the run's data");
  }

  const DpoConfig& cfg_;
  TunedBase base_;
  std::unique_ptr<ChatEncoder> encoder_;
  std::unique_ptr<ExampleSet> train_, val_;
  std::vector<double> ref_train_, ref_val_;  // per example: chosen, rejected of each pair
  PairSums sums_;
  int64_t step_trained_ = 0;
  uint64_t rows_done_ = 0;
  std::vector<float> dlogp_;
};

}  // namespace

int run_dpo(const DpoConfig& cfg, Stats& stats) { return train_objective<DpoObjective>(cfg, stats); }

}  // namespace llmkit
