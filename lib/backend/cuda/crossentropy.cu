// Cross-entropy over the first V of Vp logit columns: one block per row, the log-sum-exp by a
// max pass and a sum pass (fp32). The backward writes d(loss)/d(logits) from d(loss)/d(logp),
// in place over the logits when asked (each element is read before it is written).
#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 512;

__device__ float row_log_sum_exp(Ref l, int V) {
  float m = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, l.get(j));
  m = block_max(m);
  float s = 0.0f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += __expf(l.get(j) - m);
  return m + logf(block_sum(s));
}

__global__ void crossentropy_forward_kernel(float* logp, Ref logits, const int32_t* targets, int V, int Vp) {
  const size_t row = blockIdx.x;
  const int target = targets[row];
  if (target < 0) {  // the whole block leaves together: no barrier is skipped by some threads only
    if (threadIdx.x == 0) logp[row] = 0.0f;
    return;
  }
  const Ref l = logits.at(row * Vp);
  const float lse = row_log_sum_exp(l, V);
  if (threadIdx.x == 0) logp[row] = l.get(target) - lse;
}

__global__ void crossentropy_backward_kernel(Ref dlogits, Ref logits, const int32_t* targets, const float* dlogp, int V,
                                             int Vp) {
  const size_t row = blockIdx.x;
  const int target = targets[row];
  const float c = target < 0 ? 0.0f : dlogp[row];
  const Ref d = dlogits.at(row * Vp);
  if (c == 0.0f) {
    for (int j = threadIdx.x; j < Vp; j += blockDim.x) d.set(j, 0.0f);
    return;
  }
  const Ref l = logits.at(row * Vp);
  const float lse = row_log_sum_exp(l, V);  // ends with a barrier: every read of l is done
  for (int j = threadIdx.x; j < Vp; j += blockDim.x)
    d.set(j, j < V ? (j == target ? c : 0.0f) - c * __expf(l.get(j) - lse) : 0.0f);
}

// Block per row: the largest value, then the smallest index holding it (indices below 2^24
// are exact as floats).
__global__ void argmax_kernel(int32_t* out, Ref logits, int V, int Vp) {
  const size_t row = blockIdx.x;
  const Ref l = logits.at(row * Vp);
  float m = -INFINITY;
  for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, l.get(j));
  m = block_max(m);
  float first = -INFINITY;  // -index of the first column holding m
  for (int j = threadIdx.x; j < V; j += blockDim.x)
    if (l.get(j) == m) {
      first = -static_cast<float>(j);
      break;
    }
  first = block_max(first);
  if (threadIdx.x == 0) out[row] = first == -INFINITY ? 0 : static_cast<int32_t>(-first);
}

}  // namespace

void argmax(int32_t* out_dev, Ref logits, int N, int V, int Vp) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(argmax_kernel, N, kThreads, 0, out_dev, logits, V, Vp);
  check_launch("argmax");
}

void crossentropy_forward(float* logp, Ref logits, const int32_t* targets_dev, int N, int V, int Vp) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(crossentropy_forward_kernel, N, kThreads, 0, logp, logits, targets_dev, V, Vp);
  check_launch("crossentropy_forward");
}

void crossentropy_backward(Ref dlogits, Ref logits, const int32_t* targets_dev, const float* dlogp, int N, int V, int Vp) {
  if (N <= 0) return;
  LLMKIT_LAUNCH(crossentropy_backward_kernel, N, kThreads, 0, dlogits, logits, targets_dev, dlogp, V, Vp);
  check_launch("crossentropy_backward");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
