// llm-ppo grpo (lib/model/grpo.cpp): group relative policy optimisation as an objective on the
// shared loop. Each step the policy answers every prompt of the batch G times on llmkit's own
// KV-cached engine (the same backend and weights as training, the G samples sharing the
// prompt's prefill, each sequence seeded by its place in the run); the rewards (llmkit/
// rewards.hpp) become advantages relative to the group; the clipped surrogate loss, optionally
// with a KL term to the reference, trains on the responses' tokens. The log-probabilities the
// engine records while sampling are the trainer's (same code, same weights): the ratio of the
// first iteration is 1, with no importance-sampling correction.
#pragma once
#include <string>
#include <vector>

#include "llmkit/sft.hpp"

namespace llmkit {

class Stats;

struct GrpoConfig : SftConfig {
  int group = 8;             // samples per prompt (G)
  int max_new_tokens = 64;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0;
  int top_k = 0;
  std::vector<std::string> stop;
  double epsilon = 0.2, epsilon_high = 0;  // the clip range [1 - epsilon, 1 + epsilon_high]; 0: epsilon
  std::string loss_type = "grpo";          // grpo, bnpo, dr_grpo, dapo
  std::string scale_rewards = "group";     // group, batch, none (Dr. GRPO)
  double beta = 0;                         // the k3 KL term's weight
  double missing_eos_penalty = 0;          // subtracted from a response cut by --max-new-tokens
  std::vector<std::string> rewards;        // rule:NAME, cmd:COMMAND, model:PATH (an llm-rm reward model)
  std::vector<double> reward_weights;      // one per reward; empty: 1 each
  std::string rollouts;                    // JSONL of every prompt, response, reward, advantage
};

// A group's advantages: (r - mean) / (std + 1e-4) with the sample standard deviation (n - 1),
// as TRL computes them; scale false: r - mean only.
std::vector<double> group_advantages(const std::vector<double>& rewards, int group, bool scale);

// One token's clipped surrogate, -min(ratio A, clip(ratio, 1 - lo, 1 + hi) A), and its
// derivative in the token's log-probability (ratio = exp(logp - old)); `clipped` says whether
// the clip took the gradient away.
struct SurrogateLoss {
  double loss = 0, dlogp = 0;
  bool clipped = false;
};
SurrogateLoss clipped_surrogate(double logp, double old_logp, double advantage, double lo, double hi);
// The k3 estimator of KL(policy || reference) at a token, exp(ref - logp) - (ref - logp) - 1,
// and its derivative in logp.
std::pair<double, double> k3_kl(double logp, double ref_logp);

// Runs training; 0 at the end, 1 when stopped by a signal after saving a checkpoint.
int run_grpo(const GrpoConfig& cfg, Stats& stats);

}  // namespace llmkit
