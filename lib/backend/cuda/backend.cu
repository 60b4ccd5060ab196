// The CUDA backend: llmkit's Backend (llmkit/backend.hpp) on one GPU. GEMMs run on tensor cores
// at the chosen precision (matmul.cu); everything else is a kernel of this directory. Token,
// target and position arrays arrive as host memory and are copied to the device here (they are
// small: one int per row).
//
// Mixed precision (--precision bf16): activations and their gradients are bf16 in memory, half
// the bytes; the weights' fp32 master copy, the gradients of the weights, AdamW's moments and
// the per-row statistics stay fp32, and every sum accumulates in fp32. Matmuls read a bf16 copy
// of the weights, made again after each optimizer step (one pass over them). An activation
// buffer is handed out as a handle: an address range reserved (PROT_NONE, so a stray host
// access faults) with 4 bytes per value, so that the model's pointer arithmetic counts values
// as for any buffer; each operation translates handles to the bf16 memory behind them.
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "kernels.cuh"
#include "llmkit/backend.hpp"
#include "llmkit/cuda.hpp"
#include "llmkit/safetensors.hpp"  // f32_to_bf16, bf16_to_f32: the GPU's rounding, on the host

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
  explicit CudaBackend(Precision p) : precision_(p), bf16_(p == Precision::bf16) {
#if defined(__CUDACC__)
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    device_name_ = cuda_device_name(device);
#else
    device_name_ = "the CUDA emulator";
#endif
  }
  ~CudaBackend() override {
    for (auto& [virt, block] : acts_) {
      device_free(block.real);
      munmap(reinterpret_cast<void*>(virt), block.reserved);
    }
    for (auto& [w, sh] : shadows_) device_free(sh.bf16);
  }
  const char* name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }
  std::string matmul_kernel() const override {
    return std::string("cuBLASLt, ") + (precision_ == Precision::bf16 ? "bf16" : precision_ == Precision::tf32 ? "tf32" : "fp32");
  }

  // ---- Memory ----

  float* alloc(size_t n) override {
    float* p = static_cast<float*>(device_alloc(n * sizeof(float)));
    check(cudaMemset(p, 0, n * sizeof(float)), "cudaMemset");
    return p;
  }
  float* alloc_activations(size_t n) override {
    if (!bf16_) return alloc(n);
    Block b;
    b.values = n;
    b.real = device_alloc(n * 2);
    check(cudaMemset(b.real, 0, n * 2), "cudaMemset");
    b.reserved = std::max<size_t>(n * sizeof(float), 1);
    void* virt = mmap(nullptr, b.reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (virt == MAP_FAILED) {
      device_free(b.real);
      throw Error("cuda", "cannot reserve address space for an activation buffer");
    }
    acts_[reinterpret_cast<uintptr_t>(virt)] = b;
    return static_cast<float*>(virt);
  }
  size_t activation_value_bytes() const override { return bf16_ ? 2 : 4; }
  void release(float* p) override {
    if (auto s = shadows_.find(p); s != shadows_.end()) {  // a model's weights: their bf16 copy goes too
      device_free(s->second.bf16);
      shadows_.erase(s);
    }
    auto it = acts_.find(reinterpret_cast<uintptr_t>(p));
    if (it == acts_.end()) return device_free(p);
    device_free(it->second.real);
    munmap(p, it->second.reserved);
    acts_.erase(it);
  }
  void zero(float* p, size_t n) override {
    const Ref r = ref(p);
    check(cudaMemsetAsync(r.p, 0, n * bytes(r)), "cudaMemsetAsync");
    touched(p, n);
  }
  void upload(float* dst, const float* host, size_t n) override {
    const Ref r = ref(dst);
    if (r.bf16) {
      std::vector<uint16_t> h(n);
      for (size_t i = 0; i < n; ++i) h[i] = f32_to_bf16(host[i]);
      check(cudaMemcpy(r.p, h.data(), n * 2, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
    } else {
      check(cudaMemcpy(r.p, host, n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy to the device");
    }
    touched(dst, n);
  }
  void download(float* host, const float* src, size_t n) override {
    const Ref r = ref(src);
    if (r.bf16) {
      std::vector<uint16_t> h(n);
      check(cudaMemcpy(h.data(), r.p, n * 2, cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
      for (size_t i = 0; i < n; ++i) host[i] = bf16_to_f32(h[i]);
    } else {
      check(cudaMemcpy(host, r.p, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
    }
  }
  void copy(float* dst, const float* src, size_t n) override {
    const Ref d = ref(dst), s = ref(src);
    if (d.bf16 == s.bf16) check(cudaMemcpyAsync(d.p, s.p, n * bytes(d), cudaMemcpyDeviceToDevice), "cudaMemcpyAsync");
    else convert(d, s, n);
    touched(dst, n);
  }
  void set_parameters(float* w, size_t n) override {
    if (!bf16_) return;
    Shadow& sh = shadows_[w];
    if (sh.bf16) device_free(sh.bf16);
    sh.bf16 = device_alloc(n * 2);
    sh.n = n;
    sh.stale = true;
  }
  void parameters_changed() override {
    for (auto& [w, sh] : shadows_) sh.stale = true;
  }

  // ---- Operations ----

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T, int C,
                         const int32_t* starts) override {
    const int32_t* tokens_dev = upload_ints(Slot::tokens, tokens, static_cast<size_t>(B) * T);
    if (starts && wpe)
      LLMKIT_CUDA_NS::embedding_at(ref(out), tokens_dev, positions(starts, B, T), wte, wpe, B * T, C);
    else
      LLMKIT_CUDA_NS::embedding_forward(ref(out), tokens_dev, wte, wpe, B, T, C);
  }

  // The rows of each distinct token (and, for packed rows, of each position), found by sorting
  // on the host: the kernel then sums each one's rows in order, without atomics.
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T, int C,
                          const int32_t* starts) override {
    const int N = B * T;
    if (N <= 0) return;
    if (dwte) {
      Runs r = runs_by_key(tokens, N, true);
      rows_grad(dwte, ref(dout), upload_ints(Slot::index, r.order.data(), r.order.size()),
                upload_ints(Slot::index_run, r.run.data(), r.run.size()),
                upload_ints(Slot::index_token, r.key.data(), r.key.size()), r.count(), C);
    }
    if (dwpe && starts) {
      std::vector<int32_t> pos(static_cast<size_t>(N));
      for (int n = 0; n < N; ++n) pos[static_cast<size_t>(n)] = n % T - starts[n];
      Runs r = runs_by_key(pos.data(), N);
      rows_grad(dwpe, ref(dout), upload_ints(Slot::index, r.order.data(), r.order.size()),
                upload_ints(Slot::index_run, r.run.data(), r.run.size()),
                upload_ints(Slot::index_token, r.key.data(), r.key.size()), r.count(), C);
    } else if (dwpe) {
      LLMKIT_CUDA_NS::embedding_backward(nullptr, dwpe, ref(dout), nullptr, nullptr, nullptr, 0, B, T, C);
    }
  }

  void embedding_at(float* out, const int32_t* tokens, const int32_t* pos, const float* wte, const float* wpe, int N,
                    int C) override {
    const int32_t* t = upload_ints(Slot::tokens, tokens, static_cast<size_t>(N));
    const int32_t* p = upload_ints(Slot::positions, pos, static_cast<size_t>(N));
    LLMKIT_CUDA_NS::embedding_at(ref(out), t, p, wte, wpe, N, C);
  }

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) override {
    LLMKIT_CUDA_NS::rmsnorm_forward(ref(out), rstd, ref(inp), w, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd, int N,
                        int C) override {
    LLMKIT_CUDA_NS::rmsnorm_backward(ref(dinp), dw, ref(dout), ref(inp), w, rstd, N, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N, int C,
                         float eps) override {
    LLMKIT_CUDA_NS::layernorm_forward(ref(out), mean, rstd, ref(inp), w, b, N, C, eps);
  }
  void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                          const float* mean, const float* rstd, int N, int C) override {
    LLMKIT_CUDA_NS::layernorm_backward(ref(dinp), dw, db, ref(dout), ref(inp), w, mean, rstd, N, C);
  }

  // out[N, OC] = inp[N, C] w[OC, C]^T + bias
  void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC) override {
    set_precision(precision_);
    gemm(false, true, N, OC, C, 1.0f, ref(inp), C, 0, weight(w), C, 0, 0.0f, ref(out), OC, 0, 1, bias ? weight(bias) : Ref{});
  }
  void matmul_accumulate(float* out, const float* inp, const float* w, int N, int C, int OC, float alpha) override {
    set_precision(precision_);
    gemm(false, true, N, OC, C, alpha, ref(inp), C, 0, weight(w), C, 0, 1.0f, ref(out), OC, 0, 1);
  }
  void dropout(float* out, const float* in, size_t n, float p, uint64_t seed, uint64_t offset) override {
    LLMKIT_CUDA_NS::dropout(ref(out), ref(in), n, p, seed, offset);
  }
  void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, int N, int C,
                       int OC) override {
    set_precision(precision_);
    if (dinp) gemm(false, false, N, C, OC, 1.0f, ref(dout), OC, 0, weight(w), C, 0, 1.0f, ref(dinp), C, 0, 1);  // += dout w
    if (dw) gemm(true, false, OC, C, N, 1.0f, ref(dout), OC, 0, ref(inp), C, 0, 1.0f, ref(dw), C, 0, 1);          // += dout^T inp
    if (dbias) column_sum(dbias, ref(dout), N, OC);
  }

  // ---- Quantized matrices (ggml blocks, quant.cu) ----
  // A few rows: quant_matvec, each weight row read once. More: slices of the weight rows
  // dequantized into scratch (bf16 when the matmuls are) and multiplied by cuBLASLt, as
  // QLoRA's bitsandbytes does; `exact` changes nothing here (no 8-bit activations).
  void matmul_forward_quant(float* out, const float* inp, const QuantWeight& w, const float* bias, int N, int C, int OC,
                            bool) override {
    const auto* W = static_cast<const uint8_t*>(w.data);
    if (N <= kMatvecRows) return quant_matvec(ref(out), ref(inp), W, w.row_bytes, w.type, bias, N, C, OC);
    set_precision(precision_);
    const int S = slice_rows(C, OC);
    for (int o0 = 0; o0 < OC; o0 += S) {
      const int rows = std::min(S, OC - o0);
      const Ref d = dequantized(W + w.row_bytes * static_cast<size_t>(o0), w, rows, C);
      gemm(false, true, N, rows, C, 1.0f, ref(inp), C, 0, d, C, 0, 0.0f, ref(out).at(static_cast<size_t>(o0)), OC, 0, 1,
           bias ? weight(bias + o0) : Ref{});
    }
  }
  void matmul_backward_quant(float* dinp, const float* dout, const QuantWeight& w, int N, int C, int OC) override {
    const auto* W = static_cast<const uint8_t*>(w.data);
    set_precision(precision_);
    const int S = slice_rows(C, OC);
    for (int o0 = 0; o0 < OC; o0 += S) {  // dinp += dout[:, o0:o0+rows] W[o0:o0+rows, :]
      const int rows = std::min(S, OC - o0);
      const Ref d = dequantized(W + w.row_bytes * static_cast<size_t>(o0), w, rows, C);
      gemm(false, false, N, C, rows, 1.0f, ref(dout).at(static_cast<size_t>(o0)), OC, 0, d, C, 0, 1.0f, ref(dinp), C, 0, 1);
    }
  }
  void embedding_quant(float* out, const int32_t* tokens, const int32_t* pos, const QuantWeight& wte, const float* wpe, int N,
                       int C) override {
    const int32_t* t = upload_ints(Slot::tokens, tokens, static_cast<size_t>(N));
    const int32_t* p = wpe ? upload_ints(Slot::positions, pos, static_cast<size_t>(N)) : nullptr;
    LLMKIT_CUDA_NS::embedding_quant(ref(out), t, p, static_cast<const uint8_t*>(wte.data), wte.row_bytes, wte.type, wpe, N, C);
  }
  std::string quant_kernel() const override {
    return "warp dot products (up to " + std::to_string(kMatvecRows) + " rows), dequantize + cuBLASLt (more)";
  }

  void rope_forward(float* x, int B, int T, int heads, int hd, float theta, const int32_t* starts) override {
    rope(ref(x), starts ? positions(starts, B, T) : nullptr, B * T, T, heads, hd, theta, 1.0f);
  }
  void rope_backward(float* dx, int B, int T, int heads, int hd, float theta, const int32_t* starts) override {
    rope(ref(dx), starts ? positions(starts, B, T) : nullptr, B * T, T, heads, hd, theta, -1.0f);
  }
  void rope_at(float* x, const int32_t* pos, int N, int heads, int hd, float theta) override {
    rope(ref(x), upload_ints(Slot::positions, pos, static_cast<size_t>(N)), N, 1, heads, hd, theta, 1.0f);
  }

  void attention_paged(float* out, const float* q, const float* k_pool, const float* v_pool, const int32_t* table, int block,
                       int start, int rows, int NH, int KV, int hd) override {
    LLMKIT_CUDA_NS::attention_paged(ref(out), ref(q), ref(k_pool), ref(v_pool), table, block, start, rows, NH, KV, hd);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int T, int NH, int KV,
                         int hd, const int32_t* starts, bool causal) override {
    set_precision(precision_);
    LLMKIT_CUDA_NS::attention_forward(ref(out), lse, ref(q), ref(k), ref(v), starts_on_device(starts, B, T),
                                      ends_on_device(starts, B, T, causal), B, T, NH, KV, hd);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                          const float* out, const float* lse, int B, int T, int NH, int KV, int hd,
                          const int32_t* starts, bool causal) override {
    set_precision(precision_);
    LLMKIT_CUDA_NS::attention_backward(ref(dq), ref(dk), ref(dv), ref(dout), ref(q), ref(k), ref(v), ref(out), lse,
                                       starts_on_device(starts, B, T), ends_on_device(starts, B, T, causal), B, T, NH, KV, hd);
  }

  void swiglu_forward(float* out, const float* gate, const float* up, size_t n) override {
    LLMKIT_CUDA_NS::swiglu_forward(ref(out), ref(gate), ref(up), n);
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, size_t n) override {
    LLMKIT_CUDA_NS::swiglu_backward(ref(dgate), ref(dup), ref(dout), ref(gate), ref(up), n);
  }
  void gelu_forward(float* out, const float* inp, size_t n, bool erf) override {
    LLMKIT_CUDA_NS::gelu_forward(ref(out), ref(inp), n, erf);
  }
  void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n, bool erf) override {
    LLMKIT_CUDA_NS::gelu_backward(ref(dinp), ref(dout), ref(inp), n, erf);
  }
  void tanh_forward(float* out, const float* inp, size_t n) override { LLMKIT_CUDA_NS::tanh_forward(ref(out), ref(inp), n); }
  void tanh_backward(float* dinp, const float* dout, const float* out, size_t n) override {
    LLMKIT_CUDA_NS::tanh_backward(ref(dinp), ref(dout), ref(out), n);
  }
  void add(float* out, const float* a, const float* b, size_t n) override {
    LLMKIT_CUDA_NS::add(ref(out), ref(a), ref(b), n);
    touched(out, n);
  }
  void accumulate(float* dst, const float* src, size_t n) override {
    LLMKIT_CUDA_NS::accumulate(ref(dst), ref(src), n);
    touched(dst, n);
  }
  void scale(float* x, float s, size_t n) override {
    LLMKIT_CUDA_NS::scale(ref(x), s, n);
    touched(x, n);
  }

  void crossentropy_forward(float* logp, const float* logits, const int32_t* targets, int N, int V, int Vp) override {
    LLMKIT_CUDA_NS::crossentropy_forward(logp, ref(logits), upload_ints(Slot::targets, targets, static_cast<size_t>(N)), N, V, Vp);
  }
  void argmax(int32_t* out, const float* logits, int N, int V, int Vp, float* values) override {
    if (N <= 0) return;
    // Indices, then values, in one scratch buffer of 2N words.
    auto* dev = reinterpret_cast<int32_t*>(scratch(Slot::partial, 2 * static_cast<size_t>(N)));
    float* vals = values ? reinterpret_cast<float*>(dev + N) : nullptr;
    LLMKIT_CUDA_NS::argmax(dev, vals, ref(logits), N, V, Vp);
    check(cudaMemcpy(out, dev, static_cast<size_t>(N) * sizeof(int32_t), cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
    if (values) check(cudaMemcpy(values, vals, static_cast<size_t>(N) * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy to the host");
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, const float* dlogp, int N, int V,
                             int Vp, const float* lse) override {
    LLMKIT_CUDA_NS::crossentropy_backward(ref(dlogits), ref(logits), upload_ints(Slot::targets, targets, static_cast<size_t>(N)),
                                          dlogp, N, V, Vp, lse);
  }
  void logsumexp(float* lse, const float* logits, int N, int V, int Vp) override {
    LLMKIT_CUDA_NS::logsumexp(lse, ref(logits), N, V, Vp);
  }

  void distill_backward(float* dlogits, float* kd_loss, const float* logits, const float* teacher, const int32_t* targets,
                        const float* dlogp, const float* kd_weight, int N, int V, int Vp, const Divergence& d) override {
    LLMKIT_CUDA_NS::distill_backward(ref(dlogits), kd_loss, ref(logits), ref(teacher),
                                     upload_ints(Slot::targets, targets, static_cast<size_t>(N)), dlogp, kd_weight, N, V, Vp, d);
  }

  void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2, float eps,
             float weight_decay, int64_t t, float grad_scale) override {
    const float c1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(t)));
    const float c2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(t)));
    LLMKIT_CUDA_NS::adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2, grad_scale);
    touched(p, n);
  }
  double sum_squares(const float* x, size_t n) override { return LLMKIT_CUDA_NS::sum_squares(x, n); }
  size_t peak_memory() const override { return peak_bytes(); }
  void synchronize() override { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

 private:
  struct Block {
    void* real = nullptr;  // n bf16 values on the device
    size_t values = 0, reserved = 0;
  };

  // Rows 0..N-1 grouped by key, keys ascending, rows ascending within a key: order, the start
  // of each group in it (one more at the end: N) and the groups' keys.
  struct Runs {
    std::vector<int32_t> order, run, key;
    int count() const { return static_cast<int>(key.size()); }
  };
  // skip_negative: keys < 0 (tokens of another vocabulary shard) are in no run.
  static Runs runs_by_key(const int32_t* keys, int N, bool skip_negative = false) {
    Runs r;
    for (int n = 0; n < N; ++n)
      if (!skip_negative || keys[n] >= 0) r.order.push_back(n);
    std::stable_sort(r.order.begin(), r.order.end(), [&](int32_t a, int32_t b) { return keys[a] < keys[b]; });
    const int M = static_cast<int>(r.order.size());
    for (int i = 0; i < M; ++i)
      if (i == 0 || keys[r.order[static_cast<size_t>(i)]] != keys[r.order[static_cast<size_t>(i - 1)]]) {
        r.run.push_back(i);
        r.key.push_back(keys[r.order[static_cast<size_t>(i)]]);
      }
    r.run.push_back(M);
    return r;
  }
  // Packed rows' positions t - starts[t] on the device.
  const int32_t* positions(const int32_t* starts, int B, int T) {
    positions_.resize(static_cast<size_t>(B) * T);
    for (int n = 0; n < B * T; ++n) positions_[static_cast<size_t>(n)] = n % T - starts[n];
    return upload_ints(Slot::positions, positions_.data(), positions_.size());
  }
  const int32_t* starts_on_device(const int32_t* starts, int B, int T) {
    return starts ? upload_ints(Slot::starts, starts, static_cast<size_t>(B) * T) : nullptr;
  }
  // Bidirectional attention's sequence ends; null for causal attention.
  const int32_t* ends_on_device(const int32_t* starts, int B, int T, bool causal) {
    if (causal) return nullptr;
    const std::vector<int32_t> ends = sequence_ends(starts, B, T);
    return upload_ints(Slot::ends, ends.data(), ends.size());
  }
  std::vector<int32_t> positions_;

  // Weight rows per slice of a quantized matmul: at most 2^25 values of scratch.
  static int slice_rows(int C, int OC) { return std::max(1, std::min(OC, (1 << 25) / std::max(C, 1))); }
  // `rows` rows of w's blocks from W, dequantized into scratch: bf16 when the matmuls are.
  Ref dequantized(const uint8_t* W, const QuantWeight& w, int rows, int C) {
    const Ref d{scratch(Slot::dequant, static_cast<size_t>(rows) * C), bf16_};
    dequantize_rows(d, W, w.row_bytes, w.type, rows, C);
    return d;
  }

  // A handle (activation buffer or plain device pointer) as the memory the kernels read.
  Ref ref(const float* p) const {
    if (!p || acts_.empty()) return f32(p);
    const auto key = reinterpret_cast<uintptr_t>(p);
    auto it = acts_.upper_bound(key);
    if (it == acts_.begin()) return f32(p);
    --it;
    const size_t offset = (key - it->first) / sizeof(float);
    if (offset >= it->second.values) return f32(p);
    return {static_cast<char*>(it->second.real) + offset * 2, true};
  }
  static size_t bytes(const Ref& r) { return r.bf16 ? 2 : 4; }

  // A write that may have changed weights: their bf16 copy is made again before the next matmul.
  void touched(const float* p, size_t n) {
    if (shadows_.empty() || n == 0) return;
    auto it = shadows_.upper_bound(p + n - 1);  // the copies of weights that begin at or before the write's end
    while (it != shadows_.begin()) {
      --it;
      if (it->first + it->second.n <= p) break;  // ranges do not overlap: none further down reaches p
      it->second.stale = true;
    }
  }
  // A matmul's weight operand: the bf16 copy of the weights when there is one.
  Ref weight(const float* w) {
    auto it = shadows_.upper_bound(w);
    if (it == shadows_.begin()) return ref(w);
    --it;
    Shadow& sh = it->second;
    if (w >= it->first + sh.n) return ref(w);
    if (sh.stale) {
      convert(Ref{sh.bf16, true}, f32(it->first), sh.n);
      sh.stale = false;
    }
    return Ref{static_cast<char*>(sh.bf16) + static_cast<size_t>(w - it->first) * 2, true};
  }

  // The GEMMs' compute type is set per call: backends of different precision may coexist.
  Precision precision_;
  bool bf16_;  // activations in bf16, and a bf16 copy of the weights for the matmuls
  std::string device_name_;
  std::map<uintptr_t, Block> acts_;  // by the handle's first address
  // The bf16 copies of each model's weights (set_parameters), by the weights' first address: a
  // teacher, a reference or a reward model beside the trained one keeps its own.
  struct Shadow {
    size_t n = 0;
    void* bf16 = nullptr;
    bool stale = true;
  };
  std::map<const float*, Shadow> shadows_;
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
