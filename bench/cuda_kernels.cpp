// cuda_kernels: every operation of the CUDA backend timed at the shapes of one training step
// of a model, as llm.c's dev/cuda does for its kernels: time per call (median of --reps calls,
// each timed with std::chrono around the call and be.synchronize()), the rate it achieves
// (GB/s of the bytes the operation must read and write, or TFLOP/s for the matmuls and
// attention) against the GPU's peak, then the step these add up to, as tokens/s and MFU.
//
// The step estimate is the sum of the per-operation medians over the calls one step makes
// (Model::forward, Model::backward, then llm-pretrain's gradient norm, AdamW and zero_grad),
// to compare with llm-pretrain's measured tokens/s: a real step has host work between the
// operations that is not in the sum, but queues its launches without a synchronize after each.
//
// Each timed call includes its launch and the synchronize round trip, so operations that take
// only a few times that round trip (printed first) show a lower rate than their kernels reach.
//
// Memory as a step lays it out: with --precision bf16 activations and their gradients are bf16
// (Backend::alloc_activations), the per-row statistics, weight gradients and AdamW's moments
// fp32 (alloc); the weights are the Model's own fp32 buffer, which it registers with
// set_parameters, so the matmuls read its bf16 copy as in training (a weight outside it would
// be converted to bf16 in every call, an extra pass a step never makes).
//
// --memory prints the device memory a training step needs (weights, their bf16 copy, gradients,
// AdamW's moments, activations with and without MLP recomputation) and times nothing.
//
// Without a GPU it exits 77; --emulated runs the same kernels on the CPU emulator
// (make_emulated_cuda_backend) at small shapes, to check that this program runs to the end
// (and --emulated --memory at any size: it only constructs the Model, whose weights and
// gradients then take host memory).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/cuda.hpp"
#include "llmkit/error.hpp"
#include "llmkit/model.hpp"
#include "llmkit/options.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

constexpr const char* kSynopsis =
    "cuda_kernels [--model NAME|CONFIG] [--batch B] [--seq T] [--precision bf16|tf32|fp32] [--reps R]\n"
    "                    [--only NAME] [--peak-tflops X] [--peak-gbs Y] [--emulated] [--memory]";
constexpr int kExitNoDevice = 77;  // CTest's and bench/cuda.sh's "skipped"

// H100 SXM dense tensor-core peaks by the matmuls' compute type (NVIDIA's datasheet, without
// sparsity; fp32 is the CUDA cores' rate), and its HBM3 bandwidth.
double default_peak_tflops(const std::string& precision) {
  if (precision == "bf16") return 989.0;
  if (precision == "tf32") return 494.5;
  return 66.9;
}
constexpr double kDefaultPeakGBs = 3350.0;

struct Dims {
  int B, T, N, C, F, NH, KV, hd, QC, KC, V, Vp, L;
  bool llama;
  Dims(const ModelConfig& c, int batch, int seq)
      : B(batch), T(seq), N(batch * seq), C(c.dim), F(c.ffn_dim), NH(c.heads), KV(c.kv_heads), hd(c.head_dim()),
        QC(c.heads * c.head_dim()), KC(c.kv_heads * c.head_dim()), V(c.vocab_size), Vp(c.padded_vocab()), L(c.layers),
        llama(c.family == ModelConfig::Family::llama) {}
  size_t nc() const { return static_cast<size_t>(N) * C; }
  size_t nf() const { return static_cast<size_t>(N) * F; }
};

// Device memory of the benchmark, released with it: fp32 buffers (zeros, random, constant) and
// activation buffers in the backend's activation type (act_zeros, act_random: bf16 in a bf16
// step). Inputs hold values uniform in [-1, 1), the scale of real activations: no kernel takes a
// shortcut on zeros, and GEMMs draw the power of real data (on zeros they draw less and clock
// higher). Outputs and gradients start at zero.
class Arena {
 public:
  Arena(Backend& be, uint64_t seed) : be_(be), pattern_(size_t{1} << 20) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& x : pattern_) x = u(rng);
  }
  ~Arena() {
    for (float* p : held_) be_.release(p);
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  float* zeros(size_t n) {
    held_.push_back(be_.alloc(n));
    return held_.back();
  }
  float* act_zeros(size_t n) {
    held_.push_back(be_.alloc_activations(n));
    return held_.back();
  }
  // The pattern repeats every 2^20 values: enough for timing, and the logits (400M values at
  // gpt2-124m, B=8, T=1024) need no host copy of their own.
  void randomize(float* p, size_t n) {
    for (size_t at = 0; at < n; at += pattern_.size()) be_.upload(p + at, pattern_.data(), std::min(pattern_.size(), n - at));
  }
  float* random(size_t n) {
    float* p = zeros(n);
    randomize(p, n);
    return p;
  }
  float* act_random(size_t n) {
    float* p = act_zeros(n);
    randomize(p, n);
    return p;
  }
  float* constant(size_t n, float value) {
    float* p = zeros(n);
    const std::vector<float> host(n, value);
    be_.upload(p, host.data(), n);
    return p;
  }

 private:
  Backend& be_;
  std::vector<float> pattern_;
  std::vector<float*> held_;
};

// One operation as a training step calls it, and how often: `layer` times in each layer's
// forward+backward, `top` times outside the layers (embedding, final norm, head, loss), `optim`
// times in the optimizer step. Rated by bytes (memory-bound) or flops (matmuls, attention).
struct Op {
  std::string name, shape;
  int layer = 0, top = 0, optim = 0;
  double bytes = 0, flops = 0;
  std::function<void()> run;
};

std::string dims(std::initializer_list<std::pair<const char*, long long>> d) {
  std::string s;
  for (const auto& [k, v] : d) s += (s.empty() ? "" : " ") + std::string(k) + "=" + std::to_string(v);
  return s;
}

// What the ops read and write: a model's activations, weights and gradients at one layer's
// shapes (one buffer per role; every layer has the same shapes). Activations and their
// gradients are activation buffers; statistics (mean, rstd, lse, logp, dlogp) and weight
// gradients fp32. The weights are layer 0's (and the embeddings and head) in the Model's own
// buffer, the one it registered with set_parameters: the matmuls read its bf16 copy in bf16.
struct Tensors {
  float *x, *h, *y, *dx, *dy;                     // [N, C]: input, normed, output, their gradients
  float *mean, *rstd, *norm_w, *norm_b, *dnorm_w, *dnorm_b;
  float *q, *k, *v, *att, *lse, *dq, *dk, *dv, *datt;
  float *f1, *f3, *act, *df1, *df3, *dact;        // [N, F]
  float *logits, *logp, *dlogp;
  float *wte, *wpe, *head, *dwte, *dwpe;          // head: wte when tied, else lm_head (same shape)
  float *wq, *wk, *wv, *wo, *w1, *w3, *w2, *dw;   // dw: one gradient buffer of the largest weight
  float *bq, *bk, *bv, *bo, *b1, *b2, *dbias;     // GPT-2's biases; null for Llama
  // Two batches of tokens and targets, taken in turn: every training step brings new ones, which
  // the backend copies to the device (it skips the copy when they equal the last ones it copied).
  std::array<std::vector<int32_t>, 2> tokens, targets;

  Tensors(Arena& a, const Dims& d, Model& m, uint64_t seed) {
    const size_t N = static_cast<size_t>(d.N), C = static_cast<size_t>(d.C), F = static_cast<size_t>(d.F);
    const size_t QC = static_cast<size_t>(d.QC), KC = static_cast<size_t>(d.KC), Vp = static_cast<size_t>(d.Vp);
    // Weights: the model's buffer, given random values (the upload marks its bf16 copy stale: the
    // first matmul's warm-up call makes it again, as the first matmul after AdamW does in a step).
    a.randomize(m.weights(), m.num_params());
    auto w = [&m](const std::string& name) { return m.weights() + m.param(name).offset; };
    if (d.llama) {
      const std::string l = "model.layers.0.";
      wte = w("model.embed_tokens.weight"), wpe = nullptr;
      head = m.config().tied_embeddings ? wte : w("lm_head.weight");
      norm_w = w(l + "input_layernorm.weight"), norm_b = nullptr;
      wq = w(l + "self_attn.q_proj.weight"), wk = w(l + "self_attn.k_proj.weight"), wv = w(l + "self_attn.v_proj.weight");
      wo = w(l + "self_attn.o_proj.weight");
      w1 = w(l + "mlp.gate_proj.weight"), w3 = w(l + "mlp.up_proj.weight"), w2 = w(l + "mlp.down_proj.weight");
      bq = bk = bv = bo = b1 = b2 = nullptr;
    } else {
      const std::string l = "h.0.";
      wte = w("wte"), wpe = w("wpe"), head = wte;
      norm_w = w(l + "ln_1.weight"), norm_b = w(l + "ln_1.bias");
      wq = w(l + "attn.q.weight"), wk = w(l + "attn.k.weight"), wv = w(l + "attn.v.weight"), wo = w(l + "attn.c_proj.weight");
      w1 = w(l + "mlp.c_fc.weight"), w3 = nullptr, w2 = w(l + "mlp.c_proj.weight");
      bq = w(l + "attn.q.bias"), bk = w(l + "attn.k.bias"), bv = w(l + "attn.v.bias"), bo = w(l + "attn.c_proj.bias");
      b1 = w(l + "mlp.c_fc.bias"), b2 = w(l + "mlp.c_proj.bias");
    }
    // Activations and their gradients.
    x = a.act_random(N * C), h = a.act_random(N * C), y = a.act_random(N * C);
    dx = a.act_random(N * C), dy = a.act_random(N * C);
    q = a.act_random(N * QC), k = a.act_random(N * KC), v = a.act_random(N * KC), att = a.act_random(N * QC);
    dq = a.act_random(N * QC), dk = a.act_random(N * KC), dv = a.act_random(N * KC), datt = a.act_random(N * QC);
    f1 = a.act_random(N * F), f3 = a.act_random(N * F), act = a.act_random(N * F);
    df1 = a.act_random(N * F), df3 = a.act_random(N * F), dact = a.act_random(N * F);
    logits = a.act_random(N * Vp);
    // Statistics, fp32. dlogp: d(loss)/d(logp) of the mean loss, as Model::backward_mean gives
    // it: a row with 0 there would skip the softmax (crossentropy_backward only clears it).
    mean = a.random(N), rstd = a.random(N), lse = a.random(N * static_cast<size_t>(d.NH));
    logp = a.zeros(N), dlogp = a.constant(N, -1.0f / static_cast<float>(N));
    // Weight gradients, fp32.
    dnorm_w = a.zeros(C), dnorm_b = a.zeros(C);
    dwte = a.zeros(Vp * C);
    dwpe = d.llama ? nullptr : a.zeros(static_cast<size_t>(d.T) * C);
    dw = a.zeros(std::max(Vp * C, std::max(F * C, QC * C)));
    dbias = d.llama ? nullptr : a.zeros(std::max(F, QC));
    std::mt19937 rng(static_cast<uint32_t>(seed));
    for (auto* ids : {&tokens[0], &tokens[1], &targets[0], &targets[1]}) {
      ids->resize(N);
      for (auto& id : *ids) id = static_cast<int32_t>(rng() % static_cast<uint32_t>(d.V));
    }
  }
};

// Bytes: the formulas below count values, A bytes per activation value (A =
// be.activation_value_bytes(): 2 in a bf16 step, else 4) and 4 per fp32 value (weights, weight
// gradients, statistics, optimizer state) and per int32 (tokens, targets).
// A matmul out[N, OC] = inp[N, C] w[OC, C]^T: forward 2*N*C*OC flops, backward 4*N*C*OC (dinp
// and dw; the bias's column sum is not counted).
Op matmul_fwd(Backend& be, const std::string& what, float* out, const float* inp, const float* w, const float* bias, int N, int C,
              int OC, int layer, int top) {
  return {"matmul_forward " + what, dims({{"N", N}, {"C", C}, {"OC", OC}}), layer, top, 0, 0, 2.0 * N * C * OC,
          [&be, out, inp, w, bias, N, C, OC] { be.matmul_forward(out, inp, w, bias, N, C, OC); }};
}
Op matmul_bwd(Backend& be, const std::string& what, float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
              const float* w, int N, int C, int OC, int layer, int top) {
  return {"matmul_backward " + what, dims({{"N", N}, {"C", C}, {"OC", OC}}), layer, top, 0, 0, 4.0 * N * C * OC,
          [=, &be] { be.matmul_backward(dinp, dw, dbias, dout, inp, w, N, C, OC); }};
}

void add_forward(std::vector<Op>& ops, Backend& be, const Dims& d, Tensors& t, float eps, float theta) {
  const int B = d.B, T = d.T, N = d.N, C = d.C, F = d.F, NH = d.NH, KV = d.KV, hd = d.hd, V = d.V, Vp = d.Vp;
  const size_t d_nc = d.nc(), d_nf = d.nf();  // values in [N, C] and [N, F]
  const double nc = static_cast<double>(d_nc), nf = static_cast<double>(d_nf);
  const double A = static_cast<double>(be.activation_value_bytes());
  const std::string nxc = dims({{"N", N}, {"C", C}});
  // reads tokens N, wte rows N*C (+ wpe T*C) fp32; writes N*C activations
  ops.push_back({"embedding_forward", dims({{"B", B}, {"T", T}, {"C", C}}), 0, 1, 0,
                 4 * (N + nc + (t.wpe ? T * C : 0)) + A * nc, 0,
                 [=, &be, &t, i = 0]() mutable { be.embedding_forward(t.x, t.tokens[i ^= 1].data(), t.wte, t.wpe, B, T, C); }});
  if (d.llama)  // reads inp N*C, w C; writes out N*C, rstd N (fp32): A*2NC + 4*(C + N)
    ops.push_back({"rmsnorm_forward", nxc, 2, 1, 0, A * 2 * nc + 4 * (C + N), 0,
                   [=, &be, &t] { be.rmsnorm_forward(t.h, t.rstd, t.x, t.norm_w, N, C, eps); }});
  else  // reads inp N*C, w and b 2C; writes out N*C, mean and rstd 2N: A*2NC + 4*(2C + 2N)
    ops.push_back({"layernorm_forward", nxc, 2, 1, 0, A * 2 * nc + 4 * (2 * C + 2 * N), 0,
                   [=, &be, &t] { be.layernorm_forward(t.h, t.mean, t.rstd, t.x, t.norm_w, t.norm_b, N, C, eps); }});
  ops.push_back(matmul_fwd(be, "q", t.q, t.h, t.wq, t.bq, N, C, d.QC, 1, 0));
  ops.push_back(matmul_fwd(be, "k", t.k, t.h, t.wk, t.bk, N, C, d.KC, 1, 0));
  ops.push_back(matmul_fwd(be, "v", t.v, t.h, t.wv, t.bv, N, C, d.KC, 1, 0));
  if (d.llama) {  // in place: reads and writes N*heads*hd activations: A*2*N*heads*hd
    ops.push_back({"rope_forward q", dims({{"B", B}, {"T", T}, {"heads", NH}, {"hd", hd}}), 1, 0, 0, A * 2.0 * N * NH * hd, 0,
                   [=, &be, &t] { be.rope_forward(t.q, B, T, NH, hd, theta); }});
    ops.push_back({"rope_forward k", dims({{"B", B}, {"T", T}, {"heads", KV}, {"hd", hd}}), 1, 0, 0, A * 2.0 * N * KV * hd, 0,
                   [=, &be, &t] { be.rope_forward(t.k, B, T, KV, hd, theta); }});
  }
  // Causal: Q K^T and P V, 2*T*T*hd flops each per (sequence, head), half of them unmasked:
  // 2 * 2*B*NH*T*T*hd / 2, as FlashAttention's papers and Model::flops_per_step count. (This
  // backend's GEMMs compute the masked half too: twice the work counted here.)
  const double attn_fwd = 2.0 * 2.0 * B * NH * static_cast<double>(T) * T * hd / 2.0;
  const std::string attn_shape = dims({{"B", B}, {"T", T}, {"NH", NH}, {"KV", KV}, {"hd", hd}});
  ops.push_back({"attention_forward", attn_shape, 1, 0, 0, 0, attn_fwd,
                 [=, &be, &t] { be.attention_forward(t.att, t.lse, t.q, t.k, t.v, B, T, NH, KV, hd); }});
  ops.push_back(matmul_fwd(be, "o", t.y, t.att, t.wo, t.bo, N, d.QC, C, 1, 0));
  // reads 2n, writes n activations: A*3n
  ops.push_back({"add", dims({{"n", static_cast<long long>(d_nc)}}), 2, 0, 0, A * 3 * nc, 0,
                 [=, &be, &t] { be.add(t.y, t.x, t.h, d_nc); }});
  if (d.llama) {
    ops.push_back(matmul_fwd(be, "gate", t.f1, t.h, t.w1, nullptr, N, C, F, 1, 0));
    ops.push_back(matmul_fwd(be, "up", t.f3, t.h, t.w3, nullptr, N, C, F, 1, 0));
    // reads gate, up; writes out (activations): A*3n
    ops.push_back({"swiglu_forward", dims({{"n", static_cast<long long>(d_nf)}}), 1, 0, 0, A * 3 * nf, 0,
                   [=, &be, &t] { be.swiglu_forward(t.act, t.f1, t.f3, d_nf); }});
  } else {
    ops.push_back(matmul_fwd(be, "fc", t.f1, t.h, t.w1, t.b1, N, C, F, 1, 0));
    // reads n, writes n activations: A*2n
    ops.push_back({"gelu_forward", dims({{"n", static_cast<long long>(d_nf)}}), 1, 0, 0, A * 2 * nf, 0,
                   [=, &be, &t] { be.gelu_forward(t.act, t.f1, d_nf); }});
  }
  ops.push_back(matmul_fwd(be, d.llama ? "down" : "proj", t.y, t.act, t.w2, t.b2, N, F, C, 1, 0));
  ops.push_back(matmul_fwd(be, "lm_head", t.logits, t.h, t.head, nullptr, N, C, Vp, 0, 1));
  // reads N*V logits (activations) and N targets, writes logp N (fp32): A*N*V + 4*2N
  ops.push_back({"crossentropy_forward", dims({{"N", N}, {"V", V}, {"Vp", Vp}}), 0, 1, 0,
                 A * static_cast<double>(N) * V + 4 * 2.0 * N, 0,
                 [=, &be, &t, i = 0]() mutable {
                   be.crossentropy_forward(t.logp, t.logits, t.targets[i ^= 1].data(), N, V, Vp);
                 }});
}

void add_backward(std::vector<Op>& ops, Backend& be, const Dims& d, Tensors& t, float theta) {
  const int B = d.B, T = d.T, N = d.N, C = d.C, F = d.F, NH = d.NH, KV = d.KV, hd = d.hd, V = d.V, Vp = d.Vp;
  const size_t d_nc = d.nc(), d_nf = d.nf();  // values in [N, C] and [N, F]
  const double nc = static_cast<double>(d_nc), nf = static_cast<double>(d_nf);
  const double A = static_cast<double>(be.activation_value_bytes());
  // Model::backward clears d(hidden) and d(residual) at the top, and per layer d(mlp out),
  // d(attention out) ([N, heads*hd] = [N, C]) and d(hidden) twice. Writes n activations: A*n.
  ops.push_back({"zero [N,C]", dims({{"n", static_cast<long long>(d_nc)}}), 3, 2, 0, A * nc, 0,
                 [=, &be, &t] { be.zero(t.dx, d_nc); }});
  // In place over the logits, as Model::backward calls it: reads N*V logits (activations), N
  // targets, N dlogp (fp32); writes N*Vp activations: A*(N*V + N*Vp) + 4*2N. The targets are
  // the forward's (already on the device in a step).
  ops.push_back({"crossentropy_backward", dims({{"N", N}, {"V", V}, {"Vp", Vp}}), 0, 1, 0,
                 A * (static_cast<double>(N) * V + static_cast<double>(N) * Vp) + 4 * 2.0 * N, 0,
                 [=, &be, &t] { be.crossentropy_backward(t.logits, t.logits, t.targets[0].data(), t.dlogp, N, V, Vp); }});
  ops.push_back(matmul_bwd(be, "lm_head", t.dx, t.dw, nullptr, t.logits, t.h, t.head, N, C, Vp, 0, 1));
  const std::string nxc = dims({{"N", N}, {"C", C}});
  // reads dout, inp, dinp (N*C activations each), w C, rstd N, dw C (fp32); writes dinp N*C, dw C:
  // A*4NC + 4*(3C + N)
  if (d.llama)
    ops.push_back({"rmsnorm_backward", nxc, 2, 1, 0, A * 4 * nc + 4 * (3 * C + N), 0,
                   [=, &be, &t] { be.rmsnorm_backward(t.dx, t.dnorm_w, t.dy, t.x, t.norm_w, t.rstd, N, C); }});
  else  // reads dout, inp, dinp; w, mean, rstd, dw, db; writes dinp; dw, db: A*4NC + 4*(5C + 2N)
    ops.push_back({"layernorm_backward", nxc, 2, 1, 0, A * 4 * nc + 4 * (5 * C + 2 * N), 0, [=, &be, &t] {
                     be.layernorm_backward(t.dx, t.dnorm_w, t.dnorm_b, t.dy, t.x, t.norm_w, t.mean, t.rstd, N, C);
                   }});
  // d(mlp act): writes n activations: A*n
  ops.push_back({"zero [N,F]", dims({{"n", static_cast<long long>(d_nf)}}), 1, 0, 0, A * nf, 0,
                 [=, &be, &t] { be.zero(t.dact, d_nf); }});
  ops.push_back(matmul_bwd(be, d.llama ? "down" : "proj", t.dact, t.dw, t.dbias, t.dy, t.act, t.w2, N, F, C, 1, 0));
  if (d.llama) {
    // reads dout, gate, up; writes dgate, dup (activations): A*5n
    ops.push_back({"swiglu_backward", dims({{"n", static_cast<long long>(d_nf)}}), 1, 0, 0, A * 5 * nf, 0,
                   [=, &be, &t] { be.swiglu_backward(t.df1, t.df3, t.dact, t.f1, t.f3, d_nf); }});
    ops.push_back(matmul_bwd(be, "gate", t.dx, t.dw, nullptr, t.df1, t.h, t.w1, N, C, F, 1, 0));
    ops.push_back(matmul_bwd(be, "up", t.dx, t.dw, nullptr, t.df3, t.h, t.w3, N, C, F, 1, 0));
  } else {
    // reads dout, inp; writes dinp (activations): A*3n
    ops.push_back({"gelu_backward", dims({{"n", static_cast<long long>(d_nf)}}), 1, 0, 0, A * 3 * nf, 0,
                   [=, &be, &t] { be.gelu_backward(t.df1, t.dact, t.f1, d_nf); }});
    ops.push_back(matmul_bwd(be, "fc", t.dx, t.dw, t.dbias, t.df1, t.h, t.w1, N, C, F, 1, 0));
  }
  ops.push_back(matmul_bwd(be, "o", t.datt, t.dw, t.dbias, t.dy, t.att, t.wo, N, d.QC, C, 1, 0));
  // dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q: twice the forward's useful flops (the
  // recomputed Q K^T is not counted, as in Model::flops_per_step's 3x forward for both passes).
  const double attn_bwd = 2 * 2.0 * 2.0 * B * NH * static_cast<double>(T) * T * hd / 2.0;
  ops.push_back({"attention_backward", dims({{"B", B}, {"T", T}, {"NH", NH}, {"KV", KV}, {"hd", hd}}), 1, 0, 0, 0, attn_bwd,
                 [=, &be, &t] {
                   be.attention_backward(t.dq, t.dk, t.dv, t.datt, t.q, t.k, t.v, t.att, t.lse, B, T, NH, KV, hd);
                 }});
  if (d.llama) {  // in place: reads and writes N*heads*hd activations: A*2*N*heads*hd
    ops.push_back({"rope_backward q", dims({{"B", B}, {"T", T}, {"heads", NH}, {"hd", hd}}), 1, 0, 0, A * 2.0 * N * NH * hd, 0,
                   [=, &be, &t] { be.rope_backward(t.dq, B, T, NH, hd, theta); }});
    ops.push_back({"rope_backward k", dims({{"B", B}, {"T", T}, {"heads", KV}, {"hd", hd}}), 1, 0, 0, A * 2.0 * N * KV * hd, 0,
                   [=, &be, &t] { be.rope_backward(t.dk, B, T, KV, hd, theta); }});
  }
  ops.push_back(matmul_bwd(be, "q", t.dx, t.dw, t.dbias, t.dq, t.h, t.wq, N, C, d.QC, 1, 0));
  ops.push_back(matmul_bwd(be, "k", t.dx, t.dw, t.dbias, t.dk, t.h, t.wk, N, C, d.KC, 1, 0));
  ops.push_back(matmul_bwd(be, "v", t.dx, t.dw, t.dbias, t.dv, t.h, t.wv, N, C, d.KC, 1, 0));
  // reads dout N*C (activations) and tokens N; reads and writes the U distinct tokens' dwte rows
  // (+ dwpe T*C), fp32: A*NC + 4*(N + 2UC (+ 2TC)). The host sorts the tokens by id first
  // (CudaBackend::embedding_backward): that is timed too.
  const double U = static_cast<double>(std::unordered_set<int32_t>(t.tokens[0].begin(), t.tokens[0].end()).size());
  ops.push_back({"embedding_backward", dims({{"B", B}, {"T", T}, {"C", C}}), 0, 1, 0,
                 A * nc + 4 * (N + 2 * U * C + (t.dwpe ? 2.0 * T * C : 0)), 0,
                 [=, &be, &t, i = 0]() mutable {
                   be.embedding_backward(t.dwte, t.dwpe, t.dy, t.tokens[i ^= 1].data(), B, T, C);
                 }});
}

// llm-pretrain's step after the backward: the gradient norm, AdamW, and zero_grad, over every
// parameter (the Model's own buffers, the weights given random values by Tensors, the gradients
// here, plus AdamW's two moments; all fp32), and in a bf16 step the bf16 copy of the weights
// that the first matmul after AdamW makes.
void add_optimizer(std::vector<Op>& ops, Backend& be, Model& m, Arena& a, const Tensors& t, const Dims& d) {
  const size_t n = m.num_params();
  float *w = m.weights(), *g = m.grads(), *mom = a.zeros(n), *var = a.zeros(n);
  a.randomize(g, n);
  const std::string shape = dims({{"n", static_cast<long long>(n)}});
  const double values = static_cast<double>(n);
  // reads n (then a fixed number of partial sums to the host): 4n
  ops.push_back({"sum_squares", shape, 0, 0, 1, 4 * values, 0, [&be, g, n] { be.sum_squares(g, n); }});
  // reads p, g, m, v; writes p, m, v: 4*7n
  ops.push_back({"adamw", shape, 0, 0, 1, 4 * 7 * values, 0,
                 [&be, w, g, mom, var, n] { be.adamw(w, g, mom, var, n, 3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, 1.0f); }});
  // The weights changed, so the next matmul converts them all to bf16 first: reads n fp32, writes
  // n bf16: 4n + 2n. Timed as parameters_changed() and the matmul that triggers the conversion,
  // a one-row one (out[1, QC] = h[1, C] wq^T), whose own time is small beside the pass.
  if (be.activation_value_bytes() == 2) {
    const int C = d.C, QC = d.QC;
    ops.push_back({"bf16 weight copy", shape, 0, 0, 1, 6 * values, 0, [&be, &t, C, QC] {
                     be.parameters_changed();
                     be.matmul_forward(t.q, t.h, t.wq, nullptr, 1, C, QC);
                   }});
  }
  // writes n: 4n
  ops.push_back({"zero grads", shape, 0, 0, 1, 4 * values, 0, [&be, g, n] { be.zero(g, n); }});
}

using Clock = std::chrono::steady_clock;

double median_us(Backend& be, const std::function<void()>& run, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) run();  // cuBLASLt plans, scratch buffers, clocks up
  be.synchronize();
  std::vector<double> us(static_cast<size_t>(reps));
  for (double& u : us) {
    const auto t0 = Clock::now();
    run();
    be.synchronize();
    u = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }
  std::sort(us.begin(), us.end());
  const size_t m = us.size() / 2;
  return us.size() % 2 ? us[m] : (us[m - 1] + us[m]) / 2;
}

std::string calls(const Op& op) {
  std::string s = op.layer ? std::to_string(op.layer) + "L" : "";
  if (op.top + op.optim) s += (s.empty() ? "" : "+") + std::to_string(op.top + op.optim);
  return s;
}

struct Settings {
  std::string model = "gpt2-124m", precision = "bf16", only;
  int64_t batch = 8, seq = 1024, reps = 20;
  double peak_tflops = 0, peak_gbs = kDefaultPeakGBs;  // peak_tflops 0: by --precision
  bool emulated = false, memory = false;
};

Settings parse(int argc, char** argv, uint64_t* seed) {
  Settings s;
  OptionParser op("cuda_kernels", kSynopsis,
                  "Times every operation of the CUDA backend at the shapes of one training step: median time\n"
                  "per call, GB/s or TFLOP/s and the share of the GPU's peak, then the step they add up to.");
  op.string("model", 0, "NAME", &s.model, "preset (gpt2-124m, llama-125m, ...) or config.json (default gpt2-124m)");
  op.integer("batch", 0, "B", &s.batch, "sequences per step (default 8)");
  op.integer("seq", 0, "T", &s.seq, "sequence length (default 1024)");
  op.string("precision", 0, "P", &s.precision, "matmul compute type: bf16 (default), tf32 or fp32");
  op.integer("reps", 0, "R", &s.reps, "timed calls per operation, after warm-up; the median is shown (default 20)");
  op.string("only", 0, "NAME", &s.only, "only the operations whose name contains NAME");
  auto positive = [](double* target, const char* what) {
    return [target, what](const std::string& v) {
      *target = parse_double(v, what);
      if (!(*target > 0)) throw UsageError(std::string(what) + " must be positive");
    };
  };
  op.value("peak-tflops", 0, "X", positive(&s.peak_tflops, "--peak-tflops"),
           "matmul peak for % and MFU (default: H100 SXM dense,\nby --precision: 989 bf16, 494.5 tf32, 66.9 fp32)");
  op.value("peak-gbs", 0, "Y", positive(&s.peak_gbs, "--peak-gbs"), "memory bandwidth for % (default: H100 SXM, 3350)");
  op.flag("emulated", 0, &s.emulated, "run on the CPU emulator of the kernels (give tiny shapes)");
  op.flag("memory", 0, &s.memory,
          "print the device memory a training step needs (weights, gradients, AdamW,\nactivations) and time nothing; "
          "with --emulated at any size");
  op.epilog("Exit status: 0 success, 1 runtime error, 2 usage error, 77 no CUDA device (without --emulated).");
  if (!op.parse(argc, argv).empty()) throw UsageError("no arguments are taken, only options");
  *seed = op.common().seed;
  if (s.precision != "bf16" && s.precision != "tf32" && s.precision != "fp32")
    throw UsageError("--precision must be bf16, tf32 or fp32, not '" + s.precision + "'");
  if (s.batch < 1 || s.seq < 1 || s.reps < 1) throw UsageError("--batch, --seq and --reps must be 1 or more");
  if (s.batch * s.seq > (int64_t{1} << 24)) throw UsageError("--batch x --seq above 2^24 tokens");
  if (s.peak_tflops == 0) s.peak_tflops = default_peak_tflops(s.precision);  // not given
  return s;
}

// The medians, one line per operation as it is measured; the step estimate when all were.
void measure(Backend& be, const std::vector<Op>& ops, const Settings& s, const Dims& d, double flops_per_step) {
  const int warmup = s.emulated ? 1 : 3;  // the emulator has no clocks or caches to warm
  std::printf("B=%d T=%d (N=%d tokens); median of %lld timed calls after %d warm-up; peaks %.1f TFLOP/s, %.0f GB/s; "
              "calls per step: nL in each layer + n outside\n",
              d.B, d.T, d.N, static_cast<long long>(s.reps), warmup, s.peak_tflops, s.peak_gbs);
  const double round_trip = median_us(be, [] {}, warmup, static_cast<int>(s.reps));
  std::printf("an empty call and synchronize: %.1f us, in each time below\n", round_trip);
  std::printf("%-26s %-34s %6s %11s %14s %7s\n", "operation", "shape", "calls", "us/call", "rate", "% peak");
  double layer_us = 0, top_us = 0, optim_us = 0;
  size_t measured = 0;
  for (const Op& op : ops) {
    if (!s.only.empty() && op.name.find(s.only) == std::string::npos) continue;
    const double us = median_us(be, op.run, warmup, static_cast<int>(s.reps));
    const bool by_flops = op.flops > 0;
    const double rate = by_flops ? op.flops / us / 1e6 : op.bytes / us / 1e3;  // TFLOP/s or GB/s
    const double peak = by_flops ? s.peak_tflops : s.peak_gbs;
    std::printf("%-26s %-34s %6s %11.1f %8.1f %-5s %6.1f%%\n", op.name.c_str(), op.shape.c_str(), calls(op).c_str(), us, rate,
                by_flops ? "TF/s" : "GB/s", 100 * rate / peak);
    std::fflush(stdout);  // the emulator is slow: show each line as it comes
    layer_us += op.layer * us;
    top_us += op.top * us;
    optim_us += op.optim * us;
    ++measured;
  }
  if (measured < ops.size()) {
    std::printf("step: not estimated (--only measured %zu of the %zu operations)\n", measured, ops.size());
    return;
  }
  const double step_s = (layer_us * d.L + top_us + optim_us) / 1e6;
  std::printf("step estimate: layer %.1f us x %d + top %.1f us + optimizer %.1f us = %.3f ms: %.0f tokens/s, MFU %.1f%% "
              "(%.3g FLOP/step at %.1f TFLOP/s)\n",
              layer_us, d.L, top_us, optim_us, step_s * 1e3, d.N / step_s, 100 * flops_per_step / step_s / (s.peak_tflops * 1e12),
              flops_per_step, s.peak_tflops);
}

std::string mib(double bytes) {
  char buf[64];
  if (bytes >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%10.2f GiB", bytes / (1024.0 * 1024 * 1024));
  else std::snprintf(buf, sizeof buf, "%10.1f MiB", bytes / (1024.0 * 1024));
  return buf;
}

// --memory: the device memory of one training step (llm-pretrain's: model, gradients, AdamW)
// for B x T, from the Model's own figures, without running anything. A Model is constructed for
// each setting (its weights and gradients allocated, nothing else: activations are allocated by
// the first forward); on the emulator that is host memory.
void print_memory(Backend& be, const ModelConfig& cfg, const Settings& s) {
  const int B = static_cast<int>(s.batch), T = static_cast<int>(s.seq);
  size_t params = 0, acts = 0, acts_recompute = 0;
  {
    Model m(cfg, be);
    params = m.num_params();
    acts = m.activation_bytes(B, T);
  }
  {
    Model m(cfg, be, ModelOptions{false, true});  // recompute_mlp
    acts_recompute = m.activation_bytes(B, T);
  }
  const bool bf16 = be.activation_value_bytes() == 2;
  const double p = static_cast<double>(params);
  const double master = 4 * p, copy = bf16 ? 2 * p : 0, grads = 4 * p, adam = 8 * p;
  const double fixed = master + copy + grads + adam;
  auto line = [](const char* what, const char* formula, double bytes) {
    std::printf("  %-34s %-18s %15.0f %s\n", what, formula, bytes, mib(bytes).c_str());
  };
  std::printf("device memory of a training step: %s, B=%d T=%d (N=%d tokens), %s matmuls, %s activations "
              "(%zu bytes a value); %zu parameters (padding included)\n",
              s.model.c_str(), B, T, B * T, s.precision.c_str(), bf16 ? "bf16" : "fp32", be.activation_value_bytes(), params);
  std::printf("  %-34s %-18s %15s\n", "", "", "bytes");
  line("fp32 master weights", "4 x params", master);
  if (bf16) line("bf16 copy of the weights (matmuls)", "2 x params", copy);
  line("fp32 gradients", "4 x params", grads);
  line("AdamW m and v (fp32)", "8 x params", adam);
  line("weights, gradients, optimizer", "", fixed);
  line("activations", "activation_bytes", static_cast<double>(acts));
  line("activations, recompute_mlp", "activation_bytes", static_cast<double>(acts_recompute));
  line("total", "", fixed + static_cast<double>(acts));
  line("total, recompute_mlp", "", fixed + static_cast<double>(acts_recompute));
  std::printf("not counted: the CUDA context, cuBLASLt's workspace, the backend's scratch (attention's chunks, "
              "token copies, partial sums)\n");
}

int bench_main(int argc, char** argv) {
  uint64_t seed = 0;
  Settings s;
  try {
    s = parse(argc, argv, &seed);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "cuda_kernels: %s\nUsage: %s\n", e.what(), kSynopsis);
    return kExitUsage;
  }
  const ModelConfig cfg = ModelConfig::load(s.model);
  if (s.seq > cfg.max_seq) {
    std::fprintf(stderr, "cuda_kernels: --seq %lld is above the model's context of %d\nUsage: %s\n",
                 static_cast<long long>(s.seq), cfg.max_seq, kSynopsis);
    return kExitUsage;
  }
  if (!s.emulated && cuda_device_count() == 0) {
    std::printf("no CUDA device: nothing to measure (--emulated runs the CPU emulator at small shapes, "
                "--emulated --memory at any)\n");
    return kExitNoDevice;
  }
  if (s.memory) {
    auto backend = s.emulated ? make_emulated_cuda_backend(s.precision) : make_cuda_backend(0, s.precision);
    print_memory(*backend, cfg, s);
    return 0;
  }
  if (s.emulated && s.batch * s.seq > 64)
    std::fprintf(stderr, "cuda_kernels: warning: %lld tokens on the emulator will take very long "
                 "(try --batch 1 --seq 16 --reps 1)\n", static_cast<long long>(s.batch * s.seq));
  auto backend = s.emulated ? make_emulated_cuda_backend(s.precision) : make_cuda_backend(0, s.precision);
  Backend& be = *backend;
  const Dims d(cfg, static_cast<int>(s.batch), static_cast<int>(s.seq));
  Arena arena(be, seed);
  // The model's weights (registered with set_parameters as the only model here: the matmuls read
  // their bf16 copy) and gradients, for the matmuls, norms, embeddings and the optimizer.
  Model model(cfg, be);
  Tensors t(arena, d, model, seed);
  std::vector<Op> ops;
  add_forward(ops, be, d, t, cfg.norm_eps, cfg.rope_theta);
  add_backward(ops, be, d, t, cfg.rope_theta);
  add_optimizer(ops, be, model, arena, t, d);
  std::printf("device %s, %s matmuls, %s activations; %s: C=%d L=%d NH=%d KV=%d hd=%d F=%d Vp=%d, %zu parameters "
              "(padding included)\n",
              s.emulated ? "CPU emulator (times say nothing about a GPU)" : cuda_device_name(0).c_str(), s.precision.c_str(),
              be.activation_value_bytes() == 2 ? "bf16" : "fp32", s.model.c_str(), d.C, d.L, d.NH, d.KV, d.hd, d.F, d.Vp,
              model.num_params());
  measure(be, ops, s, d, model.flops_per_step(d.B, d.T));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("cuda_kernels", argc, argv, bench_main); }
