// The CUDA backend: llmkit's Backend (llmkit/backend.hpp) on one GPU. Buffers are fp32 device
// memory; GEMMs run on tensor cores at the chosen precision (matmul.cu); everything else is a
// kernel of this directory. Token, target and position arrays arrive as host memory and are
// copied to the device here (they are small: one int per row).
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "kernels.cuh"
#include "llmkit/backend.hpp"
#include "llmkit/cuda.hpp"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

Precision parse_precision(const std::string& p) {
  if (p == "bf16") return Precision::bf16;
  if (p == "tf32") return Precision::tf32;
  if (p == "fp32") return Precision::fp32;
  throw UsageError("--precision must be bf16, tf32 or fp32, not '" + p + "'");
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(Precision p) : precision_(p) {
#if defined(__CUDACC__)
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    device_name_ = cuda_device_name(device);
#else
    device_name_ = "the CUDA emulator";
#endif
  }
  const char* name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }

  float* alloc(size_t n) override {
    float* p = static_cast<float*>(device_alloc(n * sizeof(float)));
    check(cudaMemset(p, 0, n * sizeof(float)), "cudaMemset");
    return p;
  }
  void release(float* p) override { device_free(p); }
  void zero(float* p, size_t n) override { check(cudaMemsetAsync(p, 0, n * sizeof(float)), "cudaMemsetAsync"); }
  void upload(float* dst, const float* host, size_t n) override {
    check(cudaMemcpy(dst, host, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy to the device");
  }
  void download(float* host, const float* src, size_t n) override {
    check(cudaMemcpy(host, src, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
  }
  void copy(float* dst, const float* src, size_t n) override {
    check(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice), "cudaMemcpyAsync");
  }

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T, int C) override {
    LLMKIT_CUDA_NS::embedding_forward(out, upload_ints(Slot::tokens, tokens, static_cast<size_t>(B) * T), wte, wpe, B, T, C);
  }

  // The rows of each distinct token, found by sorting on the host: the kernel then sums each
  // token's rows in order, without atomics.
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T, int C) override {
    const int N = B * T;
    int runs = 0;
    const int32_t *order_dev = nullptr, *run_dev = nullptr, *token_dev = nullptr;
    if (dwte && N > 0) {
      std::vector<int32_t> order(static_cast<size_t>(N));
      for (int n = 0; n < N; ++n) order[static_cast<size_t>(n)] = n;
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return tokens[a] < tokens[b]; });
      std::vector<int32_t> run, run_token;
      for (int i = 0; i < N; ++i)
        if (i == 0 || tokens[order[static_cast<size_t>(i)]] != tokens[order[static_cast<size_t>(i - 1)]]) {
          run.push_back(i);
          run_token.push_back(tokens[order[static_cast<size_t>(i)]]);
        }
      runs = static_cast<int>(run.size());
      run.push_back(N);
      order_dev = upload_ints(Slot::index, order.data(), order.size());
      run_dev = upload_ints(Slot::index_run, run.data(), run.size());
      token_dev = upload_ints(Slot::index_token, run_token.data(), run_token.size());
    }
    LLMKIT_CUDA_NS::embedding_backward(dwte, dwpe, dout, order_dev, run_dev, token_dev, runs, B, T, C);
  }

  void embedding_at(float* out, const int32_t* tokens, const int32_t* pos, const float* wte, const float* wpe, int N,
                    int C) override {
    const int32_t* t = upload_ints(Slot::tokens, tokens, static_cast<size_t>(N));
    const int32_t* p = upload_ints(Slot::positions, pos, static_cast<size_t>(N));
    LLMKIT_CUDA_NS::embedding_at(out, t, p, wte, wpe, N, C);
  }

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) override {
    LLMKIT_CUDA_NS::rmsnorm_forward(out, rstd, inp, w, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd, int N,
                        int C) override {
    LLMKIT_CUDA_NS::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N, int C,
                         float eps) override {
    LLMKIT_CUDA_NS::layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
  }
  void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                          const float* mean, const float* rstd, int N, int C) override {
    LLMKIT_CUDA_NS::layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  }

  // out[N, OC] = inp[N, C] w[OC, C]^T + bias
  void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC) override {
    set_precision(precision_);
    gemm(false, true, N, OC, C, 1.0f, inp, C, 0, w, C, 0, 0.0f, out, OC, 0, 1, bias);
  }
  void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, int N, int C,
                       int OC) override {
    set_precision(precision_);
    if (dinp) gemm(false, false, N, C, OC, 1.0f, dout, OC, 0, w, C, 0, 1.0f, dinp, C, 0, 1);  // += dout w
    if (dw) gemm(true, false, OC, C, N, 1.0f, dout, OC, 0, inp, C, 0, 1.0f, dw, C, 0, 1);     // += dout^T inp
    if (dbias) column_sum(dbias, dout, N, OC);
  }

  void rope_forward(float* x, int B, int T, int heads, int hd, float theta) override {
    rope(x, nullptr, B * T, T, heads, hd, theta, 1.0f);
  }
  void rope_backward(float* dx, int B, int T, int heads, int hd, float theta) override {
    rope(dx, nullptr, B * T, T, heads, hd, theta, -1.0f);
  }
  void rope_at(float* x, const int32_t* pos, int N, int heads, int hd, float theta) override {
    rope(x, upload_ints(Slot::positions, pos, static_cast<size_t>(N)), N, 1, heads, hd, theta, 1.0f);
  }

  void attention_cached(float* out, const float* q, const float* k_cache, const float* v_cache, int start, int rows, int NH,
                        int KV, int hd) override {
    LLMKIT_CUDA_NS::attention_cached(out, q, k_cache, v_cache, start, rows, NH, KV, hd);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int T, int NH, int KV,
                         int hd) override {
    set_precision(precision_);
    LLMKIT_CUDA_NS::attention_forward(out, lse, q, k, v, B, T, NH, KV, hd);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                          const float* out, const float* lse, int B, int T, int NH, int KV, int hd) override {
    set_precision(precision_);
    LLMKIT_CUDA_NS::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, NH, KV, hd);
  }

  void swiglu_forward(float* out, const float* gate, const float* up, size_t n) override {
    LLMKIT_CUDA_NS::swiglu_forward(out, gate, up, n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, size_t n) override {
    LLMKIT_CUDA_NS::swiglu_backward(dgate, dup, dout, gate, up, n);
  }
  void gelu_forward(float* out, const float* inp, size_t n) override { LLMKIT_CUDA_NS::gelu_forward(out, inp, n); }
  void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n) override {
    LLMKIT_CUDA_NS::gelu_backward(dinp, dout, inp, n);
  }
  void add(float* out, const float* a, const float* b, size_t n) override { LLMKIT_CUDA_NS::add(out, a, b, n); }
  void accumulate(float* dst, const float* src, size_t n) override { LLMKIT_CUDA_NS::accumulate(dst, src, n); }
  void scale(float* x, float s, size_t n) override { LLMKIT_CUDA_NS::scale(x, s, n); }

  void crossentropy_forward(float* logp, const float* logits, const int32_t* targets, int N, int V, int Vp) override {
    LLMKIT_CUDA_NS::crossentropy_forward(logp, logits, upload_ints(Slot::targets, targets, static_cast<size_t>(N)), N, V, Vp);
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, const float* dlogp, int N, int V,
                             int Vp) override {
    LLMKIT_CUDA_NS::crossentropy_backward(dlogits, logits, upload_ints(Slot::targets, targets, static_cast<size_t>(N)), dlogp, N,
                                          V, Vp);
  }

  void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2, float eps,
             float weight_decay, int64_t t, float grad_scale) override {
    const float c1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(t)));
    const float c2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(t)));
    LLMKIT_CUDA_NS::adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2, grad_scale);
  }
  double sum_squares(const float* x, size_t n) override { return LLMKIT_CUDA_NS::sum_squares(x, n); }
  size_t peak_memory() const override { return peak_bytes(); }
  void synchronize() override { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

 private:
  // The GEMMs' compute type is set per call: backends of different precision may coexist.
  Precision precision_;
  std::string device_name_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& precision) {
  return std::make_unique<CudaBackend>(parse_precision(precision));
}

}  // namespace llmkit::LLMKIT_CUDA_NS

namespace llmkit {

#if defined(__CUDACC__)
std::unique_ptr<Backend> make_cuda_backend(int device, const std::string& precision) {
  const int n = cuda_device_count();
  if (device < 0 || device >= n)
    throw Error("cuda", n == 0 ? "no CUDA device is visible (CUDA_VISIBLE_DEVICES, the driver?)"
                               : "device " + std::to_string(device) + " of " + std::to_string(n));
  cuda::check(cudaSetDevice(device), "cudaSetDevice");
  return cuda::make_backend(precision);
}
#else
std::unique_ptr<Backend> make_emulated_cuda_backend(const std::string& precision) { return cuda_emu::make_backend(precision); }
#endif

}  // namespace llmkit
