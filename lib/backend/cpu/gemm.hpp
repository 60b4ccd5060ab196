// The CPU backend's matrix multiply (internal to lib/backend/cpu and its tests and benchmarks).
//
// Every matmul of the CPU backend goes through sgemm() below. It cuts the output into tiles
// whose sizes depend on the product's shape only, never on the thread count, and runs each tile
// as one single-threaded call of a GEMM kernel, the tiles shared among the OpenMP threads. A
// kernel is deterministic for a given call, so a product's result is the same bits whatever
// the number of threads (or MPI ranks, which change the threads per process): a BLAS's own
// threading splits the work by the thread count, and some of its kernels (OpenBLAS's Haswell
// ones; oneDNN's past 8 threads) then round a row differently.
//
// The kernel is chosen once per process: LLMKIT_GEMM=onednn|openblas|reference forces one;
// otherwise the first of oneDNN and OpenBLAS that computes a self-check correctly (bench/gemm
// measures them on the models' shapes: oneDNN is the faster on every CPU measured so far, and
// does not follow OPENBLAS_CORETYPE). The choice never depends on a timing, so a run and its
// resumption on the same machine multiply with the same kernel.
#pragma once
#include <string>

namespace llmkit::cpu {

// C[M,N] = alpha * op(A)[M,K] op(B)[K,N] + beta * C, row-major. op(A) = A ([M,K], row stride
// lda), or A^T when ta (A stored [K,M]); op(B) = B ([K,N], stride ldb), or B^T when tb (B
// stored [N,K]). beta == 0 overwrites C without reading it.
void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc);
// The same as one call on the calling thread: for callers that are parallel already (one
// attention head per thread). Deterministic for its shape, like a tile.
void sgemm_serial(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc);

// The kernels, for tests and benchmarks.
enum class GemmKernel { onednn, openblas, reference };
const char* kernel_name(GemmKernel k);
// The kernel sgemm() uses (chosen at the first call), and why, in words:
// "oneDNN 2.6.3 (avx512_core)" and "the first that passed its self-check".
GemmKernel gemm_kernel();
std::string gemm_kernel_description();
// One call of a given kernel on the calling thread (single-threaded inside a parallel region).
void sgemm_with(GemmKernel k, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, float* C, int ldc);
// Whether kernel k multiplies a few awkward shapes of every transposition correctly (against
// sums in double); false with the first wrong case in `why`.
bool gemm_self_check(GemmKernel k, std::string* why);
// The output tile of an M x N product: shape-only (see sgemm()).
void gemm_tile(int M, int N, int* tile_m, int* tile_n);

}  // namespace llmkit::cpu
