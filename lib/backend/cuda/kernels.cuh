// The host functions that launch the CUDA kernels, one file each in lib/backend/cuda. Pointers
// are device memory; each has the contract of the Backend operation of the same name
// (llmkit/backend.hpp) unless its comment says otherwise. All run on the default stream and
// return without waiting for the kernel.
#pragma once
#include "common.cuh"
#include "llmkit/backend.hpp"  // Divergence

namespace llmkit::LLMKIT_CUDA_NS {

// Matmul precision: the compute type of every GEMM (fp32 accumulation in all three).
enum class Precision { bf16, tf32, fp32 };
void set_precision(Precision p);
Precision precision();

// Row-major C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b] for b < batch, op(X) = X^T when
// trans; A is M x K after op, B is K x N after op; strides are between batches (elements). With
// bias (length N, batch 1 only) C += bias broadcast over rows.
// Operands may be fp32 or bf16 (Ref): cuBLASLt wants A and B of one type, so an fp32 operand
// beside a bf16 one is rounded to bf16 first (batch 1 only: the scalar head's rare products).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, Ref A, int lda, int64_t stride_a, Ref B, int ldb,
          int64_t stride_b, float beta, Ref C, int ldc, int64_t stride_c, int batch, Ref bias = Ref{});

// out[c] += sum over rows n of x[n, c] (fixed order: the result is the same on every run).
void column_sum(float* out, Ref x, int N, int C);
// sum of squares, reduced in a fixed order, in double on the host.
double sum_squares(const float* x, size_t n);

void embedding_forward(Ref out, const int32_t* tokens_dev, const float* wte, const float* wpe, int B, int T, int C);
void embedding_at(Ref out, const int32_t* tokens_dev, const int32_t* pos_dev, const float* wte, const float* wpe, int N,
                  int C);
// dwte rows by token: order[i] are the rows sorted by token, tokens[i] their tokens, run[u] the
// start of the u-th distinct token's rows in order (runs + 1 entries). dwpe[t] += sum over b.
void embedding_backward(float* dwte, float* dwpe, Ref dout, const int32_t* order_dev, const int32_t* run_dev,
                        const int32_t* run_token_dev, int runs, int B, int T, int C);
// dst[key of run u] += dout's rows order[run[u]..run[u+1]-1], summed in that order (a block per
// run): the token embedding's gradient, and the learned positions' of packed rows.
void rows_grad(float* dst, Ref dout, const int32_t* order_dev, const int32_t* run_dev, const int32_t* run_key_dev, int runs, int C);

void rmsnorm_forward(Ref out, float* rstd, Ref inp, const float* w, int N, int C, float eps);
void rmsnorm_backward(Ref dinp, float* dw, Ref dout, Ref inp, const float* w, const float* rstd, int N, int C);
void layernorm_forward(Ref out, float* mean, float* rstd, Ref inp, const float* w, const float* b, int N, int C, float eps);
void layernorm_backward(Ref dinp, float* dw, float* db, Ref dout, Ref inp, const float* w, const float* mean,
                        const float* rstd, int N, int C);

// RoPE in place on x[N, heads, hd]; position of row n: pos_dev[n], or n % T when pos_dev is null.
// sign -1 rotates back (the backward).
void rope(Ref x, const int32_t* pos_dev, int N, int T, int heads, int hd, float theta, float sign);

// ends_dev null: causal; else each query's exclusive last key (sequence_ends()): bidirectional.
void attention_forward(Ref out, float* lse, Ref q, Ref k, Ref v, const int32_t* starts_dev, const int32_t* ends_dev, int B, int T,
                       int NH, int KV, int hd);
void attention_backward(Ref dq, Ref dk, Ref dv, Ref dout, Ref q, Ref k, Ref v, Ref out, const float* lse, const int32_t* starts_dev,
                        const int32_t* ends_dev, int B, int T, int NH, int KV, int hd);
// D[(b, h, t)] = sum over d of dout * out, the rows of [B, T, H, hd] written as [B, H, T]: the
// softmax backward's row term.
void attention_rowdot(float* D, Ref dout, Ref out, int B, int T, int H, int hd);
// The fused kernels (flash.cu) behind attention_forward/backward with bf16 matmuls, for the
// head sizes flash_attention_supports().
bool flash_attention_supports(int hd);
void flash_attention_forward(Ref out, float* lse, Ref q, Ref k, Ref v, const int32_t* starts_dev, const int32_t* ends_dev, int B,
                             int T, int NH, int KV, int hd);
void flash_attention_backward(Ref dq, Ref dk, Ref dv, Ref dout, Ref q, Ref k, Ref v, Ref out, const float* lse,
                              const int32_t* starts_dev, const int32_t* ends_dev, int B, int T, int NH, int KV, int hd);
void attention_paged(Ref out, Ref q, Ref k_pool, Ref v_pool, const int32_t* table, int block, int start, int rows, int NH,
                     int KV, int hd);

void swiglu_forward(Ref out, Ref gate, Ref up, size_t n);
void swiglu_backward(Ref dgate, Ref dup, Ref dout, Ref gate, Ref up, size_t n);
void dropout(Ref out, Ref in, size_t n, float p, uint64_t seed, uint64_t offset);
void gelu_forward(Ref out, Ref inp, size_t n, bool exact);  // exact: x Phi(x), else the tanh approximation
void gelu_backward(Ref dinp, Ref dout, Ref inp, size_t n, bool exact);
void tanh_forward(Ref out, Ref inp, size_t n);
void tanh_backward(Ref dinp, Ref dout, Ref out, size_t n);  // from the forward's output
void add(Ref out, Ref a, Ref b, size_t n);
void accumulate(Ref dst, Ref src, size_t n);
void scale(Ref x, float s, size_t n);
void convert(Ref dst, Ref src, size_t n);  // n values, rounded to dst's type

void argmax(int32_t* out_dev, float* values_dev, Ref logits, int N, int V, int Vp);
void crossentropy_forward(float* logp, Ref logits, const int32_t* targets_dev, int N, int V, int Vp);
void crossentropy_backward(Ref dlogits, Ref logits, const int32_t* targets_dev, const float* dlogp, int N, int V, int Vp,
                           const float* lse = nullptr);
void logsumexp(float* lse, Ref logits, int N, int V, int Vp);
void distill_backward(Ref dlogits, float* kd_loss, Ref logits, Ref teacher, const int32_t* targets_dev, const float* dlogp,
                      const float* kd_weight, int N, int V, int Vp, const Divergence& d);

// ggml blocks (quant.cu): rows of blocks (row_bytes apart, C values each) into values;
// tokens' rows of a quantized embedding (+ wpe[pos[n]]); and out[N, OC] = inp w^T (+ bias) for
// N <= kMatvecRows, each weight row read once.
constexpr int kMatvecRows = 8;
void dequantize_rows(Ref out, const uint8_t* w, size_t row_bytes, ggml::Type t, int rows, int C);
void embedding_quant(Ref out, const int32_t* tokens_dev, const int32_t* pos_dev, const uint8_t* w, size_t row_bytes, ggml::Type t,
                     const float* wpe, int N, int C);
void quant_matvec(Ref out, Ref inp, const uint8_t* w, size_t row_bytes, ggml::Type t, const float* bias, int N, int C, int OC);
void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2, float eps,
           float weight_decay, float c1, float c2, float grad_scale);

}  // namespace llmkit::LLMKIT_CUDA_NS
