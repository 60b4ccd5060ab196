// Device queries and backend selection. Without the CUDA build (no nvcc found, or
// LLMKIT_CUDA=OFF) there are no devices and asking for one is an error.
#include <cstdlib>
#include <string>

#include "llmkit/backend.hpp"
#include "llmkit/cuda.hpp"
#include "llmkit/error.hpp"
#include "llmkit/parallel.hpp"

namespace llmkit {

#ifndef LLMKIT_HAVE_CUDA
int cuda_device_count() { return 0; }
std::string cuda_device_name(int) { return ""; }
bool cuda_built() { return false; }
std::unique_ptr<Backend> make_cuda_backend(int, const std::string&) {
  throw Error("cuda", "this llmkit was built without CUDA (no nvcc found at build time, or LLMKIT_CUDA=OFF)");
}
std::unique_ptr<Collectives> make_nccl_collectives(Comm&) {
  throw Error("nccl", "this llmkit was built without CUDA (no nvcc found at build time, or LLMKIT_CUDA=OFF)");
}
#else
bool cuda_built() { return true; }
#endif

namespace {
CudaBackendFactory g_cuda_factory = nullptr;

[[noreturn]] void no_quantized_weights(const Backend& be) {
  throw Error(be.name(), "multiplies no ggml-quantized weights yet: run a quantized GGUF model with --device cpu");
}
}  // namespace

void Backend::matmul_forward_quant(float*, const float*, const QuantWeight&, const float*, int, int, int, bool) {
  no_quantized_weights(*this);
}
void Backend::matmul_backward_quant(float*, const float*, const QuantWeight&, int, int, int) { no_quantized_weights(*this); }
void Backend::embedding_quant(float*, const int32_t*, const int32_t*, const QuantWeight&, const float*, int, int) {
  no_quantized_weights(*this);
}

void set_cuda_backend_factory(CudaBackendFactory factory) { g_cuda_factory = factory; }

std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& precision, int local_rank) {
  if (precision != "bf16" && precision != "tf32" && precision != "fp32")
    throw UsageError("--precision must be bf16, tf32 or fp32, not '" + precision + "'");
  if (device == "cpu") return make_cpu_backend();
  if (g_cuda_factory && (device == "cuda" || device.rfind("cuda:", 0) == 0)) return g_cuda_factory(precision);
  if (device == "auto") return cuda_device_count() > 0 ? make_backend("cuda", precision, local_rank) : make_cpu_backend();
  if (device == "cuda") {
    const int n = cuda_device_count();
    return make_cuda_backend(n > 0 ? local_rank % n : 0, precision);
  }
  if (device.rfind("cuda:", 0) == 0) {
    char* end = nullptr;
    const long n = std::strtol(device.c_str() + 5, &end, 10);
    if (end != device.c_str() + 5 && *end == 0 && n >= 0) return make_cuda_backend(static_cast<int>(n), precision);
  }
  throw UsageError("--device must be auto, cpu, cuda or cuda:N, not '" + device + "'");
}

}  // namespace llmkit
