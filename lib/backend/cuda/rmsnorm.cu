// RMSNorm forward and backward on the GPU, fp32; the contract of Backend::rmsnorm_*.
#include <cuda_runtime.h>

#include "llmkit/cuda.hpp"
#include "llmkit/error.hpp"

namespace llmkit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerPartial = 32;  // backward: rows whose dw contributions one block sums

// Sum over the block's threads (every thread gets it).
__device__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  v = lane < warps ? warp_sums[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // warp_sums is reused by the next call
  return v;
}

__global__ void forward_kernel(float* out, float* rstd, const float* inp, const float* w, int C, float eps) {
  const size_t row = blockIdx.x;
  const float* x = inp + row * C;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  const float r = rsqrtf(block_sum(ss) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) out[row * C + c] = x[c] * r * w[c];
  if (threadIdx.x == 0) rstd[row] = r;
}

// dinp += r * w * dy - (mean(x * w * dy) * r^3) * x, one block per row.
__global__ void backward_input_kernel(float* dinp, const float* dout, const float* inp, const float* w,
                                      const float* rstd, int C) {
  const size_t row = blockIdx.x;
  const float* x = inp + row * C;
  const float* dy = dout + row * C;
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += x[c] * w[c] * dy[c];
  const float r = rstd[row];
  const float k = block_sum(dot) / C * r * r * r;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dinp[row * C + c] += r * w[c] * dy[c] - k * x[c];
}

// partial[b][c] = sum over rows of block b of dy * x * r.
__global__ void backward_weight_partial(float* partial, const float* dout, const float* inp, const float* rstd,
                                        int N, int C) {
  const int b = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  const int r0 = b * kRowsPerPartial, r1 = min(N, r0 + kRowsPerPartial);
  for (int n = r0; n < r1; ++n) s += dout[static_cast<size_t>(n) * C + c] * inp[static_cast<size_t>(n) * C + c] * rstd[n];
  partial[static_cast<size_t>(b) * C + c] = s;
}

// dw[c] += sum over blocks of partial[b][c], in block order.
__global__ void backward_weight_reduce(float* dw, const float* partial, int blocks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int b = 0; b < blocks; ++b) s += partial[static_cast<size_t>(b) * C + c];
  dw[c] += s;
}

void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) throw Error("cuda", std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) {
  if (N <= 0) return;
  forward_kernel<<<N, kThreads>>>(out, rstd, inp, w, C, eps);
  check_launch("rmsnorm_forward");
}

void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C) {
  if (N <= 0) return;
  if (dinp) backward_input_kernel<<<N, kThreads>>>(dinp, dout, inp, w, rstd, C);
  if (dw) {
    const int blocks = (N + kRowsPerPartial - 1) / kRowsPerPartial;
    float* partial = alloc(static_cast<size_t>(blocks) * C);
    dim3 grid((C + kThreads - 1) / kThreads, blocks);
    backward_weight_partial<<<grid, kThreads>>>(partial, dout, inp, rstd, N, C);
    backward_weight_reduce<<<(C + kThreads - 1) / kThreads, kThreads>>>(dw, partial, blocks, C);
    check_launch("rmsnorm_backward");
    release(partial);
    return;
  }
  check_launch("rmsnorm_backward");
}

}  // namespace llmkit::cuda
