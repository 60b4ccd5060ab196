// A fine-tuning step with LoRA against a full fine-tuning step of the same model and batch, on
// the CPU: the time of each (forward, backward, AdamW over what is trained; best of 3), their
// ratio (the goal: LoRA at most 0.7 x full), the trainable state (parameters x 4 floats:
// weights' gradients, AdamW's two moments and the weights' share of them) against the full
// fine-tune's (the goal: under 2%), and the bytes each holds for gradients and optimizer state.
// Usage: sft_step [--model gpt2-124m] [--batch 4] [--seq 256] [--rank 16]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/model.hpp"

using namespace llmkit;

namespace {

struct Result {
  double seconds = 0;
  size_t trainable = 0, params = 0;
};

Result measure(const ModelConfig& c, const ModelOptions& o, int B, int T) {
  auto be = make_cpu_backend();
  Model m(c, *be, o);
  m.init(1);
  if (o.lora.rank > 0) m.freeze([](const std::string& n) { return !Model::is_lora_tensor(n); });
  std::vector<int32_t> tok(static_cast<size_t>(B) * T), tgt(tok.size());
  std::mt19937 rng(3);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = static_cast<int32_t>(rng() % static_cast<unsigned>(c.vocab_size)),
                                          tgt[i] = static_cast<int32_t>(rng() % static_cast<unsigned>(c.vocab_size));
  const size_t G = m.num_grads();
  float* mom = be->alloc(G);
  float* var = be->alloc(G);
  auto step = [&] {
    m.zero_grad();
    m.forward(tok.data(), tgt.data(), B, T);
    m.backward_mean();
    for (const ParamSpec& s : m.params())
      if (s.trainable())
        be->adamw(m.weights() + s.offset, m.grads() + s.grad_offset, mom + s.grad_offset, var + s.grad_offset, s.size, 1e-4f, 0.9f,
                  0.999f, 1e-8f, 0.0f, 1);
  };
  step();  // warm-up
  Result r;
  r.seconds = 1e30;
  for (int i = 0; i < 3; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step();
    r.seconds = std::min(r.seconds, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  r.trainable = m.num_trainable_unpadded();
  r.params = m.num_params_unpadded();
  be->release(mom);
  be->release(var);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "gpt2-124m";
  int B = 4, T = 256, rank = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--batch")) B = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seq")) T = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rank")) rank = std::stoi(argv[i + 1]);
  }
  const ModelConfig c = ModelConfig::load(model);
  ModelOptions full, lora;
  lora.lora.rank = rank;
  lora.lora.alpha = 2.0f * static_cast<float>(rank);
  lora.lora.targets = {"all-linear"};
  const Result f = measure(c, full, B, T), l = measure(c, lora, B, T);
  auto mib = [](size_t floats) { return static_cast<double>(floats) * 4 / (1 << 20); };
  std::printf("%s, B=%d T=%d, vocabulary %d, LoRA rank %d on all linear layers\n", model.c_str(), B, T, c.vocab_size, rank);
  std::printf("full fine-tuning step: %7.3f s, %.2fM parameters trained; gradients + AdamW state %.0f MiB\n", f.seconds,
              static_cast<double>(f.trainable) / 1e6, mib(3 * f.trainable));
  std::printf("LoRA step:             %7.3f s, %.2fM parameters trained; gradients + AdamW state %.1f MiB\n", l.seconds,
              static_cast<double>(l.trainable) / 1e6, mib(3 * l.trainable));
  std::printf("LoRA / full: step time %.2fx (goal <= 0.7), trainable state %.2f%% (goal < 2%%)\n", l.seconds / f.seconds,
              100.0 * static_cast<double>(l.trainable) / static_cast<double>(f.trainable));
  return 0;
}
