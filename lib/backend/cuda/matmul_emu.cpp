// The emulated build's gemm() (see kernels.cuh), in place of cuBLASLt: the same row-major
// contract, computed on the CPU with the inputs rounded as the GPU's compute type rounds them
// (bf16: 8 significant bits, tf32: 11), fp32 accumulation. Tests of the emulated backend thus
// see the GPU's precision, not fp32's.
#include <cstring>

#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

Precision g_precision = Precision::bf16;

// Round to nearest even, keeping `bits` explicit mantissa bits of fp32's 23.
float round_mantissa(float x, int bits) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf, nan
  const int drop = 23 - bits;
  const uint32_t half = 1u << (drop - 1), mask = (1u << drop) - 1;
  const uint32_t lsb = (u >> drop) & 1u;
  u = (u + half - 1 + lsb) & ~mask;
  std::memcpy(&x, &u, 4);
  return x;
}

float as_input(float x) {
  switch (g_precision) {
    case Precision::bf16: return round_mantissa(x, 7);
    case Precision::tf32: return round_mantissa(x, 10);
    default: return x;
  }
}

}  // namespace

void set_precision(Precision p) { g_precision = p; }
Precision precision() { return g_precision; }

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, Ref A, int lda, int64_t stride_a, Ref B, int ldb,
          int64_t stride_b, float beta, Ref C, int ldc, int64_t stride_c, int batch, Ref bias) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < M; ++i) {
      const Ref a = A.at(static_cast<size_t>(b * stride_a)), bb = B.at(static_cast<size_t>(b * stride_b));
      const Ref c = C.at(static_cast<size_t>(b * stride_c + static_cast<int64_t>(i) * ldc));
      for (int j = 0; j < N; ++j) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) {
          const float x = trans_a ? a.get(static_cast<size_t>(k) * lda + i) : a.get(static_cast<size_t>(i) * lda + k);
          const float y = trans_b ? bb.get(static_cast<size_t>(j) * ldb + k) : bb.get(static_cast<size_t>(k) * ldb + j);
          acc += as_input(x) * as_input(y);
        }
        float r = alpha * acc + (beta != 0.0f ? beta * c.get(static_cast<size_t>(j)) : 0.0f);
        if (bias) r += bias.get(static_cast<size_t>(j));
        c.set(static_cast<size_t>(j), r);
      }
    }
}

}  // namespace llmkit::LLMKIT_CUDA_NS
