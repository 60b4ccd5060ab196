// The denominator of MFU: the CPU backend's sgemm rate here, measured as llm-pretrain measures it;
// with --memory MODEL B T, the bytes a training run of that model needs by the memory model
// (weights, gradients and AdamW's two moments in fp32, plus activations), to set against RSS;
// with --breakdown MODEL B T, where a training step's time goes (best of 3): forward, backward,
// gradient norm, AdamW and zeroing the gradients, and the rate of forward + backward.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
#include <cstring>
#include <string>

#include "llmkit/backend.hpp"
#include "llmkit/model.hpp"
#include "llmkit/pretrain.hpp"

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "--memory") == 0) {
    auto be = llmkit::make_cpu_backend();
    llmkit::Model m(llmkit::ModelConfig::load(argv[2]), *be);
    const int B = std::stoi(argv[3]), T = std::stoi(argv[4]);
    const double state = 4.0 * 4.0 * static_cast<double>(m.num_params());
    const double acts = static_cast<double>(m.activation_bytes(B, T));
    std::printf("%s B=%d T=%d: weights+gradients+moments %.0f MiB, activations %.0f MiB, total %.0f MiB\n",
                argv[2], B, T, state / 1048576, acts / 1048576, (state + acts) / 1048576);
    return 0;
  }
  if (argc == 5 && std::strcmp(argv[1], "--breakdown") == 0) {
    auto be = llmkit::make_cpu_backend();
    llmkit::Model m(llmkit::ModelConfig::load(argv[2]), *be);
    m.init(1);
    const int B = std::stoi(argv[3]), T = std::stoi(argv[4]);
    const size_t n = m.num_params();
    std::vector<int32_t> tok(static_cast<size_t>(B) * T), tgt(tok.size());
    for (size_t i = 0; i < tok.size(); ++i) tok[i] = static_cast<int32_t>(i * 7 % 50), tgt[i] = static_cast<int32_t>(i * 11 % 50);
    std::vector<float> mom(n), var(n);
    using Clock = std::chrono::steady_clock;
    auto time = [](auto f) {
      double best = 1e30;
      for (int r = 0; r < 3; ++r) {
        auto t0 = Clock::now();
        f();
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
      }
      return best;
    };
    const double fwd = time([&] { m.forward(tok.data(), tgt.data(), B, T); });
    const double bwd = time([&] { m.forward(tok.data(), tgt.data(), B, T); m.backward_mean(); }) - fwd;
    const double norm = time([&] { be->sum_squares(m.grads(), n); });
    const double adam = time([&] {
      for (const auto& p : m.params())
        be->adamw(m.weights() + p.offset, m.grads() + p.offset, mom.data() + p.offset, var.data() + p.offset, p.size,
                  1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
    });
    const double zero = time([&] { m.zero_grad(); });
    const double peak = be->matmul_peak_flops();
    std::printf("%s B=%d T=%d: forward %.3f s, backward %.3f s, grad norm %.3f s, AdamW %.3f s, zero grads %.3f s;\n"
                "  forward + backward at %.0f GFLOP/s, %.0f%% of the sgemm peak (%.0f GFLOP/s)\n",
                argv[2], B, T, fwd, bwd, norm, adam, zero, m.flops_per_step(B, T) / (fwd + bwd) / 1e9,
                100 * m.flops_per_step(B, T) / (fwd + bwd) / peak, peak / 1e9);
    return 0;
  }
  auto be = llmkit::make_cpu_backend();
  std::printf("sgemm peak (1024^3, best of 3): %.1f GFLOP/s, %s\n", be->matmul_peak_flops() / 1e9, be->matmul_kernel().c_str());
  return 0;
}
