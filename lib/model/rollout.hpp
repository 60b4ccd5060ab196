// The part of llm-ppo grpo and ppo that is the same (lib/model/rollout.cpp): prompts, the
// engine's rollouts, rewards, the reference's log-probabilities, the passes of optimizer steps
// over a rollout batch, the rollouts file, a checkpoint taken in the middle of a rollout
// batch's passes, validation by greedy answers. An algorithm (grpo.cpp, ppo.cpp) adds its
// advantages, its per-token loss and its metrics.
#pragma once
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmkit/chat.hpp"
#include "llmkit/engine.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/rewards.hpp"
#include "llmkit/rl.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/trainer.hpp"

namespace llmkit {

struct RolloutPrompt {
  std::vector<int32_t> tokens;
  std::string text;
  nlohmann::json row;
  std::string where;
};

// One sampled answer and what the algorithm derives from it; vectors per response token.
struct Rollout {
  size_t prompt = 0;              // in the prompt list
  std::vector<int32_t> response;  // with </s> when the model ended it
  std::vector<float> old_logp;    // the policy's when the batch was sampled
  std::vector<float> ref_logp;    // the reference's (an algorithm that needs one)
  std::vector<float> values, returns, advantages;  // PPO
  std::string text, finish;
  double reward = 0;     // the rewards' weighted sum, penalised and clipped
  double advantage = 0;  // GRPO's, one per answer
  nlohmann::json to_json() const;
  static Rollout from_json(const nlohmann::json& j);
};

class RolloutObjective : public Objective {
 public:
  // `samples`: answers per prompt (GRPO's group; 1 for PPO).
  RolloutObjective(const RolloutConfig& cfg, int samples) : rcfg_(cfg), samples_(samples) {}
  ~RolloutObjective() override;

  std::unique_ptr<Model> build(Trainer& t, const std::string& resume_dir) final;
  std::string describe(const Trainer& t) const final;
  void begin_step(Trainer& t, uint64_t cursor) final;
  void micro_step(Trainer& t, uint64_t first) final;
  double end_step(Trainer& t) final;
  void step_metrics(Trainer& t, nlohmann::json& line) final;
  uint64_t step_tokens(const Trainer&) const final { return step_tokens_; }
  double step_flops(const Trainer& t) const final;
  nlohmann::json evaluate(Trainer& t) final;
  void before_save(Trainer& t) final;
  void save_extra(Trainer& t, const std::string& dir) final;
  void release(Trainer&) final;
  double other_models_mib(const Trainer& t) const final;

 protected:
  // One micro-batch as rows of prompt + response: token k of rollouts[which[b]]'s response is
  // the target at row b, position at[b] + k.
  struct Rows {
    std::vector<int32_t> tokens, targets;
    std::vector<size_t> at;
    int B = 0, T = 0;
  };

  // The algorithm's options, checked at build (UsageError).
  virtual void check(Trainer& t) = 0;
  virtual bool value_head() const { return false; }
  virtual bool needs_reference() const = 0;
  // A summary for the start line ("loss grpo, rewards group").
  virtual std::string summary() const = 0;
  // After the rewards (rollouts_[i].reward) of this rank's rollouts: their advantages, and
  // statistics into rollout_sums_ (a collective; forward passes allowed).
  virtual void compute_advantages(Trainer& t) = 0;
  // The loss of one micro-batch: from the policy's log-probabilities (and values) of its rows,
  // d(loss)/d(logp) (and d(value)) per position, weighted for the step's loss; the loss and
  // the algorithm's statistics into train_sums_ (index 0: the loss).
  virtual void token_losses(Trainer& t, const std::vector<size_t>& which, const Rows& rows, const std::vector<float>& logp,
                            const std::vector<float>& values, std::vector<float>& dlogp, std::vector<float>& dvalue) = 0;
  // Metric fields: of the rollout batch (on the first step of its passes) and of every step.
  virtual void rollout_metrics(Trainer& t, nlohmann::json& line) = 0;
  virtual void train_metrics(Trainer& t, nlohmann::json& line) = 0;
  // The name of the mean entropy of the sampling distributions per answer token.
  virtual const char* entropy_metric() const { return "entropy"; }
  // Fields the rollouts file adds per answer.
  virtual void rollout_fields(const Rollout& r, nlohmann::json& j) const { (void)r, (void)j; }

  Rows make_rows(const std::vector<size_t>& which) const;
  // Forward passes of `m` over this rank's rollouts a micro-batch at a time (at the sampling
  // temperature, no dropout): fn(rollout, its response tokens' log-probabilities, values at the
  // same positions or null).
  void forward_rollouts(Model& m, const std::function<void(Rollout&, const float* logp, const float* values)>& fn);
  // Global sums of the response tokens of this step's rows, and of the rollout batch's.
  double step_global_tokens() const { return step_global_tokens_; }

  const RolloutConfig& rcfg_;
  const int samples_;
  TunedBase base_;
  std::unique_ptr<ChatEncoder> encoder_;
  std::vector<RolloutPrompt> prompts_, val_prompts_;
  std::vector<Rollout> rollouts_;      // this rank's of the rollout batch
  std::vector<double> rollout_sums_;   // the algorithm's sums over the batch (summed over ranks by it)
  std::vector<double> train_sums_;     // the algorithm's sums over the step, [0] the loss (summed over ranks)
  double ratio_max_dev_ = 0;           // max |ratio - 1| over the step's tokens

 private:
  SamplingParams sampling() const;
  std::vector<RolloutPrompt> read_prompts(const std::vector<std::string>& files, Stats& stats, int64_t limit);
  void generate(Trainer& t, uint64_t cycle);
  void write_rollouts(Trainer& t);
  void restore(Trainer& t, uint64_t cycle);
  int64_t steps_per_cycle() const { return static_cast<int64_t>(rcfg_.iterations) * rcfg_.mini_batches; }

  std::unique_ptr<ExampleSet> order_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Model> reference_;
  RewardMix rewards_;
  std::vector<std::pair<std::string, double>> reward_means_;
  std::string resume_dir_, saved_state_;
  std::vector<size_t> perm_;       // the rollout batch's order in the pass under way
  int64_t perm_pass_ = -1;         // which pass of the run perm_ is for
  uint64_t step_row0_ = 0, rows_done_ = 0, step_tokens_ = 0;
  int64_t pass_step_ = 0;          // the step's place in the rollout batch's passes
  double step_global_tokens_ = 1, step_flops_ = 0;
  // The rollout batch's sums over ranks: answers, reward, reward^2, length, cut, ended by </s>,
  // the sampling distributions' entropy, the length and number of the answers that ended
  // themselves; its shortest and longest answer.
  static constexpr int kBatchSums = 9;
  double batch_[kBatchSums] = {};
  double length_range_[2] = {};
  double time_rollout_ = 0, time_scoring_ = 0, time_training_ = 0;
  std::chrono::steady_clock::time_point train_start_;
  std::vector<float> dlogp_, dvalue_;
  std::FILE* rollouts_file_ = nullptr;
  size_t engine_value_bytes_ = 4;
};

}  // namespace llmkit
