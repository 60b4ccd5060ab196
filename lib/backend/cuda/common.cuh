// What every CUDA kernel file includes. The same sources build two ways:
//  - by nvcc into llmkit_cuda (namespace llmkit::cuda), the GPU backend;
//  - by the C++ compiler against the emulator (emu.hpp) into llmkit_cuda_emu (namespace
//    llmkit::cuda_emu), which the tests run on machines without a GPU.
// Kernels are launched with LLMKIT_LAUNCH(kernel, grid, block, shared_bytes, args...), which is
// `kernel<<<grid, block, shared_bytes>>>(args...)` on the GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "llmkit/error.hpp"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define LLMKIT_CUDA_NS cuda
#define LLMKIT_LAUNCH(kernel, grid, block, smem, ...) kernel<<<(grid), (block), (smem)>>>(__VA_ARGS__)
#define LLMKIT_DYNAMIC_SHARED(type, name) \
  extern __shared__ __align__(128) float4 llmkit_dynamic_smem_[]; \
  type* name = reinterpret_cast<type*>(llmkit_dynamic_smem_)
#else
#include "emu.hpp"
#define LLMKIT_CUDA_NS cuda_emu
#define LLMKIT_LAUNCH(kernel, grid, block, smem, ...) \
  ::llmkit::emu::launch(dim3(grid), dim3(block), (smem), [&] { kernel(__VA_ARGS__); })
#define LLMKIT_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::llmkit::emu::dynamic_shared())
#endif

namespace llmkit::LLMKIT_CUDA_NS {

// A tensor argument of a kernel: device memory holding fp32 or bf16 values (activations are
// bf16 when the backend trains in bf16; parameters, gradients and statistics are fp32). Reads
// and writes go through get() and set(), in fp32; the branch is the same for every thread.
struct Ref {
  void* p = nullptr;
  bool bf16 = false;
  __device__ __forceinline__ float get(size_t i) const {
    return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
  }
  __device__ __forceinline__ void set(size_t i, float v) const {
    if (bf16) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
    else static_cast<float*>(p)[i] = v;
  }
  __device__ __host__ Ref at(size_t offset) const { return {static_cast<char*>(p) + offset * (bf16 ? 2 : 4), bf16}; }
  __device__ __host__ explicit operator bool() const { return p != nullptr; }
};
inline Ref f32(const float* p) { return {const_cast<float*>(p), false}; }

// Throws llmkit::Error naming `what` when a CUDA call failed.
void check(cudaError_t e, const char* what);
// After a launch: the launch error, and with LLMKIT_CUDA_SYNC=1 the kernel's own (each launch
// then waits for its kernel: for finding which kernel faulted, not for speed).
void check_launch(const char* what);

// Shared memory per block: the most a kernel may opt in to on this GPU (static + dynamic).
size_t max_block_smem();
// A kernel's static shared memory, and its opt-in to `dynamic` bytes of dynamic shared memory
// when the two pass the default 48 KiB (the emulator has no such limits: nothing to do). Both
// are asked of the runtime once per kernel, not at every launch.
template <class Kernel>
size_t kernel_static_smem(Kernel kernel) {
#if defined(__CUDACC__)
  static std::unordered_map<const void*, size_t> known;
  auto it = known.find(reinterpret_cast<const void*>(kernel));
  if (it != known.end()) return it->second;
  cudaFuncAttributes a;
  check(cudaFuncGetAttributes(&a, kernel), "cudaFuncGetAttributes");
  return known[reinterpret_cast<const void*>(kernel)] = a.sharedSizeBytes;
#else
  (void)kernel;
  return 0;
#endif
}
template <class Kernel>
void allow_dynamic_smem(Kernel kernel, size_t dynamic) {
#if defined(__CUDACC__)
  static std::unordered_map<const void*, size_t> allowed;  // by kernel: the most opted in to
  size_t& have = allowed[reinterpret_cast<const void*>(kernel)];
  if (dynamic <= have || dynamic + kernel_static_smem(kernel) <= 48 * 1024) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(dynamic)),
        "cudaFuncSetAttribute (shared memory)");
  have = dynamic;
#else
  (void)kernel;
  (void)dynamic;
#endif
}

// Device memory, counted: what llmkit holds now and at most (scratch included).
void* device_alloc(size_t bytes);
void device_free(void* p);
size_t bytes_in_use();
size_t peak_bytes();

inline unsigned blocks_for(size_t n, unsigned threads) {
  size_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535u * 16 ? (b ? b : 1) : 65535u * 16);  // grid-stride loops cover the rest
}

// Device scratch memory by slot, grown on demand and kept (no cudaMalloc in the steady state).
// All kernels run on one stream, so an operation may reuse a slot as soon as it is called.
enum class Slot {
  partial, tokens, targets, positions, starts, ends, block_table, index, index_run, index_token,
  attn_s, attn_dp, attn_q, attn_k, attn_v, attn_o, attn_do, attn_dk, attn_dv, attn_rows, convert, bias, dequant, count
};
float* scratch(Slot slot, size_t floats);
// Uploads n int32 host values into the slot (skipped when they equal the last upload there).
int32_t* upload_ints(Slot slot, const int32_t* host, size_t n);

}  // namespace llmkit::LLMKIT_CUDA_NS

namespace llmkit::LLMKIT_CUDA_NS {

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// A reduction over the block's threads (sum or max), every thread gets it. blockDim.x a
// multiple of 32, at most 1024.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v) {
  __shared__ float partial[32];
  v = kMax ? warp_max(v) : warp_sum(v);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : (kMax ? -INFINITY : 0.0f);
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // partial is reused by the next call
  return v;
}
__device__ __forceinline__ float block_sum(float v) { return block_reduce<false>(v); }
__device__ __forceinline__ float block_max(float v) { return block_reduce<true>(v); }

}  // namespace llmkit::LLMKIT_CUDA_NS
