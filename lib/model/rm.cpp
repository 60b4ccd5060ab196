// llm-rm: reward models from preference pairs, as an objective on the shared loop, and their
// scores; see llmkit/rm.hpp.
#include "llmkit/rm.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "llmkit/chat.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/error.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

RmPairLoss rm_pair_loss(double rc, double rr, double margin, double center) {
  const double d = rc - rr - margin;
  RmPairLoss r;
  // -log sigmoid(d), stable either side of 0; its slope -sigmoid(-d)
  r.loss = d >= 0 ? std::log1p(std::exp(-d)) : -d + std::log1p(std::exp(d));
  const double s = d >= 0 ? std::exp(-d) / (1.0 + std::exp(-d)) : 1.0 / (1.0 + std::exp(d));
  const double c = 2.0 * center * (rc + rr);
  r.loss += center * (rc + rr) * (rc + rr);
  r.dchosen = -s + c;
  r.drejected = s + c;
  return r;
}

namespace {

// A step's or an evaluation's sums over pairs, and the rewards' range.
struct RewardSums {
  enum { loss, correct, margin, reward, pairs, count };
  double v[count] = {};
  double lo = INFINITY, hi = -INFINITY;
  void add(double rc, double rr, double l) {
    v[loss] += l;
    v[correct] += rc > rr ? 1.0 : 0.0;
    v[margin] += rc - rr;
    v[reward] += rc + rr;
    v[pairs] += 1;
    lo = std::min({lo, rc, rr});
    hi = std::max({hi, rc, rr});
  }
  void allreduce(Comm& c) {
    c.allreduce_sum(v, count);
    double ext[2] = {-lo, hi};  // both as maxima
    for (double& e : ext) e = c.allreduce_max_double(e);
    lo = -ext[0];
    hi = ext[1];
  }
  double mean(int k) const { return v[pairs] > 0 ? v[k] / v[pairs] : 0.0; }
  // TRL's names.
  void put(const std::string& prefix, nlohmann::json& j) const {
    if (!prefix.empty()) j[prefix + "loss"] = mean(loss);
    j[prefix + "accuracy"] = mean(correct);
    j[prefix + "margin"] = mean(margin);
    j[prefix + "mean_reward"] = v[pairs] > 0 ? v[reward] / (2 * v[pairs]) : 0.0;
    j[prefix + "min_reward"] = v[pairs] > 0 ? lo : 0.0;
    j[prefix + "max_reward"] = v[pairs] > 0 ? hi : 0.0;
  }
};

// The scalar head's value at each row's last position.
std::vector<double> row_rewards(const Model& m, const RowBatch& b) {
  const std::vector<float> values = m.values();
  std::vector<double> r(static_cast<size_t>(b.B));
  for (int i = 0; i < b.B; ++i)
    r[static_cast<size_t>(i)] = values[static_cast<size_t>(i) * static_cast<size_t>(b.T) + static_cast<size_t>(b.used[static_cast<size_t>(i)] - 1)];
  return r;
}

class RmObjective final : public Objective {
 public:
  explicit RmObjective(const RmConfig& cfg) : cfg_(cfg) {}

  std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) override {
    if (cfg_.data.empty()) throw UsageError("--data FILE is required (preference rows, llmkit-chat(5))");
    if (!(cfg_.center_rewards >= 0)) throw UsageError("--center-rewards must be 0 or more");
    base_.labels = 1;
    ModelOptions options = t.model_options();  // this rank's tensor-parallel slice
    options.recompute_mlp = cfg_.recompute;
    std::unique_ptr<Model> model = build_tuned_model(cfg_, t, resume_dir, base_, options);
    encoder_ = std::make_unique<ChatEncoder>(*base_.tokenizer, ChatTemplate::named(cfg_.chat_template));
    read_tuning_data(t, cfg_, preference_rows(*encoder_), 2, true, "answers", train_, val_);
    return model;
  }

  std::string describe(const Trainer& t) const override {
    char line[512];
    const Model& m = t.model();
    snprintf(line, sizeof line, "%s: %.2fM parameters, %s score head; %zu pairs, template %s%s; %lld step%s of %lld pairs (%.2f epochs)",
             base_.init_dir.c_str(), static_cast<double>(m.num_params_unpadded()) / 1e6, base_.new_score ? "a new" : "its",
             train_->groups(), cfg_.chat_template.c_str(),
             cfg_.center_rewards > 0 ? (", centring " + std::to_string(cfg_.center_rewards).substr(0, 6)).c_str() : "",
             static_cast<long long>(t.options().steps), t.options().steps == 1 ? "" : "s", static_cast<long long>(t.state().batch_sequences / 2),
             static_cast<double>(t.options().steps) * static_cast<double>(t.state().batch_sequences) / static_cast<double>(train_->rows()));
    return line;
  }

  void begin_step(Trainer& t, uint64_t cursor) override {
    step_tokens_ = 0;
    rows_done_ = cursor + static_cast<uint64_t>(t.state().batch_sequences);
    sums_ = RewardSums{};
  }

  void micro_step(Trainer& t, uint64_t first) override {
    Model& m = t.model();
    const RowBatch b = train_->batch(first, cfg_.micro_batch, cfg_.seed);
    m.forward(b.tokens.data(), nullptr, b.B, b.T);
    std::vector<double> dr;
    score(m, b, sums_, &dr);
    // The mean over the global batch's pairs, d(loss)/d(reward) at each row's last position.
    const double pairs = static_cast<double>(t.state().batch_sequences) / 2.0;
    dvalue_.assign(static_cast<size_t>(b.B) * static_cast<size_t>(b.T), 0.0f);
    for (int r = 0; r < b.B; ++r) {
      dvalue_[static_cast<size_t>(r) * static_cast<size_t>(b.T) + static_cast<size_t>(b.used[static_cast<size_t>(r)] - 1)] =
          static_cast<float>(dr[static_cast<size_t>(r)] / pairs);
      step_tokens_ += static_cast<uint64_t>(b.used[static_cast<size_t>(r)]);
    }
    m.backward(nullptr, dvalue_.data());
  }

  double end_step(Trainer& t) override {
    if (t.ranks() > 1) {
      sums_.allreduce(t.comm());
      step_tokens_ = static_cast<uint64_t>(t.comm().allreduce_sum(static_cast<int64_t>(step_tokens_)));
    }
    return sums_.mean(RewardSums::loss);
  }

  void step_metrics(Trainer&, nlohmann::json& line) override {
    sums_.put("", line);
    line["epoch"] = std::round(static_cast<double>(rows_done_) / static_cast<double>(train_->rows()) * 1e4) / 1e4;
  }
  uint64_t step_tokens(const Trainer&) const override { return step_tokens_; }

  nlohmann::json evaluate(Trainer& t) override {
    if (!val_) return nullptr;
    Model& m = t.model();
    RewardSums sums;
    for_rank_batches(t, cfg_, *val_, static_cast<uint64_t>(cfg_.eval_batches) * static_cast<uint64_t>(cfg_.micro_batch),
                     [&](const RowBatch& b) {
                       m.forward(b.tokens.data(), nullptr, b.B, b.T);
                       score(m, b, sums, nullptr);
                     });
    if (t.ranks() > 1) sums.allreduce(t.comm());
    if (sums.v[RewardSums::pairs] == 0) return nullptr;
    nlohmann::json j;
    sums.put("val_", j);
    return j;
  }

  void save_extra(Trainer& t, const std::string& dir) override { save_tuned_extra(cfg_, t, base_, dir); }

 private:
  // A batch's pairs (rows chosen, rejected, ...): losses and rewards into `sums`, and with `dr`
  // the loss's derivative in each row's reward.
  void score(const Model& m, const RowBatch& b, RewardSums& sums, std::vector<double>* dr) const {
    const std::vector<double> r = row_rewards(m, b);
    if (dr) dr->assign(static_cast<size_t>(b.B), 0.0);
    for (size_t c = 0; c + 1 < static_cast<size_t>(b.B); c += 2) {
      if (b.first_example[c] % 2 != 0 || b.first_example[c + 1] != b.first_example[c] + 1)
        throw Error("rm", "a batch's rows are not chosen/rejected pairs");
      const RmPairLoss l = rm_pair_loss(r[c], r[c + 1], b.values[c], cfg_.center_rewards);
      sums.add(r[c], r[c + 1], l.loss);
      if (dr) {
        (*dr)[c] = l.dchosen;
        (*dr)[c + 1] = l.drejected;
      }
    }
  }

  const RmConfig& cfg_;
  TunedBase base_;
  std::unique_ptr<ChatEncoder> encoder_;
  std::unique_ptr<ExampleSet> train_, val_;
  RewardSums sums_;
  uint64_t step_tokens_ = 0, rows_done_ = 0;
  std::vector<float> dvalue_;
};

}  // namespace

int run_rm(const RmConfig& cfg, Stats& stats) { return train_objective<RmObjective>(cfg, stats); }

// ---- Scoring ------------------------------------------------------------------------------------

namespace {

// Rewards from a reward model, for llm-ppo.
class ModelReward final : public RewardFunction {
 public:
  ModelReward(const std::string& path, Backend& be, const ChatEncoder& enc, int seq_len, int batch)
      : name_("model:" + path), enc_(enc), seq_len_(seq_len), batch_(std::max(1, batch)) {
    LoadedModel lm = open_model(path, be);
    if (!lm.model->config().classifier || lm.model->config().num_labels != 1)
      throw Error(path, "is not a reward model (its config.json is not a *ForSequenceClassification of one label): train one with llm-rm");
    if (!lm.tokenizer.empty() && read_file(lm.tokenizer) != read_file(enc.tokenizer().path()))
      throw Error(path, "has another tokenizer than the policy's (" + lm.tokenizer + " differs from " + enc.tokenizer().path() + ")");
    model_ = std::move(lm.model);
  }
  const std::string& name() const override { return name_; }
  const Model& model() const { return *model_; }
  double memory_bytes() const override {
    return static_cast<double>(model_->num_params()) * 4 + static_cast<double>(model_->activation_bytes(batch_, seq_len_));
  }
  std::vector<double> score(const std::vector<RewardInput>& in) override {
    std::vector<std::vector<int32_t>> seqs;
    for (const RewardInput& x : in) {
      const nlohmann::json& p = x.row.is_object() && x.row.contains("prompt") ? x.row["prompt"] : nlohmann::json(x.prompt);
      ChatRow row;
      row.where = name_;
      if (p.is_string()) {
        row.kind = ChatRow::Kind::prompt_completion;
        row.prompt = p.get<std::string>();
        row.completion = x.response;
      } else {
        row = parse_chat_row(nlohmann::json{{"messages", p}}.dump(), name_);
        row.completion_from = row.messages.size();
        row.messages.push_back({"assistant", x.response});
      }
      std::vector<int32_t> t = enc_.encode(row).tokens;
      if (static_cast<int>(t.size()) > seq_len_) t.resize(static_cast<size_t>(seq_len_));
      seqs.push_back(std::move(t));
    }
    std::vector<double> r(seqs.size());
    for (size_t i0 = 0; i0 < seqs.size(); i0 += static_cast<size_t>(batch_)) {
      const int B = static_cast<int>(std::min(seqs.size() - i0, static_cast<size_t>(batch_)));
      int T = 1;
      for (int b = 0; b < B; ++b) T = std::max(T, static_cast<int>(seqs[i0 + static_cast<size_t>(b)].size()));
      std::vector<int32_t> tokens(static_cast<size_t>(B) * static_cast<size_t>(T), kEosId);
      for (int b = 0; b < B; ++b)
        std::copy(seqs[i0 + static_cast<size_t>(b)].begin(), seqs[i0 + static_cast<size_t>(b)].end(), tokens.begin() + static_cast<long>(b) * T);
      model_->forward(tokens.data(), nullptr, B, T);
      const std::vector<float> v = model_->values();
      for (int b = 0; b < B; ++b)
        r[i0 + static_cast<size_t>(b)] = v[static_cast<size_t>(b) * static_cast<size_t>(T) + seqs[i0 + static_cast<size_t>(b)].size() - 1];
    }
    return r;
  }

 private:
  std::string name_;
  const ChatEncoder& enc_;
  int seq_len_, batch_;
  std::unique_ptr<Model> model_;
};

}  // namespace

std::unique_ptr<RewardFunction> make_model_reward(const std::string& path, Backend& be, const ChatEncoder& encoder, int seq_len,
                                                  int batch) {
  return std::make_unique<ModelReward>(path, be, encoder, seq_len, batch);
}

void score_rows(const ScoreOptions& o, const std::vector<std::string>& files, OutputStream& out, Stats& stats) {
  if (o.model.empty()) throw UsageError("--model RM is required (a reward model: llm-rm's run or checkpoint directory)");
  if (o.batch < 1) throw UsageError("--batch must be at least 1");
  auto be = make_backend(o.device, o.precision);
  LoadedModel lm = open_model(o.model, *be);
  Model& m = *lm.model;
  if (!m.config().classifier || m.config().num_labels != 1)
    throw Error(o.model, "is not a reward model (its config.json is not a *ForSequenceClassification of one label): train one with llm-rm");
  const std::string tok_path = !o.tokenizer.empty() ? o.tokenizer : lm.tokenizer;
  if (tok_path.empty()) throw Error(o.model, "has no tokenizer.model: give --tokenizer");
  const Tokenizer tok(tok_path);
  std::string tmpl = !o.chat_template.empty() ? o.chat_template : checkpoint_chat_template(o.model);
  if (tmpl.empty()) tmpl = "chatml";
  const ChatEncoder enc(tok, ChatTemplate::named(tmpl));
  const int T = o.seq_len > 0 ? o.seq_len : lm.train_seq_len > 0 ? lm.train_seq_len : m.config().max_seq;

  // Rows in order, each with one or two sequences; scored in batches of o.batch sequences.
  struct Pending {
    nlohmann::json row;
    std::vector<std::vector<int32_t>> seqs;
  };
  std::vector<Pending> pending;
  size_t pending_seqs = 0;
  auto flush = [&]() {
    std::vector<const std::vector<int32_t>*> all;
    for (const Pending& p : pending)
      for (const auto& s : p.seqs) all.push_back(&s);
    std::vector<double> rewards(all.size());
    for (size_t i0 = 0; i0 < all.size(); i0 += static_cast<size_t>(o.batch)) {
      const int B = static_cast<int>(std::min(all.size() - i0, static_cast<size_t>(o.batch)));
      int len = 1;
      for (int b = 0; b < B; ++b) len = std::max(len, static_cast<int>(all[i0 + static_cast<size_t>(b)]->size()));
      std::vector<int32_t> tokens(static_cast<size_t>(B) * static_cast<size_t>(len), kEosId);
      for (int b = 0; b < B; ++b) std::copy(all[i0 + static_cast<size_t>(b)]->begin(), all[i0 + static_cast<size_t>(b)]->end(),
                                            tokens.begin() + static_cast<long>(b) * len);
      m.forward(tokens.data(), nullptr, B, len);
      const std::vector<float> v = m.values();
      for (int b = 0; b < B; ++b)
        rewards[i0 + static_cast<size_t>(b)] = v[static_cast<size_t>(b) * static_cast<size_t>(len) + all[i0 + static_cast<size_t>(b)]->size() - 1];
    }
    size_t k = 0;
    for (Pending& p : pending) {
      if (p.seqs.size() == 2) {
        p.row["chosen_reward"] = rewards[k];
        p.row["rejected_reward"] = rewards[k + 1];
      } else {
        p.row["reward"] = rewards[k];
      }
      k += p.seqs.size();
      out.write(p.row.dump() + "\n");
      stats.add("rows_out");
    }
    pending.clear();
    pending_seqs = 0;
  };
  Pending p;
  for_each_row(
      files, o.strict, stats,
      [&](std::string_view line, const std::string& where) {
        p = Pending{};
        p.row = parse_row_object(line, where);
        if (p.row.contains("chosen") && p.row.contains("rejected")) {
          const PreferenceRow pr = parse_preference_row(line, where);
          p.seqs.push_back(enc.encode(pr.chosen).tokens);
          p.seqs.push_back(enc.encode(pr.rejected).tokens);
        } else {
          p.seqs.push_back(enc.encode(parse_chat_row(line, where)).tokens);
        }
      },
      [&] {
        for (auto& s : p.seqs)
          if (static_cast<int>(s.size()) > T) {
            s.resize(static_cast<size_t>(T));  // as training keeps them: the first T tokens
            stats.add("sequences_truncated");
          }
        pending_seqs += p.seqs.size();
        pending.push_back(std::move(p));
        if (pending_seqs >= static_cast<size_t>(o.batch) * 8) flush();
      });
  flush();
}

}  // namespace llmkit
