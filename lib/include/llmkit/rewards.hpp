// Rewards for reinforcement learning (lib/model/rewards.cpp): one interface for every
// algorithm of llm-ppo. A reward scores responses to prompts: built-in rules (exact match after
// GSM8K's normalisation, \boxed{} answers, a regular expression), an external command that
// reads JSONL rows and writes one number a line, and (llm-ppo) a reward model. Several combine
// with weights.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmkit {

struct RewardInput {
  std::string prompt;    // as the model saw it (the rendered prompt's text)
  std::string response;  // the generated text
  nlohmann::json row;    // the data row's fields (a reference "answer", ...)
  bool stopped = true;   // the response ended itself (end of sequence or a stop string)
};

class RewardFunction {
 public:
  virtual ~RewardFunction() = default;
  virtual const std::string& name() const = 0;
  // One reward per input; an Error naming the reward when it cannot give them.
  virtual std::vector<double> score(const std::vector<RewardInput>& inputs) = 0;
  // Bytes it holds in the trainer's memory (a reward model's weights and activations).
  virtual double memory_bytes() const { return 0; }
};

// rule:NAME, as --reward takes it:
//   exact[:FIELD]  1 when the response's answer equals the row's FIELD (default "answer") after
//                  GSM8K's normalisation: "#### N" when there is one, else the last number, in
//                  both; commas, "$" and a final "." dropped, lower case. 0 otherwise.
//   boxed[:FIELD]  1 when the content of the response's last \boxed{...} equals the field's (its
//                  own last \boxed{} when it has one, else all of it), normalised as above.
//   regex:PATTERN  1 when the response contains a match of PATTERN (ECMAScript), else 0: a
//                  format reward.
// A UsageError for an unknown rule or a bad pattern.
std::unique_ptr<RewardFunction> make_rule_reward(const std::string& spec);

// An external verifier: `sh -c CMD`, which reads one JSON object a line on its standard input
// ({"prompt", "response", "stopped", and the data row's fields}) and writes one number a line on
// its standard output, in order. A command that fails (exit status, a missing, extra or
// non-numeric line) is an Error naming it and what it did, never a silent zero.
std::unique_ptr<RewardFunction> make_command_reward(const std::string& cmd);

// The content of the last \boxed{...} of a text (braces balanced), or "" without one.
std::string last_boxed(const std::string& text);

// Rewards with weights: the weighted sum, and each one's mean for the metrics.
class RewardMix {
 public:
  void add(std::unique_ptr<RewardFunction> f, double weight);
  bool empty() const { return parts_.empty(); }
  void clear() { parts_.clear(); }  // before the backend a reward model lives on goes
  double memory_bytes() const;
  // The weighted sum per input; `means` gets each reward's mean over the inputs (by name).
  std::vector<double> score(const std::vector<RewardInput>& inputs, std::vector<std::pair<std::string, double>>* means = nullptr);

 private:
  std::vector<std::pair<std::unique_ptr<RewardFunction>, double>> parts_;
};

}  // namespace llmkit
