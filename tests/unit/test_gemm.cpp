// The CPU backend's matrix multiply (lib/backend/cpu/gemm.cpp) and the promise built on it: the
// same bits for any thread count, in a product and in a whole training step.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "../../lib/backend/cpu/gemm.hpp"
#include "llmkit/backend.hpp"
#include "llmkit/model.hpp"
#include "util.hpp"

using namespace llmkit;
using test::with_threads;

namespace {

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}


struct Shape {
  bool ta, tb;
  int M, N, K;
};
// The models' products at small sizes and odd edges: forward (NT), input gradient (NN), weight
// gradient (TN), a decode step's few rows, and shapes that cut into many tiles.
const Shape kShapes[] = {{false, true, 64, 300, 48},  {false, false, 96, 48, 300}, {true, false, 300, 48, 96},
                         {false, true, 3, 700, 64},   {false, true, 257, 1030, 40}, {true, false, 530, 130, 257},
                         {false, false, 1, 1, 5},     {true, true, 33, 65, 17}};

}  // namespace

TEST_CASE("gemm: every kernel passes its self-check and reports itself", "[gemm]") {
  for (auto k : {cpu::GemmKernel::onednn, cpu::GemmKernel::openblas, cpu::GemmKernel::reference}) {
    std::string why;
    INFO(cpu::kernel_name(k));
    CHECK(cpu::gemm_self_check(k, &why));
    CHECK(why.empty());
  }
  CHECK_FALSE(cpu::gemm_kernel_description().empty());
  CHECK(make_cpu_backend()->matmul_kernel() == cpu::gemm_kernel_description());
}

TEST_CASE("gemm: tiles are a function of the shape, and cover the output", "[gemm]") {
  int tm = 0, tn = 0;
  cpu::gemm_tile(4096, 2304, &tm, &tn);
  CHECK((tm == 128 && tn == 512));
  cpu::gemm_tile(256, 768, &tm, &tn);  // 2 x 2 tiles of 128 x 512 are too few: smaller ones
  CHECK(((256 + tm - 1) / tm) * ((768 + tn - 1) / tn) >= 16);
  cpu::gemm_tile(1, 64, &tm, &tn);
  CHECK((tm >= 1 && tn >= 64));
  for (int threads : {1, 2, 3}) {
    int a = 0, b = 0;
    with_threads(threads, [&] { cpu::gemm_tile(300, 1030, &a, &b); });
    int c = 0, d = 0;
    cpu::gemm_tile(300, 1030, &c, &d);
    CHECK((a == c && b == d));
  }
}

TEST_CASE("gemm: products equal sums in double, and are the same bits for 1, 2 and 3 threads", "[gemm]") {
  uint64_t seed = 1;
  for (const Shape& s : kShapes) {
    INFO((s.ta ? "T" : "N") << (s.tb ? "T" : "N") << " " << s.M << "x" << s.N << "x" << s.K);
    const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    const auto A = random_floats(static_cast<size_t>(s.ta ? s.K : s.M) * lda, seed++);
    const auto B = random_floats(static_cast<size_t>(s.tb ? s.N : s.K) * ldb, seed++);
    const auto C0 = random_floats(static_cast<size_t>(s.M) * s.N, seed++);
    std::vector<std::vector<float>> out;
    for (int threads : {1, 2, 3}) {
      std::vector<float> C = C0;  // beta 1: the backward's accumulation
      with_threads(threads, [&] {
        cpu::sgemm(s.ta, s.tb, s.M, s.N, s.K, 0.5f, A.data(), lda, B.data(), ldb, 1.0f, C.data(), s.N);
      });
      out.push_back(C);
    }
    CHECK(std::memcmp(out[0].data(), out[1].data(), out[0].size() * 4) == 0);
    CHECK(std::memcmp(out[0].data(), out[2].data(), out[0].size() * 4) == 0);
    double worst = 0;
    for (int i = 0; i < s.M; ++i)
      for (int j = 0; j < s.N; ++j) {
        double sum = 0, mag = 0;
        for (int p = 0; p < s.K; ++p) {
          const double a = s.ta ? A[static_cast<size_t>(p) * lda + i] : A[static_cast<size_t>(i) * lda + p];
          const double b = s.tb ? B[static_cast<size_t>(j) * ldb + p] : B[static_cast<size_t>(p) * ldb + j];
          sum += a * b;
          mag += std::fabs(a * b);
        }
        const size_t at = static_cast<size_t>(i) * s.N + j;
        worst = std::max(worst, std::fabs(out[0][at] - (0.5 * sum + C0[at])) / (0.5 * mag + std::fabs(C0[at])));
      }
    CHECK(worst < 1e-6);
  }
}

TEST_CASE("cpu backend: a training step's loss and gradients are the same bits for 1, 2 and 3 threads", "[gemm]") {
  ModelConfig c;
  c.family = ModelConfig::Family::llama;
  c.vocab_size = 301;
  c.dim = 64;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.ffn_dim = 160;
  c.max_seq = 96;
  const int B = 3, T = 96;
  std::vector<int32_t> tok(static_cast<size_t>(B) * T), tgt(tok.size());
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < tok.size(); ++i) {
    tok[i] = static_cast<int32_t>(rng() % 301);
    tgt[i] = static_cast<int32_t>(rng() % 301);
  }
  std::vector<std::vector<float>> grads;
  std::vector<double> losses, norms;
  for (int threads : {1, 2, 3}) {
    with_threads(threads, [&] {
      auto be = make_cpu_backend();
      Model m(c, *be);
      m.init(5);
      m.zero_grad();
      m.forward(tok.data(), tgt.data(), B, T);
      losses.push_back(m.mean_loss());
      m.backward_mean();
      grads.emplace_back(m.grads(), m.grads() + m.num_params());
      norms.push_back(be->sum_squares(m.grads(), m.num_params()));
    });
  }
  for (int i : {1, 2}) {
    CHECK(losses[static_cast<size_t>(i)] == losses[0]);
    CHECK(norms[static_cast<size_t>(i)] == norms[0]);
    CHECK(std::memcmp(grads[static_cast<size_t>(i)].data(), grads[0].data(), grads[0].size() * 4) == 0);
  }
}
