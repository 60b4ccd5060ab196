// Elementwise operations: SwiGLU, GELU (tanh approximation), residual add, accumulate, scale.
// Grid-stride loops, one value per thread per step, fp32.
#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;
constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2 / pi)

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

__global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g * sigmoid(g) * up[i];
  }
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                       size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i], s = sigmoid(g), silu = g * s, d = dout[i];
    dup[i] = d * silu;
    dgate[i] = d * up[i] * (s + silu * (1.0f - s));
  }
}

__global__ void gelu_forward_kernel(float* out, const float* inp, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(kGeluK * (x + 0.044715f * x * x * x)));
  }
}

__global__ void gelu_backward_kernel(float* dinp, const float* dout, const float* inp, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = inp[i], t = tanhf(kGeluK * (x + 0.044715f * x * x * x));
    const float du = kGeluK * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
  }
}

// out = a * x + y (add: a = 1, accumulate: out = y = dst); scale: y null, out = a * x.
__global__ void axpy_kernel(float* out, float a, const float* x, const float* y, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = y ? a * x[i] + y[i] : a * x[i];
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(swiglu_forward_kernel, blocks_for(n, kThreads), kThreads, 0, out, gate, up, n);
  check_launch("swiglu_forward");
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(swiglu_backward_kernel, blocks_for(n, kThreads), kThreads, 0, dgate, dup, dout, gate, up, n);
  check_launch("swiglu_backward");
}

void gelu_forward(float* out, const float* inp, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(gelu_forward_kernel, blocks_for(n, kThreads), kThreads, 0, out, inp, n);
  check_launch("gelu_forward");
}

void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(gelu_backward_kernel, blocks_for(n, kThreads), kThreads, 0, dinp, dout, inp, n);
  check_launch("gelu_backward");
}

void add(float* out, const float* a, const float* b, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(axpy_kernel, blocks_for(n, kThreads), kThreads, 0, out, 1.0f, a, b, n);
  check_launch("add");
}

void accumulate(float* dst, const float* src, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(axpy_kernel, blocks_for(n, kThreads), kThreads, 0, dst, 1.0f, src, static_cast<const float*>(dst), n);
  check_launch("accumulate");
}

void scale(float* x, float s, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(axpy_kernel, blocks_for(n, kThreads), kThreads, 0, x, s, static_cast<const float*>(x), static_cast<const float*>(nullptr), n);
  check_launch("scale");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
