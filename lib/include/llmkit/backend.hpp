// The operations of a decoder-only transformer, forward and backward, one function per
// operation (llm.c style), behind an interface that the CPU backend (lib/backend/cpu) and the
// CUDA backend implement. Pointers are the backend's memory (host memory on the CPU, device
// memory on CUDA); shapes are given in each call. fp32 throughout on the CPU.
//
// Conventions: N = B*T rows (token positions), C channels. Every backward that produces a
// parameter gradient ACCUMULATES into it (+=), so micro-batches add up; input gradients are
// accumulated too (+=) unless the comment says "overwrites". Linear weights are [out, in]
// (PyTorch's nn.Linear layout). Attention tensors are [B, T, heads, head_dim].
//
// Packed rows: a row of T tokens may hold several sequences back to back. `starts` (a host
// array of B*T, or null: one sequence per row) gives for each token the index in its row where
// its sequence begins: token t sees tokens starts[t]..t only, and its position (RoPE, GPT-2's
// learned positions) is t - starts[t]. Within a row starts[t] is starts[t-1] or t (a sequence
// continues or a new one begins). So a packed batch computes exactly what its sequences would
// one by one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/ggml.hpp"

namespace llmkit {

// A weight matrix [rows, cols] held as ggml blocks (llmkit/ggml.hpp: Q8_0, Q4_K, ...) in the
// backend's memory, row after row of row_bytes bytes: what a GGUF model's matrices stay in. The
// matmuls read the blocks directly; nothing dequantizes the whole matrix.
struct QuantWeight {
  ggml::Type type = ggml::Type::f32;
  const void* data = nullptr;  // null: none (the layer's weight is fp32)
  size_t row_bytes = 0;
};

// The divergences of knowledge distillation, between a teacher's t and a student's s, both
// softmax(logits / temperature):
//   kl   temperature^2 KL(t || s), Hinton et al.'s distillation loss (the factor keeps the
//        gradient's size when the temperature changes);
//   jsd  the generalised Jensen-Shannon divergence of TRL's GKD, beta KL(t || m) + (1 - beta)
//        KL(s || m) with m = beta t + (1 - beta) s; beta 0 is KL(t || s) (forward), 1 is
//        KL(s || t) (reverse), as TRL defines them; no temperature factor.
struct Divergence {
  enum class Kind { kl, jsd } kind = Kind::kl;
  float temperature = 1.0f;
  float beta = 0.5f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // The device in words ("cpu", "NVIDIA H100 80GB HBM3").
  virtual std::string device_name() const { return name(); }
  // What multiplies the matrices, in words ("oneDNN 2.6.3 sgemm (avx512_core), ...", "cuBLASLt,
  // bf16"): logged by the commands and written to llm-pretrain's metrics.
  virtual std::string matmul_kernel() const { return ""; }
  // The rate of that kernel that MFU is measured against, FLOP/s: on the CPU its own sgemm's
  // measured rate on a 1024^3 product; 0 where it is not measured (a GPU's peak comes from its
  // name: gpu_peak_flops()).
  virtual double matmul_peak_flops() { return 0; }

  // Memory, in floats.
  virtual float* alloc(size_t n) = 0;  // zeroed
  virtual void release(float* p) = 0;
  virtual void zero(float* p, size_t n) = 0;
  virtual void upload(float* dst, const float* host, size_t n) = 0;
  virtual void download(float* host, const float* src, size_t n) = 0;
  // The backend's memory as host memory when it is that (the CPU), else nullptr: callers then
  // read and write it in place instead of copying.
  virtual float* host_view(float* p) { (void)p; return nullptr; }
  // Memory for activations and their gradients: n values in the backend's activation type (fp32
  // on the CPU; bf16 on a GPU training in bf16, half the bytes). The pointer is a handle counted
  // in values, so p + i is value i as with any buffer here, but it may not be host-addressable
  // even where host_view() would say so: use upload, download and copy. Released by release().
  virtual float* alloc_activations(size_t n) { return alloc(n); }
  // Bytes a value of alloc_activations() takes.
  virtual size_t activation_value_bytes() const { return 4; }
  // A model's weights, n values at w (fp32 master weights, which the optimizer updates): a
  // backend that multiplies in bf16 keeps a bf16 copy of them for its matmuls, one per model
  // (a teacher or a reference model beside the trained one), until release(w).
  virtual void set_parameters(float* w, size_t n) { (void)w; (void)n; }
  // The weights changed other than through this backend's operations (a collective wrote them).
  virtual void parameters_changed() {}

  // out[n] = wte[tokens[n]] (+ wpe[position of n] when wpe is not null). A token < 0 (one on
  // another rank's shard of a vocabulary-parallel table) has a zero row, and no gradient.
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* wte,
                                 const float* wpe, int B, int T, int C,
                                 const int32_t* starts = nullptr) = 0;
  // dwte[tokens[n]] += dout[n]; dwpe[position of n] += dout[n]; a null gradient is skipped.
  virtual void embedding_backward(float* dwte, float* dwpe, const float* dout,
                                  const int32_t* tokens, int B, int T, int C,
                                  const int32_t* starts = nullptr) = 0;

  // RMSNorm: out = inp / rms(inp) * w; rstd[n] = 1 / sqrt(mean(inp^2) + eps) kept for backward.
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N,
                               int C, float eps) = 0;
  virtual void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp,
                                const float* w, const float* rstd, int N, int C) = 0;
  // LayerNorm with weight and bias; mean and rstd kept for backward.
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* w, const float* b, int N, int C, float eps) = 0;
  virtual void layernorm_backward(float* dinp, float* dw, float* db, const float* dout,
                                  const float* inp, const float* w, const float* mean,
                                  const float* rstd, int N, int C) = 0;

  // out[N, OC] = inp[N, C] @ w[OC, C]^T (+ bias[OC]); out is overwritten.
  virtual void matmul_forward(float* out, const float* inp, const float* w, const float* bias,
                              int N, int C, int OC) = 0;
  // dinp += dout @ w; dw += dout^T @ inp; dbias += column sums. Null pointers are skipped
  // (a frozen weight pays nothing for its gradient).
  virtual void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout,
                               const float* inp, const float* w, int N, int C, int OC) = 0;

  // The same two on a matrix of ggml blocks: out = inp @ w^T (+ bias) with the activations
  // quantized to 8 bits per block as llama.cpp computes it (quant_kernel() says which kernel),
  // or with `exact` (training through a frozen quantized base) in fp32 against the dequantized
  // blocks, so that the backward's gradient is the forward's own; the backward gives dinp +=
  // dout @ w only (a quantized weight is frozen: QLoRA's base). A backend without them throws.
  virtual void matmul_forward_quant(float* out, const float* inp, const QuantWeight& w, const float* bias, int N, int C,
                                    int OC, bool exact = false);
  virtual void matmul_backward_quant(float* dinp, const float* dout, const QuantWeight& w, int N, int C, int OC);
  // out[n] = the row tokens[n] of a quantized embedding, dequantized (+ wpe[pos[n]] when wpe, an
  // fp32 table, is not null).
  virtual void embedding_quant(float* out, const int32_t* tokens, const int32_t* pos, const QuantWeight& wte,
                               const float* wpe, int N, int C);
  // The kernel of the quantized matmuls, in words ("AVX2", "portable"); "" where there is none.
  virtual std::string quant_kernel() const { return ""; }

  // out[N, OC] += alpha * inp[N, C] @ w[OC, C]^T: a low-rank adapter's path added onto its
  // layer's output.
  virtual void matmul_accumulate(float* out, const float* inp, const float* w, int N, int C, int OC,
                                 float alpha) = 0;
  // out[i] = in[i] / (1 - p) where element i is kept, else 0, for i < n; out may be in. Which
  // elements are kept is a function of (seed, offset + i), the same on every backend
  // (lib/backend/dropout.hpp): the backward regenerates the mask from the seed, and a row of a
  // batch gets the same mask whatever batch it is in when offset counts the rows before it.
  virtual void dropout(float* out, const float* in, size_t n, float p, uint64_t seed, uint64_t offset = 0) = 0;

  // Rotary position embedding in place on x[B, T, heads, hd] (pairs (i, i + hd/2), the token's
  // position, frequency theta^(-2i/hd), as Llama in Hugging Face). Backward rotates gradients
  // back.
  virtual void rope_forward(float* x, int B, int T, int heads, int hd, float theta,
                            const int32_t* starts = nullptr) = 0;
  virtual void rope_backward(float* dx, int B, int T, int heads, int hd, float theta,
                             const int32_t* starts = nullptr) = 0;

  // Inference with a KV cache. Embedding with explicit positions (GPT-2's learned ones).
  virtual void embedding_at(float* out, const int32_t* tokens, const int32_t* pos, const float* wte,
                            const float* wpe, int N, int C) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  // RoPE at explicit positions pos[n] on x[N, heads, hd].
  virtual void rope_at(float* x, const int32_t* pos, int N, int heads, int hd, float theta) = 0;
  // Attention of `rows` new queries q[rows, NH, hd] at positions start..start+rows-1 against
  // the keys and values cached for positions 0..start+rows-1 (the new rows already written),
  // causal. The cache is paged: position p's [KV, hd] row is row p % block of block table[p /
  // block] in k_pool and v_pool [blocks, block, KV, hd]; `table` is in host memory. Each query
  // row's result is the same whatever `rows` and `start` it came with (a prompt gives the same
  // numbers prefilled at once or in chunks).
  virtual void attention_paged(float* out, const float* q, const float* k_pool, const float* v_pool,
                               const int32_t* table, int block, int start, int rows, int NH, int KV,
                               int hd) = 0;

  // Self-attention with grouped-query heads: q[B,T,NH,hd], k and v [B,T,KV,hd],
  // out[B,T,NH,hd]; lse[B,NH,T] (log-sum-exp of each query's scaled scores) kept for backward,
  // which recomputes the probabilities instead of storing them. dq, dk, dv are overwritten.
  // Causal (a decoder's): a query sees keys up to its own position; otherwise (an encoder's,
  // BERT) every key of its sequence, later ones too. With `starts`, a query sees the keys of its
  // own sequence only (sequence_ends() below gives where each one ends).
  virtual void attention_forward(float* out, float* lse, const float* q, const float* k,
                                 const float* v, int B, int T, int NH, int KV, int hd,
                                 const int32_t* starts = nullptr, bool causal = true) = 0;
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                  const float* q, const float* k, const float* v,
                                  const float* out, const float* lse, int B, int T, int NH,
                                  int KV, int hd, const int32_t* starts = nullptr, bool causal = true) = 0;

  // SwiGLU: out = silu(gate) * up, elementwise over n values; dgate, dup overwritten.
  virtual void swiglu_forward(float* out, const float* gate, const float* up, size_t n) = 0;
  virtual void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                               const float* up, size_t n) = 0;
  // GELU: the tanh approximation (GPT-2's gelu_new), or with `erf` the exact x * Phi(x)
  // (BERT's gelu); dinp overwritten.
  virtual void gelu_forward(float* out, const float* inp, size_t n, bool erf = false) = 0;
  virtual void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n, bool erf = false) = 0;
  // tanh elementwise (BERT's pooler); the backward takes the forward's output y: dinp =
  // dout * (1 - y^2), overwritten.
  virtual void tanh_forward(float* out, const float* inp, size_t n) = 0;
  virtual void tanh_backward(float* dinp, const float* dout, const float* out, size_t n) = 0;

  virtual void add(float* out, const float* a, const float* b, size_t n) = 0;  // out = a + b
  virtual void accumulate(float* dst, const float* src, size_t n) = 0;         // dst += src
  virtual void scale(float* x, float s, size_t n) = 0;                         // x *= s

  // Cross-entropy over the first V of Vp columns of logits[N, Vp]: logp[n] = log softmax of
  // the target's logit; targets < 0 are ignored (logp 0).
  virtual void crossentropy_forward(float* logp, const float* logits, const int32_t* targets,
                                    int N, int V, int Vp) = 0;
  // out[n] (host memory) = the index of the largest of the first V columns of logits row n, the
  // first of equals: greedy decoding's token, and a trained token's accuracy. With `values`
  // (host memory too), that largest value of each row as well (-inf for V = 0), which ranks
  // holding shards of a vocabulary compare.
  virtual void argmax(int32_t* out, const float* logits, int N, int V, int Vp, float* values = nullptr) = 0;
  // dlogits[n, v] = dlogp[n] * (onehot(target)[v] - softmax[v]) given d(loss)/d(logp[n]), the
  // entry point of every objective (mean cross-entropy: dlogp = -1/count; SFT masks: 0 on
  // prompt tokens; DPO and PPO: their own coefficients). May be called with dlogits == logits.
  // Overwrites dlogits; padded columns and ignored rows get 0.
  // With lse (the backend's memory, [N]): each row's log-sum-exp over a whole vocabulary of which
  // these V columns are one rank's shard (tensor parallel): softmax is exp(logit - lse[n]), a
  // target < 0 is on another shard (the row still gets -dlogp softmax), and rows to ignore come
  // with dlogp 0.
  virtual void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                                     const float* dlogp, int N, int V, int Vp, const float* lse = nullptr) = 0;
  // lse[n] = log sum exp of the first V columns of row n (-inf when V is 0): a vocabulary shard's
  // part of the log-sum-exp (the backend's memory).
  virtual void logsumexp(float* lse, const float* logits, int N, int V, int Vp) = 0;

  // Knowledge distillation (llm-sft --teacher): crossentropy_backward, plus on each row with
  // kd_weight[n] != 0 that weight times the gradient of a divergence between the teacher's
  // softened distribution t = softmax(teacher[n] / tau) and the student's s = softmax(logits[n]
  // / tau), and kd_loss[n] = the divergence (0 on rows without weight). dlogp, kd_weight and
  // kd_loss are the backend's memory; teacher has the logits' layout [N, Vp] (it may be a
  // student's logits: the divergence is then 0). May be called with dlogits == logits.
  virtual void distill_backward(float* dlogits, float* kd_loss, const float* logits, const float* teacher,
                                const int32_t* targets, const float* dlogp, const float* kd_weight, int N, int V,
                                int Vp, const Divergence& d) = 0;

  // Decoupled AdamW on n values; t is the 1-based step for bias correction; the gradient is
  // multiplied by grad_scale first (global-norm clipping without a pass of its own).
  virtual void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t t,
                     float grad_scale = 1.0f) = 0;
  virtual double sum_squares(const float* x, size_t n) = 0;

  // Waits until the operations called so far have finished (timing; a no-op on the CPU, whose
  // operations return finished).
  virtual void synchronize() {}
  // Most bytes of device memory held so far (0 where memory is the host's: see peak RSS).
  virtual size_t peak_memory() const { return 0; }
};

// The exclusive end of the sequence of each token of B rows of T (`starts` as above, or null:
// one sequence per row): what a non-causal attention's query sees is [starts[t], ends[t]).
inline std::vector<int32_t> sequence_ends(const int32_t* starts, int B, int T) {
  std::vector<int32_t> ends(static_cast<size_t>(B) * T, T);
  if (starts)
    for (int b = 0; b < B; ++b)
      for (int t = T - 2; t >= 0; --t) {
        const size_t n = static_cast<size_t>(b) * T + t;
        ends[n] = starts[n + 1] == t + 1 ? t + 1 : ends[n + 1];
      }
  return ends;
}

std::unique_ptr<Backend> make_cpu_backend();

// The backend a command's --device names: "cpu"; "cuda" (GPU number local_rank modulo the GPUs
// visible, one rank per GPU); "cuda:N"; "auto" (cuda when a GPU is visible, else cpu).
// `precision` sets the GPU's matmul compute type: bf16, tf32 or fp32 (the CPU computes in fp32).
std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& precision = "bf16", int local_rank = 0);
// Tests only: make_backend() asks this first for the cuda devices (the tests that run a whole
// command's code on the CUDA emulator give make_emulated_cuda_backend). Null: the real one.
using CudaBackendFactory = std::unique_ptr<Backend> (*)(const std::string& precision);
void set_cuda_backend_factory(CudaBackendFactory factory);

}  // namespace llmkit
