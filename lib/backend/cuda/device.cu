// CUDA device queries and memory; see llmkit/cuda.hpp.
#include <cuda_runtime.h>

#include "llmkit/cuda.hpp"
#include "llmkit/error.hpp"

namespace llmkit {

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error("cuda", std::string(what) + ": " + cudaGetErrorString(e));
}
}  // namespace

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
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return p.name;
}

namespace cuda {

float* alloc(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(float)), "cudaMalloc");
  check(cudaMemset(p, 0, n * sizeof(float)), "cudaMemset");
  return static_cast<float*>(p);
}
void release(float* p) { cudaFree(p); }
void upload(float* dst, const float* host, size_t n) {
  check(cudaMemcpy(dst, host, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy to device");
}
void download(float* host, const float* src, size_t n) {
  check(cudaMemcpy(host, src, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

}  // namespace cuda
}  // namespace llmkit
