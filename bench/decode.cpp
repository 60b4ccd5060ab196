// Prompt processing and decoding speed of llmkit's engine on a model (a checkpoint or a GGUF
// file), greedy, one sequence: what bench/quant.sh compares with llama.cpp on the same file.
// Usage: decode MODEL PROMPT_TOKENS NEW_TOKENS [REPEATS [DEVICE]]   (threads: OMP_NUM_THREADS;
// DEVICE cpu, the default, or cuda: the GPU with bf16 matmuls, a GGUF's blocks kept there)
// Prints {"pp_tokens_per_s": ..., "decode_tokens_per_s": ..., "weight_bytes": ...,
// "read_gb_per_s": ..., "bandwidth_limit_tokens_per_s": ...}: the best of REPEATS runs (default
// 3). The limit is decoding's if it did nothing but read the weights once per token at the rate
// one thread reads a buffer of their size here (measured in the same run). Also how much the
// process's peak RSS grew from before the model was read to before that buffer, and the KV
// cache's bytes: a quantized model should hold little more than its weights and cache.
#include <sys/resource.h>

#include <chrono>
#include <exception>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/engine.hpp"
#include "llmkit/model.hpp"

using namespace llmkit;

// The reading loop at full width: vectorized whatever the build's optimization level.
__attribute__((optimize("O3"))) static uint32_t sum_words(const uint32_t* p, size_t n) {
  uint32_t s = 0;
  for (size_t i = 0; i < n; ++i) s += p[i];
  return s;
}

static int run(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: decode MODEL PROMPT_TOKENS NEW_TOKENS [REPEATS [cpu|cuda]]\n");
    return 2;
  }
  const std::string device = argc > 5 ? argv[5] : "cpu";
  auto be = device == "cpu" ? make_cpu_backend() : make_backend(device, "bf16", 0);
  // The process's resident memory before the model (the libraries linked: oneDNN, MPI, CUDA's).
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  const double rss0 = static_cast<double>(ru.ru_maxrss) * 1024;
  ModelOptions mo;
  mo.inference = true;  // as llm-eval: no gradient memory
  LoadedModel lm = open_model(argv[1], *be, mo);
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
  const double bytes = static_cast<double>(m.weight_bytes());
  getrusage(RUSAGE_SELF, &ru);
  const double rss = static_cast<double>(ru.ru_maxrss) * 1024 - rss0;
  const ModelConfig& c = m.config();
  const double kv = 2.0 * c.layers * (P + N + 1) * c.kv_heads * c.head_dim() * 4;
  // One thread reading a buffer of the weights' size (vectorized sums of 32-bit words).
  std::vector<uint32_t> buf(static_cast<size_t>(bytes) / 4 + 1, 1);
  double read = 0;
  uint32_t sink = 0;
  for (int r = 0; r < 10; ++r) {  // the best of ten: a shared machine's busy moments pass
    const auto t0 = std::chrono::steady_clock::now();
    sink += sum_words(buf.data(), buf.size());
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    read = std::max(read, static_cast<double>(buf.size()) * 4 / t);
  }
  std::printf("{\"pp_tokens_per_s\": %.1f, \"decode_tokens_per_s\": %.2f, \"weight_bytes\": %.0f, \"read_gb_per_s\": %.2f, "
              "\"bandwidth_limit_tokens_per_s\": %.1f, \"peak_rss_growth_bytes\": %.0f, \"kv_cache_bytes\": %.0f}\n",
              P / pp, 1 / dec, bytes, read / 1e9, read / bytes, rss, kv);
  if (sink == 42) std::fprintf(stderr, " ");
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "decode: %s\n", e.what());
    return 1;
  }
}
