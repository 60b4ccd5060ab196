// The quantized matmuls of the CPU backend on a Llama's shapes: for each weight type, GOP/s (two
// operations a multiply-add) of the product of N activation rows with the 25M bench model's
// matrices (hidden 512, intermediate 1536) or any given shape, through
//   amx_int8, vnni_int8   the int8 GEMM that prompt processing takes from 16 rows, on AMX tiles
//            or AVX-512 VNNI (0 where the CPU has neither),
//   fp32     the weights dequantized a slice at a time into sgemm (the training forward's path,
//            and the batched path of a CPU without AVX-512 VNNI),
//   rowdot   the integer dot products that decode takes (one weight row against up to 4 rows),
// next to sgemm on fp32 weights of the same shape.
// Usage: qgemm [N=128] [C=512] [OC=1536]   (threads: OMP_NUM_THREADS)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "../lib/backend/cpu/gemm.hpp"
#include "../lib/backend/cpu/qmatmul.hpp"
#include "llmkit/ggml.hpp"

using namespace llmkit;

namespace {

double seconds(const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int N = argc > 1 ? std::atoi(argv[1]) : 128, C = argc > 2 ? std::atoi(argv[2]) : 512,
            OC = argc > 3 ? std::atoi(argv[3]) : 1536;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(static_cast<size_t>(N) * C), wf(static_cast<size_t>(OC) * C), y(static_cast<size_t>(N) * OC);
  for (float& v : x) v = nd(rng);
  for (float& v : wf) v = 0.05f * nd(rng);
  const double ops = 2.0 * N * C * OC;
  const double t32 = seconds([&] { cpu::sgemm(false, true, N, OC, C, 1.0f, x.data(), C, wf.data(), C, 0.0f, y.data(), OC); });
  const bool vnni = cpu::qkernel_available(cpu::QKernel::avx512), amx = cpu::qkernel_available(cpu::QKernel::amx);
  std::printf("{\"rows\": %d, \"cols\": %d, \"out\": %d, \"threads\": %d, \"sgemm_fp32_gops\": %.1f, \"kernel\": \"%s\"}\n", N, C, OC,
              omp_get_max_threads(), ops / t32 / 1e9, cpu::qkernel_name(cpu::qkernel()));
  for (ggml::Type t : {ggml::Type::q8_0, ggml::Type::q4_0, ggml::Type::q4_1, ggml::Type::q5_0, ggml::Type::q5_1, ggml::Type::q4_k,
                       ggml::Type::q5_k, ggml::Type::q6_k}) {
    const size_t rb = ggml::row_bytes(t, C);
    std::vector<uint8_t> w(rb * OC);
    for (int o = 0; o < OC; ++o) ggml::quantize(t, wf.data() + static_cast<size_t>(o) * C, w.data() + rb * o, C);
    const double tq = vnni ? seconds([&] { cpu::qmatmul_int8(y.data(), x.data(), t, w.data(), rb, nullptr, N, C, OC, cpu::QKernel::avx512); }) : 0;
    const double ta = amx ? seconds([&] { cpu::qmatmul_int8(y.data(), x.data(), t, w.data(), rb, nullptr, N, C, OC, cpu::QKernel::amx); }) : 0;
    const double tf = seconds([&] { cpu::qmatmul(y.data(), x.data(), t, w.data(), rb, nullptr, N, C, OC, true); });
    const int rows = std::min(N, 4);
    const double tr = seconds([&] { cpu::qmatmul(y.data(), x.data(), t, w.data(), rb, nullptr, rows, C, OC, false); });
    std::printf("{\"type\": \"%s\", \"amx_int8_gops\": %.1f, \"vnni_int8_gops\": %.1f, \"fp32_gops\": %.1f, \"rowdot_%d_rows_gops\": %.1f}\n",
                ggml::traits(t).name, amx ? ops / ta / 1e9 : 0.0, vnni ? ops / tq / 1e9 : 0.0, ops / tf / 1e9, rows,
                2.0 * rows * C * OC / tr / 1e9);
  }
}
