// Device queries in a build without CUDA (no nvcc found, or LLMKIT_CUDA=OFF): no devices.
#include "llmkit/cuda.hpp"

#ifndef LLMKIT_HAVE_CUDA
namespace llmkit {
int cuda_device_count() { return 0; }
std::string cuda_device_name(int) { return ""; }
}  // namespace llmkit
#endif
