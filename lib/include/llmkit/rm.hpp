// llm-rm (lib/model/rm.cpp): reward models from preference pairs (llmkit-chat(5)) as an
// objective on the shared training loop. A reward model is the transformer with a scalar head
// (score.weight) read at the last token of prompt and answer: Hugging Face's
// *ForSequenceClassification with one label. Trained with the Bradley-Terry loss, as TRL's
// RewardTrainer; scored with `llm-rm score`.
#pragma once
#include <string>
#include <vector>

#include "llmkit/rewards.hpp"
#include "llmkit/sft.hpp"

namespace llmkit {

class Stats;
class OutputStream;
class ChatEncoder;
class Backend;

struct RmConfig : SftConfig {
  double center_rewards = 0;  // TRL's center_rewards_coefficient
};

// One pair's loss, -log sigmoid(rc - rr - margin) + center (rc + rr)^2, and its derivatives in
// the two rewards.
struct RmPairLoss {
  double loss = 0, dchosen = 0, drejected = 0;
};
RmPairLoss rm_pair_loss(double rc, double rr, double margin, double center);

// Runs training; 0 at the end, 1 when stopped by a signal after saving a checkpoint.
int run_rm(const RmConfig& cfg, Stats& stats);

// A reward model as an llm-ppo reward (rewards.hpp): each prompt (the data row's "prompt": text
// or messages) with its response is rendered and tokenized as llm-rm trained on them, through
// `encoder` (the policy's tokenizer, which must be the reward model's, and template), cut to
// seq_len tokens, and scored on `be` at its last token, batch sequences at a time.
std::unique_ptr<RewardFunction> make_model_reward(const std::string& path, Backend& be, const ChatEncoder& encoder, int seq_len,
                                                  int batch);

struct ScoreOptions {
  std::string model, tokenizer, chat_template, device = "auto", precision = "bf16";
  int seq_len = 0;  // 0: the model's training length, else its context
  int batch = 8;
  bool strict = false;
};
// Each row of the files (preference rows, or chat rows: messages, prompt/completion, text) with
// its reward(s) added ("reward"; "chosen_reward" and "rejected_reward"), one JSON line each, in
// order. Malformed rows are skipped with a warning naming FILE:LINE (strict: an error).
void score_rows(const ScoreOptions& o, const std::vector<std::string>& files, OutputStream& out, Stats& stats);

}  // namespace llmkit
