// RMSNorm forward and backward: one block per row, fp32 accumulation; the weight gradient by
// fixed-order column sums (reduce.cuh), no atomics.
#include "kernels.cuh"
#include "reduce.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;

__global__ void rmsnorm_forward_kernel(Ref out, float* rstd, Ref inp, const float* w, int C, float eps) {
  const size_t row = blockIdx.x;
  const Ref x = inp.at(row * C);
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x.get(c) * x.get(c);
  const float r = rsqrtf(block_sum(ss) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) out.set(row * C + c, x.get(c) * r * w[c]);
  if (threadIdx.x == 0) rstd[row] = r;
}

// dinp += r * w * dy - (mean(x * w * dy) * r^3) * x
__global__ void rmsnorm_backward_kernel(Ref dinp, Ref dout, Ref inp, const float* w, const float* rstd, int C) {
  const size_t row = blockIdx.x;
  const Ref x = inp.at(row * C), dy = dout.at(row * C), dx = dinp.at(row * C);
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += x.get(c) * w[c] * dy.get(c);
  const float r = rstd[row];
  const float k = block_sum(dot) / C * r * r * r;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dx.set(c, dx.get(c) + (r * w[c] * dy.get(c) - k * x.get(c)));
}

struct WeightGrad {  // dy * x * r
  Ref dout, inp;
  const float* rstd;
  int C;
  __device__ float operator()(int n, int c) const {
    const size_t i = static_cast<size_t>(n) * C + c;
    return dout.get(i) * inp.get(i) * rstd[n];
  }
};

}  // namespace

void rmsnorm_forward(Ref out, float* rstd, Ref inp, const float* w, int N, int C, float eps) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(rmsnorm_forward_kernel, N, kThreads, 0, out, rstd, inp, w, C, eps);
  check_launch("rmsnorm_forward");
}

void rmsnorm_backward(Ref dinp, float* dw, Ref dout, Ref inp, const float* w, const float* rstd, int N, int C) {
  if (N <= 0) return;
  if (dinp) {
    LLMKIT_LAUNCH(rmsnorm_backward_kernel, N, kThreads, 0, dinp, dout, inp, w, rstd, C);
    check_launch("rmsnorm_backward");
  }
  column_reduce(dw, WeightGrad{dout, inp, rstd, C}, N, C, "rmsnorm_backward (weight)");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
