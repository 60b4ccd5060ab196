// GPTQ (Frantar, Ashkboos, Hoefler, Alistarh: "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers", 2022) on ggml's block types.
//
// A matrix W [rows, cols] feeds on inputs x whose second moments H = sum x x^T (cols x cols) a
// calibration pass collected. GPTQ rounds W one input column at a time and spreads each
// column's rounding error over the columns not yet rounded, so that the layer's outputs W x,
// not its weights, stay close: the error of column j, divided by U[j][j], times row j of U
// (the upper Cholesky factor of H^-1) is subtracted from the later columns. The paper's lazy
// batches are ggml's blocks: at a block's first column the type's own quantizer (with the
// importance diag(H) where the type takes one, as llama-quantize --imatrix does) chooses the
// block's scales and mins from the weights as they are then, and each column of the block is
// rounded to the nearest code of that grid (ggml::Grid); the rest of the matrix is updated once
// per block by one matrix product. The bytes are plain ggml blocks: llama.cpp reads them as any.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "../backend/cpu/gemm.hpp"
#include "llmkit/backend.hpp"
#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/ggml.hpp"
#include "llmkit/log.hpp"
#include "llmkit/quant.hpp"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
}

namespace llmkit {

namespace {

// The lower Cholesky factor of the symmetric positive-definite row-major A, in place (LAPACK
// sees the transpose, the same matrix): afterwards A's upper triangle (row-major) holds U with
// A = U^T U. False if A is not positive definite.
bool cholesky_upper(std::vector<double>& a, int n) {
  int info = 0;
  dpotrf_("L", &n, a.data(), &n, &info);
  return info == 0;
}

// tr(D H D^T) for D [rows, cols] (row-major) and the symmetric H: the squared error of the
// outputs over the calibration inputs that a weight error D makes.
double output_error(const std::vector<float>& d, int64_t rows, int cols, const std::vector<float>& h) {
  std::vector<float> dh(d.size());
  cpu::sgemm(false, false, static_cast<int>(rows), cols, cols, 1.0f, d.data(), cols, h.data(), cols, 0.0f, dh.data(), cols);
  double s = 0;
  for (size_t i = 0; i < d.size(); ++i) s += static_cast<double>(d[i]) * dh[i];
  return s;
}

}  // namespace

std::string gptq_input_key(const ModelConfig& c, const std::string& g) {
  if (c.family != ModelConfig::Family::llama) return g;  // GPT-2: q, k and v are one attn_qkv
  auto swap = [&](const std::string& from, const std::string& to) {
    const size_t at = g.rfind(from);
    return at == std::string::npos ? std::string() : g.substr(0, at) + to;
  };
  for (const char* s : {"attn_k.weight", "attn_v.weight"})
    if (has_suffix(g, s)) return swap(s, "attn_q.weight");
  if (has_suffix(g, "ffn_up.weight")) return swap("ffn_up.weight", "ffn_gate.weight");
  return g;
}

std::map<std::string, std::vector<float>> collect_hessians(Model& m, const GptqConfig& cfg, ImatrixReport& r) {
  const ModelConfig& c = m.config();
  std::map<std::string, std::vector<float>> acc;
  run_calibration(m, cfg.calib, cfg.seq_len, cfg.chunks, r, [&](const std::string& g, const float* h, int N, int C) {
    // One sum per input: the matrices after the first that read it (k, v; up) add nothing.
    if (g == "token_embd.weight" || gptq_input_key(c, g) != g) return;
    std::vector<float>& H = acc[g];
    if (H.empty()) H.assign(static_cast<size_t>(C) * C, 0.0f);
    cpu::sgemm(true, false, C, C, N, 1.0f, h, C, h, C, 1.0f, H.data(), C);
  });
  return acc;
}

GptqResult gptq_quantize(ggml::Type t, const float* w, int64_t rows, int cols, const std::vector<float>& hessian, double damp) {
  const ggml::TypeTraits& tr = ggml::traits(t);
  if (tr.block == 1) throw Error("", std::string("GPTQ: ") + tr.name + " is not a block type");
  if (cols % tr.block != 0) throw Error("", "GPTQ: rows of " + std::to_string(cols) + " values are not whole " + tr.name + " blocks");
  if (hessian.size() != static_cast<size_t>(cols) * cols) throw Error("", "GPTQ: the Hessian is not cols x cols");
  if (!(damp > 0)) throw UsageError("GPTQ: the dampening must be positive");
  const size_t row_bytes = ggml::row_bytes(t, cols);
  const size_t n = static_cast<size_t>(cols);

  // Inputs never seen (a zero diagonal) carry no information: their weights are rounded as
  // they are (H's diagonal 1 there, no error spread from them).
  std::vector<float> W(w, w + static_cast<size_t>(rows) * n);
  std::vector<double> H(hessian.begin(), hessian.end());
  double mean_diag = 0;
  for (size_t i = 0; i < n; ++i) mean_diag += H[i * n + i];
  mean_diag /= static_cast<double>(n);
  if (!(mean_diag > 0)) mean_diag = 1;
  std::vector<float> importance(n);
  for (size_t i = 0; i < n; ++i) {
    if (!(H[i * n + i] > 0)) {
      for (size_t j = 0; j < n; ++j) H[i * n + j] = H[j * n + i] = 0;
      H[i * n + i] = mean_diag;
    }
    importance[i] = static_cast<float>(H[i * n + i] / mean_diag);
    H[i * n + i] += damp * mean_diag;
  }
  // U: the upper Cholesky factor of H^-1 (H^-1 = U^T U), as the paper's reference code does.
  int info = 0;
  const int ni = cols;
  if (!cholesky_upper(H, cols)) throw Error("", "GPTQ: the Hessian is not positive definite: raise --damp");
  dpotri_("L", &ni, H.data(), &ni, &info);
  if (info != 0) throw Error("", "GPTQ: the Hessian could not be inverted: raise --damp");
  for (size_t i = 0; i < n; ++i)  // dpotri filled the upper triangle (row-major): mirror it
    for (size_t j = 0; j < i; ++j) H[i * n + j] = H[j * n + i];
  if (!cholesky_upper(H, cols)) throw Error("", "GPTQ: the inverse Hessian is not positive definite: raise --damp");
  std::vector<float> U(n * n, 0.0f);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i; j < n; ++j) U[i * n + j] = static_cast<float>(H[i * n + j]);

  const bool imp = ggml::uses_importance(t);
  const int B = tr.block;
  GptqResult r;
  r.bytes.assign(static_cast<size_t>(rows) * row_bytes, 0);
  std::vector<float> err(static_cast<size_t>(rows) * B);
  for (int b0 = 0; b0 < cols; b0 += B) {
    const int e = b0 + B;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      float* x = W.data() + static_cast<size_t>(row) * n;
      uint8_t* q = r.bytes.data() + static_cast<size_t>(row) * row_bytes;
      uint8_t* block = q + static_cast<size_t>(b0 / B) * tr.bytes;
      ggml::quantize(t, x + b0, block, B, imp ? importance.data() + b0 : nullptr);  // the block's scales
      float* er = err.data() + static_cast<size_t>(row) * B;
      for (int j = b0; j < e; ++j) {
        const ggml::Grid g = ggml::grid_at(t, q, j);
        const int code = g.nearest(x[j]);
        ggml::set_code(t, q, j, code);
        const float e_j = (x[j] - g.value(code)) / U[static_cast<size_t>(j) * n + j];
        er[j - b0] = e_j;
        const float* u = U.data() + static_cast<size_t>(j) * n;
        for (int k = j + 1; k < e; ++k) x[k] -= e_j * u[k];
      }
    }
    if (e < cols)  // the later columns: W[:, e:] -= err U[b0:e, e:]
      cpu::sgemm(false, false, static_cast<int>(rows), cols - e, B, -1.0f, err.data(), B, U.data() + static_cast<size_t>(b0) * n + e,
                 cols, 1.0f, W.data() + e, cols);
  }

  // The output error of this, of rounding to nearest with the importance diag(H) (llama.cpp's
  // imatrix) and of plain rounding to nearest, on the undampened H: what GPTQ lowers.
  std::vector<float> d(static_cast<size_t>(rows) * n), y(n);
  std::vector<uint8_t> rtn(row_bytes);
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = w + static_cast<size_t>(row) * n;
    ggml::dequantize(t, r.bytes.data() + static_cast<size_t>(row) * row_bytes, y.data(), cols);
    for (size_t i = 0; i < n; ++i) d[static_cast<size_t>(row) * n + i] = y[i] - x[i];
  }
  r.output_error = output_error(d, rows, cols, hessian);
  for (int64_t row = 0; row < rows; ++row) {
    const float* x = w + static_cast<size_t>(row) * n;
    ggml::quantize(t, x, rtn.data(), cols, imp ? importance.data() : nullptr);
    ggml::dequantize(t, rtn.data(), y.data(), cols);
    for (size_t i = 0; i < n; ++i) d[static_cast<size_t>(row) * n + i] = y[i] - x[i];
  }
  r.rtn_output_error = output_error(d, rows, cols, hessian);
  if (imp) {  // and without it
    for (int64_t row = 0; row < rows; ++row) {
      const float* x = w + static_cast<size_t>(row) * n;
      ggml::quantize(t, x, rtn.data(), cols);
      ggml::dequantize(t, rtn.data(), y.data(), cols);
      for (size_t i = 0; i < n; ++i) d[static_cast<size_t>(row) * n + i] = y[i] - x[i];
    }
    r.plain_output_error = output_error(d, rows, cols, hessian);
  } else {
    r.plain_output_error = r.rtn_output_error;
  }
  return r;
}

}  // namespace llmkit
