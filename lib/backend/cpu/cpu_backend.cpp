// The CPU backend: fp32, every matmul (including attention's blocks) through gemm.hpp's
// thread-count-independent tiling over oneDNN or OpenBLAS, OpenMP over rows elsewhere. See
// llmkit/backend.hpp for the operations' contracts.
//
// Every result is the same bits for any number of threads: each matmul tile, row, head or
// channel is computed by one thread in a fixed order, and sums over rows run in row order or
// over fixed blocks. So MPI ranks, which change the threads per process, change nothing either
// (tests/mpi/eval.sh, tests/cli/threads.sh).
#include <omp.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/error.hpp"
#include "llmkit/tool.hpp"
#include "attn_rows.hpp"
#include "gemm.hpp"
#include "qmatmul.hpp"
#include "../dropout.hpp"

namespace llmkit {

namespace {

constexpr int kQueryBlock = 64;  // attention: queries per sgemm block

// e^x in plain arithmetic (no library call), so that loops over it vectorise on any x86-64:
// x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, two parts of ln2), e^r by its Taylor series to
// degree 7 (relative error below 2e-7 on that range), 2^n put into the exponent bits. Inputs
// are clamped to the range where the result is a normal float (0 below, FLT_MAX-ish above).
inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &p, 4);
  bits += static_cast<int32_t>(n) << 23;
  std::memcpy(&p, &bits, 4);
  return p;
}

// tanh through fast_exp: 1 - 2 / (e^(2u) + 1); absolute error about 1e-7.
// One row of a distillation divergence (Backend::distill_backward), over ls = log s and lt =
// log t, the softened log-probabilities: accumulate() sums the divergence and, for the
// gradient through the softmax, the mean of its derivative in s; gradient() is then
// d(divergence)/d(logit) at one column.
struct DivergenceRow {
  enum class Form { forward_kl, reverse_kl, mixture } form;
  float inv_tau, beta, log_beta = 0, log_1mbeta = 0;
  double loss_scale = 1;  // tau^2 for Hinton's KL
  explicit DivergenceRow(const Divergence& d) : inv_tau(1.0f / d.temperature), beta(d.beta) {
    if (d.kind == Divergence::Kind::kl) {
      form = Form::forward_kl;
      loss_scale = static_cast<double>(d.temperature) * d.temperature;
    } else {
      form = d.beta <= 0.0f ? Form::forward_kl : d.beta >= 1.0f ? Form::reverse_kl : Form::mixture;
      log_beta = std::log(d.beta);
      log_1mbeta = std::log1p(-d.beta);
    }
  }
  // log sum exp(x / tau)
  float scaled_lse(const float* x, int V) const {
    float m = -INFINITY;
    for (int j = 0; j < V; ++j) m = std::max(m, x[j]);
    double s = 0;
    for (int j = 0; j < V; ++j) s += std::exp(static_cast<double>((x[j] - m) * inv_tau));
    return static_cast<float>(m * inv_tau + std::log(s));
  }
  // log m = log(beta t + (1 - beta) s)
  float log_mix(float ls, float lt) const {
    const float a = ls + log_1mbeta, b = lt + log_beta;
    const float hi = std::max(a, b), lo = std::min(a, b);
    return hi + std::log1p(std::exp(lo - hi));
  }
  void accumulate(float ls, float lt, double& loss, double& gbar) const {
    const double ps = std::exp(static_cast<double>(ls)), pt = std::exp(static_cast<double>(lt));
    switch (form) {
      case Form::forward_kl:
        loss += pt * (lt - ls);
        break;
      case Form::reverse_kl:
        loss += ps * (ls - lt);
        break;
      case Form::mixture: {
        const float lm = log_mix(ls, lt);
        loss += beta * pt * (lt - lm) + (1.0 - beta) * ps * (ls - lm);
        gbar += ps * (1.0 - beta) * (ls - lm);
        break;
      }
    }
  }
  float gradient(float ls, float lt, double loss, double gbar) const {
    const float ps = std::exp(ls);
    switch (form) {
      case Form::forward_kl:  // d/dz of scale KL(t || s) = scale (s - t) / tau
        return static_cast<float>(loss_scale * inv_tau) * (ps - std::exp(lt));
      case Form::reverse_kl:  // s ((ls - lt) - KL) / tau
        return ps * static_cast<float>((ls - lt) - loss) * inv_tau;
      case Form::mixture:     // s (g - sum s g) / tau with g = (1 - beta)(ls - lm)
        return ps * static_cast<float>((1.0 - beta) * (ls - log_mix(ls, lt)) - gbar) * inv_tau;
    }
    return 0.0f;
  }
};

inline float fast_tanh(float u) { return 1.0f - 2.0f / (fast_exp(2.0f * u) + 1.0f); }

class CpuBackend final : public Backend {
 public:
  // Denormal floats (flush to zero, and read as zero) cost a microcode assist per operation on
  // x86: a few in a tensor (logits of very unlikely tokens, tiny gate values) slowed whole
  // kernels several times. Set in every OpenMP thread, which the runtime keeps for later regions.
  CpuBackend() {
#if defined(__x86_64__)
#pragma omp parallel
    _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ | DAZ
#endif
    cpu::gemm_kernel();  // chosen here, where an LLMKIT_GEMM error can be reported
    // A stop signal must not interrupt a thread running a GEMM kernel (oneDNN 2.x's move the
    // stack pointer into the heap): it only sets the stop request, which the loops poll.
    disable_signal_interrupts();
  }
  const char* name() const override { return "cpu"; }
  std::string matmul_kernel() const override { return cpu::gemm_kernel_description(); }
  double matmul_peak_flops() override {
    // The rate of this backend's own sgemm on a 1024^3 product (best of 3), measured once.
    static const double peak = [] {
      const int n = 1024;
      std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(a), c(a.size());
      double best = 0;
      for (int r = 0; r < 4; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        cpu::sgemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (r > 0) best = std::max(best, 2.0 * n * n * static_cast<double>(n) / s);  // the first warms up
      }
      return best;
    }();
    return peak;
  }

  float* alloc(size_t n) override {
    float* p = static_cast<float*>(std::aligned_alloc(64, std::max<size_t>(64, (n * 4 + 63) / 64 * 64)));
    if (!p) throw Error("", "out of memory allocating " + std::to_string(n * 4) + " bytes");
    zero(p, n);
    return p;
  }
  void release(float* p) override { std::free(p); }
  void zero(float* p, size_t n) override {  // in parallel: first touches spread the page faults
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 16384) std::memset(p + i, 0, std::min<size_t>(16384, n - i) * sizeof(float));
  }
  void upload(float* dst, const float* host, size_t n) override { std::memcpy(dst, host, n * 4); }
  void download(float* host, const float* src, size_t n) override { std::memcpy(host, src, n * 4); }
  float* host_view(float* p) override { return p; }

  // ---- Embedding ----

  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                         int B, int T, int C, const int32_t* starts) override {
#pragma omp parallel for
    for (int n = 0; n < B * T; ++n) {
      float* o = out + static_cast<size_t>(n) * C;
      if (tokens[n] < 0) {  // another shard's token
        if (wpe) std::memcpy(o, wpe + static_cast<size_t>(position(n, T, starts)) * C, C * sizeof(float));
        else std::memset(o, 0, C * sizeof(float));
        continue;
      }
      const float* e = wte + static_cast<size_t>(tokens[n]) * C;
      if (wpe) {
        const float* p = wpe + static_cast<size_t>(position(n, T, starts)) * C;
        for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
      } else {
        std::memcpy(o, e, C * sizeof(float));
      }
    }
  }

  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                          int B, int T, int C, const int32_t* starts) override {
    if (!dwte && !dwpe) return;
    // Rows of dwte may repeat: split the channels across threads instead of the rows.
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      int c0 = C * id / nt, c1 = C * (id + 1) / nt;
      for (int n = 0; n < B * T; ++n) {
        const float* d = dout + static_cast<size_t>(n) * C;
        if (dwte && tokens[n] >= 0) {
          float* w = dwte + static_cast<size_t>(tokens[n]) * C;
          for (int c = c0; c < c1; ++c) w[c] += d[c];
        }
        if (dwpe) {
          float* p = dwpe + static_cast<size_t>(position(n, T, starts)) * C;
          for (int c = c0; c < c1; ++c) p[c] += d[c];
        }
      }
    }
  }

  // ---- Norms ----

  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                       float eps) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      float* o = out + static_cast<size_t>(n) * C;
      double ss = 0;
      for (int c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
      float r = 1.0f / std::sqrt(static_cast<float>(ss / C) + eps);
      for (int c = 0; c < C; ++c) o[c] = x[c] * r * w[c];
      rstd[n] = r;
    }
  }

  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp,
                        const float* w, const float* rstd, int N, int C) override {
    // dx = r * (w*dy) - r^3 * x * mean(x * w*dy)
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      const float* dy = dout + static_cast<size_t>(n) * C;
      float* dx = dinp + static_cast<size_t>(n) * C;
      float r = rstd[n];
      double dot = 0;
      for (int c = 0; c < C; ++c) dot += static_cast<double>(x[c]) * w[c] * dy[c];
      float k = static_cast<float>(dot / C) * r * r * r;
      for (int c = 0; c < C; ++c) dx[c] += r * w[c] * dy[c] - k * x[c];
    }
    column_reduce(dw, N, C, [&](int n, int c) {
      return dout[static_cast<size_t>(n) * C + c] * inp[static_cast<size_t>(n) * C + c] * rstd[n];
    });
  }

  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w,
                         const float* b, int N, int C, float eps) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      float* o = out + static_cast<size_t>(n) * C;
      double s = 0;
      for (int c = 0; c < C; ++c) s += x[c];
      float m = static_cast<float>(s / C);
      double v = 0;
      for (int c = 0; c < C; ++c) v += static_cast<double>(x[c] - m) * (x[c] - m);
      float r = 1.0f / std::sqrt(static_cast<float>(v / C) + eps);
      for (int c = 0; c < C; ++c) o[c] = (x[c] - m) * r * w[c] + b[c];
      mean[n] = m;
      rstd[n] = r;
    }
  }

  void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                          const float* w, const float* mean, const float* rstd, int N,
                          int C) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      const float* x = inp + static_cast<size_t>(n) * C;
      const float* dy = dout + static_cast<size_t>(n) * C;
      float* dx = dinp + static_cast<size_t>(n) * C;
      float m = mean[n], r = rstd[n];
      double dnorm_mean = 0, dnorm_norm_mean = 0;
      for (int c = 0; c < C; ++c) {
        float norm = (x[c] - m) * r, dnorm = w[c] * dy[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += static_cast<double>(dnorm) * norm;
      }
      float a = static_cast<float>(dnorm_mean / C), bb = static_cast<float>(dnorm_norm_mean / C);
      for (int c = 0; c < C; ++c) {
        float norm = (x[c] - m) * r;
        dx[c] += r * (w[c] * dy[c] - a - norm * bb);
      }
    }
    column_reduce(dw, N, C, [&](int n, int c) {
      return dout[static_cast<size_t>(n) * C + c] * (inp[static_cast<size_t>(n) * C + c] - mean[n]) * rstd[n];
    });
    column_reduce(db, N, C, [&](int n, int c) { return dout[static_cast<size_t>(n) * C + c]; });
  }

  // ---- Matmul ----

  void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C,
                      int OC) override {
    cpu::sgemm(false, true, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out, OC);
    if (bias) {
#pragma omp parallel for
      for (int n = 0; n < N; ++n)
        for (int o = 0; o < OC; ++o) out[static_cast<size_t>(n) * OC + o] += bias[o];
    }
  }

  void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
                       const float* w, int N, int C, int OC) override {
    if (dinp)  // [N, OC] @ [OC, C]
      cpu::sgemm(false, false, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);
    if (dw)  // [OC, N] @ [N, C]
      cpu::sgemm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (dbias) column_reduce(dbias, N, OC, [&](int n, int o) { return dout[static_cast<size_t>(n) * OC + o]; });
  }

  void matmul_forward_quant(float* out, const float* inp, const QuantWeight& w, const float* bias, int N, int C,
                            int OC, bool exact) override {
    cpu::qmatmul(out, inp, w.type, w.data, w.row_bytes, bias, N, C, OC, exact);
  }
  void matmul_backward_quant(float* dinp, const float* dout, const QuantWeight& w, int N, int C, int OC) override {
    cpu::qmatmul_backward(dinp, dout, w.type, w.data, w.row_bytes, N, C, OC);
  }
  void embedding_quant(float* out, const int32_t* tokens, const int32_t* pos, const QuantWeight& wte, const float* wpe, int N,
                       int C) override {
    const auto* base = static_cast<const uint8_t*>(wte.data);
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      float* o = out + static_cast<size_t>(n) * C;
      ggml::dequantize(wte.type, base + wte.row_bytes * static_cast<size_t>(tokens[n]), o, C);
      if (wpe) {
        const float* p = wpe + static_cast<size_t>(pos[n]) * C;
        for (int c = 0; c < C; ++c) o[c] += p[c];
      }
    }
  }
  std::string quant_kernel() const override { return cpu::qkernel_name(cpu::qkernel()); }

  void matmul_accumulate(float* out, const float* inp, const float* w, int N, int C, int OC, float alpha) override {
    cpu::sgemm(false, true, N, OC, C, alpha, inp, C, w, C, 1.0f, out, OC);
  }

  void dropout(float* out, const float* in, size_t n, float p, uint64_t seed, uint64_t offset) override {
    const float keep = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) out[i] = dropout_keeps(seed, offset + i, p) ? in[i] * keep : 0.0f;
  }

  // ---- RoPE ----

  void rope_forward(float* x, int B, int T, int heads, int hd, float theta, const int32_t* starts) override {
    rope(x, B, T, heads, hd, theta, 1.0f, starts);
  }
  void rope_backward(float* dx, int B, int T, int heads, int hd, float theta, const int32_t* starts) override {
    rope(dx, B, T, heads, hd, theta, -1.0f, starts);
  }

  void embedding_at(float* out, const int32_t* tokens, const int32_t* pos, const float* wte, const float* wpe,
                    int N, int C) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      const float* e = wte + static_cast<size_t>(tokens[n]) * C;
      float* o = out + static_cast<size_t>(n) * C;
      if (wpe) {
        const float* p = wpe + static_cast<size_t>(pos[n]) * C;
        for (int c = 0; c < C; ++c) o[c] = e[c] + p[c];
      } else {
        std::memcpy(o, e, C * sizeof(float));
      }
    }
  }
  void copy(float* dst, const float* src, size_t n) override { std::memcpy(dst, src, n * sizeof(float)); }

  void rope_at(float* x, const int32_t* pos, int N, int heads, int hd, float theta) override {
    const int half = hd / 2;
    const std::vector<float> freq = rope_frequencies(hd, theta);
#pragma omp parallel for
    for (int n = 0; n < N; ++n)
      for (int h = 0; h < heads; ++h) rotate(x + (static_cast<size_t>(n) * heads + h) * hd, pos[n], freq.data(), half, 1.0f);
  }

  // ---- Attention ----

  void attention_paged(float* out, const float* q, const float* k_pool, const float* v_pool, const int32_t* table,
                       int block, int start, int rows, int NH, int KV, int hd) override {
    check_heads(NH, KV);
    const int group = NH / KV, ks = KV * hd, chunks = (rows + kQueryBlock - 1) / kQueryBlock;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    // A task: one head, up to kQueryBlock query rows, taken kAttnRows at a time so that a key
    // or value row read once serves several queries. Every row's arithmetic is attn_rows.hpp's, in the same order
    // whatever the group, chunk or batch it came in, so its result does not depend on them.
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int h = 0; h < NH; ++h)
      for (int c = 0; c < chunks; ++c) {
        const int g = h / group, end = std::min(rows, (c + 1) * kQueryBlock), n = start + end;
        const size_t stride = static_cast<size_t>(n);
        thread_local std::vector<float> S;
        thread_local std::vector<const float*> K, V;
        S.resize(cpu::kAttnRows * stride);
        K.resize(n), V.resize(n);
        // Position j of the sequence is row j % block of block table[j / block].
        for (int j = 0; j < n; ++j) {
          const size_t at = (static_cast<size_t>(table[j / block]) * block + j % block) * ks + g * hd;
          K[j] = k_pool + at, V[j] = v_pool + at;
        }
        for (int r0 = c * kQueryBlock; r0 < end; r0 += cpu::kAttnRows) {
          const int R = std::min(cpu::kAttnRows, end - r0);
          const float* Q[cpu::kAttnRows];
          float* O[cpu::kAttnRows];
          float* Sr[cpu::kAttnRows];
          int keys[cpu::kAttnRows];
          for (int k = 0; k < R; ++k) {
            Q[k] = q + (static_cast<size_t>(r0 + k) * NH + h) * hd;
            O[k] = out + (static_cast<size_t>(r0 + k) * NH + h) * hd;
            Sr[k] = S.data() + k * stride;
            keys[k] = start + r0 + k + 1;
          }
          cpu::attn_scores(R, Q, K.data(), keys[R - 1], hd, scale, Sr);
          float inv[cpu::kAttnRows];
          for (int k = 0; k < R; ++k) {
            float m = -INFINITY;
            for (int j = 0; j < keys[k]; ++j) m = std::max(m, Sr[k][j]);
            for (int j = 0; j < keys[k]; ++j) Sr[k][j] = fast_exp(Sr[k][j] - m);
            inv[k] = 1.0f / cpu::attn_sum(Sr[k], keys[k]);
          }
          cpu::attn_values(R, O, Sr, V.data(), keys, hd);
          for (int k = 0; k < R; ++k)
            for (int i = 0; i < hd; ++i) O[k][i] *= inv[k];
        }
      }
  }

  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                         int B, int T, int NH, int KV, int hd, const int32_t* starts, bool causal) override {
    check_heads(NH, KV);
    const int blocks = (T + kQueryBlock - 1) / kQueryBlock, group = NH / KV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int qs = NH * hd, ks = KV * hd;  // row strides
    const std::vector<int32_t> ends = causal ? std::vector<int32_t>() : sequence_ends(starts, B, T);
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int bh = 0; bh < B * NH; ++bh) {
      for (int blk = 0; blk < blocks; ++blk) {
        const int b = bh / NH, h = bh % NH, g = h / group;
        const int t0 = blk * kQueryBlock, rows = std::min(T, t0 + kQueryBlock) - t0;
        const size_t q0 = (static_cast<size_t>(b) * T + t0) * qs + h * hd, kv0 = static_cast<size_t>(b) * T * ks + g * hd;
        attend(out + q0, lse + (static_cast<size_t>(b) * NH + h) * T + t0, q + q0, qs, k + kv0, v + kv0, ks, t0, rows, hd,
               scale, starts ? starts + static_cast<size_t>(b) * T + t0 : nullptr,
               causal ? nullptr : ends.data() + static_cast<size_t>(b) * T + t0);
      }
    }
  }

  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                          const float* k, const float* v, const float* out, const float* lse, int B,
                          int T, int NH, int KV, int hd, const int32_t* starts, bool causal) override {
    check_heads(NH, KV);
    const std::vector<int32_t> ends = causal ? std::vector<int32_t>() : sequence_ends(starts, B, T);
    const int blocks = (T + kQueryBlock - 1) / kQueryBlock, group = NH / KV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int qs = NH * hd, ks = KV * hd;
    // A thread owns one (batch, kv head): every query head of the group and every block adds
    // into the same dk, dv rows, so nothing is shared between threads.
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; ++b) {
      for (int g = 0; g < KV; ++g) {
        float* dK = dk + static_cast<size_t>(b) * T * ks + g * hd;
        float* dV = dv + static_cast<size_t>(b) * T * ks + g * hd;
        for (int t = 0; t < T; ++t) {
          std::memset(dK + static_cast<size_t>(t) * ks, 0, hd * sizeof(float));
          std::memset(dV + static_cast<size_t>(t) * ks, 0, hd * sizeof(float));
        }
        const float* K = k + static_cast<size_t>(b) * T * ks + g * hd;
        const float* V = v + static_cast<size_t>(b) * T * ks + g * hd;
        thread_local std::vector<float> P, dP;
        P.resize(static_cast<size_t>(kQueryBlock) * T);
        dP.resize(static_cast<size_t>(kQueryBlock) * T);
        for (int h = g * group; h < (g + 1) * group; ++h) {
          for (int blk = 0; blk < blocks; ++blk) {
            const int t0 = blk * kQueryBlock, t1 = std::min(T, t0 + kQueryBlock), rows = t1 - t0;
            const size_t row0 = (static_cast<size_t>(b) * T + t0) * qs + h * hd;
            const float* Q = q + row0;
            const float* dO = dout + row0;
            const float* O = out + row0;
            float* dQ = dq + row0;
            const float* L = lse + (static_cast<size_t>(b) * NH + h) * T + t0;
            // Keys k0..kend-1: before k0 no query of the block sees any (its sequences start
            // later), nor any from kend (causal: past the block's last query; else past the end of
            // its last sequence).
            const int32_t* first = starts ? starts + static_cast<size_t>(b) * T + t0 : nullptr;
            const int32_t* end = causal ? nullptr : ends.data() + static_cast<size_t>(b) * T + t0;
            const int k0 = first ? first[0] : 0, keys = (end ? end[rows - 1] : t1) - k0;
            const float* Kb = K + static_cast<size_t>(k0) * ks;
            const float* Vb = V + static_cast<size_t>(k0) * ks;
            // P = exp(scale * Q K^T - lse), causal
            cpu::sgemm_serial(false, true, rows, keys, hd, scale, Q, qs, Kb, ks, 0.0f, P.data(), keys);
            // dP = dO V^T
            cpu::sgemm_serial(false, true, rows, keys, hd, 1.0f, dO, qs, Vb, ks, 0.0f, dP.data(), keys);
            for (int r = 0; r < rows; ++r) {
              float* p = P.data() + static_cast<size_t>(r) * keys;
              float* dp = dP.data() + static_cast<size_t>(r) * keys;
              const int lo = (first ? first[r] : 0) - k0, last = (end ? end[r] - 1 : t0 + r) - k0;
              float D = 0;  // rowsum(dO * O) = rowsum(dP * P)
              for (int d = 0; d < hd; ++d) D += dO[static_cast<size_t>(r) * qs + d] * O[static_cast<size_t>(r) * qs + d];
              const float l = L[r];
              for (int j = 0; j < lo; ++j) p[j] = dp[j] = 0.0f;
#pragma omp simd
              for (int j = lo; j <= last; ++j) {
                p[j] = fast_exp(p[j] - l);
                dp[j] = p[j] * (dp[j] - D);  // dS
              }
              for (int j = last + 1; j < keys; ++j) p[j] = dp[j] = 0.0f;
            }
            // dQ = scale * dS K (overwrite); dK += scale * dS^T Q; dV += P^T dO
            cpu::sgemm_serial(false, false, rows, hd, keys, scale, dP.data(), keys, Kb, ks,
                        0.0f, dQ, qs);
            cpu::sgemm_serial(true, false, keys, hd, rows, scale, dP.data(), keys, Q, qs,
                        1.0f, dK + static_cast<size_t>(k0) * ks, ks);
            cpu::sgemm_serial(true, false, keys, hd, rows, 1.0f, P.data(), keys, dO, qs,
                        1.0f, dV + static_cast<size_t>(k0) * ks, ks);
          }
        }
      }
    }
  }

  // ---- Activations, elementwise ----

  void swiglu_forward(float* out, const float* gate, const float* up, size_t n) override {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      float g = gate[i];
      out[i] = g / (1.0f + fast_exp(-g)) * up[i];
    }
  }
  void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                       size_t n) override {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      float g = gate[i], s = 1.0f / (1.0f + fast_exp(-g)), silu = g * s;
      dup[i] = dout[i] * silu;
      dgate[i] = dout[i] * up[i] * (s + silu * (1.0f - s));
    }
  }

  void gelu_forward(float* out, const float* inp, size_t n, bool erf) override {
    if (erf) {
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < n; ++i) out[i] = 0.5f * inp[i] * (1.0f + std::erf(inp[i] * static_cast<float>(M_SQRT1_2)));
      return;
    }
    const float k = std::sqrt(2.0f / static_cast<float>(M_PI));
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      float x = inp[i];
      out[i] = 0.5f * x * (1.0f + fast_tanh(k * (x + 0.044715f * x * x * x)));
    }
  }
  void gelu_backward(float* dinp, const float* dout, const float* inp, size_t n, bool erf) override {
    if (erf) {  // d/dx x Phi(x) = Phi(x) + x phi(x)
      const float c = static_cast<float>(0.5 * M_2_SQRTPI * M_SQRT1_2);  // 1 / sqrt(2 pi)
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < n; ++i) {
        const float x = inp[i];
        dinp[i] = dout[i] * (0.5f * (1.0f + std::erf(x * static_cast<float>(M_SQRT1_2))) + x * c * fast_exp(-0.5f * x * x));
      }
      return;
    }
    const float k = std::sqrt(2.0f / static_cast<float>(M_PI));
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      float x = inp[i], u = k * (x + 0.044715f * x * x * x), t = fast_tanh(u);
      float du = k * (1.0f + 3.0f * 0.044715f * x * x);
      dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
  }

  void tanh_forward(float* out, const float* inp, size_t n) override {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) out[i] = fast_tanh(inp[i]);
  }
  void tanh_backward(float* dinp, const float* dout, const float* out, size_t n) override {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
  }

  void add(float* out, const float* a, const float* b, size_t n) override {
#pragma omp parallel for
    for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }
  void accumulate(float* dst, const float* src, size_t n) override {
#pragma omp parallel for
    for (size_t i = 0; i < n; ++i) dst[i] += src[i];
  }
  void scale(float* x, float s, size_t n) override {
#pragma omp parallel for
    for (size_t i = 0; i < n; ++i) x[i] *= s;
  }

  // ---- Cross-entropy ----

  void crossentropy_forward(float* logp, const float* logits, const int32_t* targets, int N, int V,
                            int Vp) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      if (targets[n] < 0) {
        logp[n] = 0.0f;
        continue;
      }
      const float* l = logits + static_cast<size_t>(n) * Vp;
      logp[n] = l[targets[n]] - log_sum_exp(l, V);
    }
  }

  void argmax(int32_t* out, const float* logits, int N, int V, int Vp, float* values) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      const float* l = logits + static_cast<size_t>(n) * Vp;
      int best = 0;
      for (int j = 1; j < V; ++j)
        if (l[j] > l[best]) best = j;
      out[n] = best;
      if (values) values[n] = V > 0 ? l[best] : -INFINITY;
    }
  }

  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                             const float* dlogp, int N, int V, int Vp, const float* lse_given) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
      const float* l = logits + static_cast<size_t>(n) * Vp;
      float* d = dlogits + static_cast<size_t>(n) * Vp;
      const float c = targets[n] < 0 && !lse_given ? 0.0f : dlogp[n];
      if (c == 0.0f) {
        std::memset(d, 0, static_cast<size_t>(Vp) * sizeof(float));
        continue;
      }
      const float lse = lse_given ? lse_given[n] : log_sum_exp(l, V);
#pragma omp simd
      for (int j = 0; j < V; ++j) d[j] = -c * fast_exp(l[j] - lse);  // reads l[j] before writing d[j]
      for (int j = V; j < Vp; ++j) d[j] = 0.0f;
      if (targets[n] >= 0) d[targets[n]] += c;
    }
  }

  void logsumexp(float* lse, const float* logits, int N, int V, int Vp) override {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) lse[n] = V > 0 ? log_sum_exp(logits + static_cast<size_t>(n) * Vp, V) : -INFINITY;
  }

  void distill_backward(float* dlogits, float* kd_loss, const float* logits, const float* teacher, const int32_t* targets,
                        const float* dlogp, const float* kd_weight, int N, int V, int Vp, const Divergence& dv) override {
    const DivergenceRow div(dv);
#pragma omp parallel for schedule(dynamic, 4)
    for (int n = 0; n < N; ++n) {
      const float* l = logits + static_cast<size_t>(n) * Vp;
      const float* t = teacher + static_cast<size_t>(n) * Vp;
      float* d = dlogits + static_cast<size_t>(n) * Vp;
      const float c = targets[n] < 0 ? 0.0f : dlogp[n], w = kd_weight[n];
      kd_loss[n] = 0.0f;
      if (c == 0.0f && w == 0.0f) {
        std::memset(d, 0, static_cast<size_t>(Vp) * sizeof(float));
        continue;
      }
      const float lse = c != 0.0f ? log_sum_exp(l, V) : 0.0f;
      double loss = 0, gbar = 0;
      float lse_s = 0, lse_t = 0;
      if (w != 0.0f) {
        lse_s = div.scaled_lse(l, V);
        lse_t = div.scaled_lse(t, V);
        for (int j = 0; j < V; ++j) div.accumulate(l[j] * div.inv_tau - lse_s, t[j] * div.inv_tau - lse_t, loss, gbar);
        kd_loss[n] = static_cast<float>(div.loss_scale * loss);
      }
      // Reads l[j] and t[j] before writing d[j] (d may be l).
      for (int j = 0; j < V; ++j) {
        float g = c != 0.0f ? -c * fast_exp(l[j] - lse) : 0.0f;
        if (w != 0.0f) g += w * div.gradient(l[j] * div.inv_tau - lse_s, t[j] * div.inv_tau - lse_t, loss, gbar);
        d[j] = g;
      }
      for (int j = V; j < Vp; ++j) d[j] = 0.0f;
      if (c != 0.0f) d[targets[n]] += c;
    }
  }

  // ---- Optimizer ----

  void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
             float eps, float weight_decay, int64_t t, float grad_scale) override {
    const float c1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(t)));
    const float c2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(t)));
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) {
      float gi = g[i] * grad_scale;
      float mi = m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
      float vi = v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
      p[i] -= lr * ((mi / c1) / (std::sqrt(vi / c2) + eps) + weight_decay * p[i]);
    }
  }

  double sum_squares(const float* x, size_t n) override {
    // Float sums over blocks of 4096 (vectorised), added up in double: exact enough for a norm,
    // and the same result for any thread count (the blocks are fixed).
    // The block sums are added in block order afterwards: an OpenMP reduction would add the
    // threads' partial sums, whose grouping depends on the thread count.
    constexpr size_t kBlock = 4096;
    const size_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> part(blocks);
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; ++b) {
      const float* p = x + b * kBlock;
      const size_t len = std::min(kBlock, n - b * kBlock);
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (size_t i = 0; i < len; ++i) acc += p[i] * p[i];
      part[b] = acc;
    }
    double s = 0;
    for (double v : part) s += v;
    return s;
  }

 private:
  // One head's queries at positions start..start+rows-1 (rows of Q, stride qs) against keys and
  // values 0..start+rows-1 (stride ks), causal: S = scale Q K^T by sgemm over only the keys the
  // block can see, a softmax per row (its log-sum-exp to lse when not null), out = P V. With
  // `first` (the rows' sequence starts), row r sees keys first[r]..start+r only; keys before
  // first[0] are not computed at all.
  static void attend(float* out, float* lse, const float* Q, int qs, const float* K, const float* V, int ks,
                     int start, int rows, int hd, float scale, const int32_t* first, const int32_t* end) {
    // Query r sees keys first[r] (0 without) to its own position (causal: end null) or to its
    // sequence's end[r] - 1; ends do not decrease along a row, so the last row's is the block's.
    const int k0 = first ? first[0] : 0, keys = (end ? end[rows - 1] : start + rows) - k0;
    thread_local std::vector<float> S;
    S.resize(static_cast<size_t>(rows) * keys);
    cpu::sgemm_serial(false, true, rows, keys, hd, scale, Q, qs, K + static_cast<size_t>(k0) * ks, ks, 0.0f, S.data(), keys);
    for (int r = 0; r < rows; ++r) {
      float* s = S.data() + static_cast<size_t>(r) * keys;
      const int lo = (first ? first[r] : 0) - k0, last = (end ? end[r] - 1 : start + r) - k0;
      float m = -INFINITY;
#pragma omp simd reduction(max : m)
      for (int j = lo; j <= last; ++j) m = std::max(m, s[j]);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int j = lo; j <= last; ++j) {
        s[j] = fast_exp(s[j] - m);
        sum += s[j];
      }
      const float inv = 1.0f / sum;
      for (int j = 0; j < lo; ++j) s[j] = 0.0f;
      for (int j = lo; j <= last; ++j) s[j] *= inv;
      for (int j = last + 1; j < keys; ++j) s[j] = 0.0f;
      if (lse) lse[r] = m + std::log(sum);
    }
    cpu::sgemm_serial(false, false, rows, hd, keys, 1.0f, S.data(), keys, V + static_cast<size_t>(k0) * ks, ks, 0.0f, out, qs);
  }

  // The position of token n of a [B, T] batch: its index in its row, less its sequence's start.
  static int position(int n, int T, const int32_t* starts) { return n % T - (starts ? starts[n] : 0); }

  static void check_heads(int NH, int KV) {
    if (KV <= 0 || NH % KV != 0)
      throw Error("", "attention: " + std::to_string(NH) + " heads are not a multiple of " +
                          std::to_string(KV) + " key/value heads");
  }

  static float log_sum_exp(const float* l, int V) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int j = 0; j < V; ++j) m = std::max(m, l[j]);
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < V; ++j) s += fast_exp(l[j] - m);
    return m + std::log(s);
  }

  // out[c] += sum over n of f(n, c), the channels split across threads (deterministic: each
  // channel's sum runs in row order on one thread).
  template <class F>
  static void column_reduce(float* out, int N, int C, F f) {
    if (!out) return;
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      int c0 = C * id / nt, c1 = C * (id + 1) / nt;
      std::vector<double> acc(static_cast<size_t>(std::max(0, c1 - c0)), 0.0);
      for (int n = 0; n < N; ++n)
        for (int c = c0; c < c1; ++c) acc[static_cast<size_t>(c - c0)] += f(n, c);
      for (int c = c0; c < c1; ++c) out[c] += static_cast<float>(acc[static_cast<size_t>(c - c0)]);
    }
  }

  static void rope(float* x, int B, int T, int heads, int hd, float theta, float sign, const int32_t* starts) {
    const int half = hd / 2;
    const std::vector<float> freq = rope_frequencies(hd, theta);
#pragma omp parallel for
    for (int n = 0; n < B * T; ++n)
      for (int h = 0; h < heads; ++h)
        rotate(x + (static_cast<size_t>(n) * heads + h) * hd, position(n, T, starts), freq.data(), half, sign);
  }

  // theta^(-2i/hd) for i < hd/2: the rotation rate of each pair.
  static std::vector<float> rope_frequencies(int hd, float theta) {
    std::vector<float> freq(static_cast<size_t>(hd / 2));
    for (int i = 0; i < hd / 2; ++i)
      freq[static_cast<size_t>(i)] = std::pow(theta, -2.0f * static_cast<float>(i) / static_cast<float>(hd));
    return freq;
  }

  // One head's row rotated by position t (sign -1: the inverse rotation).
  static void rotate(float* row, int t, const float* freq, int half, float sign) {
    for (int i = 0; i < half; ++i) {
      float a = static_cast<float>(t) * freq[i];
      float c = std::cos(a), s = sign * std::sin(a);
      float x1 = row[i], x2 = row[i + half];
      row[i] = x1 * c - x2 * s;
      row[i + half] = x2 * c + x1 * s;
    }
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace llmkit
