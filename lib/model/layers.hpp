// The transformer's building blocks over a Backend (internal to lib/model): a linear layer and
// a norm, each with its forward and backward, so that the model spells out a layer once
// (model.cpp: layer_forward, layer_backward) for training, cached inference and recomputation.
// LoRA adapters, quantized weights and tensor-parallel shards extend Linear, not the layer.
#pragma once
#include "llmkit/backend.hpp"

namespace llmkit {

// y[N, out] = x[N, in] W^T (+ b), W [out, in] as PyTorch's nn.Linear. Pointers are the
// backend's memory; a frozen layer's gradients are null and its backward skips them.
struct Linear {
  int in = 0, out = 0;
  float* w = nullptr;   // [out, in]
  float* b = nullptr;   // [out] or null
  float* dw = nullptr;  // gradients, same shapes; null: frozen (or no bias)
  float* db = nullptr;

  // y = x W^T + b, overwriting y.
  void forward(Backend& be, float* y, const float* x, int N) const { be.matmul_forward(y, x, w, b, N, in, out); }
  // dx += dy W (dx null: not wanted); dW += dy^T x; db += column sums of dy.
  void backward(Backend& be, float* dx, const float* dy, const float* x, int N) const {
    be.matmul_backward(dx, dw, db, dy, x, w, N, in, out);
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
