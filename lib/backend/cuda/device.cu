// CUDA device queries, error checks and the scratch arena; see common.cuh and llmkit/cuda.hpp.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common.cuh"
#include "llmkit/cuda.hpp"
#include "llmkit/error.hpp"

namespace llmkit {

#if defined(__CUDACC__)
int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the error, report none
    return 0;
  }
  return n;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp p;
  LLMKIT_CUDA_NS::check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return p.name;
}
#endif

namespace LLMKIT_CUDA_NS {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error("cuda", std::string(what) + ": " + cudaGetErrorString(e));
}

void check_launch(const char* what) {
  static const bool sync = [] {
    const char* s = std::getenv("LLMKIT_CUDA_SYNC");
    return s && *s && std::strcmp(s, "0") != 0;
  }();
  check(cudaGetLastError(), what);
  if (sync) check(cudaDeviceSynchronize(), what);
}

namespace {
std::mutex g_alloc_mu;
std::unordered_map<void*, size_t> g_sizes;
size_t g_in_use = 0, g_peak = 0;
}  // namespace

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(bytes, 256)), "cudaMalloc");
  std::lock_guard<std::mutex> lock(g_alloc_mu);
  g_sizes[p] = bytes;
  g_in_use += bytes;
  g_peak = std::max(g_peak, g_in_use);
  return p;
}

void device_free(void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(g_alloc_mu);
    auto it = g_sizes.find(p);
    if (it != g_sizes.end()) {
      g_in_use -= it->second;
      g_sizes.erase(it);
    }
  }
  // A failed free must not stay the runtime's last error, blamed on the next kernel.
  if (cudaFree(p) != cudaSuccess) cudaGetLastError();
}

size_t max_block_smem() {
#if defined(__CUDACC__)
  static const size_t bytes = [] {
    int device = 0, optin = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
    return static_cast<size_t>(optin);
  }();
  return bytes;
#else
  return 227 * 1024;  // the emulator stands for an H100
#endif
}

size_t bytes_in_use() { return g_in_use; }
size_t peak_bytes() { return g_peak; }

namespace {
struct Arena {
  float* p = nullptr;
  size_t floats = 0;
  std::vector<int32_t> last;  // upload_ints: what the slot holds
  int32_t* pinned = nullptr;  // upload_ints: page-locked staging, so the copy need not block
  size_t pinned_n = 0;
  cudaEvent_t copied = nullptr;  // recorded after the last copy out of `pinned`
};
Arena arenas[static_cast<int>(Slot::count)];
}  // namespace

float* scratch(Slot slot, size_t floats) {
  Arena& a = arenas[static_cast<int>(slot)];
  if (floats > a.floats) {
    if (a.p) {
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // kernels may still read the old one
      device_free(a.p);
    }
    a.p = nullptr;
    a.floats = 0;
    a.last.clear();
    const size_t n = floats + floats / 4;  // room to grow
    a.p = static_cast<float*>(device_alloc(n * sizeof(float)));
    a.floats = n;
  }
  return a.p;
}

int32_t* upload_ints(Slot slot, const int32_t* host, size_t n) {
  static_assert(sizeof(int32_t) == sizeof(float));
  Arena& a = arenas[static_cast<int>(slot)];
  int32_t* dev = reinterpret_cast<int32_t*>(scratch(slot, n));
  if (a.last.size() == n && std::memcmp(a.last.data(), host, n * sizeof(int32_t)) == 0) return dev;
  // An asynchronous copy from page-locked memory, queued after the kernels that read the slot's
  // old values: the host goes on queueing work instead of waiting for the GPU to drain.
  if (!a.copied) check(cudaEventCreateWithFlags(&a.copied, cudaEventDisableTiming), "cudaEventCreate");
  else check(cudaEventSynchronize(a.copied), "cudaEventSynchronize");  // the staging buffer is free again
  if (a.pinned_n < n) {
    if (a.pinned && cudaFreeHost(a.pinned) != cudaSuccess) cudaGetLastError();
    a.pinned = nullptr;
    a.pinned_n = n + n / 4;
    check(cudaMallocHost(reinterpret_cast<void**>(&a.pinned), a.pinned_n * sizeof(int32_t)), "cudaMallocHost");
  }
  std::memcpy(a.pinned, host, n * sizeof(int32_t));
  check(cudaMemcpyAsync(dev, a.pinned, n * sizeof(int32_t), cudaMemcpyHostToDevice, 0), "cudaMemcpyAsync (indices)");
  check(cudaEventRecord(a.copied, 0), "cudaEventRecord");
  a.last.assign(host, host + n);
  return dev;
}

}  // namespace LLMKIT_CUDA_NS
}  // namespace llmkit
