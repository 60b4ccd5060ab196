// Rotary position embedding in place, forward (sign 1) and backward (sign -1, the inverse
// rotation): pairs (i, i + hd/2) of each head rotated by pos * theta^(-2i/hd), as the CPU
// backend and Hugging Face's Llama. sincosf, not __sincosf: angles reach thousands of radians.
#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;

__global__ void rope_kernel(Ref x, const int32_t* pos, int N, int T, int heads, int hd, float theta, float sign) {
  const int half = hd / 2;
  const size_t total = static_cast<size_t>(N) * heads * half;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int k = static_cast<int>(i % half);
    const size_t nh = i / half;  // row * heads + head
    const int n = static_cast<int>(nh / heads);
    const int t = pos ? pos[n] : n % T;
    const float freq = powf(theta, -2.0f * static_cast<float>(k) / static_cast<float>(hd));
    float s, c;
    sincosf(static_cast<float>(t) * freq, &s, &c);
    s *= sign;
    const Ref row = x.at(nh * hd);
    const float x1 = row.get(k), x2 = row.get(k + half);
    row.set(k, x1 * c - x2 * s);
    row.set(k + half, x2 * c + x1 * s);
  }
}

}  // namespace

void rope(Ref x, const int32_t* pos_dev, int N, int T, int heads, int hd, float theta, float sign) {
  const size_t n = static_cast<size_t>(N) * heads * (hd / 2);
  if (!n) return;
  LLMKIT_LAUNCH(rope_kernel, blocks_for(n, kThreads), kThreads, 0, x, pos_dev, N, T, heads, hd, theta, sign);
  check_launch("rope");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
