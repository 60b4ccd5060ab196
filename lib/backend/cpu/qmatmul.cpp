// Matrix multiply on ggml blocks: see qmatmul.hpp. The block layouts are those of llmkit/ggml.hpp
// (byte offsets below); the activations' blocks are this file's own, laid out as ggml's
// block_q8_0, block_q8_1 and block_q8_K:
//   A8_0  d (fp16), 32 x int8                       34 bytes; a row of them is followed by
//         each block's d as a float, then d * sum(q) as a float (exact: an 11-bit d times a
//         sum below 2^12), for the AVX-512 kernels

//   A8_1  d (fp16), s = d * sum(q) (fp16), 32 x int8  36 bytes
//   A8_K  d (fp32), 256 x int8, 16 x int16 sums of 16  292 bytes
#include "qmatmul.hpp"

#include <immintrin.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <utility>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../quant/ggml_value.hpp"
#include "gemm.hpp"
#include "llmkit/error.hpp"

// GCC 12's AVX-512 headers build registers from _mm512_undefined_*, which -Wuninitialized
// reports at each use (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace llmkit::cpu {

namespace {

using ggml::Type;

enum class Act { a8_0, a8_1, a8_k };

Act act_of(Type t) {
  switch (t) {
    case Type::q8_0:
    case Type::q4_0:
    case Type::q5_0: return Act::a8_0;
    case Type::q4_1:
    case Type::q5_1: return Act::a8_1;
    case Type::q4_k:
    case Type::q5_k:
    case Type::q6_k: return Act::a8_k;
    default: throw Error("", std::string("internal: no quantized matmul for ") + ggml::traits(t).name);
  }
}

size_t act_block_bytes(Act a) { return a == Act::a8_0 ? 34 : a == Act::a8_1 ? 36 : 292; }
int act_block(Act a) { return a == Act::a8_k ? 256 : 32; }

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return ggml::fp16_to_fp32(h);
}
inline float f32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}
inline void put16(uint8_t* p, float f) {
  const uint16_t h = ggml::fp32_to_fp16(f);
  std::memcpy(p, &h, 2);
}

// ggml's nearest_int: ties to even.
inline int nearest_int(float f) {
  const float v = f + 12582912.f;
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// ---- Activations (ggml's quantize_row_q8_0_ref, _q8_1_ref, _q8_K_ref) ----

void quantize_a8_32(const float* x, uint8_t* y, int nb, bool with_sum) {
  const size_t bytes = with_sum ? 36 : 34;
  for (int i = 0; i < nb; ++i, x += 32, y += bytes) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f, id = d != 0 ? 1.0f / d : 0.0f;
    put16(y, d);
    int8_t* q = reinterpret_cast<int8_t*>(y + (with_sum ? 4 : 2));
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      q[j] = static_cast<int8_t>(std::round(x[j] * id));
      sum += q[j];
    }
    if (with_sum) put16(y + 2, static_cast<float>(sum) * d);
  }
}

void quantize_a8_k(const float* x, uint8_t* y, int nb) {
  for (int i = 0; i < nb; ++i, x += 256, y += 292) {
    float max = 0, amax = 0;
    for (int j = 0; j < 256; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    int8_t* q = reinterpret_cast<int8_t*>(y + 4);
    int16_t sums[16] = {};
    if (amax == 0) {
      std::memset(y, 0, 292);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < 256; ++j) q[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < 16; ++j) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += q[16 * j + l];
      sums[j] = static_cast<int16_t>(s);
    }
    const float d = 1 / iscale;
    std::memcpy(y, &d, 4);
    std::memcpy(y + 260, sums, 32);
  }
}

// ---- Portable kernels: each weight block unpacked to small integers, exact integer sums ----

// A 32-value block's quantized values (Q8_0, Q4_0, Q5_0 signed around 0; Q4_1, Q5_1 unsigned).
void unpack32(Type t, const uint8_t* x, int* q) {
  switch (t) {
    case Type::q8_0:
      for (int j = 0; j < 32; ++j) q[j] = static_cast<int8_t>(x[2 + j]);
      return;
    case Type::q4_0:
    case Type::q4_1: {
      const uint8_t* qs = x + (t == Type::q4_0 ? 2 : 4);
      const int off = t == Type::q4_0 ? 8 : 0;
      for (int j = 0; j < 16; ++j) q[j] = (qs[j] & 0xF) - off, q[j + 16] = (qs[j] >> 4) - off;
      return;
    }
    default: {  // Q5_0, Q5_1
      const bool min = t == Type::q5_1;
      uint32_t qh;
      std::memcpy(&qh, x + (min ? 4 : 2), 4);
      const uint8_t* qs = x + (min ? 8 : 6);
      const int off = min ? 0 : 16;
      for (int j = 0; j < 16; ++j) {
        q[j] = ((qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1) << 4)) - off;
        q[j + 16] = ((qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4)) - off;
      }
    }
  }
}

using ggml::layout::scale_min_k4;  // the 6-bit scale and min of a Q4_K/Q5_K group

float dot_portable(Type t, int n, const uint8_t* w, const uint8_t* a) {
  float sum = 0;
  const size_t wb = ggml::traits(t).bytes;
  const Act act = act_of(t);
  const int nb = n / act_block(act);
  const size_t ab = act_block_bytes(act);
  for (int i = 0; i < nb; ++i, w += wb, a += ab) {
    if (act != Act::a8_k) {
      int q[32], s = 0;
      unpack32(t, w, q);
      const int8_t* y = reinterpret_cast<const int8_t*>(a + (act == Act::a8_1 ? 4 : 2));
      for (int j = 0; j < 32; ++j) s += q[j] * y[j];
      sum += f16(w) * f16(a) * static_cast<float>(s);
      if (act == Act::a8_1) sum += f16(w + 2) * f16(a + 2);
      continue;
    }
    const int8_t* y = reinterpret_cast<const int8_t*>(a + 4);
    int16_t bsums[16];
    std::memcpy(bsums, a + 260, 32);
    const float yd = f32(a);
    if (t == Type::q6_k) {
      const uint8_t* ql = w;
      const uint8_t* qh = w + 128;
      const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
      int q[256];
      for (int c = 0; c < 256; c += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; ++l) {
          q[c + l] = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          q[c + l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          q[c + l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          q[c + l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        }
      int sumi = 0;
      for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int l = 0; l < 16; ++l) s += q[16 * g + l] * y[16 * g + l];
        sumi += sc[g] * s;
      }
      sum += f16(w + 208) * yd * static_cast<float>(sumi);
      continue;
    }
    // Q4_K, Q5_K
    const bool five = t == Type::q5_k;
    const uint8_t* qh = w + 16;
    const uint8_t* qs = w + (five ? 48 : 16);
    int sumi = 0, summ = 0;
    for (int j = 0; j < 4; ++j) {
      for (int h = 0; h < 2; ++h) {
        const int g = 2 * j + h;
        int sc, m, s = 0;
        scale_min_k4(g, w + 4, sc, m);
        for (int l = 0; l < 32; ++l) {
          int q = h ? qs[32 * j + l] >> 4 : qs[32 * j + l] & 0xF;
          if (five) q |= ((qh[l] >> g) & 1) << 4;
          s += q * y[32 * g + l];
        }
        sumi += sc * s;
        summ += m * (bsums[2 * g] + bsums[2 * g + 1]);
      }
    }
    sum += f16(w) * yd * static_cast<float>(sumi) - f16(w + 2) * yd * static_cast<float>(summ);
  }
  return sum;
}

// ---- AVX2 kernels: one weight row against R activation rows ----

#define LLMKIT_AVX2 __attribute__((target("avx2,fma,f16c")))

LLMKIT_AVX2 inline float hsum8(__m256 x) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}
LLMKIT_AVX2 inline float hsum4(__m128 r) {
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}
LLMKIT_AVX2 inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
// How far ahead of a kernel's reads the weights are prefetched, in bytes: decoding streams each
// weight once, and the hardware prefetcher alone left the Q8_0 kernels at half the memory rate;
// on a Xeon (Sapphire Rapids) 6144 bytes ahead decoded llama-125m's Q8_0 at about 145 tokens/s at
// one thread where 3072 gave about 115 (best of three noisy runs each).
constexpr int kPrefetch = 6144;

// Signed bytes x . y, pairwise and again: 8 int32 sums as floats.
LLMKIT_AVX2 inline __m256 mul_sum_i8(__m256i x, __m256i y) {
  const __m256i dot = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot));
}

// Q8_0 and Q4_0 weights against A8_0.
template <Type T, int R>
LLMKIT_AVX2 void dot_q32_avx2(int nb, const uint8_t* w, const uint8_t* const* a, float* out) {
  constexpr size_t wb = T == Type::q8_0 ? 34 : 18;
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int i = 0; i < nb; ++i, w += wb) {
    _mm_prefetch(reinterpret_cast<const char*>(w + kPrefetch), _MM_HINT_T0);
    __m256i qx;
    if (T == Type::q8_0) {
      qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    } else {
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2));
      qx = _mm256_and_si256(_mm256_set1_epi8(0xF), _mm256_insertf128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1));
      qx = _mm256_sub_epi8(qx, _mm256_set1_epi8(8));
    }
    const float dw = h2f(w);
    for (int r = 0; r < R; ++r) {
      const uint8_t* y = a[r] + static_cast<size_t>(i) * 34;
      const __m256 q = mul_sum_i8(qx, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 2)));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * h2f(y)), q, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum8(acc[r]);
}

// Q4_K and Q5_K weights against A8_K.
template <int Bits, int R>
LLMKIT_AVX2 void dot_qk_asym_avx2(int nb, const uint8_t* w, const uint8_t* const* a, float* out) {
  constexpr size_t wb = Bits == 4 ? 144 : 176;
  const __m256i m4 = _mm256_set1_epi8(0xF);
  __m256 acc[R];
  __m128 accm[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps(), accm[r] = _mm_setzero_ps();
  for (int i = 0; i < nb; ++i, w += wb) {
    const float d = h2f(w), dmin = h2f(w + 2);
    uint32_t u[4];
    std::memcpy(u, w + 4, 12);
    u[3] = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
    const uint32_t aux = u[1] & 0x3f3f3f3f;
    u[1] = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
    u[2] = aux;
    u[0] &= 0x3f3f3f3f;
    const __m256i ms = _mm256_cvtepu8_epi16(_mm_set_epi32(static_cast<int>(u[3]), static_cast<int>(u[2]), static_cast<int>(u[1]),
                                                          static_cast<int>(u[0])));
    const __m128i sc128 = _mm256_extracti128_si256(ms, 0), mins = _mm256_extracti128_si256(ms, 1);
    const __m256i scales = _mm256_insertf128_si256(_mm256_castsi128_si256(sc128), sc128, 1);
    const uint8_t* q = w + (Bits == 4 ? 16 : 48);
    __m256i hbits = _mm256_setzero_si256();
    if (Bits == 5) hbits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16));
    __m256i sumi[R];
    for (int r = 0; r < R; ++r) sumi[r] = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i sl = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>(((4 * j + 1) << 8) | (4 * j))));
      const __m256i sh = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>(((4 * j + 3) << 8) | (4 * j + 2))));
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
      __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      if (Bits == 5) {
        const __m256i ml = _mm256_set1_epi8(static_cast<char>(1 << (2 * j))), mh = _mm256_set1_epi8(static_cast<char>(1 << (2 * j + 1)));
        const __m256i s16 = _mm256_set1_epi8(16);
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, ml), ml), s16));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, mh), mh), s16));
      }
      for (int r = 0; r < R; ++r) {
        const uint8_t* y = a[r] + static_cast<size_t>(i) * 292 + 4 + 64 * j;
        const __m256i pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y))));
        const __m256i ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 32))));
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(pl, ph));
      }
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* y = a[r] + static_cast<size_t>(i) * 292;
      float yd;
      std::memcpy(&yd, y, 4);
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 260));
      const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(bs, 0), _mm256_extracti128_si256(bs, 1));
      const __m128i prod = _mm_madd_epi16(mins, q8s);
      accm[r] = _mm_fmadd_ps(_mm_set1_ps(-yd * dmin), _mm_cvtepi32_ps(prod), accm[r]);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(yd * d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum8(acc[r]) + hsum4(accm[r]);
}

// Q6_K weights against A8_K: values 0..63 times the activations, minus 32 times the sums.
template <int R>
LLMKIT_AVX2 void dot_q6_k_avx2(int nb, const uint8_t* w, const uint8_t* const* a, float* out) {
  const __m256i m15 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int i = 0; i < nb; ++i, w += 210) {
    const float d = h2f(w + 208);
    const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192));
    __m256i sumi[R];
    for (int r = 0; r < R; ++r) sumi[r] = _mm256_setzero_si256();
    for (int j = 0; j < 2; ++j) {
      const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64 * j));
      const __m256i b2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64 * j + 32));
      const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 128 + 32 * j));
      __m256i qv[4];
      qv[0] = _mm256_or_si256(_mm256_and_si256(b1, m15), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
      qv[1] = _mm256_or_si256(_mm256_and_si256(b2, m15), _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(12)), 2));
      qv[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m15), _mm256_and_si256(hb, _mm256_set1_epi8(48)));
      qv[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m15),
                              _mm256_srli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(static_cast<char>(0xC0))), 2));
      __m256i sc[4];
      for (int k = 0; k < 4; ++k) {
        const int s = 8 * j + 2 * k;
        const __m128i pick = _mm_unpacklo_epi64(_mm_set1_epi8(static_cast<char>(s)), _mm_set1_epi8(static_cast<char>(s + 1)));
        sc[k] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
      }
      for (int r = 0; r < R; ++r) {
        const uint8_t* y = a[r] + static_cast<size_t>(i) * 292 + 4 + 128 * j;
        for (int k = 0; k < 4; ++k) {
          const __m256i p = _mm256_maddubs_epi16(qv[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 32 * k)));
          sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(sc[k], p));
        }
      }
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(scales);
    for (int r = 0; r < R; ++r) {
      const uint8_t* y = a[r] + static_cast<size_t>(i) * 292;
      float yd;
      std::memcpy(&yd, y, 4);
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + 260));
      const __m256i sub = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * yd), _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[r], sub)), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum8(acc[r]);
}

// Q8_0 and Q4_0 weights against A8_0 with AVX-512 VNNI: two blocks per 512-bit register, the
// products summed by vpdpbusd (unsigned |w| times the activations carrying w's sign).
#define LLMKIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))


// The weights as unsigned bytes u = q + o (Q8_0: its int8 + 128; Q4_0: the nibbles, o = 8), so
// that vpdpbusd multiplies them with the signed activations directly; sum (q - o) a is then
// sum u a - o sum a, and the second term comes from the activation row's trailer (d sum a per
// block, exact), one fused multiply-add per two blocks.
template <Type T>
LLMKIT_AVX512 inline __m512i q32_unsigned_pair(const uint8_t* w0, const uint8_t* w1) {
  if (T == Type::q8_0) {
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + 2))),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + 2)), 1);
    return _mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + 2))),
                                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + 2)), 1);
  const __m256i m = _mm256_set1_epi8(0xF);
  const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(t, m)), _mm256_and_si256(_mm256_srli_epi16(t, 4), m), 1);
  return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));  // block 0's values 0-15, 16-31, then block 1's
}

template <Type T, int R>
LLMKIT_AVX512 void dot_q32_avx512(int nb, const uint8_t* w, const uint8_t* const* a, float* out) {
  constexpr size_t wb = T == Type::q8_0 ? 34 : 18;
  constexpr float offset = T == Type::q8_0 ? 128.0f : 8.0f;
  const __m512i block_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  __m512 acc[R];
  __m128 corr[R];
  const float* da[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps(), corr[r] = _mm_setzero_ps();
    da[r] = reinterpret_cast<const float*>(a[r] + 34 * static_cast<size_t>(nb));  // then the sums at da + nb
  }
  int i = 0;
  for (; i + 2 <= nb; i += 2) {
    const uint8_t* w0 = w + wb * static_cast<size_t>(i);
    _mm_prefetch(reinterpret_cast<const char*>(w0 + kPrefetch), _MM_HINT_T0);
    const __m512i u = q32_unsigned_pair<T>(w0, w0 + wb);
    uint16_t h0, h1;
    std::memcpy(&h0, w0, 2);
    std::memcpy(&h1, w0 + wb, 2);
    const __m128 dw = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1));  // the two blocks' scales
    for (int r = 0; r < R; ++r) {
      const uint8_t* y0 = a[r] + static_cast<size_t>(i) * 34;
      const __m512i qy = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y0 + 2))),
                                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y0 + 36)), 1);
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, qy);
      const __m128 pair = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(da[r] + i)));
      const __m512 sc = _mm512_permutexvar_ps(block_of_lane, _mm512_castps128_ps512(_mm_mul_ps(dw, pair)));
      acc[r] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(dot), acc[r]);
      corr[r] = _mm_fmadd_ps(dw, _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(da[r] + nb + i))), corr[r]);
    }
  }
  float tail[R] = {};
  if (i < nb) {  // an odd last block: the same sums, 256 bits wide
    const uint8_t* w0 = w + wb * static_cast<size_t>(i);
    const __m256i u = _mm512_castsi512_si256(q32_unsigned_pair<T>(w0, w0));
    const float d = h2f(w0);
    for (int r = 0; r < R; ++r) {
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[r] + static_cast<size_t>(i) * 34 + 2));
      const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, qy);
      tail[r] = d * da[r][i] * hsum8(_mm256_cvtepi32_ps(dot)) - offset * d * da[r][nb + i];
    }
  }
  for (int r = 0; r < R; ++r) {
    const __m128 c = _mm_add_ss(corr[r], _mm_movehdup_ps(corr[r]));
    out[r] = _mm512_reduce_add_ps(acc[r]) - offset * _mm_cvtss_f32(c) + tail[r];
  }
}

using DotFn = void (*)(int nb, const uint8_t* w, const uint8_t* const* a, float* out);

template <template <int> class K>
struct Table {
  static constexpr DotFn fns[4] = {K<1>::f, K<2>::f, K<3>::f, K<4>::f};
};
template <int R> struct Q8_0K { static constexpr DotFn f = dot_q32_avx2<Type::q8_0, R>; };
template <int R> struct Q4_0K { static constexpr DotFn f = dot_q32_avx2<Type::q4_0, R>; };
template <int R> struct Q4_KK { static constexpr DotFn f = dot_qk_asym_avx2<4, R>; };
template <int R> struct Q5_KK { static constexpr DotFn f = dot_qk_asym_avx2<5, R>; };
template <int R> struct Q6_KK { static constexpr DotFn f = dot_q6_k_avx2<R>; };

template <int R> struct Q8_0Z { static constexpr DotFn f = dot_q32_avx512<Type::q8_0, R>; };
template <int R> struct Q4_0Z { static constexpr DotFn f = dot_q32_avx512<Type::q4_0, R>; };

// The AVX-512 kernel of a type for R rows, or null (the AVX2 one serves).
DotFn avx512_kernel(Type t, int R) {
  switch (t) {
    case Type::q8_0: return Table<Q8_0Z>::fns[R - 1];
    case Type::q4_0: return Table<Q4_0Z>::fns[R - 1];
    default: return nullptr;
  }
}

// The AVX2 kernel of a type for R rows, or null (the portable one serves).
DotFn avx2_kernel(Type t, int R) {
  switch (t) {
    case Type::q8_0: return Table<Q8_0K>::fns[R - 1];
    case Type::q4_0: return Table<Q4_0K>::fns[R - 1];
    case Type::q4_k: return Table<Q4_KK>::fns[R - 1];
    case Type::q5_k: return Table<Q5_KK>::fns[R - 1];
    case Type::q6_k: return Table<Q6_KK>::fns[R - 1];
    default: return nullptr;
  }
}

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

bool cpu_has_amx();

QKernel choose() {
  if (const char* e = std::getenv("LLMKIT_QKERNEL"); e && *e) {
    const std::string s = e;
    if (s == "portable") return QKernel::portable;
    if (s == "avx2") {
      if (!cpu_has_avx2()) throw Error("LLMKIT_QKERNEL", "avx2: this CPU has no AVX2, FMA and F16C");
      return QKernel::avx2;
    }
    if (s == "avx512") {
      if (!cpu_has_avx512()) throw Error("LLMKIT_QKERNEL", "avx512: this CPU has no AVX-512 F, BW, VL and VNNI");
      return QKernel::avx512;
    }
    if (s == "amx") {
      if (!cpu_has_amx()) throw Error("LLMKIT_QKERNEL", "amx: this CPU (or kernel) gives no AMX-INT8 tiles");
      return QKernel::amx;
    }
    throw Error("LLMKIT_QKERNEL", "'" + s + "': portable, avx2, avx512 or amx");
  }
  return cpu_has_amx() ? QKernel::amx : cpu_has_avx512() ? QKernel::avx512 : cpu_has_avx2() ? QKernel::avx2 : QKernel::portable;
}

// One weight row against R activation rows with kernel k: the kernels of a type, resolved once
// per matmul.
class RowDot {
 public:
  RowDot(QKernel k, Type t, int n) : t_(t), n_(n), nb_(n / act_block(act_of(t))) {
    for (int R = 1; R <= 4; ++R) {
      fns_[R - 1] = k == QKernel::avx512 || k == QKernel::amx ? avx512_kernel(t, R) : nullptr;
      if (!fns_[R - 1] && k != QKernel::portable) fns_[R - 1] = avx2_kernel(t, R);
    }
  }
  void operator()(const uint8_t* w, const uint8_t* const* a, int R, float* out) const {
    if (DotFn f = fns_[R - 1]) return f(nb_, w, a, out);
    for (int r = 0; r < R; ++r) out[r] = dot_portable(t_, n_, w, a[r]);
  }

 private:
  Type t_;
  int n_, nb_;
  DotFn fns_[4];
};

// Where the CPU has no AVX-512 VNNI, batches of this many rows or more (prompt processing,
// scoring) are multiplied in fp32: each slice of 64 weight rows dequantized once into a
// thread's scratch and multiplied with all the rows by sgemm, whose tiles beat the integer dot
// products once a weight is read for many rows.
constexpr int kSgemmRows = 32;

void qmatmul_sgemm(float* y, const float* x, Type type, const void* w, size_t row_bytes, const float* bias, int N, int C, int OC) {
  constexpr int kSlice = 64;
  const int slices = (OC + kSlice - 1) / kSlice;
  const uint8_t* W = static_cast<const uint8_t*>(w);
#pragma omp parallel
  {
    std::vector<float> wf(static_cast<size_t>(kSlice) * C);
#pragma omp for schedule(static)
    for (int sl = 0; sl < slices; ++sl) {
      const int o0 = sl * kSlice, rows = std::min(kSlice, OC - o0);
      for (int o = 0; o < rows; ++o) ggml::dequantize(type, W + row_bytes * static_cast<size_t>(o0 + o), wf.data() + static_cast<size_t>(o) * C, C);
      sgemm_serial(false, true, N, rows, C, 1.0f, x, C, wf.data(), C, 0.0f, y + o0, OC);
      if (bias)
        for (int n = 0; n < N; ++n)
          for (int o = 0; o < rows; ++o) y[static_cast<size_t>(n) * OC + o0 + o] += bias[o0 + o];
    }
  }
}


// ---- Batched rows: an int8 GEMM (AVX-512 VNNI) ----
//
// Prompt processing and scoring multiply each weight row with many activation rows. Every
// weight type unpacks to the same form, unsigned 8-bit values q with a float scale s per block
// of 32 (Q6_K: per 16) and either an integer offset o of the type (Q8_0 128, Q4_0 8, Q5_0 16,
// Q6_K 32) or a float min m (Q4_1, Q5_1, Q4_K, Q5_K): w = s (q - o), or w = s q - m. The
// activations are quantized to A8_0 (d per 32 values) and interleaved 16 rows to a register:
// for each group of 4 values, 16 rows x 4 bytes, so that vpdpbusd multiplies a weight row's 4
// unsigned values (broadcast) with 16 rows' 4 signed values at once. Per block and output:
//   int32 sum of q x_q (exact) - o * sum(x_q)     then    acc += float(that) * (d * s)
//   and with a min:                                        acc -= m * (d * sum(x_q))
// in that order for every block, so the portable reference below gives the same bits.
// A slice of 64 weight rows is unpacked once per matmul into a thread's scratch and used for all
// the activation rows.

enum class Form { offset32, min32, offset16 };

struct Unpacked {
  Form form;
  int offset;  // o (offset forms)
};

Unpacked unpacked_form(Type t) {
  switch (t) {
    case Type::q8_0: return {Form::offset32, 128};
    case Type::q4_0: return {Form::offset32, 8};
    case Type::q5_0: return {Form::offset32, 16};
    case Type::q6_k: return {Form::offset16, 32};
    default: return {Form::min32, 0};  // Q4_1, Q5_1, Q4_K, Q5_K
  }
}

// One interleaved block of 16 activation rows: values [8 groups][16 rows][4], then per row
// d (float), the offset corrections c0 (o * the sum of values 0..15, or of all 32 in the 32
// forms) and c1 (o * the sum of values 16..31, Q6_K's form), and d * the sum of all 32 (min).
constexpr size_t kActTileBlock = 512 + 4 * 64;

// Row l of an activation tile's block from its 32 values: the int8 values (x / d rounded to
// nearest even, as ggml's SIMD quantize_row_q8_0), d = max |x| / 127 in fp16, and the sums.
void put_tile_row(Form form, int offset, const int8_t* q, float d, uint8_t* dst, int l) {
  for (int g = 0; g < 8; ++g) std::memcpy(dst + 64 * g + 4 * l, q + 4 * g, 4);
  int s0 = 0, s1 = 0;
  for (int j = 0; j < 16; ++j) s0 += q[j], s1 += q[16 + j];
  int32_t c0 = 0, c1 = 0;
  float md = 0;
  if (form == Form::offset32) c0 = offset * (s0 + s1);
  else if (form == Form::offset16) c0 = offset * s0, c1 = offset * s1;
  else md = d * static_cast<float>(s0 + s1);
  std::memcpy(dst + 512 + 4 * l, &d, 4);
  std::memcpy(dst + 576 + 4 * l, &c0, 4);
  std::memcpy(dst + 640 + 4 * l, &c1, 4);
  std::memcpy(dst + 704 + 4 * l, &md, 4);
}

void quantize_block_portable(const float* x, int8_t* q, float& d) {
  float amax = 0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float dd = amax / 127.f, id = dd != 0 ? 1.0f / dd : 0.0f;
  for (int j = 0; j < 32; ++j) q[j] = static_cast<int8_t>(std::nearbyint(x[j] * id));
  d = ggml::fp16_to_fp32(ggml::fp32_to_fp16(dd));
}

LLMKIT_AVX512 void quantize_block_avx512(const float* x, int8_t* q, float& d) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  const float dd = amax / 127.f, id = dd != 0 ? 1.0f / dd : 0.0f;
  const __m512 vid = _mm512_set1_ps(id);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, vid))));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(b, vid))));
  d = _cvtsh_ss(_cvtss_sh(dd, _MM_FROUND_TO_NEAREST_INT));
}

void interleave_activations(Type t, const float* x, int N, int C, uint8_t* out, bool portable) {
  const Unpacked u = unpacked_form(t);
  const int nb = C / 32, tiles = (N + 15) / 16;
#pragma omp parallel for schedule(static) if (N >= 64)
  for (int tile = 0; tile < tiles; ++tile) {
    uint8_t* base = out + static_cast<size_t>(tile) * nb * kActTileBlock;
    for (int l = 0; l < 16; ++l) {
      const int n = tile * 16 + l;
      for (int b = 0; b < nb; ++b) {
        int8_t q[32] = {};
        float d = 0;
        if (n < N) {
          const float* xb = x + static_cast<size_t>(n) * C + 32 * b;
          if (portable) quantize_block_portable(xb, q, d);
          else quantize_block_avx512(xb, q, d);
        }
        put_tile_row(u.form, u.offset, q, d, base + kActTileBlock * static_cast<size_t>(b), l);
      }
    }
  }
}

// One weight row unpacked: C unsigned values, the scales (C/32, Q6_K C/16) and mins (C/32).
void unpack_row_portable(Type t, const uint8_t* w, int C, uint8_t* q, float* s, float* m) {
  const size_t wb = ggml::traits(t).bytes;
  if (t == Type::q6_k) {
    for (int i = 0; i < C / 256; ++i, w += wb) {
      const uint8_t* ql = w;
      const uint8_t* qh = w + 128;
      const auto* sc = reinterpret_cast<const int8_t*>(w + 192);
      const float d = f16(w + 208);
      uint8_t* y = q + 256 * i;
      for (int c = 0; c < 256; c += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; ++l) {
          y[c + l] = static_cast<uint8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
          y[c + l + 32] = static_cast<uint8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
          y[c + l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
          y[c + l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
      for (int g = 0; g < 16; ++g) s[16 * i + g] = d * static_cast<float>(sc[g]);
    }
    return;
  }
  if (t == Type::q4_k || t == Type::q5_k) {
    const bool five = t == Type::q5_k;
    for (int i = 0; i < C / 256; ++i, w += wb) {
      const float d = f16(w), dmin = f16(w + 2);
      const uint8_t* qh = w + 16;
      const uint8_t* qs = w + (five ? 48 : 16);
      for (int g = 0; g < 8; ++g) {
        int sc, mn;
        scale_min_k4(g, w + 4, sc, mn);
        s[8 * i + g] = d * static_cast<float>(sc);
        m[8 * i + g] = dmin * static_cast<float>(mn);
        for (int l = 0; l < 32; ++l) {
          int v = g & 1 ? qs[32 * (g / 2) + l] >> 4 : qs[32 * (g / 2) + l] & 0xF;
          if (five) v |= ((qh[l] >> g) & 1) << 4;
          q[256 * i + 32 * g + l] = static_cast<uint8_t>(v);
        }
      }
    }
    return;
  }
  const Unpacked u = unpacked_form(t);
  for (int b = 0; b < C / 32; ++b, w += wb) {
    int v[32];
    unpack32(t, w, v);  // signed around 0 for the offset types
    for (int j = 0; j < 32; ++j) q[32 * b + j] = static_cast<uint8_t>(v[j] + u.offset);
    s[b] = f16(w);
    if (u.form == Form::min32) m[b] = -f16(w + 2);  // w = d q + m
  }
}

// 16 bytes of nibbles: the low ones, then the high ones.
LLMKIT_AVX512 inline void nibbles(const uint8_t* qs, uint8_t* y) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)), m4 = _mm_set1_epi8(0xF);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y), _mm_and_si128(b, m4));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 16), _mm_and_si128(_mm_srli_epi16(b, 4), m4));
}

// The same with 256-bit integer operations for the common types (the others: the portable one).
LLMKIT_AVX512 void unpack_row_avx512(Type t, const uint8_t* w, int C, uint8_t* q, float* s, float* m) {
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const size_t wb = ggml::traits(t).bytes;
  switch (t) {
    case Type::q8_0:
      for (int b = 0; b < C / 32; ++b, w += wb) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32 * b), _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))));
        s[b] = h2f(w);
      }
      return;
    case Type::q4_0:
    case Type::q4_1:
      for (int b = 0; b < C / 32; ++b, w += wb) {
        nibbles(w + (t == Type::q4_0 ? 2 : 4), q + 32 * b);
        s[b] = h2f(w);
        if (t == Type::q4_1) m[b] = -h2f(w + 2);
      }
      return;
    case Type::q4_k:
    case Type::q5_k: {
      const bool five = t == Type::q5_k;
      for (int i = 0; i < C / 256; ++i, w += wb) {
        const float d = h2f(w), dmin = h2f(w + 2);
        const uint8_t* qs = w + (five ? 48 : 16);
        const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16));
        for (int j = 0; j < 4; ++j) {
          const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * j));
          __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
          if (five) {
            const __m256i ml = _mm256_set1_epi8(static_cast<char>(1 << (2 * j))), mh = _mm256_set1_epi8(static_cast<char>(1 << (2 * j + 1)));
            const __m256i s16 = _mm256_set1_epi8(16);
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, ml), ml), s16));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, mh), mh), s16));
          }
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 256 * i + 64 * j), lo);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 256 * i + 64 * j + 32), hi);
        }
        for (int g = 0; g < 8; ++g) {
          int sc, mn;
          scale_min_k4(g, w + 4, sc, mn);
          s[8 * i + g] = d * static_cast<float>(sc);
          m[8 * i + g] = dmin * static_cast<float>(mn);
        }
      }
      return;
    }
    case Type::q6_k: {
      const __m256i m3 = _mm256_set1_epi8(3);
      for (int i = 0; i < C / 256; ++i, w += wb) {
        for (int j = 0; j < 2; ++j) {
          const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64 * j));
          const __m256i b2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 64 * j + 32));
          const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 128 + 32 * j));
          uint8_t* y = q + 256 * i + 128 * j;
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4)));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 32),
                              _mm256_or_si256(_mm256_and_si256(b2, m4), _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(12)), 2)));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 64),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), _mm256_and_si256(hb, _mm256_set1_epi8(48))));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + 96),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                                              _mm256_srli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(static_cast<char>(0xC0))), 2)));
        }
        const float d = h2f(w + 208);
        const auto* sc = reinterpret_cast<const int8_t*>(w + 192);
        for (int g = 0; g < 16; ++g) s[16 * i + g] = d * static_cast<float>(sc[g]);
      }
      return;
    }
    default: unpack_row_portable(t, w, C, q, s, m);
  }
}

int scales_per_row(Type t, int C) { return t == Type::q6_k ? C / 16 : C / 32; }

// The portable reference of the tile kernel: out[r][l] for weight rows q/s/m[r], activation
// tile `at`, in the kernel's order of operations.
void qgemm_tile_portable(Form form, int nb, const uint8_t* at, const uint8_t* const* wq, const float* const* ws, const float* const* wm,
                         int NR, float* out) {
  for (int r = 0; r < NR; ++r)
    for (int l = 0; l < 16; ++l) {
      float acc = 0;
      for (int b = 0; b < nb; ++b) {
        const uint8_t* ab = at + kActTileBlock * static_cast<size_t>(b);
        float d, md;
        int32_t c[2];
        std::memcpy(&d, ab + 512 + 4 * l, 4);
        std::memcpy(&c[0], ab + 576 + 4 * l, 4);
        std::memcpy(&c[1], ab + 640 + 4 * l, 4);
        std::memcpy(&md, ab + 704 + 4 * l, 4);
        const int halves = form == Form::offset16 ? 2 : 1;
        for (int h = 0; h < halves; ++h) {
          int32_t sum = 0;
          for (int g = 8 / halves * h; g < 8 / halves * (h + 1); ++g)
            for (int k = 0; k < 4; ++k)
              sum += wq[r][32 * b + 4 * g + k] * static_cast<int8_t>(ab[64 * g + 4 * l + k]);
          const float scale = ws[r][halves * b + h];
          acc = std::fma(static_cast<float>(form == Form::min32 ? sum : sum - c[h]), d * scale, acc);
        }
        if (form == Form::min32) acc = std::fma(-wm[r][b], md, acc);
      }
      out[16 * r + l] = acc;
    }
}

template <Form F, int NR>
LLMKIT_AVX512 void qgemm_tile_avx512(int nb, const uint8_t* at, const uint8_t* const* wq, const float* const* ws,
                                     const float* const* wm, float* out) {
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  constexpr int halves = F == Form::offset16 ? 2 : 1;
  for (int b = 0; b < nb; ++b) {
    const uint8_t* ab = at + kActTileBlock * static_cast<size_t>(b);
    const __m512 d = _mm512_loadu_ps(reinterpret_cast<const float*>(ab + 512));
    for (int h = 0; h < halves; ++h) {
      __m512i sum[NR];
      for (int r = 0; r < NR; ++r) sum[r] = _mm512_setzero_si512();
      for (int g = 8 / halves * h; g < 8 / halves * (h + 1); ++g) {
        const __m512i a = _mm512_loadu_si512(ab + 64 * g);
        for (int r = 0; r < NR; ++r) {
          int32_t w4;
          std::memcpy(&w4, wq[r] + 32 * static_cast<size_t>(b) + 4 * g, 4);
          sum[r] = _mm512_dpbusd_epi32(sum[r], _mm512_set1_epi32(w4), a);
        }
      }
      if (F != Form::min32) {
        const __m512i c = _mm512_loadu_si512(ab + 576 + 64 * h);
        for (int r = 0; r < NR; ++r) sum[r] = _mm512_sub_epi32(sum[r], c);
      }
      for (int r = 0; r < NR; ++r)
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r]), _mm512_mul_ps(d, _mm512_set1_ps(ws[r][halves * b + h])), acc[r]);
    }
    if (F == Form::min32) {
      const __m512 md = _mm512_loadu_ps(reinterpret_cast<const float*>(ab + 704));
      for (int r = 0; r < NR; ++r) acc[r] = _mm512_fnmadd_ps(_mm512_set1_ps(wm[r][b]), md, acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) _mm512_storeu_ps(out + 16 * r, acc[r]);
}

using TileFn = void (*)(int nb, const uint8_t* at, const uint8_t* const* wq, const float* const* ws, const float* const* wm,
                        float* out);
constexpr int kTileRows = 8;  // weight rows per kernel call

template <Form F, int... R>
constexpr std::array<TileFn, sizeof...(R)> tile_table(std::integer_sequence<int, R...>) {
  return {qgemm_tile_avx512<F, R + 1>...};
}

TileFn tile_kernel(Form f, int NR) {
  static constexpr auto o32 = tile_table<Form::offset32>(std::make_integer_sequence<int, kTileRows>{});
  static constexpr auto m32 = tile_table<Form::min32>(std::make_integer_sequence<int, kTileRows>{});
  static constexpr auto o16 = tile_table<Form::offset16>(std::make_integer_sequence<int, kTileRows>{});
  return (f == Form::offset32 ? o32 : f == Form::min32 ? m32 : o16)[NR - 1];
}

// The same tile on AMX: 16 weight rows at once. Per block, one tile product gives the 16 x 16
// integer sums (weights as A: 16 rows of 32 signed or unsigned values from the unpacked rows;
// the activation tile's 8 groups of 16 x 4 as B), stored and then scaled with AVX-512 exactly as
// the kernel above scales them. The offset forms' weights are unpacked signed (q - o) for
// TDPBSSD, which sums what the others sum after subtracting the correction: the same integers,
// so the same bits. Q6_K's halves are two products of 16 values.
#define LLMKIT_AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// tmm0, tmm1: sums; tmm2: 16 weight rows x 32 values; tmm3: activations 8 x 64; tmm4: 16 x 16
// values; tmm5: activations 4 x 64.
LLMKIT_AMX void amx_configure() {
  TileConfig c;
  c.rows[0] = c.rows[1] = 16, c.colsb[0] = c.colsb[1] = 64;
  c.rows[2] = 16, c.colsb[2] = 32;
  c.rows[3] = 8, c.colsb[3] = 64;
  c.rows[4] = 16, c.colsb[4] = 16;
  c.rows[5] = 4, c.colsb[5] = 64;
  // GCC 12 does not count the configuration's bytes as read by ldtilecfg and drops the stores.
  __asm__ volatile("" : : "r"(&c) : "memory");
  _tile_loadconfig(&c);
}
LLMKIT_AMX void amx_release() { _tile_release(); }

template <Form F>
LLMKIT_AMX void qgemm_tile_amx(int nb, int C, const uint8_t* at, const uint8_t* wq, const float* ws, int ns, const float* wm, float* out) {
  alignas(64) int32_t sums[2][256];
  __m512 acc[16];
  for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    const uint8_t* ab = at + kActTileBlock * static_cast<size_t>(b);
    const __m512 d = _mm512_loadu_ps(reinterpret_cast<const float*>(ab + 512));
    if (F == Form::offset16) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_loadd(4, wq + 32 * static_cast<size_t>(b), C);
      _tile_loadd(5, ab, 64);
      _tile_dpbssd(0, 4, 5);
      _tile_loadd(4, wq + 32 * static_cast<size_t>(b) + 16, C);
      _tile_loadd(5, ab + 256, 64);
      _tile_dpbssd(1, 4, 5);
      _tile_stored(0, sums[0], 64);
      _tile_stored(1, sums[1], 64);
      for (int r = 0; r < 16; ++r)
        for (int h = 0; h < 2; ++h)
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[h] + 16 * r)),
                                   _mm512_mul_ps(d, _mm512_set1_ps(ws[static_cast<size_t>(r) * ns + 2 * b + h])), acc[r]);
      continue;
    }
    _tile_zero(0);
    _tile_loadd(2, wq + 32 * static_cast<size_t>(b), C);
    _tile_loadd(3, ab, 64);
    if (F == Form::min32) _tile_dpbusd(0, 2, 3);
    else _tile_dpbssd(0, 2, 3);
    _tile_stored(0, sums[0], 64);
    for (int r = 0; r < 16; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums[0] + 16 * r)),
                               _mm512_mul_ps(d, _mm512_set1_ps(ws[static_cast<size_t>(r) * ns + b])), acc[r]);
    if (F == Form::min32) {
      const __m512 md = _mm512_loadu_ps(reinterpret_cast<const float*>(ab + 704));
      for (int r = 0; r < 16; ++r) acc[r] = _mm512_fnmadd_ps(_mm512_set1_ps(wm[static_cast<size_t>(r) * nb + b]), md, acc[r]);
    }
  }
  for (int r = 0; r < 16; ++r) _mm512_storeu_ps(out + 16 * r, acc[r]);
}

// The offset forms' unpacked values made signed for TDPBSSD.
LLMKIT_AVX512 void sign_values(uint8_t* q, size_t n, int offset) {
  const __m512i o = _mm512_set1_epi8(static_cast<char>(offset));
  size_t i = 0;
  for (; i + 64 <= n; i += 64) _mm512_storeu_si512(q + i, _mm512_sub_epi8(_mm512_loadu_si512(q + i), o));
  for (; i < n; ++i) q[i] = static_cast<uint8_t>(q[i] - offset);
}

bool cpu_has_amx() {
  if (!cpu_has_avx512()) return false;
  unsigned a, b, c, d;
  __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  if (!((d >> 24) & 1) || !((d >> 25) & 1)) return false;  // AMX-TILE, AMX-INT8
  // Linux hands out the tile state on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
  static const bool granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return granted;
}

// Batches of this many rows or more go through the int8 GEMM where the CPU has AVX-512 VNNI.
constexpr int kGemmRows = 16;

void qmatmul_gemm(float* y, const float* x, Type type, const void* w, size_t row_bytes, const float* bias, int N, int C, int OC,
                  QKernel kernel) {
  const bool portable = kernel == QKernel::portable, amx = kernel == QKernel::amx;
  const Unpacked u = unpacked_form(type);
  const int nb = C / 32, tiles = (N + 15) / 16, ns = scales_per_row(type, C);
  thread_local std::vector<uint8_t> act;
  const size_t tile_bytes = kActTileBlock * static_cast<size_t>(nb);
  if (act.size() < tile_bytes * tiles) act.resize(tile_bytes * tiles);
  uint8_t* A = act.data();
  interleave_activations(type, x, N, C, A, portable);
  constexpr int kSlice = 64;
  const int slices = (OC + kSlice - 1) / kSlice;
  const uint8_t* W = static_cast<const uint8_t*>(w);
#pragma omp parallel
  {
    thread_local std::vector<uint8_t> q;
    thread_local std::vector<float> s, m;
    q.resize(static_cast<size_t>(kSlice) * C);
    s.resize(static_cast<size_t>(kSlice) * ns);
    m.resize(static_cast<size_t>(kSlice) * nb);
    alignas(64) float out[16 * 16];
    if (amx) amx_configure();
#pragma omp for schedule(static)
    for (int sl = 0; sl < slices; ++sl) {
      const int o0 = sl * kSlice, rows = std::min(kSlice, OC - o0);
      for (int o = 0; o < rows; ++o)
        (portable ? unpack_row_portable : unpack_row_avx512)(type, W + row_bytes * static_cast<size_t>(o0 + o), C,
                                                             q.data() + static_cast<size_t>(o) * C, s.data() + static_cast<size_t>(o) * ns,
                                                             m.data() + static_cast<size_t>(o) * nb);
      // AMX takes whole groups of 16 rows (signed, in the offset forms); the VNNI kernel the rest.
      const int amx_rows = amx ? rows / 16 * 16 : 0;
      if (amx_rows && u.form != Form::min32) sign_values(q.data(), static_cast<size_t>(amx_rows) * C, u.offset);
      for (int tile = 0; tile < tiles; ++tile) {
        const uint8_t* at = A + tile_bytes * tile;
        const int L = std::min(16, N - 16 * tile);
        for (int r0 = 0, NR; r0 < rows; r0 += NR) {
          if (r0 < amx_rows) {
            NR = 16;
            const size_t o = static_cast<size_t>(r0);
            (u.form == Form::offset32   ? qgemm_tile_amx<Form::offset32>
             : u.form == Form::offset16 ? qgemm_tile_amx<Form::offset16>
                                        : qgemm_tile_amx<Form::min32>)(nb, C, at, q.data() + o * C, s.data() + o * ns, ns,
                                                                       m.data() + o * nb, out);
          } else {
          NR = std::min(kTileRows, rows - r0);
          const uint8_t* wq[kTileRows];
          const float* ws[kTileRows];
          const float* wm[kTileRows];
          for (int r = 0; r < NR; ++r) {
            wq[r] = q.data() + static_cast<size_t>(r0 + r) * C;
            ws[r] = s.data() + static_cast<size_t>(r0 + r) * ns;
            wm[r] = m.data() + static_cast<size_t>(r0 + r) * nb;
          }
          if (portable) qgemm_tile_portable(u.form, nb, at, wq, ws, wm, NR, out);
          else tile_kernel(u.form, NR)(nb, at, wq, ws, wm, out);
          }
          for (int l = 0; l < L; ++l) {
            float* yr = y + static_cast<size_t>(16 * tile + l) * OC + o0 + r0;
            for (int r = 0; r < NR; ++r) yr[r] = bias ? out[16 * r + l] + bias[o0 + r0 + r] : out[16 * r + l];
          }
        }
      }
    }
    if (amx) amx_release();
  }
}

}  // namespace

const char* qkernel_name(QKernel k) {
  return k == QKernel::amx      ? "AMX-INT8 (batches), AVX-512 VNNI (Q8_0, Q4_0) and AVX2"
         : k == QKernel::avx512 ? "AVX-512 VNNI (Q8_0, Q4_0; batches) and AVX2"
         : k == QKernel::avx2   ? "AVX2"
                                : "portable";
}
QKernel qkernel() {
  static const QKernel k = choose();
  return k;
}
bool qkernel_available(QKernel k) {
  return k == QKernel::portable || (k == QKernel::avx2 && cpu_has_avx2()) || (k == QKernel::avx512 && cpu_has_avx512()) ||
         (k == QKernel::amx && cpu_has_amx());
}

size_t qactivation_row_bytes(Type weight, int n) {
  const Act a = act_of(weight);
  const size_t nb = static_cast<size_t>(n / act_block(a));
  return nb * act_block_bytes(a) + (a == Act::a8_0 ? nb * 8 : 0);
}

void quantize_activations(Type weight, const float* x, void* out, int n) {
  const Act a = act_of(weight);
  auto* y = static_cast<uint8_t*>(out);
  if (a == Act::a8_k) return quantize_a8_k(x, y, n / 256);
  quantize_a8_32(x, y, n / 32, a == Act::a8_1);
  if (a == Act::a8_0) {  // the trailer: the scales and sums as floats
    const int nb = n / 32;
    float* d = reinterpret_cast<float*>(y + static_cast<size_t>(nb) * 34);
    for (int i = 0; i < nb; ++i) {
      const uint8_t* b = y + static_cast<size_t>(i) * 34;
      int sum = 0;
      for (int j = 0; j < 32; ++j) sum += static_cast<int8_t>(b[2 + j]);
      d[i] = f16(b);
      d[nb + i] = d[i] * static_cast<float>(sum);
    }
  }
}

void qdot(QKernel k, Type weight, int n, const void* w, const void* const* a, int R, float* out) {
  if (R < 1 || R > 4) throw Error("", "internal: qdot takes 1 to 4 rows");
  const uint8_t* rows[4];
  for (int r = 0; r < R; ++r) rows[r] = static_cast<const uint8_t*>(a[r]);
  RowDot(k, weight, n)(static_cast<const uint8_t*>(w), rows, R, out);
}

void qmatmul(float* y, const float* x, Type type, const void* w, size_t row_bytes, const float* bias, int N, int C, int OC,
             bool exact) {
  // NF4 (QLoRA's base): no 8-bit kernels, always dequantized into sgemm.
  if (type == Type::nf4) return qmatmul_sgemm(y, x, type, w, row_bytes, bias, N, C, OC);
  if (!exact && N >= kGemmRows && (qkernel() == QKernel::avx512 || qkernel() == QKernel::amx))
    return qmatmul_gemm(y, x, type, w, row_bytes, bias, N, C, OC, qkernel());
  if (exact || N >= kSgemmRows) return qmatmul_sgemm(y, x, type, w, row_bytes, bias, N, C, OC);
  const RowDot dot(qkernel(), type, C);
  const size_t ab = qactivation_row_bytes(type, C);
  thread_local std::vector<uint8_t> aq;
  if (aq.size() < ab * static_cast<size_t>(N)) aq.resize(ab * static_cast<size_t>(N));
  uint8_t* A = aq.data();
#pragma omp parallel for schedule(static) if (N >= 8)
  for (int n = 0; n < N; ++n) quantize_activations(type, x + static_cast<size_t>(n) * C, A + ab * n, C);
  const uint8_t* W = static_cast<const uint8_t*>(w);
  // Tiles of 16 weight rows (a shape-only split); within one, four activation rows at a time
  // against each of its weight rows, both in L1.
  constexpr int kRows = 16;
  const int tiles = (OC + kRows - 1) / kRows;
#pragma omp parallel for schedule(static) if (static_cast<double>(N) * OC * C > 1e5)
  for (int tile = 0; tile < tiles; ++tile) {
    const int o0 = tile * kRows, o1 = std::min(OC, o0 + kRows);
    for (int n0 = 0; n0 < N; n0 += 4) {
      const int R = std::min(4, N - n0);
      const uint8_t* rows[4];
      for (int r = 0; r < R; ++r) rows[r] = A + ab * static_cast<size_t>(n0 + r);
      for (int o = o0; o < o1; ++o) {
        float out[4];
        dot(W + row_bytes * static_cast<size_t>(o), rows, R, out);
        for (int r = 0; r < R; ++r) y[static_cast<size_t>(n0 + r) * OC + o] = bias ? out[r] + bias[o] : out[r];
      }
    }
  }
}

void qmatmul_backward(float* dx, const float* dy, Type type, const void* w, size_t row_bytes, int N, int C, int OC) {
  // dx += dy[:, o0:o1] W[o0:o1, :], slices of 256 weight rows dequantized in turn.
  constexpr int kSlice = 256;
  std::vector<float> wf(static_cast<size_t>(std::min(OC, kSlice)) * C);
  const uint8_t* W = static_cast<const uint8_t*>(w);
  for (int o0 = 0; o0 < OC; o0 += kSlice) {
    const int rows = std::min(kSlice, OC - o0);
#pragma omp parallel for schedule(static)
    for (int o = 0; o < rows; ++o)
      ggml::dequantize(type, W + row_bytes * static_cast<size_t>(o0 + o), wf.data() + static_cast<size_t>(o) * C, C);
    sgemm(false, false, N, C, rows, 1.0f, dy + o0, OC, wf.data(), C, 1.0f, dx, C);
  }
}

}  // namespace llmkit::cpu

namespace llmkit::cpu {
void qmatmul_int8(float* y, const float* x, ggml::Type type, const void* w, size_t row_bytes, const float* bias, int N, int C, int OC,
                  QKernel k) {
  if (k == QKernel::avx2 || !qkernel_available(k)) throw Error("", std::string("internal: no int8 GEMM with ") + qkernel_name(k));
  qmatmul_gemm(y, x, type, w, row_bytes, bias, N, C, OC, k);
}
}  // namespace llmkit::cpu
