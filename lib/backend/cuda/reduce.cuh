// Column sums over rows in a fixed order, for the weight and bias gradients of the norms and
// the matmul bias: out[c] += sum over n of f(n, c). Each block sums a band of rows per column
// (partial sums); a second kernel adds the bands in order. No atomics: the same result on
// every run, whatever the scheduling.
#pragma once
#include "common.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace reduce_detail {

constexpr unsigned kThreads = 256;
constexpr int kMaxParts = 1024;

template <class F>
__global__ void column_partial_kernel(float* partial, F f, int N, int C, int rows_per_part) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const int r0 = blockIdx.y * rows_per_part, r1 = min(N, r0 + rows_per_part);
  float s = 0.0f;
  for (int n = r0; n < r1; ++n) s += f(n, c);
  partial[static_cast<size_t>(blockIdx.y) * C + c] = s;
}

template <class Unused>
__global__ void column_finish_kernel(float* out, const float* partial, int parts, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int p = 0; p < parts; ++p) s += partial[static_cast<size_t>(p) * C + c];
  out[c] += s;
}

}  // namespace reduce_detail

template <class F>
void column_reduce(float* out, F f, int N, int C, const char* what) {
  using namespace reduce_detail;
  if (!out || N <= 0 || C <= 0) return;
  const int parts = min(kMaxParts, (N + 31) / 32), rows_per_part = (N + parts - 1) / parts;
  float* partial = scratch(Slot::partial, static_cast<size_t>(parts) * C);
  const unsigned cblocks = (static_cast<unsigned>(C) + kThreads - 1) / kThreads;
  LLMKIT_LAUNCH(column_partial_kernel<F>, dim3(cblocks, static_cast<unsigned>(parts)), kThreads, 0, partial, f, N, C, rows_per_part);
  LLMKIT_LAUNCH(column_finish_kernel<int>, cblocks, kThreads, 0, out, static_cast<const float*>(partial), parts, C);
  check_launch(what);
}

}  // namespace llmkit::LLMKIT_CUDA_NS
