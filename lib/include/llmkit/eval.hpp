// llm-eval's engine (lib/model/eval.cpp): perplexity on token shards and text, multiple-choice
// and generative benchmarks scored as lm-evaluation-harness scores them.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmkit/docsource.hpp"

namespace llmkit {

struct EvalConfig {
  std::string model;      // checkpoint or run directory, .safetensors, llm.c GPT-2 file
  std::string tokenizer;  // overrides the checkpoint's
  std::string log_samples;
  // The cache of finished blocks of examples that a rerun resumes from ("": none); removed once
  // the report is written. See EvalCache (lib/model/eval_cache.hpp) and llm-eval(1).
  std::string cache;
  SourceConfig source;
  int64_t limit = 0;  // examples (documents, windows for shards); 0: all
  int num_fewshot = 0;
  int batch_size = 8;
  uint64_t seed = 0;
  std::string device = "auto";     // make_backend: auto, cpu, cuda, cuda:N
  std::string precision = "fp32";  // a GPU's matmuls: fp32 (scores as the CPU's), tf32, bf16
  // ppl
  int seq_len = 0;  // 0: the model's context (at most 1024)
  int64_t max_tokens = 0;
  int stride = 0;
  bool verify = true;
  // gen
  std::vector<std::string> until;
  int max_gen_tokens = 256;
  std::string regex;
};

// One multiple-choice example ("context", "choices", "gold", optional "fewshot", "description").
struct McExample {
  std::string id, context, description;
  std::vector<std::string> choices;
  int gold = 0;
  std::vector<McExample> fewshot;
};
// One generative example ("prompt", "answer", optional "fewshot", "description").
struct GenExample {
  std::string id, prompt, answer, description;
  std::vector<GenExample> fewshot;
};

// The context a model sees, exactly: description, then each shot as its context, " ", its
// answer, shots separated by "\n\n", then "\n\n" and the example's context (lm-evaluation-
// harness's target_delimiter " " and fewshot_delimiter "\n\n").
std::string mc_context(const McExample& ex, const std::vector<const McExample*>& shots);
std::string gen_context(const GenExample& ex, const std::vector<const GenExample*>& shots);
// The shots of example i: its own "fewshot" when it has some, else k others of the task chosen
// with a generator seeded by (seed, i).
std::vector<size_t> choose_shots(size_t i, size_t n, int k, uint64_t seed);

// The choice with the highest summed log-likelihood (acc) and the one with the highest
// log-likelihood per character of the choice (acc_norm); ties go to the first.
std::pair<int, int> mc_predict(const std::vector<double>& loglikelihoods, const std::vector<std::string>& choices);

// GSM8K answer extraction and normalisation (lm-evaluation-harness gsm8k): strict
// "#### (-?[0-9.,]+)"; flexible: the last number; "[invalid]" when nothing matches. normalize:
// commas, "$", everything up to "#### " and a final "." removed, lower case.
std::string extract_strict(const std::string& text);
std::string extract_flexible(const std::string& text);
std::string extract_regex(const std::string& text, const std::string& regex);
std::string normalize_answer(const std::string& s);

// Runs `kind` (ppl, mc, gen) over the inputs and calls write_report(report) on rank 0; then
// removes the cache (collective under MPI).
void run_eval(const std::string& kind, const std::vector<std::string>& inputs, const EvalConfig& cfg,
              const std::function<void(const nlohmann::json&)>& write_report);
std::string report_text(const nlohmann::json& report);

}  // namespace llmkit
