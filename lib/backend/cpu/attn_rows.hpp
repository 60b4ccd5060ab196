// Paged attention's per-row arithmetic (cpu_backend.cpp's attention_paged), in one fixed order on
// every x86-64 CPU (AVX-512, AVX2 with FMA, or neither): the same fused multiply-adds in the
// same order, so a row's result is the same bits whatever ISA, group of rows, chunk or batch
// it came in; the vector kernels only choose how many rows and keys run at once.
#pragma once

namespace llmkit::cpu {

constexpr int kAttnRows = 4;  // query rows one call works on at most

// S[r][j] = scale (Q[r] . K[j]) for r < R and j < n, the inner product summed over sixteen
// lanes (lane l adding Q[i] K[i] for i = l mod 16 by fused multiply-adds in increasing i) and
// the lanes folded l + l+8, then +4, +2, +1 (attn_sum's order).
void attn_scores(int R, const float* const* Q, const float* const* K, int n, int hd, float scale, float* const* S);

// O[r][i] = the fma chain over j < keys[r], in increasing j from 0, of P[r][j] V[j][i].
void attn_values(int R, float* const* O, const float* const* P, const float* const* V, const int* keys, int hd);

// The sum of x[0..n) over sixteen lanes (lane l adding x[j] for j = l mod 16 in increasing
// j), the lanes then folded: l + l+8, then +4, +2, +1.
float attn_sum(const float* x, int n);

// The kernels of one instruction set (tests compare them): 0 portable, 1 AVX2 and FMA,
// 2 AVX-512; false where this CPU lacks it.
bool attn_kernels_for(int isa, decltype(&attn_scores)* scores, decltype(&attn_values)* values);

}  // namespace llmkit::cpu
