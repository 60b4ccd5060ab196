// Paged attention's row kernels (lib/backend/cpu/attn_rows.hpp): every instruction set this CPU
// has gives the portable kernels' bits, and those are the inner products and weighted sums.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "../../lib/backend/cpu/attn_rows.hpp"
#include "util.hpp"

using namespace llmkit;

TEST_CASE("attention rows: every instruction set gives the portable bits, and those are the sums", "[attention]") {
  decltype(&cpu::attn_scores) scores0, scores;
  decltype(&cpu::attn_values) values0, values;
  REQUIRE(cpu::attn_kernels_for(0, &scores0, &values0));
  int checked = 0;
  for (int hd : {8, 20, 64, 80, 128})
    for (int n : {1, 15, 16, 17, 45})
      for (int R = 1; R <= cpu::kAttnRows; ++R) {
        const auto q = test::randn(static_cast<size_t>(R) * hd, 11 + hd + n), k = test::randn(static_cast<size_t>(n) * hd, 12 + n),
                   v = test::randn(static_cast<size_t>(n) * hd, 13 + n);
        const float* Q[cpu::kAttnRows];
        std::vector<const float*> K(n), V(n);
        for (int r = 0; r < R; ++r) Q[r] = q.data() + static_cast<size_t>(r) * hd;
        for (int j = 0; j < n; ++j) K[j] = k.data() + static_cast<size_t>(j) * hd, V[j] = v.data() + static_cast<size_t>(j) * hd;
        int keys[cpu::kAttnRows];  // causal rows: each sees one key more than the one before
        for (int r = 0; r < R; ++r) keys[r] = std::max(1, n - (R - 1 - r));
        std::vector<float> s0(static_cast<size_t>(R) * n), o0(static_cast<size_t>(R) * hd);
        float* S0[cpu::kAttnRows];
        float* O0[cpu::kAttnRows];
        const float* P0[cpu::kAttnRows];
        for (int r = 0; r < R; ++r) S0[r] = s0.data() + static_cast<size_t>(r) * n, O0[r] = o0.data() + static_cast<size_t>(r) * hd, P0[r] = S0[r];
        scores0(R, Q, K.data(), n, hd, 0.125f, S0);
        values0(R, O0, P0, V.data(), keys, hd);
        for (int r = 0; r < R; ++r) {
          for (int j = 0; j < n; ++j) {
            double d = 0, a = 0;
            for (int i = 0; i < hd; ++i) d += double(Q[r][i]) * K[j][i], a += std::fabs(double(Q[r][i]) * K[j][i]);
            REQUIRE(std::fabs(S0[r][j] - 0.125 * d) <= 1e-6 * a);
          }
          for (int i = 0; i < hd; ++i) {
            double o = 0, a = 0;
            for (int j = 0; j < keys[r]; ++j) o += double(P0[r][j]) * V[j][i], a += std::fabs(double(P0[r][j]) * V[j][i]);
            REQUIRE(std::fabs(O0[r][i] - o) <= 1e-6 * a);
          }
        }
        for (int isa = 1; isa <= 2; ++isa) {
          if (!cpu::attn_kernels_for(isa, &scores, &values)) continue;
          std::vector<float> s1(s0.size(), -1.0f), o1(o0.size(), -1.0f);
          float* S1[cpu::kAttnRows];
          float* O1[cpu::kAttnRows];
          for (int r = 0; r < R; ++r) S1[r] = s1.data() + static_cast<size_t>(r) * n, O1[r] = o1.data() + static_cast<size_t>(r) * hd;
          scores(R, Q, K.data(), n, hd, 0.125f, S1);
          values(R, O1, P0, V.data(), keys, hd);
          INFO("isa " << isa << " hd " << hd << " n " << n << " R " << R);
          REQUIRE(std::memcmp(s0.data(), s1.data(), s0.size() * sizeof(float)) == 0);
          REQUIRE(std::memcmp(o0.data(), o1.data(), o0.size() * sizeof(float)) == 0);
          ++checked;
        }
        // One row alone gives the bits it has among others.
        float s_one[64], o_one[128];
        float* S_one[1] = {s_one};
        float* O_one[1] = {o_one};
        const float* P_one[1] = {P0[R - 1]};
        cpu::attn_scores(1, Q + R - 1, K.data(), n, hd, 0.125f, S_one);
        cpu::attn_values(1, O_one, P_one, V.data(), keys + R - 1, hd);
        REQUIRE(std::memcmp(s_one, S0[R - 1], n * sizeof(float)) == 0);
        REQUIRE(std::memcmp(o_one, O0[R - 1], hd * sizeof(float)) == 0);
      }
  WARN("instruction-set comparisons: " << checked);
}
