// Elementwise operations: SwiGLU, GELU (tanh approximation or exact), tanh, residual add, accumulate, scale,
// dropout (its mask from lib/backend/dropout.hpp, as the CPU's).
// Grid-stride loops, one value per thread per step, fp32.
#include "kernels.cuh"
#include "../dropout.hpp"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;
constexpr float kGeluK = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kSqrtHalf = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

__global__ void swiglu_forward_kernel(Ref out, Ref gate, Ref up, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = gate.get(i);
    out.set(i, g * sigmoid(g) * up.get(i));
  }
}

__global__ void swiglu_backward_kernel(Ref dgate, Ref dup, Ref dout, Ref gate, Ref up, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = gate.get(i), s = sigmoid(g), silu = g * s, d = dout.get(i), u = up.get(i);
    dup.set(i, d * silu);  // dup may be dout (in place): read first
    dgate.set(i, d * u * (s + silu * (1.0f - s)));
  }
}

__global__ void dropout_kernel(Ref out, Ref in, size_t n, float p, uint64_t seed, uint64_t offset) {
  const float keep = 1.0f / (1.0f - p);
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out.set(i, dropout_keeps(seed, offset + i, p) ? in.get(i) * keep : 0.0f);
}

__global__ void gelu_forward_kernel(Ref out, Ref inp, size_t n, bool exact) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = inp.get(i);
    out.set(i, exact ? 0.5f * x * (1.0f + erff(x * kSqrtHalf)) : 0.5f * x * (1.0f + tanhf(kGeluK * (x + 0.044715f * x * x * x))));
  }
}

__global__ void gelu_backward_kernel(Ref dinp, Ref dout, Ref inp, size_t n, bool exact) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = inp.get(i);
    if (exact) {  // Phi(x) + x phi(x)
      dinp.set(i, dout.get(i) * (0.5f * (1.0f + erff(x * kSqrtHalf)) + x * kInvSqrt2Pi * __expf(-0.5f * x * x)));
      continue;
    }
    const float t = tanhf(kGeluK * (x + 0.044715f * x * x * x));
    const float du = kGeluK * (1.0f + 3.0f * 0.044715f * x * x);
    dinp.set(i, dout.get(i) * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du));
  }
}

// tanh; the backward from the forward's output y: dout (1 - y^2).
__global__ void tanh_kernel(Ref out, Ref inp, Ref dout, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float x = inp.get(i);
    out.set(i, dout ? dout.get(i) * (1.0f - x * x) : tanhf(x));
  }
}

// out = a * x + y (add: a = 1, accumulate: out = y = dst); scale: y null, out = a * x.
__global__ void axpy_kernel(Ref out, float a, Ref x, Ref y, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out.set(i, y ? a * x.get(i) + y.get(i) : a * x.get(i));
}

}  // namespace

void swiglu_forward(Ref out, Ref gate, Ref up, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(swiglu_forward_kernel, blocks_for(n, kThreads), kThreads, 0, out, gate, up, n);
  check_launch("swiglu_forward");
}

void swiglu_backward(Ref dgate, Ref dup, Ref dout, Ref gate, Ref up, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(swiglu_backward_kernel, blocks_for(n, kThreads), kThreads, 0, dgate, dup, dout, gate, up, n);
  check_launch("swiglu_backward");
}

void dropout(Ref out, Ref in, size_t n, float p, uint64_t seed, uint64_t offset) {
  if (!n) return;
  LLMKIT_LAUNCH(dropout_kernel, blocks_for(n, kThreads), kThreads, 0, out, in, n, p, seed, offset);
  check_launch("dropout");
}

void gelu_forward(Ref out, Ref inp, size_t n, bool exact) {
  if (!n) return;
  LLMKIT_LAUNCH(gelu_forward_kernel, blocks_for(n, kThreads), kThreads, 0, out, inp, n, exact);
  check_launch("gelu_forward");
}

void gelu_backward(Ref dinp, Ref dout, Ref inp, size_t n, bool exact) {
  if (!n) return;
  LLMKIT_LAUNCH(gelu_backward_kernel, blocks_for(n, kThreads), kThreads, 0, dinp, dout, inp, n, exact);
  check_launch("gelu_backward");
}

void tanh_forward(Ref out, Ref inp, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(tanh_kernel, blocks_for(n, kThreads), kThreads, 0, out, inp, Ref{}, n);
  check_launch("tanh_forward");
}

void tanh_backward(Ref dinp, Ref dout, Ref out, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(tanh_kernel, blocks_for(n, kThreads), kThreads, 0, dinp, out, dout, n);
  check_launch("tanh_backward");
}

void add(Ref out, Ref a, Ref b, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(axpy_kernel, blocks_for(n, kThreads), kThreads, 0, out, 1.0f, a, b, n);
  check_launch("add");
}

void accumulate(Ref dst, Ref src, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(axpy_kernel, blocks_for(n, kThreads), kThreads, 0, dst, 1.0f, src, dst, n);
  check_launch("accumulate");
}

void convert(Ref dst, Ref src, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(axpy_kernel, blocks_for(n, kThreads), kThreads, 0, dst, 1.0f, src, Ref{}, n);
  check_launch("convert");
}

void scale(Ref x, float s, size_t n) {
  if (!n) return;
  LLMKIT_LAUNCH(axpy_kernel, blocks_for(n, kThreads), kThreads, 0, x, s, x, Ref{}, n);
  check_launch("scale");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
