// ggml's blocks on the GPU (a GGUF model's quantized matrices, QLoRA's frozen base): each value
// decoded where it is read by lib/quant/ggml_value.hpp, the layouts the CPU's GPTQ uses too.
//  - dequantize_rows: rows of blocks into fp32 or bf16 values, for the matmuls of many rows
//    (the backend multiplies them with cuBLASLt, a slice of rows at a time);
//  - quant_matvec: up to kMatvecRows activation rows against every weight row, one warp per
//    weight row reading its blocks once (decoding: the weights' bytes are the cost);
//  - embedding_quant: token rows of a quantized embedding.
#include "../../quant/ggml_value.hpp"
#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;

__global__ void dequantize_kernel(Ref out, const uint8_t* w, size_t row_bytes, ggml::Type t, int rows, int C) {
  const size_t total = static_cast<size_t>(rows) * C;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / C;
    out.set(i, ggml::layout::row_value(t, w + r * row_bytes, static_cast<int>(i % C)));
  }
}

__global__ void embedding_quant_kernel(Ref out, const int32_t* tokens, const int32_t* pos, const uint8_t* w, size_t row_bytes,
                                       ggml::Type t, const float* wpe, int N, int C) {
  const size_t total = static_cast<size_t>(N) * C;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int n = static_cast<int>(i / C), c = static_cast<int>(i % C);
    float e = ggml::layout::row_value(t, w + static_cast<size_t>(tokens[n]) * row_bytes, c);
    if (wpe) e += wpe[static_cast<size_t>(pos[n]) * C + c];
    out.set(i, e);
  }
}

// A warp per weight row o: its lanes take every 32nd value of the row, multiply it into each
// activation row's sum, and the warp adds the lanes' sums (a fixed order: the same on every run).
__global__ void quant_matvec_kernel(Ref out, Ref inp, const uint8_t* w, size_t row_bytes, ggml::Type t, const float* bias, int N,
                                    int C, int OC) {
  const int lane = threadIdx.x % 32, o = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (o >= OC) return;  // the whole warp
  const uint8_t* row = w + static_cast<size_t>(o) * row_bytes;
  float s[kMatvecRows];
  for (int n = 0; n < kMatvecRows; ++n) s[n] = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float v = ggml::layout::row_value(t, row, c);
    for (int n = 0; n < N; ++n) s[n] += v * inp.get(static_cast<size_t>(n) * C + c);
  }
  for (int n = 0; n < N; ++n) {
    const float total = warp_sum(s[n]);
    if (lane == 0) out.set(static_cast<size_t>(n) * OC + o, bias ? total + bias[o] : total);
  }
}

}  // namespace

void dequantize_rows(Ref out, const uint8_t* w, size_t row_bytes, ggml::Type t, int rows, int C) {
  const size_t n = static_cast<size_t>(rows) * C;
  if (!n) return;
  LLMKIT_LAUNCH(dequantize_kernel, blocks_for(n, kThreads), kThreads, 0, out, w, row_bytes, t, rows, C);
  check_launch("dequantize_rows");
}

void embedding_quant(Ref out, const int32_t* tokens_dev, const int32_t* pos_dev, const uint8_t* w, size_t row_bytes, ggml::Type t,
                     const float* wpe, int N, int C) {
  const size_t n = static_cast<size_t>(N) * C;
  if (!n) return;
  LLMKIT_LAUNCH(embedding_quant_kernel, blocks_for(n, kThreads), kThreads, 0, out, tokens_dev, pos_dev, w, row_bytes, t, wpe, N, C);
  check_launch("embedding_quant");
}

void quant_matvec(Ref out, Ref inp, const uint8_t* w, size_t row_bytes, ggml::Type t, const float* bias, int N, int C, int OC) {
  if (N <= 0 || OC <= 0) return;
  if (N > kMatvecRows) throw Error("cuda", "internal: quant_matvec of more than kMatvecRows rows");
  constexpr unsigned warps = kThreads / 32;
  LLMKIT_LAUNCH(quant_matvec_kernel, (static_cast<unsigned>(OC) + warps - 1) / warps, kThreads, 0, out, inp, w, row_bytes, t, bias, N, C,
                OC);
  check_launch("quant_matvec");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
