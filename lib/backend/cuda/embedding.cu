// Token (and learned position) embeddings. The backward adds each token's rows into its
// embedding row: rows sorted by token on the host (CudaBackend::embedding_backward), then one
// block per distinct token sums them in order. No atomics, so the result is the same on every
// run even when a token repeats.
#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;

// out[n] = wte[tokens[n]] + wpe[pos(n)], pos(n) = pos_dev[n], or n % T when pos_dev is null.
__global__ void embedding_kernel(Ref out, const int32_t* tokens, const int32_t* pos, const float* wte, const float* wpe,
                                 int N, int T, int C) {
  const size_t total = static_cast<size_t>(N) * C;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(i / C), c = static_cast<int>(i % C);
    float e = tokens[n] < 0 ? 0.0f : wte[static_cast<size_t>(tokens[n]) * C + c];  // < 0: another shard's token
    if (wpe) e += wpe[static_cast<size_t>(pos ? pos[n] : n % T) * C + c];
    out.set(i, e);
  }
}

// Block (u, channel tile): dst[key u] += sum of dout over its rows, in row order.
__global__ void rows_grad_kernel(float* dst, Ref dout, const int32_t* order, const int32_t* run, const int32_t* run_key,
                                 int C) {
  const int u = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int i = run[u]; i < run[u + 1]; ++i) s += dout.get(static_cast<size_t>(order[i]) * C + c);
  dst[static_cast<size_t>(run_key[u]) * C + c] += s;
}

// dwpe[t] += sum over b of dout[b, t], in b order.
__global__ void position_grad_kernel(float* dwpe, Ref dout, int B, int T, int C) {
  const size_t total = static_cast<size_t>(T) * C;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int b = 0; b < B; ++b) s += dout.get(static_cast<size_t>(b) * total + i);
    dwpe[i] += s;
  }
}

}  // namespace

void embedding_forward(Ref out, const int32_t* tokens_dev, const float* wte, const float* wpe, int B, int T, int C) {
  const size_t n = static_cast<size_t>(B) * T * C;
  if (!n) return;
  LLMKIT_LAUNCH(embedding_kernel, blocks_for(n, kThreads), kThreads, 0, out, tokens_dev, static_cast<const int32_t*>(nullptr),
                wte, wpe, B * T, T, C);
  check_launch("embedding_forward");
}

void embedding_at(Ref out, const int32_t* tokens_dev, const int32_t* pos_dev, const float* wte, const float* wpe, int N,
                  int C) {
  const size_t n = static_cast<size_t>(N) * C;
  if (!n) return;
  LLMKIT_LAUNCH(embedding_kernel, blocks_for(n, kThreads), kThreads, 0, out, tokens_dev, pos_dev, wte, wpe, N, 1, C);
  check_launch("embedding_at");
}

void rows_grad(float* dst, Ref dout, const int32_t* order_dev, const int32_t* run_dev, const int32_t* run_key_dev, int runs, int C) {
  if (runs <= 0) return;
  dim3 grid(static_cast<unsigned>(runs), (static_cast<unsigned>(C) + kThreads - 1) / kThreads);
  LLMKIT_LAUNCH(rows_grad_kernel, grid, kThreads, 0, dst, dout, order_dev, run_dev, run_key_dev, C);
  check_launch("embedding_backward (rows by key)");
}

void embedding_backward(float* dwte, float* dwpe, Ref dout, const int32_t* order_dev, const int32_t* run_dev,
                        const int32_t* run_token_dev, int runs, int B, int T, int C) {
  if (dwte) rows_grad(dwte, dout, order_dev, run_dev, run_token_dev, runs, C);
  if (dwpe && B > 0 && T > 0) {
    const size_t n = static_cast<size_t>(T) * C;
    LLMKIT_LAUNCH(position_grad_kernel, blocks_for(n, kThreads), kThreads, 0, dwpe, dout, B, T, C);
    check_launch("embedding_backward (positions)");
  }
}

}  // namespace llmkit::LLMKIT_CUDA_NS
