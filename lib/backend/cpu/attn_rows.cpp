// See attn_rows.hpp. Three versions of the score and value kernels, picked once by the CPU:
// the same chains of fused multiply-adds in each, so the same bits.
#include "attn_rows.hpp"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace llmkit::cpu {
namespace {

#define LLMKIT_ATTN_AVX2 __attribute__((target("avx2,fma")))
#define LLMKIT_ATTN_AVX512 __attribute__((target("avx512f,avx2,fma")))

inline float fold16(float* l) {
  for (int w = 8; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) l[i] += l[i + w];
  return l[0];
}

void scores_scalar(int R, const float* const* Q, const float* const* K, int n, int hd, float scale, float* const* S) {
  for (int j = 0; j < n; ++j)
    for (int r = 0; r < R; ++r) {
      float l[16] = {};
      for (int i = 0; i < hd; ++i) l[i % 16] = std::fma(Q[r][i], K[j][i], l[i % 16]);
      S[r][j] = fold16(l) * scale;
    }
}

// Lanes 0-7 in lo, 8-15 in hi, folded as fold16 does.
LLMKIT_ATTN_AVX2 inline float fold_avx2(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

template <int R>
LLMKIT_ATTN_AVX2 void scores_avx2(const float* const* Q, const float* const* K, int n, int hd, float scale, float* const* S) {
  for (int j = 0; j < n; ++j) {
    __m256 lo[R], hi[R];
    for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= hd; i += 16) {
      const __m256 k0 = _mm256_loadu_ps(K[j] + i), k1 = _mm256_loadu_ps(K[j] + i + 8);
      for (int r = 0; r < R; ++r) {
        lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(Q[r] + i), k0, lo[r]);
        hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(Q[r] + i + 8), k1, hi[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      if (i < hd) {  // the tail: lanes past hd add nothing
        alignas(32) float l[16];
        _mm256_store_ps(l, lo[r]);
        _mm256_store_ps(l + 8, hi[r]);
        for (int t = i; t < hd; ++t) l[t - i] = std::fma(Q[r][t], K[j][t], l[t - i]);
        lo[r] = _mm256_load_ps(l), hi[r] = _mm256_load_ps(l + 8);
      }
      S[r][j] = fold_avx2(lo[r], hi[r]) * scale;
    }
  }
}

// Sixteen keys' lane vectors a[0..16) folded at once, in fold16's order: halves, then quarters
// (128-bit chunks), pairs and single lanes of several keys added side by side. Lane 4k + s of
// the last sum is key 4s + k; the permutation puts key j in lane j.
LLMKIT_ATTN_AVX512 inline __m512 fold16_keys(const __m512* a) {
  __m512 b1[8], b2[4], b3[2];
  for (int p = 0; p < 8; ++p)
    b1[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0x44), _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], 0xee));
  for (int p = 0; p < 4; ++p)
    b2[p] = _mm512_add_ps(_mm512_shuffle_f32x4(b1[2 * p], b1[2 * p + 1], 0x88), _mm512_shuffle_f32x4(b1[2 * p], b1[2 * p + 1], 0xdd));
  for (int p = 0; p < 2; ++p)
    b3[p] = _mm512_add_ps(_mm512_shuffle_ps(b2[2 * p], b2[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_ps(b2[2 * p], b2[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(b3[0], b3[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(b3[0], b3[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i key_lane = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(key_lane, r);
}

template <int R>
LLMKIT_ATTN_AVX512 void scores_avx512(const float* const* Q, const float* const* K, int n, int hd, float scale, float* const* S) {
  alignas(64) __m512 lanes[R][16];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < 16; ++k) lanes[r][k] = _mm512_setzero_ps();
  const __m512 sc = _mm512_set1_ps(scale);
  const float* q[R];
  for (int r = 0; r < R; ++r) q[r] = Q[r];
  for (int j0 = 0; j0 < n; j0 += 16) {
    const int m = std::min(16, n - j0);
    for (int k = 0; k < m; ++k) {
      const float* key = K[j0 + k];
      __m512 acc[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
      int i = 0;
      for (; i + 16 <= hd; i += 16) {
        const __m512 kv = _mm512_loadu_ps(key + i);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(q[r] + i), kv, acc[r]);
      }
      if (i < hd) {  // masked lanes keep their sums
        const __mmask16 mk = static_cast<__mmask16>((1u << (hd - i)) - 1);
        const __m512 kv = _mm512_maskz_loadu_ps(mk, key + i);
        for (int r = 0; r < R; ++r) acc[r] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(mk, q[r] + i), kv, acc[r], mk);
      }
      for (int r = 0; r < R; ++r) lanes[r][k] = acc[r];
    }
    const __mmask16 out = m == 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << m) - 1);
    for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(S[r] + j0, out, _mm512_mul_ps(fold16_keys(lanes[r]), sc));
  }
}

// The keys past the rows' common count, one row and key at a time (the same chains).
template <typename Axpy>
void values_tail(int R, float* const* O, const float* const* P, const float* const* V, const int* keys, int common,
                 int hd, Axpy axpy) {
  for (int r = 0; r < R; ++r)
    for (int j = common; j < keys[r]; ++j) axpy(O[r], P[r][j], V[j], hd);
}

void axpy_scalar(float* o, float p, const float* v, int hd) {
  for (int i = 0; i < hd; ++i) o[i] = std::fma(p, v[i], o[i]);
}

void values_scalar(int R, float* const* O, const float* const* P, const float* const* V, const int* keys, int hd) {
  for (int r = 0; r < R; ++r) std::fill(O[r], O[r] + hd, 0.0f);
  const int common = *std::min_element(keys, keys + R);
  for (int j = 0; j < common; ++j)
    for (int r = 0; r < R; ++r) axpy_scalar(O[r], P[r][j], V[j], hd);
  values_tail(R, O, P, V, keys, common, hd, axpy_scalar);
}

LLMKIT_ATTN_AVX512 void axpy_avx512(float* o, float p, const float* v, int hd) {
  const __m512 pv = _mm512_set1_ps(p);
  for (int i = 0; i < hd; i += 16) {
    const __mmask16 m = hd - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (hd - i)) - 1);
    _mm512_mask_storeu_ps(o + i, m, _mm512_fmadd_ps(pv, _mm512_maskz_loadu_ps(m, v + i), _mm512_maskz_loadu_ps(m, o + i)));
  }
}

// 32 output values of R rows held in registers over all common keys (masked past hd).
template <int R>
LLMKIT_ATTN_AVX512 void values_avx512(float* const* O, const float* const* P, const float* const* V, const int* keys, int hd) {
  const int common = *std::min_element(keys, keys + R);
  const float* p[R];
  for (int r = 0; r < R; ++r) p[r] = P[r];
  for (int i0 = 0; i0 < hd; i0 += 32) {
    __mmask16 mask[2];
    for (int v = 0; v < 2; ++v) {
      const int left = hd - i0 - 16 * v;
      mask[v] = left >= 16 ? static_cast<__mmask16>(0xffff) : left > 0 ? static_cast<__mmask16>((1u << left) - 1) : 0;
    }
    __m512 acc[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int j = 0; j < common; ++j) {
      const __m512 x0 = _mm512_maskz_loadu_ps(mask[0], V[j] + i0), x1 = _mm512_maskz_loadu_ps(mask[1], V[j] + i0 + 16);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 pr = _mm512_set1_ps(p[r][j]);
        acc[r][0] = _mm512_fmadd_ps(pr, x0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(pr, x1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(O[r] + i0, mask[0], acc[r][0]);
      _mm512_mask_storeu_ps(O[r] + i0 + 16, mask[1], acc[r][1]);
    }
  }
  values_tail(R, O, P, V, keys, common, hd, axpy_avx512);
}

LLMKIT_ATTN_AVX2 void axpy_avx2(float* o, float p, const float* v, int hd) {
  const __m256 pv = _mm256_set1_ps(p);
  int i = 0;
  for (; i + 8 <= hd; i += 8) _mm256_storeu_ps(o + i, _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + i), _mm256_loadu_ps(o + i)));
  for (; i < hd; ++i) o[i] = std::fma(p, v[i], o[i]);
}

// Up to 32 output values of R rows in registers (whole groups of 8; the rest by axpy_avx2).
template <int R>
LLMKIT_ATTN_AVX2 void values_avx2(float* const* O, const float* const* P, const float* const* V, const int* keys, int hd) {
  const int common = *std::min_element(keys, keys + R), whole = hd / 8 * 8;
  for (int r = 0; r < R; ++r) std::fill(O[r] + whole, O[r] + hd, 0.0f);
  for (int i0 = 0; i0 < whole; i0 += 32) {
    const int nv = std::min(32, whole - i0) / 8;
    __m256 acc[R][4];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < 4; ++v) acc[r][v] = _mm256_setzero_ps();
    for (int j = 0; j < common; ++j) {
      __m256 x[4];
      for (int v = 0; v < nv; ++v) x[v] = _mm256_loadu_ps(V[j] + i0 + 8 * v);
      for (int r = 0; r < R; ++r) {
        const __m256 p = _mm256_set1_ps(P[r][j]);
        for (int v = 0; v < nv; ++v) acc[r][v] = _mm256_fmadd_ps(p, x[v], acc[r][v]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < nv; ++v) _mm256_storeu_ps(O[r] + i0 + 8 * v, acc[r][v]);
  }
  for (int j = 0; j < common; ++j)  // values past the last group of 8
    for (int r = 0; r < R; ++r)
      for (int i = whole; i < hd; ++i) O[r][i] = std::fma(P[r][j], V[j][i], O[r][i]);
  values_tail(R, O, P, V, keys, common, hd, axpy_avx2);
}

using ScoresFn = decltype(&attn_scores);
using ValuesFn = decltype(&attn_values);

template <void (*... F)(const float* const*, const float* const*, int, int, float, float* const*)>
void scores_by_rows(int R, const float* const* Q, const float* const* K, int n, int hd, float scale, float* const* S) {
  static constexpr std::array<void (*)(const float* const*, const float* const*, int, int, float, float* const*), kAttnRows> f{F...};
  f[R - 1](Q, K, n, hd, scale, S);
}
template <void (*... F)(float* const*, const float* const*, const float* const*, const int*, int)>
void values_by_rows(int R, float* const* O, const float* const* P, const float* const* V, const int* keys, int hd) {
  static constexpr std::array<void (*)(float* const*, const float* const*, const float* const*, const int*, int), kAttnRows> f{F...};
  f[R - 1](O, P, V, keys, hd);
}

bool isa_available(int isa) {
  __builtin_cpu_init();
  if (isa == 2) return __builtin_cpu_supports("avx512f");
  if (isa == 1) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return isa == 0;
}

void kernels_of(int isa, ScoresFn* scores, ValuesFn* values) {
  if (isa == 2) {
    *scores = scores_by_rows<scores_avx512<1>, scores_avx512<2>, scores_avx512<3>, scores_avx512<4>>;
    *values = values_by_rows<values_avx512<1>, values_avx512<2>, values_avx512<3>, values_avx512<4>>;
  } else if (isa == 1) {
    *scores = scores_by_rows<scores_avx2<1>, scores_avx2<2>, scores_avx2<3>, scores_avx2<4>>;
    *values = values_by_rows<values_avx2<1>, values_avx2<2>, values_avx2<3>, values_avx2<4>>;
  } else {
    *scores = scores_scalar;
    *values = values_scalar;
  }
}

struct Best {
  ScoresFn scores;
  ValuesFn values;
};

const Best& best() {
  static const Best b = [] {
    Best k{};
    kernels_of(isa_available(2) ? 2 : isa_available(1) ? 1 : 0, &k.scores, &k.values);
    return k;
  }();
  return b;
}

}  // namespace

void attn_scores(int R, const float* const* Q, const float* const* K, int n, int hd, float scale, float* const* S) {
  best().scores(R, Q, K, n, hd, scale, S);
}
void attn_values(int R, float* const* O, const float* const* P, const float* const* V, const int* keys, int hd) {
  best().values(R, O, P, V, keys, hd);
}

bool attn_kernels_for(int isa, decltype(&attn_scores)* scores, decltype(&attn_values)* values) {
  if (!isa_available(isa)) return false;
  kernels_of(isa, scores, values);
  return true;
}

float attn_sum(const float* x, int n) {
  float l[16] = {};
  int j = 0;
  for (; j + 16 <= n; j += 16)
    for (int i = 0; i < 16; ++i) l[i] += x[j + i];
  for (int i = 0; j + i < n; ++i) l[i] += x[j + i];
  return fold16(l);
}

}  // namespace llmkit::cpu
