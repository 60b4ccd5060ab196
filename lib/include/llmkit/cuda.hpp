// The CUDA side of llmkit (lib/backend/cuda, built when nvcc is found). Without a CUDA build or
// a GPU, cuda_device_count() is 0 and make_cuda_backend() throws.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "llmkit/backend.hpp"

namespace llmkit {

int cuda_device_count();
std::string cuda_device_name(int device);
bool cuda_built();  // whether this build has the CUDA backend

// The CUDA backend on `device` (made current with cudaSetDevice); matmuls at `precision`
// ("bf16", "tf32" or "fp32": cuBLASLt's compute type; fp32 accumulation in all).
std::unique_ptr<Backend> make_cuda_backend(int device, const std::string& precision = "bf16");

// The same backend's code compiled for the CPU emulator (lib/backend/cuda/emu.hpp), defined in
// the llmkit_cuda_emu library that the tests link: the kernels run, slowly, without a GPU.
std::unique_ptr<Backend> make_emulated_cuda_backend(const std::string& precision = "bf16");

}  // namespace llmkit
