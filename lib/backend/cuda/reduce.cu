// Column sums (bias gradients) and the sum of squares (gradient norm), in a fixed order.
#include <vector>

#include "kernels.cuh"
#include "reduce.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kBlocks = 1024;  // fixed: the order of the sum depends on n only

struct Element {
  Ref x;
  int C;
  __device__ float operator()(int n, int c) const { return x.get(static_cast<size_t>(n) * C + c); }
};

// Block b sums the squares of the grid-stride sequence b, b + blocks*threads, ...
__global__ void sum_squares_kernel(float* partial, const float* x, size_t n) {
  float s = 0.0f;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

}  // namespace

void column_sum(float* out, Ref x, int N, int C) { column_reduce(out, Element{x, C}, N, C, "column_sum"); }

double sum_squares(const float* x, size_t n) {
  if (!n) return 0.0;
  float* partial = scratch(Slot::partial, kBlocks);
  LLMKIT_LAUNCH(sum_squares_kernel, kBlocks, kThreads, 0, partial, x, n);
  check_launch("sum_squares");
  std::vector<float> host(kBlocks);
  check(cudaMemcpy(host.data(), partial, kBlocks * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy (sum_squares)");
  double s = 0;
  for (float v : host) s += v;
  return s;
}

}  // namespace llmkit::LLMKIT_CUDA_NS
