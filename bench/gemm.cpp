// The CPU matmul kernels on the models' shapes: GFLOP/s of oneDNN, OpenBLAS and BLIS (when
// libblis is installed; loaded at run time, as its BLAS symbols would clash with OpenBLAS's),
// each run two ways: through llmkit's shape-only tiling (single-threaded calls shared among the
// threads: the same bits for any thread count; what the CPU backend does) and with the
// library's own threading (faster or not, but its rounding can depend on the thread count).
// bench/gemm.sh runs it with OPENBLAS_CORETYPE unset and set to Haswell.
// Usage: gemm [--model gpt2-124m] [--rows B*T]
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../lib/backend/cpu/gemm.hpp"
#include "llmkit/backend.hpp"
#include "llmkit/model.hpp"

using namespace llmkit;

namespace {

using Kernel = std::function<void(bool, bool, int, int, int, const float*, int, const float*, int, float*, int)>;

// BLIS's typed API, found at run time: bli_sgemm(transa, transb, m, n, k, alpha, a, rsa, csa, b,
// rsb, csb, beta, c, rsc, csc) with BLIS_TRANSPOSE = 8; row-major is row stride ld, column stride 1.
using BliSgemm = void (*)(int, int, long, long, long, const float*, const float*, long, long, const float*, long,
                          long, const float*, float*, long, long);
BliSgemm find_blis() {
  for (const char* lib : {"libblis.so.4", "libblis.so"}) {
    if (void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL))
      if (void* f = dlsym(h, "bli_sgemm")) return reinterpret_cast<BliSgemm>(f);
  }
  return nullptr;
}

double seconds(const std::function<void()>& f) {
  f();  // warm-up: packing buffers, JIT
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// The CPU backend's tiling (cpu::gemm_tile) around any kernel.
void tiled(const Kernel& k, bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
           float* C, int ldc) {
  int tm = 0, tn = 0;
  cpu::gemm_tile(M, N, &tm, &tn);
  const int cols = (N + tn - 1) / tn, tiles = ((M + tm - 1) / tm) * cols;
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(2, std::min(tiles, omp_get_max_threads())))
  for (int t = 0; t < tiles; ++t) {
    const int m0 = (t / cols) * tm, n0 = (t % cols) * tn;
    k(ta, tb, std::min(tm, M - m0), std::min(tn, N - n0), K, ta ? A + m0 : A + static_cast<size_t>(m0) * lda, lda,
      tb ? B + static_cast<size_t>(n0) * ldb : B + n0, ldb, C + static_cast<size_t>(m0) * ldc + n0, ldc);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "gpt2-124m";
  int rows = 256;  // B*T of bench/pretrain.sh's gpt2-124m run (B=4, T=64)
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--rows")) rows = std::stoi(argv[i + 1]);
  }
  const ModelConfig c = ModelConfig::load(model);
  const int C = c.dim, F = c.ffn_dim, V = c.padded_vocab(), QKV = (c.heads + 2 * c.kv_heads) * c.head_dim();
  struct Shape {
    std::string name;
    bool ta, tb;
    int M, N, K;
  };
  // Forward out = inp w^T (NT), input gradient dout w (NN), weight gradient dout^T inp (TN).
  std::vector<Shape> shapes = {{"qkv", false, true, rows, QKV, C},        {"attn proj", false, true, rows, C, C},
                               {"mlp up", false, true, rows, F, C},       {"mlp down", false, true, rows, C, F},
                               {"lm head", false, true, rows, V, C},      {"mlp up dinp", false, false, rows, C, F},
                               {"lm head dinp", false, false, rows, C, V}, {"mlp up dw", true, false, F, C, rows},
                               {"lm head dw", true, false, V, C, rows},   {"1024^3", false, true, 1024, 1024, 1024}};
  struct Lib {
    std::string name;
    Kernel serial;  // one call; threads itself outside a parallel region
  };
  std::vector<Lib> libs;
  for (auto k : {cpu::GemmKernel::onednn, cpu::GemmKernel::openblas})
    libs.push_back({cpu::kernel_name(k), [k](bool ta, bool tb, int M, int N, int K, const float* A, int lda,
                                            const float* B, int ldb, float* Cm, int ldc) {
                      cpu::sgemm_with(k, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, Cm, ldc);
                    }});
  if (BliSgemm bli = find_blis())
    libs.push_back({"blis", [bli](bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B,
                                  int ldb, float* Cm, int ldc) {
                      const float one = 1.0f, zero = 0.0f;
                      bli(ta ? 8 : 0, tb ? 8 : 0, M, N, K, &one, A, lda, 1, B, ldb, 1, &zero, Cm, ldc, 1);
                    }});
  std::printf("%s, %d rows, %d threads; the CPU backend uses %s\n", model.c_str(), rows, omp_get_max_threads(),
              make_cpu_backend()->matmul_kernel().c_str());
  std::printf("GFLOP/s, tiled as llmkit runs it / the library's own threading%s\n",
              find_blis() ? "" : " (BLIS: not installed, skipped)");
  std::printf("%-13s %5s %5s %5s ", "product", "M", "N", "K");
  for (const Lib& l : libs) std::printf(" %15s", l.name.c_str());
  std::printf("\n");
  std::vector<double> total_tiled(libs.size()), total_own(libs.size());
  double flops_all = 0;
  for (const Shape& s : shapes) {
    const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    std::vector<float> A(static_cast<size_t>(s.M) * s.K), B(static_cast<size_t>(s.N) * s.K), Cm(static_cast<size_t>(s.M) * s.N);
    for (size_t i = 0; i < A.size(); ++i) A[i] = static_cast<float>(i % 13) * 0.01f - 0.06f;
    for (size_t i = 0; i < B.size(); ++i) B[i] = static_cast<float>(i % 7) * 0.01f - 0.03f;
    const double flops = 2.0 * s.M * s.N * s.K;
    if (s.name != "1024^3") flops_all += flops;
    std::printf("%-13s %5d %5d %5d ", s.name.c_str(), s.M, s.N, s.K);
    for (size_t l = 0; l < libs.size(); ++l) {
      const double t1 = seconds([&] { tiled(libs[l].serial, s.ta, s.tb, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, Cm.data(), s.N); });
      const double t2 = seconds([&] { libs[l].serial(s.ta, s.tb, s.M, s.N, s.K, A.data(), lda, B.data(), ldb, Cm.data(), s.N); });
      if (s.name != "1024^3") total_tiled[l] += t1, total_own[l] += t2;
      std::printf(" %7.0f / %5.0f", flops / t1 / 1e9, flops / t2 / 1e9);
    }
    std::printf("\n");
  }
  std::printf("%-31s", "all but 1024^3, time-weighted");
  for (size_t l = 0; l < libs.size(); ++l) std::printf(" %7.0f / %5.0f", flops_all / total_tiled[l] / 1e9, flops_all / total_own[l] / 1e9);
  std::printf("\n");
  for (size_t l = 1; l < libs.size(); ++l)
    std::printf("%s tiled is %.2fx %s tiled on these products\n", libs[0].name.c_str(), total_tiled[l] / total_tiled[0],
                libs[l].name.c_str());
  return 0;
}
