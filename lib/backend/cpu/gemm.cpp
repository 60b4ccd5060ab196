// The CPU backend's matrix multiply; see gemm.hpp.
#include "gemm.hpp"

#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#include "llmkit/error.hpp"

namespace llmkit::cpu {

namespace {

// A plain loop: slow, but right on any CPU; the kernel of last resort and the tests' oracle.
void reference_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                    int ldb, float beta, float* C, int ldc) {
  std::vector<float> row(static_cast<size_t>(N));
  for (int i = 0; i < M; ++i) {
    std::fill(row.begin(), row.end(), 0.0f);
    for (int k = 0; k < K; ++k) {
      const float a = ta ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
      if (tb)
        for (int j = 0; j < N; ++j) row[static_cast<size_t>(j)] += a * B[static_cast<size_t>(j) * ldb + k];
      else
        for (int j = 0; j < N; ++j) row[static_cast<size_t>(j)] += a * B[static_cast<size_t>(k) * ldb + j];
    }
    float* c = C + static_cast<size_t>(i) * ldc;
    for (int j = 0; j < N; ++j) c[j] = alpha * row[static_cast<size_t>(j)] + (beta == 0.0f ? 0.0f : beta * c[j]);
  }
}

std::string onednn_name() {
  const dnnl_version_t* v = dnnl_version();
  const char* isa = "";
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: isa = "sse41"; break;
    case dnnl_cpu_isa_avx: isa = "avx"; break;
    case dnnl_cpu_isa_avx2: isa = "avx2"; break;
    case dnnl_cpu_isa_avx2_vnni: isa = "avx2_vnni"; break;
    case dnnl_cpu_isa_avx512_core: isa = "avx512_core"; break;
    case dnnl_cpu_isa_avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl_cpu_isa_avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl_cpu_isa_avx512_core_amx: isa = "avx512_core_amx"; break;
    default: isa = "other"; break;
  }
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
         " sgemm (" + isa + ")";
}

std::string openblas_name() {
  // "OpenBLAS 0.3.21 ... USE_OPENMP Haswell MAX_THREADS=64": the version and the core type.
  std::istringstream cfg(openblas_get_config());
  std::string name, version;
  cfg >> name >> version;
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  return "OpenBLAS " + version + " sgemm (" + openblas_get_corename() + (env && *env ? ", from OPENBLAS_CORETYPE" : "") + ")";
}

struct Choice {
  GemmKernel kernel = GemmKernel::reference;
  std::string description;
};

const Choice& choice() {
  static Choice c;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("LLMKIT_GEMM");
    const std::string forced = env ? env : "";
    std::string why;
    if (!forced.empty() && forced != "auto") {
      if (forced == "onednn") c.kernel = GemmKernel::onednn;
      else if (forced == "openblas") c.kernel = GemmKernel::openblas;
      else if (forced == "reference") c.kernel = GemmKernel::reference;
      else throw Error("LLMKIT_GEMM", "'" + forced + "' is not a kernel: onednn, openblas, reference or auto");
      if (!gemm_self_check(c.kernel, &why))
        throw Error("LLMKIT_GEMM", std::string(kernel_name(c.kernel)) + " fails its self-check: " + why);
      c.description = "forced by LLMKIT_GEMM";
      return;
    }
    std::string failed;
    for (GemmKernel k : {GemmKernel::onednn, GemmKernel::openblas}) {
      if (gemm_self_check(k, &why)) {
        c.kernel = k;
        c.description = failed.empty() ? "the first that passed its self-check" : failed;
        return;
      }
      failed += std::string(failed.empty() ? "" : "; ") + kernel_name(k) + " failed its self-check (" + why + ")";
    }
    c.kernel = GemmKernel::reference;
    c.description = failed;
  });
  return c;
}

}  // namespace

const char* kernel_name(GemmKernel k) {
  switch (k) {
    case GemmKernel::onednn: return "onednn";
    case GemmKernel::openblas: return "openblas";
    case GemmKernel::reference: return "reference";
  }
  return "?";
}

void sgemm_with(GemmKernel k, bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  switch (k) {
    case GemmKernel::onednn: {
      dnnl_status_t s = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      if (s != dnnl_success)
        throw Error("", "oneDNN sgemm failed (status " + std::to_string(static_cast<int>(s)) + ") on " +
                            std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K));
      return;
    }
    case GemmKernel::openblas:
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                  lda, B, ldb, beta, C, ldc);
      return;
    case GemmKernel::reference:
      reference_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
  }
}

bool gemm_self_check(GemmKernel k, std::string* why) {
  struct Case {
    bool ta, tb;
    int M, N, K;
    float alpha, beta;
  };
  // Every transposition; edges that are not multiples of any register block; a row and a
  // column vector; beta 0 over garbage (NaN must not leak through) and beta 1 accumulating.
  const Case cases[] = {{false, true, 37, 29, 300, 1.0f, 0.0f},  {false, false, 130, 70, 64, 1.0f, 1.0f},
                        {true, false, 67, 45, 131, 0.5f, 0.0f},  {true, true, 19, 100, 77, 1.0f, 1.0f},
                        {false, true, 1, 513, 96, 1.0f, 0.0f},   {false, false, 64, 1, 33, 2.0f, 0.0f},
                        {false, true, 200, 260, 520, 1.0f, 0.0f}};
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const Case& c : cases) {
    const int lda = (c.ta ? c.M : c.K) + 3, ldb = (c.tb ? c.K : c.N) + 5, ldc = c.N + 2;
    std::vector<float> A(static_cast<size_t>(c.ta ? c.K : c.M) * lda), B(static_cast<size_t>(c.tb ? c.N : c.K) * ldb);
    std::vector<float> C(static_cast<size_t>(c.M) * ldc);
    for (float& x : A) x = u(rng);
    for (float& x : B) x = u(rng);
    for (float& x : C) x = c.beta == 0.0f ? NAN : u(rng);
    const std::vector<float> C0 = C;
    sgemm_with(k, c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) {
        double s = 0, mag = 0;
        for (int p = 0; p < c.K; ++p) {
          const double a = c.ta ? A[static_cast<size_t>(p) * lda + i] : A[static_cast<size_t>(i) * lda + p];
          const double b = c.tb ? B[static_cast<size_t>(j) * ldb + p] : B[static_cast<size_t>(p) * ldb + j];
          s += a * b;
          mag += std::fabs(a * b);
        }
        const size_t at = static_cast<size_t>(i) * ldc + j;
        const double old = c.beta == 0.0f ? 0.0 : c.beta * static_cast<double>(C0[at]);  // C0 is NaN then
        const double want = c.alpha * s + old;
        // fp32's worst-case error of a K-term sum, twice over: a wrong kernel (a term lost or
        // doubled, a stale tile) is off by about mag / K, far more.
        const double tol = 2.0 * c.K * 6e-8 * (std::fabs(c.alpha) * mag + std::fabs(old)) + 1e-30;
        if (!(std::fabs(C[at] - want) <= tol)) {
          if (why)
            *why = std::string(c.ta ? "T" : "N") + (c.tb ? "T" : "N") + " " + std::to_string(c.M) + "x" +
                   std::to_string(c.N) + "x" + std::to_string(c.K) + ": C[" + std::to_string(i) + "," +
                   std::to_string(j) + "] = " + std::to_string(C[at]) + ", expected " + std::to_string(want);
          return false;
        }
      }
  }
  return true;
}

GemmKernel gemm_kernel() { return choice().kernel; }

std::string gemm_kernel_description() {
  const Choice& c = choice();
  std::string name = c.kernel == GemmKernel::onednn     ? onednn_name()
                     : c.kernel == GemmKernel::openblas ? openblas_name()
                                                        : "reference loops (slow)";
  return name + ", " + c.description;
}

void gemm_tile(int M, int N, int* tile_m, int* tile_n) {
  // 128 x 512 outputs keep a kernel within a few % of its own multi-threaded rate on the
  // models' shapes (bench/gemm); smaller products get smaller tiles, down to 32 x 128, until
  // there are 16 of them, so that a few threads share them. A function of M and N only.
  int tm = 128, tn = 512;
  auto tiles = [&] { return ((M + tm - 1) / tm) * ((N + tn - 1) / tn); };
  while (tiles() < 16 && tn > 128 && tn / 2 >= 1) tn /= 2;
  while (tiles() < 16 && tm > 32) tm /= 2;
  *tile_m = tm;
  *tile_n = tn;
}

void sgemm_serial(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc) {
  sgemm_with(gemm_kernel(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
           float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const GemmKernel k = gemm_kernel();
  int tm = 0, tn = 0;
  gemm_tile(M, N, &tm, &tn);
  const int rows = (M + tm - 1) / tm, cols = (N + tn - 1) / tn, tiles = rows * cols;
  // A tile's error is kept and thrown after the loop (an exception must not leave a parallel
  // region).
  std::string error;
  auto tile = [&](int t) {
    const int m0 = (t / cols) * tm, n0 = (t % cols) * tn;
    const int mm = std::min(tm, M - m0), nn = std::min(tn, N - n0);
    const float* a = ta ? A + m0 : A + static_cast<size_t>(m0) * lda;
    const float* b = tb ? B + static_cast<size_t>(n0) * ldb : B + n0;
    try {
      sgemm_with(k, ta, tb, mm, nn, K, alpha, a, lda, b, ldb, beta, C + static_cast<size_t>(m0) * ldc + n0, ldc);
    } catch (const std::exception& e) {
#pragma omp critical(llmkit_gemm_error)
      if (error.empty()) error = e.what();
    }
  };
  // The kernels run single-threaded only inside an active parallel region (they thread
  // themselves otherwise, splitting by the thread count); with one thread allowed they do
  // anyway. So a tile always runs in one of those two situations.
  const int threads = omp_get_max_threads();
  if (omp_in_parallel() || threads == 1) {
    for (int t = 0; t < tiles; ++t) tile(t);
  } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::max(2, std::min(tiles, threads)))
    for (int t = 0; t < tiles; ++t) tile(t);
  }
  if (!error.empty()) throw Error("", error);
}

}  // namespace llmkit::cpu
