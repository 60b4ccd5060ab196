// llm-ppo grpo and ppo (lib/model/rollout.cpp, grpo.cpp, ppo.cpp): reinforcement learning from
// rollouts, as objectives on the shared loop. Each rollout batch the policy answers its prompts
// on llmkit's own KV-cached engine (the same backend and weights as training, the samples of a
// prompt sharing its prefill, each sequence seeded by its place in the run); the rewards
// (llmkit/rewards.hpp) score the answers; the algorithm turns the scores into advantages
// (GRPO: relative to the prompt's group; PPO: a value head's estimates, per-token KL to the
// reference, GAE), and the clipped surrogate loss trains on the responses' tokens for
// --ppo-epochs / --num-iterations passes of --mini-batches optimizer steps each. The
// log-probabilities the engine records while sampling are the trainer's (same code, same
// weights): the first pass's ratio is 1, with no importance-sampling correction.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "llmkit/sft.hpp"

namespace llmkit {

class Stats;

// What every rollout algorithm takes: sampling, rewards, the passes over a rollout batch.
struct RolloutConfig : SftConfig {
  int max_new_tokens = 64;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0;
  int top_k = 0;
  std::vector<std::string> stop;
  std::vector<std::string> rewards;     // rule:NAME, cmd:COMMAND, model:PATH (an llm-rm reward model)
  std::vector<double> reward_weights;   // one per reward; empty: 1 each
  double missing_eos_penalty = 0;       // subtracted from a response cut by --max-new-tokens
  double reward_clip = 0;               // > 0: the reward clipped to [-C, C] (after the penalty)
  std::string rollouts;                 // JSONL of every prompt, response, reward, advantage
  int iterations = 1;                   // passes over a rollout batch (GRPO's mu, PPO's epochs)
  int mini_batches = 1;                 // optimizer steps per pass; a rollout batch is this many --batch-size
};

struct GrpoConfig : RolloutConfig {
  int group = 8;                           // samples per prompt (G)
  double epsilon = 0.2, epsilon_high = 0;  // the clip range [1 - epsilon, 1 + epsilon_high]; 0: epsilon
  std::string loss_type = "grpo";          // grpo, bnpo, dr_grpo, dapo
  std::string scale_rewards = "group";     // group, batch, none (Dr. GRPO)
  double beta = 0;                         // the k3 KL term's weight
};

struct PpoConfig : RolloutConfig {
  double kl_coef = 0.05;                   // the per-token KL penalty in the reward
  std::string kl_estimator = "k1";         // k1: logp - ref; k3: exp(ref - logp) - (ref - logp) - 1
  double gamma = 1.0, lam = 0.95;          // GAE
  double cliprange = 0.2, cliprange_value = 0.2;
  double vf_coef = 0.1;                    // the value loss's weight
  bool whiten_rewards = false;
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

// Generalised advantage estimation over one response: rewards[t] and values[t] per token, the
// state after the last token terminal (value 0). Returns the advantages; returns = advantages +
// values.
std::vector<double> gae(const std::vector<double>& rewards, const std::vector<double>& values, double gamma, double lam);

// PPO's clipped value loss at a token: 0.5 max((v - R)^2, (old + clip(v - old, -c, c) - R)^2),
// and its derivative in v; `clipped` when the clipped term is the larger and v is outside the
// range (no gradient).
struct ValueLoss {
  double loss = 0, dvalue = 0;
  bool clipped = false;
};
ValueLoss clipped_value_loss(double value, double old_value, double ret, double clip);

// Whitening over a batch given its sum, sum of squares and count (TRL's masked_whiten): the mean
// and the unbiased variance; whiten(x) = (x - mean) / sqrt(var + 1e-8), plus the mean again
// when not shifting (rewards are scaled, not centred).
struct Whitening {
  double mean = 0, var = 0;
  Whitening(double sum, double sum_squares, double count);
  double operator()(double x, bool shift_mean = true) const;
};

// Runs training; 0 at the end, 1 when stopped by a signal after saving a checkpoint.
int run_grpo(const GrpoConfig& cfg, Stats& stats);
int run_ppo(const PpoConfig& cfg, Stats& stats);

}  // namespace llmkit
