// The transformer's building blocks over a Backend (internal to lib/model): a linear layer and
// a norm, each with its forward and backward, so that the model spells out a layer once
// (model.cpp: layer_forward, layer_backward) for training, cached inference and recomputation.
// LoRA adapters, quantized weights and tensor-parallel shards extend Linear, not the layer.
#pragma once
#include <cstdint>
#include <string>

#include "llmkit/backend.hpp"

namespace llmkit {

// A low-rank adapter on a Linear (LoRA, Hu et al. 2021, computed as Hugging Face PEFT does):
// y += scale * dropout(x) A^T B^T, A [rank, in], B [out, rank]; scale = alpha / rank (rsLoRA:
// alpha / sqrt(rank)). Dropout acts on the adapter's input only.
struct Lora {
  int rank = 0;  // 0: no adapter
  float scale = 0, dropout = 0;
  uint64_t stream = 0;  // the dropout mask's stream: the same for Linears that share A
  float *a = nullptr, *b = nullptr, *da = nullptr, *db = nullptr;  // da, db null: frozen
};

// Scratch for the adapters' passes, [N, largest in] and [N, largest rank] (the model's).
struct LoraScratch {
  float* x = nullptr;   // dropout(x)
  float* dx = nullptr;  // its gradient before the mask
  float* t = nullptr;   // dy B
};

// y[N, out] = x[N, in] W^T (+ b), W [out, in] as PyTorch's nn.Linear, plus a LoRA adapter's
// path when it has one. Pointers are the backend's memory; a frozen tensor's gradient is null
// and the backward skips it. W is fp32 (w) or ggml blocks (qw: a GGUF model's, frozen), and
// only here does the difference show.
struct Linear {
  int in = 0, out = 0;
  float* w = nullptr;   // [out, in]; null when qw holds the weight
  QuantWeight qw;
  const std::string* name = nullptr;  // the weight's tensor name (the model's ParamSpec)
  float* b = nullptr;   // [out] or null
  // Whether forward adds b: not on all but one rank of a row-parallel matrix under tensor
  // parallelism (its partial outputs are summed over ranks); backward's db is every rank's.
  bool add_bias = true;
  float* dw = nullptr;  // gradients, same shapes; null: frozen (or no bias)
  float* db = nullptr;
  Lora lora;

  bool adapted() const { return lora.rank > 0; }

  // y = x W^T + b (+ the adapter's path), overwriting y. With an adapter, mid [N, rank] keeps
  // scale * dropout(x) A^T for the backward; seed 0 turns dropout off (evaluation).
  // The mask of row n is a function of (seed, row0 + n): a row gets the same one whatever batch
  // it is in.
  // `exact`: a quantized weight multiplies fp32 activations (training), not 8-bit ones.
  void forward(Backend& be, float* y, const float* x, int N, float* mid = nullptr, const LoraScratch* s = nullptr,
               uint64_t seed = 0, uint64_t row0 = 0, bool exact = false) const {
    const float* bias = add_bias ? b : nullptr;
    if (qw.data) be.matmul_forward_quant(y, x, qw, bias, N, in, out, exact);
    else be.matmul_forward(y, x, w, bias, N, in, out);
    if (!adapted() || !mid) return;
    const float* src = adapter_input(be, x, N, s, seed, row0);
    be.matmul_forward(mid, src, lora.a, nullptr, N, in, lora.rank);
    be.scale(mid, lora.scale, static_cast<size_t>(N) * lora.rank);
    be.matmul_accumulate(y, mid, lora.b, N, lora.rank, out, 1.0f);
  }

  // dx += dy W (dx null: not wanted); dW += dy^T x; db += column sums of dy; with an adapter
  // dB += dy^T mid, dA += scale (dy B)^T dropout(x) and dx gets scale (dy B) A through the mask.
  void backward(Backend& be, float* dx, const float* dy, const float* x, int N, const float* mid = nullptr,
                const LoraScratch* s = nullptr, uint64_t seed = 0, uint64_t row0 = 0) const {
    if (qw.data) {
      if (dx) be.matmul_backward_quant(dx, dy, qw, N, in, out);
      if (db) be.matmul_backward(nullptr, nullptr, db, dy, x, nullptr, N, in, out);
    } else {
      be.matmul_backward(dx, dw, db, dy, x, w, N, in, out);
    }
    if (!adapted() || !mid) return;
    const size_t nr = static_cast<size_t>(N) * lora.rank;
    be.zero(s->t, nr);
    be.matmul_backward(s->t, lora.db, nullptr, dy, mid, lora.b, N, lora.rank, out);  // t = dy B; dB += dy^T mid
    be.scale(s->t, lora.scale, nr);
    const float* src = adapter_input(be, x, N, s, seed, row0);
    const bool masked = dropping(seed) && dx;
    if (masked) be.zero(s->dx, static_cast<size_t>(N) * in);
    be.matmul_backward(masked ? s->dx : dx, lora.da, nullptr, s->t, src, lora.a, N, in, lora.rank);
    if (masked) {
      be.dropout(s->dx, s->dx, static_cast<size_t>(N) * in, lora.dropout, mask_seed(seed), row0 * static_cast<uint64_t>(in));
      be.accumulate(dx, s->dx, static_cast<size_t>(N) * in);
    }
  }

 private:
  bool dropping(uint64_t seed) const { return seed != 0 && lora.dropout > 0; }
  uint64_t mask_seed(uint64_t seed) const { return seed ^ (lora.stream * 0xD1B54A32D192ED03ull); }
  // x, or dropout(x) in the scratch: the adapter's input, the same in forward and backward.
  const float* adapter_input(Backend& be, const float* x, int N, const LoraScratch* s, uint64_t seed, uint64_t row0) const {
    if (!dropping(seed)) return x;
    be.dropout(s->x, x, static_cast<size_t>(N) * in, lora.dropout, mask_seed(seed), row0 * static_cast<uint64_t>(in));
    return s->x;
  }
};

// RMSNorm (Llama: weight only) or LayerNorm (GPT-2: weight and bias) over C channels.
struct Norm {
  bool rms = true;
  int C = 0;
  float eps = 1e-5f;
  float *w = nullptr, *b = nullptr, *dw = nullptr, *db = nullptr;

  // out [N, C]; mean (LayerNorm only) and rstd [N] kept for the backward.
  void forward(Backend& be, float* out, float* mean, float* rstd, const float* x, int N) const {
    if (rms) be.rmsnorm_forward(out, rstd, x, w, N, C, eps);
    else be.layernorm_forward(out, mean, rstd, x, w, b, N, C, eps);
  }
  // dx += d(norm)/dx dy; dw, db accumulate.
  void backward(Backend& be, float* dx, const float* dy, const float* x, const float* mean, const float* rstd,
                int N) const {
    if (rms) be.rmsnorm_backward(dx, dw, dy, x, w, rstd, N, C);
    else be.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C);
  }
};

}  // namespace llmkit
