// Prompt processing and decoding speed of llmkit's engine on a model (a checkpoint or a GGUF
// file), greedy, one sequence: what bench/quant.sh compares with llama.cpp on the same file.
// Usage: decode MODEL PROMPT_TOKENS NEW_TOKENS [REPEATS]   (threads: OMP_NUM_THREADS)
// Prints {"pp_tokens_per_s": ..., "decode_tokens_per_s": ..., "weight_bytes": ...}: the best of
// REPEATS runs (default 3).
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/engine.hpp"
#include "llmkit/model.hpp"

using namespace llmkit;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: decode MODEL PROMPT_TOKENS NEW_TOKENS [REPEATS]\n");
    return 2;
  }
  auto be = make_cpu_backend();
  LoadedModel lm = open_model(argv[1], *be);
  Model& m = *lm.model;
  const int P = std::stoi(argv[2]), N = std::stoi(argv[3]), R = argc > 4 ? std::stoi(argv[4]) : 3;
  std::mt19937 rng(3);
  std::vector<int32_t> prompt{2};
  while (static_cast<int>(prompt.size()) < P) prompt.push_back(static_cast<int32_t>(4 + rng() % static_cast<unsigned>(m.config().vocab_size - 4)));
  Engine e(m, nullptr, 1, P + N + 1);
  SamplingParams sp;
  sp.temperature = 0;
  sp.stop_at_eos = false;
  auto seconds = [&](int tokens) {
    sp.max_tokens = tokens;
    const auto t0 = std::chrono::steady_clock::now();
    e.generate({prompt}, sp);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  double pp = 1e30, dec = 1e30;
  for (int r = 0; r < R; ++r) {
    const double one = seconds(1), all = seconds(N + 1);
    pp = std::min(pp, one);
    dec = std::min(dec, (all - one) / N);
  }
  double bytes = 0;
  for (const ParamSpec& s : m.params()) bytes += static_cast<double>(s.size) * 4;
  std::printf("{\"pp_tokens_per_s\": %.1f, \"decode_tokens_per_s\": %.2f, \"weight_bytes\": %.0f}\n", P / pp, 1 / dec, bytes);
  return 0;
}
