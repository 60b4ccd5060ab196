// One value of a ggml block, decoded where it is read: where its code's bits lie, the grid its
// block's scales give it (ggml::Grid), and the value. Plain C++ that nvcc also compiles for
// the GPU (lib/backend/cuda/quant.cu) and the CPU uses for GPTQ (lib/quant/ggml.cpp): one
// statement of the layouts of ggml.hpp beside its block decoders, which the unit tests hold
// equal.
#pragma once
#include <cstdint>
#include <cstring>

#include "llmkit/ggml.hpp"

#if defined(__CUDACC__)
#define LLMKIT_GGML_HD __host__ __device__ __forceinline__
#else
#define LLMKIT_GGML_HD inline
#endif

namespace llmkit::ggml::layout {

// IEEE half to float, exactly (ggml::fp16_to_fp32 is this).
LLMKIT_GGML_HD float half_bits(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  uint32_t bits;
  if (e == 0) {
    float f = static_cast<float>(m) * 5.9604644775390625e-8f;  // 2^-24: exact for m < 1024
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  } else if (e == 31) {
    bits = sign | 0x7f800000u | (m << 13);
  } else {
    bits = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// The half at p (little-endian, as GGUF stores it).
LLMKIT_GGML_HD float half(const uint8_t* p) { return half_bits(static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8); }

// Where the code of value j of a block lies: `bits` bits at bit `shift` of byte `at`, and for
// hbits > 0 the high bits at bit `hshift` of byte `hat`. bits 0: not a block type.
struct CodeBits {
  int at = 0, shift = 0, bits = 0, hat = 0, hshift = 0, hbits = 0;
};

LLMKIT_GGML_HD CodeBits code_bits(Type t, int j) {
  CodeBits c;
  switch (t) {
    case Type::q8_0: c.at = 2 + j, c.bits = 8; break;
    case Type::q4_0: c.at = 2 + j % 16, c.shift = j < 16 ? 0 : 4, c.bits = 4; break;
    case Type::q4_1: c.at = 4 + j % 16, c.shift = j < 16 ? 0 : 4, c.bits = 4; break;
    case Type::q5_0: c.at = 6 + j % 16, c.shift = j < 16 ? 0 : 4, c.bits = 4, c.hat = 2 + j / 8, c.hshift = j % 8, c.hbits = 1; break;
    case Type::q5_1: c.at = 8 + j % 16, c.shift = j < 16 ? 0 : 4, c.bits = 4, c.hat = 4 + j / 8, c.hshift = j % 8, c.hbits = 1; break;
    case Type::q4_k: c.at = 16 + j / 64 * 32 + j % 32, c.shift = j % 64 < 32 ? 0 : 4, c.bits = 4; break;
    case Type::q5_k:
      c.at = 48 + j / 64 * 32 + j % 32, c.shift = j % 64 < 32 ? 0 : 4, c.bits = 4, c.hat = 16 + j % 32, c.hshift = j / 32, c.hbits = 1;
      break;
    case Type::q6_k: {
      const int n = j / 128, quarter = j % 128 / 32, l = j % 32;
      c.at = n * 64 + l + (quarter & 1 ? 32 : 0), c.shift = quarter < 2 ? 0 : 4, c.bits = 4;
      c.hat = 128 + n * 32 + l, c.hshift = 2 * quarter, c.hbits = 2;
      break;
    }
    default: break;
  }
  return c;
}

// The code of value j of block b: 0..qmax (Q8_0's int8 shifted by 128).
LLMKIT_GGML_HD int code(Type t, const uint8_t* b, int j) {
  const CodeBits c = code_bits(t, j);
  int q = (b[c.at] >> c.shift) & ((1 << c.bits) - 1);
  if (c.hbits) q |= ((b[c.hat] >> c.hshift) & ((1 << c.hbits) - 1)) << c.bits;
  return t == Type::q8_0 ? static_cast<int>(static_cast<int8_t>(static_cast<uint8_t>(q))) + 128 : q;
}

// The 6-bit scale and min of sub-block s of a Q4_K/Q5_K block's 12 bytes at q.
LLMKIT_GGML_HD void scale_min_k4(int s, const uint8_t* q, int& d, int& m) {
  if (s < 4) {
    d = q[s] & 63, m = q[s + 4] & 63;
  } else {
    d = (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
    m = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

// The grid of value j of block b.
LLMKIT_GGML_HD Grid grid(Type t, const uint8_t* b, int j) {
  Grid g;
  switch (t) {
    case Type::q8_0: g.scale = half(b), g.zero = 128, g.qmax = 255; break;
    case Type::q4_0: g.scale = half(b), g.zero = 8, g.qmax = 15; break;
    case Type::q5_0: g.scale = half(b), g.zero = 16, g.qmax = 31; break;
    case Type::q4_1: g.scale = half(b), g.min = half(b + 2), g.qmax = 15; break;
    case Type::q5_1: g.scale = half(b), g.min = half(b + 2), g.qmax = 31; break;
    case Type::q4_k:
    case Type::q5_k: {
      int sc, m;
      scale_min_k4(j / 32, b + 4, sc, m);
      g.scale = half(b) * static_cast<float>(sc), g.min = -(half(b + 2) * static_cast<float>(m));
      g.qmax = t == Type::q4_k ? 15 : 31;
      break;
    }
    case Type::q6_k: {
      const int n = j / 128, quarter = j % 128 / 32, l = j % 32;
      g.scale = half(b + 208) * static_cast<float>(static_cast<int8_t>(b[192 + n * 8 + l / 16 + 2 * quarter]));
      g.zero = 32, g.qmax = 63;
      break;
    }
    default: break;
  }
  return g;
}

// Value j of block b: what ggml's decoder gives.
LLMKIT_GGML_HD float value(Type t, const uint8_t* b, int j) {
  const Grid g = grid(t, b, j);
  return g.scale * static_cast<float>(code(t, b, j) - g.zero) + g.min;
}

// Values per block and bytes per block of the block types (0 for the others).
LLMKIT_GGML_HD int block_values(Type t) {
  return t == Type::q4_k || t == Type::q5_k || t == Type::q6_k ? 256 : t == Type::q8_0 || t == Type::q4_0 || t == Type::q4_1 || t == Type::q5_0 || t == Type::q5_1 ? 32 : 0;
}
LLMKIT_GGML_HD int block_bytes(Type t) {
  switch (t) {
    case Type::q8_0: return 34;
    case Type::q4_0: return 18;
    case Type::q4_1: return 20;
    case Type::q5_0: return 22;
    case Type::q5_1: return 24;
    case Type::q4_k: return 144;
    case Type::q5_k: return 176;
    case Type::q6_k: return 210;
    default: return 0;
  }
}

// NF4's levels (ggml.hpp).
LLMKIT_GGML_HD float nf4_level(int q) {
  switch (q) {
    case 0: return -1.0f;
    case 1: return -0.6961928009986877f;
    case 2: return -0.5250730514526367f;
    case 3: return -0.39491748809814453f;
    case 4: return -0.28444138169288635f;
    case 5: return -0.18477343022823334f;
    case 6: return -0.09105003625154495f;
    case 7: return 0.0f;
    case 8: return 0.07958029955625534f;
    case 9: return 0.16093020141124725f;
    case 10: return 0.24611230194568634f;
    case 11: return 0.33791524171829224f;
    case 12: return 0.44070982933044434f;
    case 13: return 0.5626170039176941f;
    case 14: return 0.7229568362236023f;
    default: return 1.0f;
  }
}

// Value c of an NF4 row: its block's absmax from the row's step and mean and the block's int8.
LLMKIT_GGML_HD float nf4_value(const uint8_t* row, int c) {
  float step, mean;
  std::memcpy(&step, row, 4);
  std::memcpy(&mean, row + 4, 4);
  const uint8_t* b = row + kNF4RowHeader + static_cast<size_t>(c / kNF4Block) * 33;
  const float amax = step * static_cast<float>(static_cast<int8_t>(b[0])) + mean;
  const int j = c % kNF4Block;
  return nf4_level((b[1 + j / 2] >> (4 * (j & 1))) & 15) * amax;
}

// Value c of a row of blocks.
LLMKIT_GGML_HD float row_value(Type t, const uint8_t* row, int c) {
  if (t == Type::nf4) return nf4_value(row, c);
  const int n = block_values(t);
  return value(t, row + static_cast<size_t>(c / n) * block_bytes(t), c % n);
}

}  // namespace llmkit::ggml::layout
