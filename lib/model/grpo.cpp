// llm-ppo grpo: group relative policy optimisation on the shared rollout objective; see
// llmkit/rl.hpp and rollout.hpp.
#include <algorithm>
#include <cmath>

#include "llmkit/error.hpp"
#include "llmkit/mpi.hpp"
#include "rollout.hpp"

namespace llmkit {

std::vector<double> group_advantages(const std::vector<double>& r, int group, bool scale) {
  const size_t G = static_cast<size_t>(group);
  std::vector<double> a(r.size());
  for (size_t g0 = 0; g0 + G <= r.size(); g0 += G) {
    double mean = 0;
    for (size_t i = 0; i < G; ++i) mean += r[g0 + i];
    mean /= static_cast<double>(G);
    double var = 0;
    for (size_t i = 0; i < G; ++i) var += (r[g0 + i] - mean) * (r[g0 + i] - mean);
    const double sd = G > 1 ? std::sqrt(var / static_cast<double>(G - 1)) : 0.0;
    for (size_t i = 0; i < G; ++i) a[g0 + i] = scale ? (r[g0 + i] - mean) / (sd + 1e-4) : r[g0 + i] - mean;
  }
  return a;
}

namespace {

class GrpoObjective final : public RolloutObjective {
 public:
  explicit GrpoObjective(const GrpoConfig& cfg) : RolloutObjective(cfg, cfg.group), cfg_(cfg) {
    rollout_sums_.assign(kRolloutSums, 0.0);
    train_sums_.assign(kTrainSums, 0.0);
  }

 private:
  enum { group_std, zero_std, groups, kRolloutSums };  // the rollout batch's sums
  enum { loss_sum, token_count, clipped_count, kl_sum, kTrainSums };  // the step's

  void check(Trainer&) override {
    if (cfg_.group < 2) throw UsageError("--group-size must be at least 2 (advantages are relative to the group)");
    if (cfg_.loss_type != "grpo" && cfg_.loss_type != "bnpo" && cfg_.loss_type != "dr_grpo" && cfg_.loss_type != "dapo")
      throw UsageError("--loss-type must be grpo, bnpo, dr_grpo or dapo, not '" + cfg_.loss_type + "'");
    if (cfg_.scale_rewards != "group" && cfg_.scale_rewards != "batch" && cfg_.scale_rewards != "none")
      throw UsageError("--scale-rewards must be group, batch or none, not '" + cfg_.scale_rewards + "'");
    if (!(cfg_.epsilon > 0 && cfg_.epsilon < 1) || cfg_.epsilon_high < 0) throw UsageError("--epsilon must be in (0, 1), --epsilon-high 0 or more");
    if (cfg_.beta < 0) throw UsageError("--beta must be 0 or more");
  }
  bool needs_reference() const override { return cfg_.beta > 0; }
  std::string summary() const override { return "loss " + cfg_.loss_type + ", rewards scaled by " + cfg_.scale_rewards; }

  void compute_advantages(Trainer& t) override {
    std::vector<double> reward;
    for (const Rollout& r : rollouts_) reward.push_back(r.reward);
    std::vector<double> adv = group_advantages(reward, cfg_.group, cfg_.scale_rewards == "group");
    if (cfg_.scale_rewards == "batch") {
      double s[3] = {0, 0, static_cast<double>(reward.size())};
      for (double r : reward) s[0] += r, s[1] += r * r;
      if (t.ranks() > 1) t.comm().allreduce_sum(s, 3);
      const double mean = s[0] / s[2], sd = s[2] > 1 ? std::sqrt(std::max(0.0, (s[1] - s[2] * mean * mean) / (s[2] - 1))) : 0.0;
      for (double& a : adv) a /= sd + 1e-4;
    }
    for (size_t i = 0; i < rollouts_.size(); ++i) rollouts_[i].advantage = adv[i];
    const size_t G = static_cast<size_t>(cfg_.group);
    for (size_t g0 = 0; g0 < reward.size(); g0 += G) {
      bool same = true;
      double mean = 0, var = 0;
      for (size_t i = 0; i < G; ++i) mean += reward[g0 + i] / static_cast<double>(G);
      for (size_t i = 0; i < G; ++i) {
        same = same && reward[g0 + i] == reward[g0];
        var += (reward[g0 + i] - mean) * (reward[g0 + i] - mean);
      }
      rollout_sums_[group_std] += std::sqrt(var / static_cast<double>(G - 1));
      rollout_sums_[zero_std] += same;
      rollout_sums_[groups] += 1;
    }
    if (t.ranks() > 1) t.comm().allreduce_sum(rollout_sums_.data(), rollout_sums_.size());
  }

  void token_losses(Trainer& t, const std::vector<size_t>& which, const Rows& rows, const std::vector<float>& lp,
                    const std::vector<float>&, std::vector<float>& dlogp, std::vector<float>&) override {
    const double hi = cfg_.epsilon_high > 0 ? cfg_.epsilon_high : cfg_.epsilon;
    const double seqs = static_cast<double>(t.state().batch_sequences);
    double micro_tokens = 0;
    for (size_t i : which) micro_tokens += static_cast<double>(rollouts_[i].response.size());
    for (size_t b = 0; b < which.size(); ++b) {
      const Rollout& r = rollouts_[which[b]];
      const size_t L = r.response.size();
      // Each token's weight in the loss, by --loss-type.
      double w;
      if (cfg_.loss_type == "grpo") w = 1.0 / (static_cast<double>(L) * seqs);
      else if (cfg_.loss_type == "dr_grpo") w = 1.0 / (seqs * cfg_.max_new_tokens);
      else if (cfg_.loss_type == "bnpo") w = 1.0 / (micro_tokens * static_cast<double>(t.accumulation() * t.ranks()));
      else w = 1.0 / step_global_tokens();  // dapo
      for (size_t k = 0; k < L; ++k) {
        const size_t at = rows.at[b] + k;
        const SurrogateLoss s = clipped_surrogate(lp[at], r.old_logp[k], r.advantage, cfg_.epsilon, hi);
        double loss = s.loss, d = s.dlogp;
        if (cfg_.beta > 0) {
          const auto [kl, dkl] = k3_kl(lp[at], r.ref_logp[k]);
          loss += cfg_.beta * kl;
          d += cfg_.beta * dkl;
          train_sums_[kl_sum] += kl;
        }
        train_sums_[loss_sum] += w * loss;
        train_sums_[token_count] += 1;
        train_sums_[clipped_count] += s.clipped;
        ratio_max_dev_ = std::max(ratio_max_dev_, std::abs(std::exp(lp[at] - r.old_logp[k]) - 1.0));
        dlogp[at] = static_cast<float>(w * d);
      }
    }
  }

  void rollout_metrics(Trainer&, nlohmann::json& line) override {
    const double groups_n = std::max(1.0, rollout_sums_[groups]);
    line["reward_std"] = rollout_sums_[group_std] / groups_n;  // TRL's: the groups' mean std
    line["frac_reward_zero_std"] = rollout_sums_[zero_std] / groups_n;
  }
  void train_metrics(Trainer&, nlohmann::json& line) override {
    const double tok = std::max(1.0, train_sums_[token_count]);
    line["clip_ratio"] = train_sums_[clipped_count] / tok;
    if (cfg_.beta > 0) line["kl"] = train_sums_[kl_sum] / tok;
  }

  const GrpoConfig& cfg_;
};

}  // namespace

int run_grpo(const GrpoConfig& cfg, Stats& stats) { return train_objective<GrpoObjective>(cfg, stats); }

}  // namespace llmkit
