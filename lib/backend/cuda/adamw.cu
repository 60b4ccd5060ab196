// Decoupled AdamW, fp32 parameters and moments; the gradient is scaled first (clipping), the
// bias corrections c1 = 1 - beta1^t and c2 = 1 - beta2^t come from the host.
#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                             float eps, float weight_decay, float c1, float c2, float grad_scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float gi = g[i] * grad_scale;
    const float mi = m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    p[i] -= lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + weight_decay * p[i]);
  }
}

}  // namespace

void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2, float eps,
           float weight_decay, float c1, float c2, float grad_scale) {
  if (!n) return;
  LLMKIT_LAUNCH(adamw_kernel, blocks_for(n, kThreads), kThreads, 0, p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2,
                grad_scale);
  check_launch("adamw");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
