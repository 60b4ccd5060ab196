// The CPU backend's matrix multiply on ggml-quantized weights (internal to lib/backend/cpu and
// its tests and benchmarks): the weights stay in their blocks (llmkit/ggml.hpp) and each product
// is integer dot products against the activations quantized to 8 bits per block, as llama.cpp
// computes it: Q8_0 activations (32 values, fp16 scale) for Q8_0, Q4_0 and Q5_0 weights; Q8_1
// (with the block's scaled sum) for Q4_1 and Q5_1; Q8_K (256 values, fp32 scale, sums of 16)
// for Q4_K, Q5_K and Q6_K. A block's integer sum is exact; the kernels differ only in the order
// they add the scaled block sums in float.
//
// Kernels: AVX2 (with FMA and F16C) for Q8_0, Q4_0, Q4_K, Q5_K and Q6_K, each one weight row
// against up to four activation rows at a time so that a row's blocks are unpacked once;
// AVX-512 VNNI for Q8_0 and Q4_0 (two blocks per register, AVX2 for the other types); the
// portable kernel for every type. Chosen once per process: LLMKIT_QKERNEL=portable|avx2|avx512
// forces one, else the widest the CPU has. An output value is computed by one thread in a fixed
// order, and the tiles depend on the shape only: the same bits for any number of threads.
// Batches of 32 rows or more (prompt processing, scoring) go through sgemm instead: 64 weight
// rows at a time dequantized into a thread's scratch.
#pragma once
#include <cstddef>
#include <cstdint>

#include "llmkit/ggml.hpp"

namespace llmkit::cpu {

enum class QKernel { portable, avx2, avx512, amx };
const char* qkernel_name(QKernel k);
QKernel qkernel();  // the one in use
bool qkernel_available(QKernel k);

// Bytes of one row of n activations quantized for a weight type's dot product.
size_t qactivation_row_bytes(ggml::Type weight, int n);
// A row of n activations into the blocks weight rows of that type are multiplied with.
void quantize_activations(ggml::Type weight, const float* x, void* out, int n);

// out[r] = the dot product of one weight row (n values of `weight`'s blocks) with R quantized
// activation rows a[r] (R = 1..4), with kernel k.
void qdot(QKernel k, ggml::Type weight, int n, const void* w, const void* const* a, int R, float* out);

// y[N, OC] = x[N, C] W^T (+ bias), W [OC, C] in rows of `row_bytes` bytes of `type`'s blocks;
// `exact`: always the fp32 path (dequantized slices into sgemm), whatever N.
void qmatmul(float* y, const float* x, ggml::Type type, const void* w, size_t row_bytes, const float* bias, int N, int C,
             int OC, bool exact = false);
// The batched path by itself: the int8 GEMM with AMX or AVX-512 VNNI (what qmatmul runs for 16
// rows or more on a CPU with either), or with `portable` its reference in plain C++: the same
// bits from each.
void qmatmul_int8(float* y, const float* x, ggml::Type type, const void* w, size_t row_bytes, const float* bias, int N, int C,
                  int OC, QKernel k);
// dx[N, C] += dy[N, OC] W: the weight dequantized a slice of rows at a time into sgemm.
void qmatmul_backward(float* dx, const float* dy, ggml::Type type, const void* w, size_t row_bytes, int N, int C, int OC);

}  // namespace llmkit::cpu
