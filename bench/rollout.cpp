// GRPO's rollouts on llmkit's engine, on the CPU: P prompts answered G times each, sampled
// (temperature 1) for a fixed number of new tokens, three ways, in one run on one model:
//   group    the engine as llm-ppo grpo calls it: the G answers of a prompt from one prefill
//   batched  plain batched generation: the same P x G sequences as separate prompts, one batch
//   single   one prompt at a time: each of the P x G sequences alone
// Prints generated tokens/s of each and the ratios (the goal: group >= 0.9 x batched; the shared
// prefill shows against batched when prompts are long).
// Usage: rollout [--model llama-25m | --init CHECKPOINT] [--prompts 8] [--group 8] [--prompt-len 128] [--new 32]
// (--init: a checkpoint's model and weights, as an llm-ppo run on it has them)
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/engine.hpp"
#include "llmkit/model.hpp"

using namespace llmkit;

int main(int argc, char** argv) {
  std::string model = "llama-25m", init;
  int P = 8, G = 8, L = 128, N = 32;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--init")) init = argv[i + 1];
    else if (!std::strcmp(argv[i], "--prompts")) P = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--group")) G = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--prompt-len")) L = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--new")) N = std::atoi(argv[i + 1]);
  }
  auto be = make_cpu_backend();
  std::unique_ptr<Model> owned;
  if (init.empty()) {
    owned = std::make_unique<Model>(ModelConfig::load(model), *be);
    owned->init(1);
  } else {
    owned = open_model(init, *be).model;
    model = init;
  }
  Model& m = *owned;
  const ModelConfig c = m.config();
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(P));
  for (auto& p : prompts)
    for (int k = 0; k < L; ++k) p.push_back(static_cast<int32_t>(3 + rng() % static_cast<unsigned>(c.vocab_size - 3)));
  SamplingParams sp;
  sp.temperature = 1.0;
  sp.max_tokens = N;
  sp.stop_at_eos = false;  // every sequence makes N tokens: the same work each way
  const int max_len = L + N + 1;
  auto timed = [&](auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    const size_t tokens = f();
    return static_cast<double>(tokens) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto count = [](const std::vector<Generation>& g) {
    size_t n = 0;
    for (const auto& x : g) n += x.tokens.size();
    return n;
  };
  Engine big(m, nullptr, P * G, max_len);
  const double group = timed([&] {
    SamplingParams q = sp;
    q.n = G;
    return count(big.generate(prompts, q));
  });
  const double batched = timed([&] {
    std::vector<std::vector<int32_t>> all;
    for (const auto& p : prompts)
      for (int k = 0; k < G; ++k) all.push_back(p);
    return count(big.generate(all, sp));
  });
  Engine one(m, nullptr, 1, max_len);
  const double single = timed([&] {
    size_t n = 0;
    for (const auto& p : prompts)
      for (int k = 0; k < G; ++k) {
        SamplingParams q = sp;
        q.seed = static_cast<uint64_t>(k);
        n += count(one.generate({p}, q));
      }
    return n;
  });
  std::printf("%s, %d prompts of %d tokens, %d answers each, %d new tokens an answer, temperature 1\n", model.c_str(), P, L, G, N);
  std::printf("group (llm-ppo grpo's: one prefill a prompt): %8.1f generated tokens/s\n", group);
  std::printf("batched (every answer its own prompt):        %8.1f generated tokens/s\n", batched);
  std::printf("single (one answer at a time):                %8.1f generated tokens/s\n", single);
  std::printf("group / batched: %.2fx (goal >= 0.9x); group / single: %.2fx\n", group / batched, group / single);
  return 0;
}
