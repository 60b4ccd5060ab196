// The inference engine (lib/model/engine.cpp): many sequences of different lengths at once
// over a KV cache, batched prefill and decode, log-likelihoods of continuations, sampling
// (greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded), stop sequences and
// token limits. llm-eval scores with it; llm-ppo and llm-serve generate with it.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "llmkit/model.hpp"

namespace llmkit {

class Tokenizer;
class Scheduler;

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy
  int top_k = 0;             // 0: off
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;  // > 1 discourages tokens already in the sequence (CTRL)
  // OpenAI's: logit -= presence (when the token was generated before) + frequency x its count
  // among the generated tokens (the prompt's not counted).
  double presence_penalty = 0.0, frequency_penalty = 0.0;
  uint64_t seed = 0;
  int max_tokens = 128;
  std::vector<std::string> stop;  // the text ends before the first of these (needs a tokenizer)
  bool stop_at_eos = true;
  // Samples per prompt: the prompt is prefilled once and its keys and values copied to the n
  // sequences that continue it (GRPO's group shares its prefix). Output: prompt-major.
  int n = 1;
  // Per output sequence (prompts x n), the seed of its generator; empty: seed and its index. A
  // sequence's tokens then depend on its seed only, not on which batch or process ran it.
  std::vector<uint64_t> seeds;
  // Record each sampled position's entropy of softmax(logits / temperature) (Generation::entropies).
  bool entropy = false;
};

struct Generation {
  std::vector<int32_t> tokens;  // generated (</s> excluded; a stop sequence's tokens included)
  std::string text;             // decoded (with a tokenizer), cut before a stop sequence
  std::string finish;           // "stop" (a stop sequence), "eos", "length"
  // log p of each token of `tokens` under softmax(logits / temperature) (the temperature when
  // sampling, 1 when greedy; cut-offs ignored), then of </s> when finish is "eos": what a
  // trainer recomputes (Model::set_logit_temperature).
  std::vector<float> logprobs;
  // With SamplingParams::entropy: the entropy of the distribution each token was drawn from
  // (under the temperature, before cut-offs), one per logprobs entry.
  std::vector<float> entropies;
};

struct ScoredContinuation {
  double logprob = 0;   // sum of log p(continuation token | everything before it)
  bool greedy = false;  // every continuation token is the argmax (lm-evaluation-harness's is_greedy)
  int tokens = 0;
};

// The seed of the index-th sequence of a call seeded `seed` (generate's n samples of each
// prompt, prompt-major; llm-serve's choices): each sequence draws from its own generator.
inline uint64_t sequence_seed(uint64_t seed, uint64_t index) { return seed * 0x9E3779B97F4A7C15ull + index; }

// log sum exp(row[j] * scale) over the first V values, in double.
double log_sum_exp(const float* row, int V, double scale = 1.0);

// One token from a row of logits (the vocabulary's first V columns), given the sequence so far
// (history; its first prompt_len tokens are the prompt, which the presence and frequency
// penalties do not count). With logprob: log softmax(logits / temperature) at the token
// (temperature 1 when greedy); with entropy: that distribution's entropy.
int32_t sample_token(const float* logits, int V, const std::vector<int32_t>& history, size_t prompt_len,
                     const SamplingParams& params, std::mt19937_64& rng, float* logprob = nullptr, float* entropy = nullptr);

class Engine {
 public:
  // max_batch sequences at a time, each up to max_len tokens (at most the model's context).
  Engine(Model& model, const Tokenizer* tokenizer, int max_batch, int max_len);
  ~Engine();

  // Scores (context, continuation) pairs in batches: one cached forward pass per batch.
  std::vector<ScoredContinuation> score(
      const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& requests);

  // Continues each prompt, on the step-level scheduler (continuous batching over a paged KV
  // cache, as llm-serve): the n samples of a prompt share its prefill through the prefix
  // cache. Prompts longer than the room left are cut from the left. Deterministic for a seed
  // (each sequence has its own generator), whatever the batch.
  std::vector<Generation> generate(const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& params);

  // sample_token over the model's vocabulary, the whole history counted as generated.
  int32_t sample(const float* logits, const std::vector<int32_t>& history, const SamplingParams& params,
                 std::mt19937_64& rng, float* logprob = nullptr, float* entropy = nullptr) const {
    return sample_token(logits, model_.config().vocab_size, history, 0, params, rng, logprob, entropy);
  }

  int max_len() const { return max_len_; }
  // Prefill at most this many prompt tokens a forward pass (whole prompts; 0: all of a batch at
  // once), so that the model's activations stay within what its trainer sized them for.
  void set_prefill_rows(int rows) { prefill_rows_ = rows; }

 private:
  Model& model_;
  const Tokenizer* tok_;
  int max_batch_, max_len_;
  int prefill_rows_ = 0;
  std::unique_ptr<KVCache> cache_;          // score()'s
  std::unique_ptr<Scheduler> scheduler_;    // generate()'s
  uint64_t groups_ = 0;
};

}  // namespace llmkit
