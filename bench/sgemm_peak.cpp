// The denominator of MFU: OpenBLAS sgemm's rate here, measured as llm-pretrain measures it; and,
// with --memory MODEL B T, the bytes a training run of that model needs by the memory model
// (weights, gradients and AdamW's two moments in fp32, plus activations), to set against RSS.
#include <cstdio>
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
  std::printf("sgemm peak (1024^3, best of 3): %.1f GFLOP/s\n", llmkit::measure_sgemm_flops() / 1e9);
  return 0;
}
