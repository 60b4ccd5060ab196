// The CUDA side of llmkit (lib/backend/cuda, built when nvcc is found): device queries, and
// kernels on device pointers, each the GPU version of a CPU backend operation with the same
// contract (see backend.hpp). Without a CUDA build or a GPU, cuda_device_count() is 0.
#pragma once
#include <cstddef>
#include <string>

namespace llmkit {

int cuda_device_count();
std::string cuda_device_name(int device);

namespace cuda {

// Device memory in floats (errors name the CUDA call and its message).
float* alloc(size_t n);
void release(float* p);
void upload(float* dst, const float* host, size_t n);
void download(float* host, const float* src, size_t n);

// RMSNorm, as Backend::rmsnorm_forward / rmsnorm_backward: one block per row, fp32
// accumulation; the backward accumulates dinp and dw (dw through per-block partial sums
// reduced in a fixed order: no atomics, the same result on every run).
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps);
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int N, int C);

}  // namespace cuda
}  // namespace llmkit
