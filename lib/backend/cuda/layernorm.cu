// LayerNorm forward and backward: one block per row, fp32 accumulation, the mean and variance
// in two passes over the row (no cancellation); weight and bias gradients by fixed-order column
// sums (reduce.cuh), no atomics.
#include "kernels.cuh"
#include "reduce.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;

__global__ void layernorm_forward_kernel(Ref out, float* mean, float* rstd, Ref inp, const float* w, const float* b, int C,
                                         float eps) {
  const size_t row = blockIdx.x;
  const Ref x = inp.at(row * C);
  float s = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += x.get(c);
  const float m = block_sum(s) / C;
  float v = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) v += (x.get(c) - m) * (x.get(c) - m);
  const float r = rsqrtf(block_sum(v) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) out.set(row * C + c, (x.get(c) - m) * r * w[c] + b[c]);
  if (threadIdx.x == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// dinp += r * (w*dy - mean(w*dy) - norm * mean(w*dy * norm)), norm = (x - m) * r
__global__ void layernorm_backward_kernel(Ref dinp, Ref dout, Ref inp, const float* w, const float* mean, const float* rstd,
                                          int C) {
  const size_t row = blockIdx.x;
  const Ref x = inp.at(row * C), dy = dout.at(row * C), dx = dinp.at(row * C);
  const float m = mean[row], r = rstd[row];
  float a = 0.0f, b = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float dn = w[c] * dy.get(c);
    a += dn;
    b += dn * (x.get(c) - m) * r;
  }
  a = block_sum(a) / C;
  b = block_sum(b) / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    dx.set(c, dx.get(c) + (r * (w[c] * dy.get(c) - a - (x.get(c) - m) * r * b)));
}

struct WeightGrad {  // dy * (x - m) * r
  Ref dout, inp;
  const float *mean, *rstd;
  int C;
  __device__ float operator()(int n, int c) const {
    const size_t i = static_cast<size_t>(n) * C + c;
    return dout.get(i) * (inp.get(i) - mean[n]) * rstd[n];
  }
};

}  // namespace

void layernorm_forward(Ref out, float* mean, float* rstd, Ref inp, const float* w, const float* b, int N, int C, float eps) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(layernorm_forward_kernel, N, kThreads, 0, out, mean, rstd, inp, w, b, C, eps);
  check_launch("layernorm_forward");
}

void layernorm_backward(Ref dinp, float* dw, float* db, Ref dout, Ref inp, const float* w, const float* mean,
                        const float* rstd, int N, int C) {
  if (N <= 0) return;
  if (dinp) {
    LLMKIT_LAUNCH(layernorm_backward_kernel, N, kThreads, 0, dinp, dout, inp, w, mean, rstd, C);
    check_launch("layernorm_backward");
  }
  column_reduce(dw, WeightGrad{dout, inp, mean, rstd, C}, N, C, "layernorm_backward (weight)");
  column_sum(db, dout, N, C);
}

}  // namespace llmkit::LLMKIT_CUDA_NS
