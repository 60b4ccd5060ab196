// ggml's block types; see llmkit/ggml.hpp. The quantizers follow the reference algorithms of
// ggml-quants.c (quantize_row_q8_0_ref, _q4_0_ref, _q4_K_ref, _q5_K_ref, _q6_K_ref and their
// helpers make_qx_quants and make_qkx2_quants) operation for operation in float, so that the
// bytes are llama-quantize's; this file is compiled without floating-point contraction.
#include "llmkit/ggml.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "llmkit/error.hpp"
#include "ggml_value.hpp"

namespace llmkit::ggml {

namespace {

constexpr int kQK = 256;  // a K-quant super-block

// Rounding to the nearest integer as ggml does it (the float's mantissa after adding 1.5 x 2^23):
// ties to even, for |x| < 2^22.
inline int nearest_int(float f) {
  const float v = f + 12582912.f;
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// The scale of a group quantized symmetrically to [-nmax, nmax - 1] (stored + nmax), with a
// search over 18 scales around nmax / max for the least weighted error (rmse_type 1: weights x^2).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw = nullptr) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      const int l = nearest_int(iscale * x[i]);
      L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  auto weight = [&](int i) {
    return qw ? qw[i] : rmse_type == 1 ? x[i] * x[i] : rmse_type == 2 ? 1.0f : rmse_type == 3 ? std::fabs(x[i]) : std::sqrt(std::fabs(x[i]));
  };
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = weight(i);
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = weight(i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The scale and the min of an asymmetric group [0, nmax]: the least weighted squared error over
// nstep + 1 scales around nmax / (max - min), with the min refit by least squares each time.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux, float rmin,
                       float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Non-negative values x (a block's group scales) as levels 0..nmax of one scale, the weighted
// error least (ggml's make_qp_quants): 9 scales tried, then levels moved one at a time.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* w) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < 1e-15f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    best += w[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * l;
      mse += w[i] * diff * diff;
    }
    if (mse < best) {
      best = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    sumlx += w[i] * x[i] * l;
    suml2 += w[i] * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      float slx = sumlx - w[i] * x[i] * L[i];
      float sl2 = suml2 - w[i] * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        const int nl = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (nl != L[i]) {
          slx += w[i] * x[i] * nl;
          sl2 += w[i] * nl * nl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(nl);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

using layout::scale_min_k4;  // the 6-bit scale and min of a Q4_K/Q5_K sub-block

inline void put_fp16(uint8_t* p, float f) {
  const uint16_t h = fp32_to_fp16(f);
  std::memcpy(p, &h, 2);
}
inline float get_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_fp32(h);
}

// ---- Q8_0 and Q4_0: 32 values, one fp16 scale ----

void quantize_q8_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 34) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0 ? 1.0f / d : 0.0f;
    put_fp16(y, d);
    for (int j = 0; j < 32; ++j) y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
  }
}
void dequantize_q8_0(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 34, y += 32) {
    const float d = get_fp16(x);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(x[2 + j])) * d;
  }
}

// With an importance per value (ggml's quantize_row_q4_0_impl): each block's scale fitted with
// weights imp * sqrt(sigma^2 + x^2), sigma^2 the row's mean square.
void quantize_q4_0_imp(const float* x, uint8_t* y, int64_t nb, const float* imp) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < 32 * nb; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / static_cast<float>(32 * nb);
  float weight[32];
  int8_t L[32];
  for (int64_t ib = 0; ib < nb; ++ib, x += 32, y += 18, imp += 32) {
    for (int j = 0; j < 32; ++j) weight[j] = imp[j] * std::sqrt(sigma2 + x[j] * x[j]);
    put_fp16(y, make_qx_quants(32, 8, x, L, 1, weight));
    for (int j = 0; j < 16; ++j) y[2 + j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

void quantize_q4_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, y += 18) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    put_fp16(y, d);
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[j] * id, x1 = x[16 + j] * id;
      const uint8_t q0 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f))));
      const uint8_t q1 = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f))));
      y[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}
void dequantize_q4_0(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 18, y += 32) {
    const float d = get_fp16(x);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((x[2 + j] & 0x0F) - 8) * d;
      y[j + 16] = static_cast<float>((x[2 + j] >> 4) - 8) * d;
    }
  }
}

// ---- Q4_1, Q5_0, Q5_1: 32 values, 4 or 5 bits, symmetric (Q5_0) or with a min ----

// Layout: d (2), [m (2)], [qh (4) for 5 bits], qs (16).
template <int Bits, bool Min>
void quantize_q32(const float* x, uint8_t* y, int64_t nb) {
  constexpr size_t bytes = 2 + (Min ? 2 : 0) + (Bits == 5 ? 4 : 0) + 16;
  constexpr int top = (1 << Bits) - 1;
  for (int64_t i = 0; i < nb; ++i, x += 32, y += bytes) {
    float d, id, mn = 0;
    if (Min) {
      float lo = 3.402823466e+38f, hi = -3.402823466e+38f;
      for (int j = 0; j < 32; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
      d = (hi - lo) / top;
      id = d != 0 ? 1.0f / d : 0.0f;
      mn = lo;
      put_fp16(y, d);
      put_fp16(y + 2, lo);
    } else {
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j)
        if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
      d = max / -16;
      id = d != 0 ? 1.0f / d : 0.0f;
      put_fp16(y, d);
    }
    uint8_t* qs = y + bytes - 16;
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const float x0 = (x[j] - mn) * id, x1 = (x[16 + j] - mn) * id;
      int q0, q1;
      if (Min) {
        q0 = static_cast<uint8_t>(x0 + 0.5f), q1 = static_cast<uint8_t>(x1 + 0.5f);
        if (Bits == 4) q0 = std::min(15, q0), q1 = std::min(15, q1);
      } else {
        q0 = std::min(31, static_cast<int>(static_cast<int8_t>(x0 + 16.5f)));
        q1 = std::min(31, static_cast<int>(static_cast<int8_t>(x1 + 16.5f)));
      }
      qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      if (Bits == 5) {
        qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
        qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + 16);
      }
    }
    if (Bits == 5) std::memcpy(y + 2 + (Min ? 2 : 0), &qh, 4);
  }
}

template <int Bits, bool Min>
void dequantize_q32(const uint8_t* x, float* y, int64_t nb) {
  constexpr size_t bytes = 2 + (Min ? 2 : 0) + (Bits == 5 ? 4 : 0) + 16;
  for (int64_t i = 0; i < nb; ++i, x += bytes, y += 32) {
    const float d = get_fp16(x), m = Min ? get_fp16(x + 2) : 0.0f;
    uint32_t qh = 0;
    if (Bits == 5) std::memcpy(&qh, x + 2 + (Min ? 2 : 0), 4);
    const uint8_t* qs = x + bytes - 16;
    for (int j = 0; j < 16; ++j) {
      int q0 = qs[j] & 0x0F, q1 = qs[j] >> 4;
      if (Bits == 5) q0 |= static_cast<int>(((qh >> j) << 4) & 0x10), q1 |= static_cast<int>((qh >> (j + 12)) & 0x10);
      if (Min) {
        y[j] = static_cast<float>(q0) * d + m;
        y[j + 16] = static_cast<float>(q1) * d + m;
      } else {
        y[j] = static_cast<float>(q0 - 16) * d;
        y[j + 16] = static_cast<float>(q1 - 16) * d;
      }
    }
  }
}

// ---- Q4_K and Q5_K: 256 values in 8 groups of 32, 6-bit scales and mins ----

// Layout: d (2), dmin (2), scales (12), [qh (32) for Q5_K], qs (128).
// A Q4_K/Q5_K block's eight 6-bit scales and mins into its 12 bytes.
void put_scales_k4(uint8_t* sc, const uint8_t* ls, const uint8_t* lm) {
  std::memset(sc, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      sc[j] = ls[j];
      sc[j + 4] = lm[j];
    } else {
      sc[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      sc[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
      sc[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

// With d, dmin and the scales written at y: each value's level in L (a group whose scale is 0
// keeps the levels L has), packed into the block.
template <int Bits>
void finish_qk_asym(const float* x, uint8_t* y, uint8_t* L) {
  constexpr int nmax = (1 << Bits) - 1;
  const uint8_t* sc = y + 4;
  const float dd = get_fp16(y), dmin = get_fp16(y + 2);
  for (int j = 0; j < 8; ++j) {
    int s, m;
    scale_min_k4(j, sc, s, m);
    const float d = dd * s;
    if (d == 0) continue;
    const float dm = dmin * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
  if (Bits == 4) {
    uint8_t* q = y + 16;
    for (int j = 0; j < kQK; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  } else {
    uint8_t* qh = y + 16;
    uint8_t* ql = y + 48;
    std::memset(qh, 0, 32);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kQK; n += 64, ql += 32) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j], l2 = L[n + j + 32];
        if (l1 > 15) l1 -= 16, qh[j] |= m1;
        if (l2 > 15) l2 -= 16, qh[j] |= m2;
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<uint8_t>(m1 << 2);
      m2 = static_cast<uint8_t>(m2 << 2);
    }
  }
}

template <int Bits>
void quantize_qk_asym(const float* x, uint8_t* y, int64_t nb) {
  constexpr int nmax = (1 << Bits) - 1;
  constexpr size_t bytes = Bits == 4 ? 144 : 176;
  uint8_t L[kQK], Laux[32], ls[8], lm[8];
  float weights[32], mins[8], scales[8];
  for (int64_t i = 0; i < nb; ++i, x += kQK, y += bytes) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = Bits == 4 ? make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, false)
                            : make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5f, 0.1f, 15, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      ls[j] = static_cast<uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
      lm[j] = static_cast<uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
    }
    put_scales_k4(y + 4, ls, lm);
    put_fp16(y, max_scale / 63.f);
    put_fp16(y + 2, max_min / 63.f);
    finish_qk_asym<Bits>(x, y, L);
  }
}

// The same with an importance per value (ggml's quantize_row_q4_K_impl, _q5_K_impl): group
// weights imp * sqrt(sigma^2 + x^2), ggml's make_qkx3_quants per group, the scales and mins fitted by
// make_qp_quants weighted by the groups' total weights.
template <int Bits>
void quantize_qk_asym_imp(const float* x, uint8_t* y, int64_t nb, const float* imp) {
  constexpr int nmax = (1 << Bits) - 1;
  constexpr size_t bytes = Bits == 4 ? 144 : 176;
  uint8_t L[kQK], Laux[32], ls[8], lm[8];
  float weights[32], sw[8], mins[8], scales[8];
  for (int64_t i = 0; i < nb; ++i, x += kQK, y += bytes, imp += kQK) {
    float sum_x2 = 0;
    for (int l = 0; l < kQK; ++l) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / kQK;
    for (int j = 0; j < 8; ++j) {
      for (int l = 0; l < 32; ++l) weights[l] = imp[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += weights[l];
      sw[j] = sumw;
      // ggml's make_qkx3_quants, which computes what make_qkx2_quants does without use_mad.
      scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float d_block = make_qp_quants(8, 63, scales, ls, sw);
    const float m_block = make_qp_quants(8, 63, mins, lm, sw);
    for (int j = 0; j < 8; ++j) ls[j] = std::min<uint8_t>(63, ls[j]), lm[j] = std::min<uint8_t>(63, lm[j]);
    put_scales_k4(y + 4, ls, lm);
    put_fp16(y, d_block);
    put_fp16(y + 2, m_block);
    finish_qk_asym<Bits>(x, y, L);
  }
}

template <int Bits>
void dequantize_qk_asym(const uint8_t* x, float* y, int64_t nb) {
  constexpr size_t bytes = Bits == 4 ? 144 : 176;
  for (int64_t i = 0; i < nb; ++i, x += bytes) {
    const float d = get_fp16(x), min = get_fp16(x + 2);
    const uint8_t* sc = x + 4;
    const uint8_t* qh = x + 16;
    const uint8_t* q = Bits == 4 ? x + 16 : x + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < kQK; j += 64, q += 32, is += 2) {
      int s, m;
      scale_min_k4(is, sc, s, m);
      const float d1 = d * s, m1 = min * m;
      scale_min_k4(is + 1, sc, s, m);
      const float d2 = d * s, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((q[l] & 0xF) + (Bits == 5 && (qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((q[l] >> 4) + (Bits == 5 && (qh[l] & u2) ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

// ---- Q6_K: 256 values in 16 groups of 16, int8 scales ----

// Layout: ql (128), qh (64), scales (16 x int8), d (2).
// imp: an importance per value (ggml's quantize_row_q6_K_impl: the groups' fit weighted by it
// instead of x^2), or null.
void quantize_q6_k(const float* x, uint8_t* y, int64_t nb, const float* imp = nullptr) {
  int8_t L[kQK];
  float scales[16];
  for (int64_t i = 0; i < nb; ++i, x += kQK, y += 210, imp = imp ? imp + kQK : nullptr) {
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < 16; ++ib) {
      const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, imp ? imp + 16 * ib : nullptr);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    if (max_abs_scale < 1e-15f) {
      std::memset(y, 0, 210);
      continue;
    }
    const float iscale = -128.f / max_scale;
    put_fp16(y + 208, 1 / iscale);
    int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
    for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    const float dd = get_fp16(y + 208);
    for (int j = 0; j < 16; ++j) {
      const float d = dd * sc[j];
      if (d == 0) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = y;
    uint8_t* qh = y + 128;
    for (int j = 0; j < kQK; j += 128, ql += 64, qh += 32)
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
  }
}

void dequantize_q6_k(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 210) {
    const float d = get_fp16(x + 208);
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
    for (int n = 0; n < kQK; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
  }
}

// ---- NF4 with double quantization (QLoRA): llmkit's own ----

}  // namespace

float nf4_level(int q) { return layout::nf4_level(q); }

namespace {

// One row: each block's absmax, those quantized to int8 around their mean (the paper's double
// quantization, with one step and mean per row instead of per 256 blocks), then each value
// divided by its block's absmax as stored and rounded to the nearest level.
void quantize_nf4(const float* x, uint8_t* y, int64_t nb) {
  std::vector<float> amax(static_cast<size_t>(nb));
  double mean = 0;
  for (int64_t b = 0; b < nb; ++b) {
    float a = 0;
    for (int j = 0; j < kNF4Block; ++j) a = std::max(a, std::fabs(x[b * kNF4Block + j]));
    amax[static_cast<size_t>(b)] = a;
    mean += a;
  }
  const float m = static_cast<float>(mean / static_cast<double>(std::max<int64_t>(nb, 1)));
  float spread = 0;
  for (float a : amax) spread = std::max(spread, std::fabs(a - m));
  const float step = spread / 127.0f;
  std::memcpy(y, &step, 4);
  std::memcpy(y + 4, &m, 4);
  float mid[15];
  for (int i = 0; i < 15; ++i) mid[i] = 0.5f * (layout::nf4_level(i) + layout::nf4_level(i + 1));
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = y + kNF4RowHeader + static_cast<size_t>(b) * 33;
    const int q = step > 0 ? std::clamp(static_cast<int>(std::nearbyint((amax[static_cast<size_t>(b)] - m) / step)), -127, 127) : 0;
    blk[0] = static_cast<uint8_t>(static_cast<int8_t>(q));
    const float a = step * static_cast<float>(q) + m, inv = a > 0 ? 1.0f / a : 0.0f;
    for (int j = 0; j < kNF4Block; j += 2) {
      uint8_t codes[2];
      for (int k = 0; k < 2; ++k) {
        const float v = x[b * kNF4Block + j + k] * inv;
        codes[k] = static_cast<uint8_t>(std::upper_bound(mid, mid + 15, v) - mid);
      }
      blk[1 + j / 2] = static_cast<uint8_t>(codes[0] | codes[1] << 4);
    }
  }
}

// layout::nf4_value's arithmetic, a block at a time.
void dequantize_nf4(const uint8_t* x, float* y, int64_t nb) {
  float step, mean, level[16];
  std::memcpy(&step, x, 4);
  std::memcpy(&mean, x + 4, 4);
  for (int q = 0; q < 16; ++q) level[q] = layout::nf4_level(q);
  for (int64_t b = 0; b < nb; ++b, y += kNF4Block) {
    const uint8_t* blk = x + kNF4RowHeader + static_cast<size_t>(b) * 33;
    const float amax = step * static_cast<float>(static_cast<int8_t>(blk[0])) + mean;
    for (int j = 0; j < kNF4Block / 2; ++j) {
      y[2 * j] = level[blk[1 + j] & 15] * amax;
      y[2 * j + 1] = level[blk[1 + j] >> 4] * amax;
    }
  }
}

const TypeTraits kF32{"F32", 1, 4}, kF16{"F16", 1, 2}, kBF16{"BF16", 1, 2}, kQ8_0{"Q8_0", 32, 34}, kQ4_0{"Q4_0", 32, 18},
    kQ4_1{"Q4_1", 32, 20}, kQ5_0{"Q5_0", 32, 22}, kQ5_1{"Q5_1", 32, 24},
    kQ4_K{"Q4_K", 256, 144}, kQ5_K{"Q5_K", 256, 176}, kQ6_K{"Q6_K", 256, 210}, kNF4T{"NF4", kNF4Block, 33};

}  // namespace

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return static_cast<uint16_t>(sign | 0x7e00);  // NaN
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to infinity
  if (abs < 0x38800000) {                                               // a subnormal half (or 0)
    const float a = std::fabs(f) * 16777216.0f;                         // units of 2^-24, exact
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a)));
  }
  // Normal: drop 13 mantissa bits, rounding to nearest even.
  const uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000) >> 13));
}

float fp16_to_fp32(uint16_t h) { return layout::half_bits(h); }

uint16_t fp32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

float bf16_to_fp32(uint16_t h) {
  const uint32_t x = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

const TypeTraits& traits(Type t) {
  switch (t) {
    case Type::f32: return kF32;
    case Type::f16: return kF16;
    case Type::bf16: return kBF16;
    case Type::q8_0: return kQ8_0;
    case Type::q4_0: return kQ4_0;
    case Type::q4_1: return kQ4_1;
    case Type::q5_0: return kQ5_0;
    case Type::q5_1: return kQ5_1;
    case Type::q4_k: return kQ4_K;
    case Type::q5_k: return kQ5_K;
    case Type::q6_k: return kQ6_K;
    case Type::nf4: return kNF4T;
  }
  throw Error("", "ggml tensor type " + std::to_string(static_cast<uint32_t>(t)) +
                      " is not one llmkit reads (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
}

bool is_known(uint32_t t) {
  for (Type k : {Type::f32, Type::f16, Type::bf16, Type::q8_0, Type::q4_0, Type::q4_1, Type::q5_0, Type::q5_1, Type::q4_k, Type::q5_k, Type::q6_k})
    if (static_cast<uint32_t>(k) == t) return true;
  return false;
}

bool parse_type(const std::string& name, Type& t) {
  std::string up = name;
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (Type k : {Type::f32, Type::f16, Type::bf16, Type::q8_0, Type::q4_0, Type::q4_1, Type::q5_0, Type::q5_1, Type::q4_k, Type::q5_k, Type::q6_k})
    if (up == traits(k).name) {
      t = k;
      return true;
    }
  return false;
}

size_t row_bytes(Type t, int64_t n) {
  const TypeTraits& tr = traits(t);
  if (n % tr.block != 0)
    throw Error("", std::string(tr.name) + ": a row of " + std::to_string(n) + " values is not whole blocks of " + std::to_string(tr.block));
  return static_cast<size_t>(n / tr.block) * tr.bytes + (t == Type::nf4 ? kNF4RowHeader : 0);
}

bool uses_importance(Type t) { return t == Type::q4_0 || t == Type::q4_k || t == Type::q5_k || t == Type::q6_k; }

void quantize(Type t, const float* x, void* out, int64_t n, const float* importance) {
  const int64_t nb = n / traits(t).block;
  row_bytes(t, n);
  auto* y = static_cast<uint8_t*>(out);
  if (importance && uses_importance(t)) {
    switch (t) {
      case Type::q4_0: quantize_q4_0_imp(x, y, nb, importance); return;
      case Type::q4_k: quantize_qk_asym_imp<4>(x, y, nb, importance); return;
      case Type::q5_k: quantize_qk_asym_imp<5>(x, y, nb, importance); return;
      default: quantize_q6_k(x, y, nb, importance); return;
    }
  }
  switch (t) {
    case Type::f32: std::memcpy(y, x, static_cast<size_t>(n) * 4); return;
    case Type::f16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(x[i]);
        std::memcpy(y + 2 * i, &h, 2);
      }
      return;
    case Type::bf16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(x[i]);
        std::memcpy(y + 2 * i, &h, 2);
      }
      return;
    case Type::q8_0: quantize_q8_0(x, y, nb); return;
    case Type::q4_0: quantize_q4_0(x, y, nb); return;
    case Type::q4_1: quantize_q32<4, true>(x, y, nb); return;
    case Type::q5_0: quantize_q32<5, false>(x, y, nb); return;
    case Type::q5_1: quantize_q32<5, true>(x, y, nb); return;
    case Type::q4_k: quantize_qk_asym<4>(x, y, nb); return;
    case Type::q5_k: quantize_qk_asym<5>(x, y, nb); return;
    case Type::q6_k: quantize_q6_k(x, y, nb); return;
    case Type::nf4: quantize_nf4(x, y, nb); return;
  }
}

// ---- One value's code and grid (GPTQ): ggml_value.hpp's layout ----

namespace {
const uint8_t* block_of(Type t, const void* row, int64_t j) {
  const TypeTraits& tr = traits(t);
  if (tr.block == 1) throw Error("", std::string("ggml: ") + tr.name + " has no integer codes");
  return static_cast<const uint8_t*>(row) + static_cast<size_t>(j / tr.block) * tr.bytes;
}
}  // namespace

int Grid::nearest(float x) const {
  if (scale == 0 || !std::isfinite(scale)) return std::clamp(zero, 0, qmax);  // Q4_0, Q6_K scales may be negative
  const float q = std::nearbyint((x - min) / scale) + static_cast<float>(zero);
  return static_cast<int>(std::clamp(q, 0.0f, static_cast<float>(qmax)));
}

Grid grid_at(Type t, const void* row, int64_t j) {
  return layout::grid(t, block_of(t, row, j), static_cast<int>(j % traits(t).block));
}

int code_at(Type t, const void* row, int64_t j) {
  return layout::code(t, block_of(t, row, j), static_cast<int>(j % traits(t).block));
}

void set_code(Type t, void* row, int64_t j, int q) {
  auto* b = const_cast<uint8_t*>(block_of(t, row, j));
  const layout::CodeBits c = layout::code_bits(t, static_cast<int>(j % traits(t).block));
  if (t == Type::q8_0) q = static_cast<uint8_t>(static_cast<int8_t>(q - 128));
  const int lo_mask = ((1 << c.bits) - 1) << c.shift;
  b[c.at] = static_cast<uint8_t>((b[c.at] & ~lo_mask) | ((q << c.shift) & lo_mask));
  if (c.hbits) {
    const int hi_mask = ((1 << c.hbits) - 1) << c.hshift;
    b[c.hat] = static_cast<uint8_t>((b[c.hat] & ~hi_mask) | (((q >> c.bits) << c.hshift) & hi_mask));
  }
}

void dequantize(Type t, const void* in, float* y, int64_t n) {
  const int64_t nb = n / traits(t).block;
  row_bytes(t, n);
  const auto* x = static_cast<const uint8_t*>(in);
  switch (t) {
    case Type::f32: std::memcpy(y, x, static_cast<size_t>(n) * 4); return;
    case Type::f16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, x + 2 * i, 2);
        y[i] = fp16_to_fp32(h);
      }
      return;
    case Type::bf16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, x + 2 * i, 2);
        y[i] = bf16_to_fp32(h);
      }
      return;
    case Type::q8_0: dequantize_q8_0(x, y, nb); return;
    case Type::q4_0: dequantize_q4_0(x, y, nb); return;
    case Type::q4_1: dequantize_q32<4, true>(x, y, nb); return;
    case Type::q5_0: dequantize_q32<5, false>(x, y, nb); return;
    case Type::q5_1: dequantize_q32<5, true>(x, y, nb); return;
    case Type::q4_k: dequantize_qk_asym<4>(x, y, nb); return;
    case Type::q5_k: dequantize_qk_asym<5>(x, y, nb); return;
    case Type::q6_k: dequantize_q6_k(x, y, nb); return;
    case Type::nf4: dequantize_nf4(x, y, nb); return;
  }
}

}  // namespace llmkit::ggml
