// Every GEMM of the CUDA backend, through cuBLASLt: fp32 operands in memory, the compute type
// by precision (bf16: tensor cores with the inputs rounded to bf16, CUBLAS_COMPUTE_32F_FAST_16BF;
// tf32; fp32), fp32 accumulation, the bias added by the epilogue. Row-major products are
// computed as their column-major transposes (C^T = B^T A^T), so no data is moved.
//
// Algorithms come from cuBLASLt's heuristic once per shape and are cached, with a fixed
// workspace, on one stream: cuBLAS then gives bit-identical results on every run on GPUs of the
// same architecture and SM count (its documented reproducibility; nothing here sets the atomics
// mode that would break it).
#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels.cuh"
#include "llmkit/log.hpp"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;
Precision g_precision = Precision::bf16;

void check_lt(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error("cublasLt", std::string(what) + " failed with status " + std::to_string(static_cast<int>(s)));
}

cublasComputeType_t compute_type(Precision p) {
  switch (p) {
    case Precision::bf16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case Precision::tf32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    default: return CUBLAS_COMPUTE_32F;
  }
}

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
};

// The shape, the strides, the bias, the precision, and the pointers' alignments (cuBLASLt's
// heuristic assumes 256-byte aligned buffers unless told otherwise, and an algorithm chosen so
// may not run on the 16-byte aligned rows of an activation).
// Last, the storage types: bit 0 A and B are bf16, bit 1 C is.
using Key = std::tuple<bool, bool, int, int, int, int, int, int, int64_t, int64_t, int64_t, int, bool, int, uint32_t, int>;

// The largest power of two, up to 256, that divides every address (packed per operand).
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  return static_cast<uint32_t>(a ? std::min<uintptr_t>(256, a & (~a + 1)) : 256);
}

class Lt {
 public:
  static Lt& get() {
    static Lt lt;
    return lt;
  }
  void run(const Key& key, const float* alpha, const void* A, const void* B, const float* beta, void* C, const void* bias) {
    Plan& p = plan(key, bias);
    if (bias) check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)), "bias pointer");
    check_lt(cublasLtMatmul(handle_, p.op, alpha, B, p.a, A, p.b, beta, C, p.c, C, p.c, &p.algo, workspace_, kWorkspaceBytes, 0),
             "cublasLtMatmul");
  }

 private:
  Lt() {
    check_lt(cublasLtCreate(&handle_), "cublasLtCreate");
    workspace_ = device_alloc(kWorkspaceBytes);
  }

  static cublasLtMatrixLayout_t layout(cudaDataType_t type, int rows, int cols, int ld, int batch, int64_t stride) {
    cublasLtMatrixLayout_t l;
    check_lt(cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld), "layout");
    if (batch > 1) {
      check_lt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)), "batch count");
      check_lt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)), "batch stride");
    }
    return l;
  }

  // Column-major: D[N x M] = op(B)^T-side operand [N x K] times op(A)^T-side operand [K x M].
  // `bias`: this call's, set before the heuristic runs (it reads the pointer's alignment).
  Plan& plan(const Key& key, const void* bias) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    // (plain copies: nvcc's C++17 lambdas cannot capture structured bindings)
    const bool ta = std::get<0>(key), tb = std::get<1>(key), has_bias = std::get<12>(key);
    const int M = std::get<2>(key), N = std::get<3>(key), K = std::get<4>(key), lda = std::get<5>(key), ldb = std::get<6>(key),
              ldc = std::get<7>(key), batch = std::get<11>(key), prec = std::get<13>(key);
    const int64_t sa = std::get<8>(key), sb = std::get<9>(key), sc = std::get<10>(key);
    const uint32_t align = std::get<14>(key);
    const cudaDataType_t ab = std::get<15>(key) & 1 ? CUDA_R_16BF : CUDA_R_32F, c_type = std::get<15>(key) & 2 ? CUDA_R_16BF : CUDA_R_32F;
    Plan p;
    auto try_compute = [&](cublasComputeType_t ct) -> bool {
      check_lt(cublasLtMatmulDescCreate(&p.op, ct, CUDA_R_32F), "cublasLtMatmulDescCreate");
      cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
      check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)), "transa");
      check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)), "transb");
      if (has_bias) {  // the bias has the output's type (gemm() rounds it to bf16 when D is bf16)
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "epilogue");
        cudaDataType_t bt = c_type;
        check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)), "bias type");
        check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)), "bias pointer");
      }
      // The first operand is B (row-major K x N, or N x K when transposed), seen column-major.
      p.a = tb ? layout(ab, K, N, ldb, batch, sb) : layout(ab, N, K, ldb, batch, sb);
      p.b = ta ? layout(ab, M, K, lda, batch, sa) : layout(ab, K, M, lda, batch, sa);
      p.c = layout(c_type, N, M, ldc, batch, sc);
      cublasLtMatmulPreference_t pref;
      check_lt(cublasLtMatmulPreferenceCreate(&pref), "preference");
      size_t ws = kWorkspaceBytes;
      check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)), "workspace");
      // Alignments as packed by gemm(): byte 0 A (our B), 1 B (our A), 2 C and D.
      const uint32_t al_a = align & 0x1ffu, al_b = (align >> 9) & 0x1ffu, al_c = (align >> 18) & 0x1ffu;
      const cublasLtMatmulPreferenceAttributes_t which[4] = {
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
      const uint32_t values[4] = {al_a, al_b, al_c, al_c};
      for (int i = 0; i < 4; ++i)
        check_lt(cublasLtMatmulPreferenceSetAttribute(pref, which[i], &values[i], sizeof(values[i])), "alignment");
      cublasLtMatmulHeuristicResult_t h;
      int found = 0;
      cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c, pref, 1, &h, &found);
      cublasLtMatmulPreferenceDestroy(pref);
      if (s == CUBLAS_STATUS_SUCCESS && found > 0) {
        p.algo = h.algo;
        return true;
      }
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
      return false;
    };
    // The precision asked for, else plain fp32 (cuBLASLt offers every shape there), said once.
    // bf16 operands in memory go to the tensor cores as they are: the compute type is fp32's.
    const std::string shape = std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                              (batch > 1 ? " (batch " + std::to_string(batch) + ")" : "");
    const cublasComputeType_t wanted = ab == CUDA_R_16BF ? CUBLAS_COMPUTE_32F : compute_type(static_cast<Precision>(prec));
    if (!try_compute(wanted)) {
      if (wanted == CUBLAS_COMPUTE_32F || !try_compute(CUBLAS_COMPUTE_32F))
        throw Error("cublasLt", "no algorithm for a " + shape + " matmul");
      LLMKIT_WARN("cuBLASLt has no %s algorithm for a %s matmul: computed in fp32",
                  static_cast<Precision>(prec) == Precision::bf16 ? "bf16" : "tf32", shape.c_str());
    }
    return plans_.emplace(key, p).first->second;
  }

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::mutex mu_;
  std::map<Key, Plan> plans_;
};

}  // namespace

void set_precision(Precision p) { g_precision = p; }
Precision precision() { return g_precision; }

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, Ref A, int lda, int64_t stride_a, Ref B, int ldb,
          int64_t stride_b, float beta, Ref C, int ldc, int64_t stride_c, int batch, Ref bias) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if (bias && batch != 1) throw Error("", "internal: a batched matmul with a bias");
  if (bias && bias.bf16 != C.bf16) {  // the epilogue wants the bias in the output's type
    Ref rounded{scratch(Slot::bias, N), C.bf16};
    convert(rounded, bias, static_cast<size_t>(N));
    bias = rounded;
  }
  if (A.bf16 != B.bf16) {  // round the fp32 one to bf16 (its rows up to the last, gaps included)
    if (batch != 1) throw Error("", "internal: a batched matmul of fp32 and bf16 operands");
    Ref& x = A.bf16 ? B : A;
    const bool is_a = !A.bf16;
    const bool trans = is_a ? trans_a : trans_b;
    const int rows = is_a ? (trans ? K : M) : (trans ? N : K), cols = is_a ? (trans ? M : K) : (trans ? K : N);
    const size_t n = static_cast<size_t>(rows - 1) * (is_a ? lda : ldb) + cols;
    Ref rounded{scratch(Slot::convert, (n + 1) / 2), true};
    convert(rounded, x, n);
    x = rounded;
  }
  // A batch's later matrices start at the strides: the alignment must hold for them too.
  auto al = [](const void* p, int64_t stride_bytes) {
    return std::min(alignment(p), alignment(reinterpret_cast<const void*>(static_cast<uintptr_t>(stride_bytes) | 256u)));
  };
  const int64_t eb = A.bf16 ? 2 : 4, ec = C.bf16 ? 2 : 4;  // bytes per element
  const uint32_t align = al(B.p, stride_b * eb) | (al(A.p, stride_a * eb) << 9) |
                         (std::min(al(C.p, stride_c * ec), bias ? alignment(bias.p) : 256u) << 18);
  Key key{trans_a, trans_b, M, N, K, lda, ldb, ldc, stride_a, stride_b, stride_c, batch, static_cast<bool>(bias),
          static_cast<int>(g_precision), align, (A.bf16 ? 1 : 0) | (C.bf16 ? 2 : 0)};
  Lt::get().run(key, &alpha, A.p, B.p, &beta, C.p, bias.p);
  check_launch("matmul");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
