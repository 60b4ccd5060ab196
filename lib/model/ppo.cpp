// llm-ppo ppo: proximal policy optimisation with a value head on the policy's trunk, per-token
// KL to the reference in the reward, GAE and whitened advantages, the clipped policy and value
// losses, on the shared rollout objective; see llmkit/rl.hpp and rollout.hpp.
#include <algorithm>
#include <cmath>

#include "llmkit/error.hpp"
#include "llmkit/mpi.hpp"
#include "rollout.hpp"

namespace llmkit {

std::vector<double> gae(const std::vector<double>& rewards, const std::vector<double>& values, double gamma, double lam) {
  std::vector<double> adv(rewards.size());
  double last = 0;
  for (size_t t = rewards.size(); t-- > 0;) {
    const double next = t + 1 < rewards.size() ? values[t + 1] : 0.0;
    const double delta = rewards[t] + gamma * next - values[t];
    last = delta + gamma * lam * last;
    adv[t] = last;
  }
  return adv;
}

ValueLoss clipped_value_loss(double value, double old_value, double ret, double clip) {
  const double vclipped = old_value + std::clamp(value - old_value, -clip, clip);
  const double a = (value - ret) * (value - ret), b = (vclipped - ret) * (vclipped - ret);
  ValueLoss v;
  if (a >= b) {
    v.loss = 0.5 * a;
    v.dvalue = value - ret;
  } else {
    v.loss = 0.5 * b;
    const bool inside = value - old_value > -clip && value - old_value < clip;
    v.dvalue = inside ? vclipped - ret : 0.0;
    v.clipped = !inside;
  }
  return v;
}

Whitening::Whitening(double sum, double sq, double n) {
  mean = sum / std::max(1.0, n);
  var = n > 1 ? std::max(0.0, (sq / n - mean * mean) * n / (n - 1)) : 0.0;
}

double Whitening::operator()(double x, bool shift_mean) const {
  const double w = (x - mean) / std::sqrt(var + 1e-8);
  return shift_mean ? w : w + mean;
}

namespace {

class PpoObjective final : public RolloutObjective {
 public:
  explicit PpoObjective(const PpoConfig& cfg) : RolloutObjective(cfg, 1), cfg_(cfg) {
    rollout_sums_.assign(kRolloutSums, 0.0);
    train_sums_.assign(kTrainSums, 0.0);
  }

 private:
  enum { kl_sum, entropy_sum, non_score_sum, score_sum, answers, logp_dev, kRolloutSums };
  enum { loss_sum, pg_sum, vf_sum, token_count, clipped_count, vf_clipped_count, approxkl_sum, ratio_sum, ratio_sq_sum, kTrainSums };

  void check(Trainer&) override {
    if (cfg_.kl_coef < 0) throw UsageError("--kl-coef must be 0 or more");
    if (cfg_.kl_estimator != "k1" && cfg_.kl_estimator != "k3") throw UsageError("--kl-estimator must be k1 or k3, not '" + cfg_.kl_estimator + "'");
    if (!(cfg_.gamma >= 0 && cfg_.gamma <= 1) || !(cfg_.lam >= 0 && cfg_.lam <= 1)) throw UsageError("--gamma and --lam must be in [0, 1]");
    if (!(cfg_.cliprange > 0 && cfg_.cliprange < 1)) throw UsageError("--cliprange must be in (0, 1)");
    if (!(cfg_.cliprange_value > 0)) throw UsageError("--cliprange-value must be positive");
    if (!(cfg_.vf_coef >= 0)) throw UsageError("--vf-coef must be 0 or more");
  }
  // KL(policy || reference) at a response token, by --kl-estimator.
  double token_kl(const Rollout& r, size_t k) const {
    return cfg_.kl_estimator == "k1" ? static_cast<double>(r.old_logp[k]) - r.ref_logp[k] : k3_kl(r.old_logp[k], r.ref_logp[k]).first;
  }
  bool value_head() const override { return true; }
  bool needs_reference() const override { return cfg_.kl_coef > 0; }
  std::string summary() const override {
    char s[160];
    snprintf(s, sizeof s, "KL %s x %g, GAE gamma %g lambda %g, value loss x %g", cfg_.kl_estimator.c_str(), cfg_.kl_coef, cfg_.gamma, cfg_.lam,
             cfg_.vf_coef);
    return s;
  }

  void compute_advantages(Trainer& t) override {
    // The policy's log-probabilities and values, by the trainer's forward (the engine's agree
    // to 1e-5; these make the first pass's ratio exactly 1 where the micro-batches are the same).
    double dev = 0;
    forward_rollouts(t.model(), [&](Rollout& r, const float* lp, const float* v) {
      for (size_t k = 0; k < r.response.size(); ++k) dev = std::max(dev, std::abs(static_cast<double>(lp[k]) - r.old_logp[k]));
      r.old_logp.assign(lp, lp + r.response.size());
      r.values.assign(v, v + r.response.size());
    });
    // Per-token rewards: -kl_coef KL(policy || reference), the score on the last token.
    std::vector<std::vector<double>> rewards(rollouts_.size());
    double s[3] = {0, 0, 0};  // the rewards' sum, sum of squares, count (whitening)
    for (size_t i = 0; i < rollouts_.size(); ++i) {
      Rollout& r = rollouts_[i];
      const size_t L = r.response.size();
      rewards[i].assign(L, 0.0);
      for (size_t k = 0; k < L; ++k) {
        const double kl = cfg_.kl_coef > 0 ? token_kl(r, k) : 0.0;
        rewards[i][k] = -cfg_.kl_coef * kl;
        rollout_sums_[kl_sum] += kl;
        rollout_sums_[non_score_sum] += rewards[i][k];
        rollout_sums_[entropy_sum] -= r.old_logp[k];
      }
      if (L > 0) rewards[i][L - 1] += r.reward;
      rollout_sums_[score_sum] += r.reward;
      rollout_sums_[answers] += 1;
      for (double x : rewards[i]) s[0] += x, s[1] += x * x, s[2] += 1;
    }
    if (t.ranks() > 1) {
      t.comm().allreduce_sum(rollout_sums_.data(), logp_dev);
      dev = t.comm().allreduce_max_double(dev);
    }
    rollout_sums_[logp_dev] = dev;
    if (cfg_.whiten_rewards) {  // scaled, not shifted (TRL's whiten_rewards)
      if (t.ranks() > 1) t.comm().allreduce_sum(s, 3);
      const Whitening w(s[0], s[1], s[2]);
      for (auto& rw : rewards)
        for (double& x : rw) x = w(x, false);
    }
    // GAE, then the advantages whitened over the rollout batch.
    double a[3] = {0, 0, 0};
    for (size_t i = 0; i < rollouts_.size(); ++i) {
      Rollout& r = rollouts_[i];
      const std::vector<double> v(r.values.begin(), r.values.end());
      const std::vector<double> adv = gae(rewards[i], v, cfg_.gamma, cfg_.lam);
      r.returns.resize(adv.size());
      r.advantages.resize(adv.size());
      for (size_t k = 0; k < adv.size(); ++k) {
        r.returns[k] = static_cast<float>(adv[k] + v[k]);
        a[0] += adv[k], a[1] += adv[k] * adv[k], a[2] += 1;
      }
      for (size_t k = 0; k < adv.size(); ++k) r.advantages[k] = static_cast<float>(adv[k]);
    }
    if (t.ranks() > 1) t.comm().allreduce_sum(a, 3);
    const Whitening w(a[0], a[1], a[2]);
    for (Rollout& r : rollouts_) {
      double sum = 0;
      for (float& x : r.advantages) {
        x = static_cast<float>(w(x));
        sum += x;
      }
      r.advantage = r.advantages.empty() ? 0.0 : sum / static_cast<double>(r.advantages.size());
    }
  }

  void token_losses(Trainer&, const std::vector<size_t>& which, const Rows& rows, const std::vector<float>& lp,
                    const std::vector<float>& values, std::vector<float>& dlogp, std::vector<float>& dvalue) override {
    const double w = 1.0 / step_global_tokens();  // a mean over the mini-batch's response tokens
    for (size_t b = 0; b < which.size(); ++b) {
      const Rollout& r = rollouts_[which[b]];
      for (size_t k = 0; k < r.response.size(); ++k) {
        const size_t at = rows.at[b] + k;
        const double logratio = static_cast<double>(lp[at]) - r.old_logp[k], ratio = std::exp(logratio);
        const SurrogateLoss pg = clipped_surrogate(lp[at], r.old_logp[k], r.advantages[k], cfg_.cliprange, cfg_.cliprange);
        const ValueLoss vf = clipped_value_loss(values[at], r.values[k], r.returns[k], cfg_.cliprange_value);
        train_sums_[loss_sum] += w * (pg.loss + cfg_.vf_coef * vf.loss);
        train_sums_[pg_sum] += w * pg.loss;
        train_sums_[vf_sum] += w * vf.loss;
        train_sums_[token_count] += 1;
        train_sums_[clipped_count] += pg.clipped;
        train_sums_[vf_clipped_count] += vf.clipped;
        train_sums_[approxkl_sum] += 0.5 * logratio * logratio;
        train_sums_[ratio_sum] += ratio;
        train_sums_[ratio_sq_sum] += ratio * ratio;
        ratio_max_dev_ = std::max(ratio_max_dev_, std::abs(ratio - 1.0));
        dlogp[at] = static_cast<float>(w * pg.dlogp);
        dvalue[at] = static_cast<float>(w * cfg_.vf_coef * vf.dvalue);
      }
    }
  }

  // TRL's and OpenRLHF's names.
  void rollout_metrics(Trainer&, nlohmann::json& line) override {
    const double n = std::max(1.0, rollout_sums_[answers]);
    line["objective/kl"] = rollout_sums_[kl_sum] / n;
    line["objective/entropy"] = rollout_sums_[entropy_sum] / n;
    line["objective/non_score_reward"] = rollout_sums_[non_score_sum] / n;
    line["objective/rlhf_reward"] = (rollout_sums_[score_sum] + rollout_sums_[non_score_sum]) / n;
    line["objective/scores"] = rollout_sums_[score_sum] / n;
    line["logprob_max_deviation"] = rollout_sums_[logp_dev];  // the engine's against the trainer's
  }
  void train_metrics(Trainer&, nlohmann::json& line) override {
    const double tok = std::max(1.0, train_sums_[token_count]), mean = train_sums_[ratio_sum] / tok;
    line["policy/approxkl_avg"] = train_sums_[approxkl_sum] / tok;
    line["policy/clipfrac_avg"] = train_sums_[clipped_count] / tok;
    line["loss/policy_avg"] = train_sums_[pg_sum];
    line["loss/value_avg"] = train_sums_[vf_sum];
    line["val/clipfrac_avg"] = train_sums_[vf_clipped_count] / tok;
    line["val/ratio"] = mean;
    line["val/ratio_var"] = std::max(0.0, train_sums_[ratio_sq_sum] / tok - mean * mean);
  }
  const char* entropy_metric() const override { return "policy/entropy_avg"; }
  void rollout_fields(const Rollout& r, nlohmann::json& j) const override {
    double kl = 0;
    for (size_t k = 0; k < r.ref_logp.size(); ++k) kl += token_kl(r, k);
    if (!r.ref_logp.empty()) j["kl"] = kl;
    j["value"] = r.values.empty() ? 0.0 : r.values[0];
  }

  const PpoConfig& cfg_;
};

}  // namespace

int run_ppo(const PpoConfig& cfg, Stats& stats) { return train_objective<PpoObjective>(cfg, stats); }

}  // namespace llmkit
