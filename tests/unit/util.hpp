// Helpers the unit tests share: seeded normal samples, an fp16 read, and a thread count for one
// call.
#pragma once
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "llmkit/ggml.hpp"
#include "llmkit/io.hpp"
#include "llmkit/model.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"
#include <unistd.h>
#include <cstdio>
#include <memory>
#include <string>

namespace llmkit::test {

// A two-layer model of the family with 4 heads (Llama: 2 KV heads, the MLP llama_ffn wide; GPT-2:
// gpt2_ffn wide, embeddings tied), Llama's embeddings tied or not.
inline ModelConfig two_layer_model(ModelConfig::Family f, int vocab, int dim, int llama_ffn, int gpt2_ffn, int max_seq,
                                   bool llama_tied) {
  const bool llama = f == ModelConfig::Family::llama;
  ModelConfig c;
  c.family = f;
  c.vocab_size = vocab;
  c.dim = dim;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = llama ? 2 : 4;
  c.ffn_dim = llama ? llama_ffn : gpt2_ffn;
  c.max_seq = max_seq;
  c.tied_embeddings = !llama || llama_tied;
  return c;
}

// A tiny model (vocabulary 61) of the family: what the engine and scheduler tests run.
inline ModelConfig tiny_model(ModelConfig::Family f, int max_seq) { return two_layer_model(f, 61, 24, 40, 96, max_seq, true); }

// n token ids below vocab, from std::mt19937_64(seed).
inline std::vector<int32_t> random_ids(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> s(static_cast<size_t>(n));
  for (auto& t : s) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return s;
}
// n token ids of tiny_model's vocabulary.
inline std::vector<int32_t> random_ids(int n, uint64_t seed) { return random_ids(n, 61, seed); }

// The score head's outputs of a forward over tok (B x T) dotted with R (B x T x K): an objective
// whose gradient is backward(nullptr, R), for finite-difference checks.
inline double weighted_values(Model& m, const std::vector<int32_t>& tok, int B, int T, const std::vector<float>& R) {
  m.forward(tok.data(), nullptr, B, T);
  const std::vector<float> v = m.values();
  if (v.size() != R.size()) throw std::runtime_error("weighted_values: " + std::to_string(v.size()) + " values for " + std::to_string(R.size()) + " weights");
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += static_cast<double>(v[i]) * R[i];
  return s;
}

// A small SentencePiece model (byte fallback, a few English words; with_markers: ChatML's two
// markers as single tokens), trained once per process.
inline const Tokenizer& chat_tokenizer(bool with_markers = true) {
  static std::unique_ptr<Tokenizer> toks[2];
  std::unique_ptr<Tokenizer>& t = toks[with_markers ? 1 : 0];
  if (t) return *t;
  const std::string base = "/tmp/llmkit-test-chat-" + std::to_string(::getpid()) + (with_markers ? "m" : "p");
  std::string jsonl;
  const char* lines[] = {"what is the capital of france", "paris is the capital of france", "add two and two",
                         "two and two make four", "you are a helpful assistant", "say hello", "hello there"};
  for (int i = 0; i < 300; ++i) jsonl += std::string("{\"text\":\"") + lines[i % 7] + " " + lines[(i * 3) % 7] + "\"}\n";
  write_file_atomic(base + ".jsonl", jsonl);
  TrainConfig cfg;
  cfg.output = base + ".model";
  cfg.vocab_size = 400;  // byte fallback's 256 pieces, a few words
  cfg.sample = 0;
  if (with_markers) cfg.specials = {"<|im_start|>", "<|im_end|>"};
  Stats stats;
  train_tokenizer({base + ".jsonl"}, cfg, stats);
  t = std::make_unique<Tokenizer>(cfg.output);
  std::remove((base + ".jsonl").c_str());
  std::remove(cfg.output.c_str());
  return *t;
}


// n samples of N(0, scale^2) from std::mt19937(seed).
inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 r(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(r);
  return v;
}

// The IEEE half at p (unaligned) as a float.
inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return ggml::fp16_to_fp32(h);
}

// Runs f with n OpenMP threads, then restores the count.
template <class F>
void with_threads(int n, F f) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(before);
}

}  // namespace llmkit::test
