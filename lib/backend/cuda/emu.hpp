// A CPU emulator for the CUDA kernels of lib/backend/cuda, so that their logic (indexing,
// tiling, block and warp reductions, barriers) is tested where there is no GPU: in CI and on
// the development machines. The kernel sources are compiled a second time by the C++ compiler
// with this header instead of the CUDA headers (see common.cuh); a launch runs the blocks one
// after another, and the threads of a block as fibers that switch at __syncthreads()
// and at warp shuffles, so barrier semantics hold exactly.
//
// It checks what it can: a thread that returns while others wait at a barrier, a barrier that
// not every thread reaches, and a shuffle that not every lane of the warp joins are reported as
// errors (deadlocks on the hardware, or undefined behaviour). LLMKIT_EMU_REVERSE=1 runs the
// threads of a block in reverse order, which exposes a missing __syncthreads() where a thread
// reads shared memory that a later thread writes.
//
// Device memory is host memory; the runtime calls the backend uses are provided here. cuBLASLt
// and NCCL are not emulated: the emulated build has its own matmul (emu.cpp).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#include "llmkit/safetensors.hpp"

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace llmkit::emu {

extern thread_local const uint3* tl_thread;  // the running fiber's threadIdx
extern thread_local uint3 tl_block;
extern thread_local dim3 tl_block_dim, tl_grid_dim;

void launch(dim3 grid, dim3 block, size_t dynamic_shared, const std::function<void()>& body);
void syncthreads();
void syncwarp();  // the lanes of the calling thread's warp
void* dynamic_shared();
// Every lane of the warp writes `bits`; returns the bits of lane `src` (its own when src is
// outside the warp's lanes).
uint64_t warp_exchange(uint64_t bits, int src);
int lane_id();

template <class T>
T shfl_exchange(T v, int src) {
  static_assert(sizeof(T) <= 8);
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  b = warp_exchange(b, src);
  T r;
  std::memcpy(&r, &b, sizeof(T));
  return r;
}

}  // namespace llmkit::emu

#define threadIdx (*::llmkit::emu::tl_thread)
#define blockIdx (::llmkit::emu::tl_block)
#define blockDim (::llmkit::emu::tl_block_dim)
#define gridDim (::llmkit::emu::tl_grid_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
// Blocks run one at a time on the launching thread: a function-local static is the block's.
#define __shared__ static thread_local
#define __syncthreads() ::llmkit::emu::syncthreads()
#define __syncwarp(...) ::llmkit::emu::syncwarp()

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = ::llmkit::emu::lane_id();
  const int src = (lane & ~(width - 1)) | ((lane % width) ^ mask);
  return ::llmkit::emu::shfl_exchange(v, src);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::llmkit::emu::lane_id();
  const int src = (lane % width) + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : lane;
  return ::llmkit::emu::shfl_exchange(v, src);
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = ::llmkit::emu::lane_id();
  return ::llmkit::emu::shfl_exchange(v, (lane & ~(width - 1)) + src % width);
}

template <class T>
inline T min(T a, T b) { return b < a ? b : a; }
template <class T>
inline T max(T a, T b) { return a < b ? b : a; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float atomicAdd(float* p, float v) {  // blocks and threads run one at a time
  float old = *p;
  *p = old + v;
  return old;
}

// ---- bf16 ----
struct __nv_bfloat16 {
  uint16_t bits = 0;
};
// Round to nearest even, as the GPU: the conversions safetensors.cpp already has.
inline __nv_bfloat16 __float2bfloat16(float f) { return {::llmkit::f32_to_bf16(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return ::llmkit::bf16_to_f32(h.bits); }

// ---- Tensor-core fragments (nvcuda::wmma), 16x16x16 only ----
// On the GPU a fragment is spread over the warp's lanes in an unspecified layout; here every
// lane holds the whole tile. Kernels that only load, multiply, fill and store fragments (no
// element access) see the same values either way; every lane computes the product. Loads are
// collective, as on the GPU: no lane goes on (to a store over what it read, say) before every
// lane of the warp has loaded.
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  float v[16 * 16];  // (row, col) at v[row * 16 + col]
};
template <class Use, class T, class Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float x) {
  for (float& e : f.v) e = x;
}
inline float as_float(float x) { return x; }
inline float as_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class Use, class T, class Layout, class P>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const P* p, unsigned ldm) {
  const bool col = std::is_same_v<Layout, col_major>;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.v[r * 16 + c] = as_float(col ? p[c * ldm + r] : p[r * ldm + c]);
  ::llmkit::emu::syncwarp();
}
template <class T>
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T, void>& f, const float* p, unsigned ldm, layout_t l) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) f.v[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  ::llmkit::emu::syncwarp();
}
template <class T>
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, T, void>& f, unsigned ldm, layout_t l) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.v[r * 16 + c];
}
template <class TA, class LA, class TB, class LB, class TC>
inline void mma_sync(fragment<accumulator, 16, 16, 16, TC, void>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
                     const fragment<matrix_b, 16, 16, 16, TB, LB>& b, const fragment<accumulator, 16, 16, 16, TC, void>& c) {
  float out[16 * 16];
  for (int r = 0; r < 16; ++r)
    for (int col = 0; col < 16; ++col) {
      float acc = c.v[r * 16 + col];
      for (int k = 0; k < 16; ++k) acc += a.v[r * 16 + k] * b.v[k * 16 + col];
      out[r * 16 + col] = acc;
    }
  std::memcpy(d.v, out, sizeof out);
}
}  // namespace nvcuda::wmma

// ---- The runtime calls the backend uses ----
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = 1 };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
using cudaStream_t = struct CUstream_st*;
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
using cudaEvent_t = struct CUevent_st*;
constexpr unsigned cudaEventDisableTiming = 2;
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaGetLastError();
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDeviceCount(int* n);
const char* cudaGetErrorString(cudaError_t);
