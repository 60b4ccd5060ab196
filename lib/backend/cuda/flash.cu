// Fused attention, causal or bidirectional, flash-attention style: tiles of 64 queries and 64 keys in shared
// memory, Q K^T and P V on the tensor cores (WMMA, bf16 inputs, fp32 accumulation), the softmax
// online in fp32 so the T x T scores never reach global memory. The backward recomputes the
// probabilities from the forward's log-sum-exp, in two kernels so that nothing is summed with
// atomics (the same result on every run): one per query tile for dQ, one per key tile for dK
// and dV, which also sums the `group` query heads that share a key/value head.
//
// Packed rows (`starts`, the token's sequence start in its row, or null): a query sees keys
// from its sequence's start only; key tiles wholly before a query tile's first sequence are
// skipped, and so are query tiles wholly after a key tile's last sequence. Bidirectional
// (`ends`, each query's sequence end): a query sees its sequence's later keys too, and the key
// tiles a query tile reads run to its last row's sequence end instead of its diagonal.
//
// For head sizes 32, 64 (the presets' and most small models') and 128 (larger Llamas; where the
// GPU has the shared memory); attention.cu's GEMM path takes the others, and fp32/tf32 precision. The softmax scale is folded into Q as it is
// rounded to bf16, in the forward and in both backward kernels alike.
#include <algorithm>
#include <cmath>

#include "kernels.cuh"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <mma.h>
#endif

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

using namespace nvcuda;
using bf16 = __nv_bfloat16;

constexpr int kTile = 64;            // queries and keys per tile
constexpr int kWarps = 4;            // warp w owns rows 16w..16w+15 of a tile
constexpr int kThreads = 32 * kWarps;
constexpr int kLdF = kTile + 4;      // fp32 rows of a tile: ldm a multiple of 4, banks staggered
constexpr int kLdP = kTile + 8;      // bf16 rows of a tile (ldm a multiple of 8)

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major>;  // transposed
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;  // transposed
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Shared memory handed out in 128-byte aligned pieces (WMMA wants 32-byte aligned tiles); the
// host sizes a kernel's memory by running the same carve over a null base.
struct Carve {
  char* p;
  size_t used = 0;
  template <class T>
  __device__ __host__ T* take(size_t n) {
    T* r = reinterpret_cast<T*>(p + used);
    used += (n * sizeof(T) + 127) / 128 * 128;
    return r;
  }
};

// rows x HD floats from global rows (stride `stride`, rows at or past `limit` read as 0), times
// `mul`, into bf16 shared rows of ld HD + 8.
template <int HD>
__device__ void load_tile(bf16* dst, Ref src, size_t stride, int first, int limit, float mul) {
  for (int i = threadIdx.x; i < kTile * HD; i += blockDim.x) {
    const int r = i / HD, d = i % HD, row = first + r;
    dst[r * (HD + 8) + d] = __float2bfloat16(row < limit ? src.get(static_cast<size_t>(row) * stride + d) * mul : 0.0f);
  }
}

// C (16 x 16 per block, the warp's row strip, kTile/16 column blocks) = A (strip, K = depth)
// times B^T, where A and B are bf16 tiles of rows with ld `lda`, `ldb`: scores Q K^T.
template <int DEPTH>
__device__ void strip_abt(float* C, int ldc, const bf16* A, int lda, const bf16* B, int ldb) {
  const int warp = threadIdx.x / 32;
  for (int jb = 0; jb < kTile / 16; ++jb) {
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int kk = 0; kk < DEPTH / 16; ++kk) {
      FragA a;
      FragBT b;
      wmma::load_matrix_sync(a, A + 16 * warp * lda + 16 * kk, lda);
      wmma::load_matrix_sync(b, B + 16 * jb * ldb + 16 * kk, ldb);
      wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(C + 16 * warp * ldc + 16 * jb, acc, ldc, wmma::mem_row_major);
  }
}

// C (the warp's 16-row strip of a [kTile, HD] fp32 accumulator) += A (strip of a bf16 [kTile,
// kTile] tile, transposed when TRANS) times B (bf16 [kTile, HD] rows of ld HD + 8).
template <int HD, bool TRANS>
__device__ void strip_accumulate(float* C, const bf16* A, const bf16* B) {
  const int warp = threadIdx.x / 32;
  for (int jb = 0; jb < HD / 16; ++jb) {
    FragC acc;
    wmma::load_matrix_sync(acc, C + 16 * warp * (HD + 4) + 16 * jb, HD + 4, wmma::mem_row_major);
    for (int kk = 0; kk < kTile / 16; ++kk) {
      FragB b;
      wmma::load_matrix_sync(b, B + 16 * kk * (HD + 8) + 16 * jb, HD + 8);
      if (TRANS) {  // A^T's rows 16w.. are A's columns 16w..
        FragAT a;
        wmma::load_matrix_sync(a, A + 16 * kk * kLdP + 16 * warp, kLdP);
        wmma::mma_sync(acc, a, b, acc);
      } else {
        FragA a;
        wmma::load_matrix_sync(a, A + 16 * warp * kLdP + 16 * kk, kLdP);
        wmma::mma_sync(acc, a, b, acc);
      }
    }
    wmma::store_matrix_sync(C + 16 * warp * (HD + 4) + 16 * jb, acc, HD + 4, wmma::mem_row_major);
  }
}

// The first and last key each row of the query tile at q0 sees: its sequence's start, and its
// own position (causal) or its sequence's last (rows past T: as the last row).
__device__ void load_range(int* first, int* last, const int32_t* starts, const int32_t* ends, int q0, int T) {
  for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
    const int t = min(q0 + r, T - 1);
    first[r] = starts ? starts[t] : 0;
    last[r] = ends ? ends[t] - 1 : t;
  }
}

// The last key tile that the query tile qb (at q0) reads: its own (causal), or the one holding
// its last row's sequence end.
__device__ __forceinline__ int last_key_tile(const int32_t* row_ends, int qb, int T) {
  return row_ends ? (row_ends[min(qb * kTile + kTile - 1, T - 1)] - 1) / kTile : qb;
}

template <int HD>
struct ForwardSmem {
  bf16 *q, *k, *v, *p;
  float *s, *o, *m, *l, *alpha;
  int *first, *last;
  __device__ __host__ static ForwardSmem carve(Carve& c) {
    ForwardSmem f;
    f.first = c.take<int>(kTile);
    f.last = c.take<int>(kTile);
    f.q = c.take<bf16>(kTile * (HD + 8));
    f.k = c.take<bf16>(kTile * (HD + 8));
    f.v = c.take<bf16>(kTile * (HD + 8));
    f.p = c.take<bf16>(kTile * kLdP);
    f.s = c.take<float>(kTile * kLdF);
    f.o = c.take<float>(kTile * (HD + 4));
    f.m = c.take<float>(kTile);
    f.l = c.take<float>(kTile);
    f.alpha = c.take<float>(kTile);
    return f;
  }
};

// Block (b * NH + h, query tile): the heads in x, which has room for 2^31 - 1 of them.
template <int HD>
__global__ void flash_forward_kernel(Ref out, float* lse, Ref q, Ref k, Ref v, const int32_t* starts, const int32_t* ends, int T,
                                     int NH, int KV, float scale) {
  LLMKIT_DYNAMIC_SHARED(char, smem);
  Carve carve{smem};
  const ForwardSmem<HD> s = ForwardSmem<HD>::carve(carve);
  const int qb = blockIdx.y, b = blockIdx.x / NH, h = blockIdx.x % NH, g = h / (NH / KV);
  const int q0 = qb * kTile, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const size_t qs = static_cast<size_t>(NH) * HD, ks = static_cast<size_t>(KV) * HD;
  const Ref Q = q.at(static_cast<size_t>(b) * T * qs + static_cast<size_t>(h) * HD);
  const Ref K = k.at(static_cast<size_t>(b) * T * ks + static_cast<size_t>(g) * HD);
  const Ref V = v.at(static_cast<size_t>(b) * T * ks + static_cast<size_t>(g) * HD);
  const int32_t* row_starts = starts ? starts + static_cast<size_t>(b) * T : nullptr;
  const int32_t* row_ends = ends ? ends + static_cast<size_t>(b) * T : nullptr;
  load_tile<HD>(s.q, Q, qs, q0, T, scale);
  load_range(s.first, s.last, row_starts, row_ends, q0, T);
  for (int i = threadIdx.x; i < kTile * (HD + 4); i += blockDim.x) s.o[i] = 0.0f;
  for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
    s.m[r] = -INFINITY;
    s.l[r] = 0.0f;
  }
  // Starts do not decrease along a row: row q0's is the tile's smallest.
  const int kb_last = last_key_tile(row_ends, qb, T);
  for (int kb = row_starts ? row_starts[q0] / kTile : 0; kb <= kb_last; ++kb) {
    const int k0 = kb * kTile;
    __syncthreads();  // the last tile's K, V and P are read
    load_tile<HD>(s.k, K, ks, k0, T, 1.0f);
    load_tile<HD>(s.v, V, ks, k0, T, 1.0f);
    __syncthreads();
    strip_abt<HD>(s.s, kLdF, s.q, HD + 8, s.k, HD + 8);
    __syncthreads();
    // Online softmax over the warp's rows: key j is seen by query t when first <= k0 + j <= last
    // (padding rows past T look like the last row, and are not written out). A row may see no
    // key of this tile (packed rows): its m stays -inf and nothing is added.
    for (int i = 0; i < 16; ++i) {
      const int r = 16 * warp + i, last = s.last[r], first = s.first[r];
      const bool v0 = k0 + lane <= last && k0 + lane >= first, v1 = k0 + lane + 32 <= last && k0 + lane + 32 >= first;
      const float x0 = v0 ? s.s[r * kLdF + lane] : -INFINITY, x1 = v1 ? s.s[r * kLdF + lane + 32] : -INFINITY;
      const float m_old = s.m[r], m_new = fmaxf(m_old, warp_max(fmaxf(x0, x1)));
      const float p0 = v0 ? __expf(x0 - m_new) : 0.0f, p1 = v1 ? __expf(x1 - m_new) : 0.0f;
      const float sum = warp_sum(p0 + p1);
      s.p[r * kLdP + lane] = __float2bfloat16(p0);
      s.p[r * kLdP + lane + 32] = __float2bfloat16(p1);
      if (lane == 0) {
        const float a = m_old == m_new ? 1.0f : __expf(m_old - m_new);  // 0 from -inf; 1, not NaN, when both are
        s.alpha[r] = a;
        s.l[r] = s.l[r] * a + sum;
        s.m[r] = m_new;
      }
    }
    __syncthreads();
    for (int i = lane; i < 16 * HD; i += 32) {
      const int r = 16 * warp + i / HD;
      s.o[r * (HD + 4) + i % HD] *= s.alpha[r];
    }
    __syncthreads();
    strip_accumulate<HD, false>(s.o, s.p, s.v);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kTile * HD; i += blockDim.x) {
    const int r = i / HD, d = i % HD, t = q0 + r;
    if (t < T) out.set((static_cast<size_t>(b) * T + t) * qs + static_cast<size_t>(h) * HD + d, s.o[r * (HD + 4) + d] / s.l[r]);
  }
  for (int r = threadIdx.x; r < kTile; r += blockDim.x)
    if (q0 + r < T) lse[(static_cast<size_t>(b) * NH + h) * T + q0 + r] = s.m[r] + logf(s.l[r]);
}

template <int HD>
struct BackwardSmem {
  bf16 *q, *dout, *k, *v, *p, *ds;
  float *s, *dp, *acc1, *acc2, *lse, *D;
  int *first, *last;
  __device__ __host__ static BackwardSmem carve(Carve& c) {
    BackwardSmem f;
    f.first = c.take<int>(kTile);
    f.last = c.take<int>(kTile);
    f.q = c.take<bf16>(kTile * (HD + 8));
    f.dout = c.take<bf16>(kTile * (HD + 8));
    f.k = c.take<bf16>(kTile * (HD + 8));
    f.v = c.take<bf16>(kTile * (HD + 8));
    f.p = c.take<bf16>(kTile * kLdP);
    f.ds = c.take<bf16>(kTile * kLdP);
    f.s = c.take<float>(kTile * kLdF);
    f.dp = c.take<float>(kTile * kLdF);
    f.acc1 = c.take<float>(kTile * (HD + 4));
    f.acc2 = c.take<float>(kTile * (HD + 4));
    f.lse = c.take<float>(kTile);
    f.D = c.take<float>(kTile);
    return f;
  }
};

// With the tiles of Q (scaled), dO, K, V, lse and D in shared memory: S = Q K^T and
// dP = dO V^T, then P = exp(S - lse) and dS = P (dP - D) as bf16 tiles, zero where query
// q0 + r does not see key k0 + j.
template <int HD>
__device__ void probabilities(const BackwardSmem<HD>& s, int q0, int k0, int T) {
  strip_abt<HD>(s.s, kLdF, s.q, HD + 8, s.k, HD + 8);
  strip_abt<HD>(s.dp, kLdF, s.dout, HD + 8, s.v, HD + 8);
  __syncthreads();
  for (int i = threadIdx.x; i < kTile * kTile; i += blockDim.x) {
    const int r = i / kTile, j = i % kTile, t = q0 + r;
    const bool seen = t < T && k0 + j <= s.last[r] && k0 + j >= s.first[r];
    const float p = seen ? __expf(s.s[r * kLdF + j] - s.lse[r]) : 0.0f;
    s.p[r * kLdP + j] = __float2bfloat16(p);
    s.ds[r * kLdP + j] = __float2bfloat16(seen ? p * (s.dp[r * kLdF + j] - s.D[r]) : 0.0f);
  }
  __syncthreads();
}

template <int HD>
__device__ void load_rows(const BackwardSmem<HD>& s, const float* lse, const float* D, const int32_t* row_starts,
                          const int32_t* row_ends, int q0, int T) {
  for (int r = threadIdx.x; r < kTile; r += blockDim.x) {
    s.lse[r] = q0 + r < T ? lse[q0 + r] : 0.0f;
    s.D[r] = q0 + r < T ? D[q0 + r] : 0.0f;
  }
  load_range(s.first, s.last, row_starts, row_ends, q0, T);
}

// Block (b * NH + h, query tile): dQ = scale * dS K over the key tiles it sees; overwrites dq.
template <int HD>
__global__ void flash_backward_dq_kernel(Ref dq, Ref dout, Ref q, Ref k, Ref v, const float* lse, const float* D,
                                         const int32_t* starts, const int32_t* ends, int T, int NH, int KV, float scale) {
  LLMKIT_DYNAMIC_SHARED(char, smem);
  Carve carve{smem};
  const BackwardSmem<HD> s = BackwardSmem<HD>::carve(carve);
  const int qb = blockIdx.y, b = blockIdx.x / NH, h = blockIdx.x % NH, g = h / (NH / KV), q0 = qb * kTile;
  const size_t qs = static_cast<size_t>(NH) * HD, ks = static_cast<size_t>(KV) * HD;
  const size_t qoff = static_cast<size_t>(b) * T * qs + static_cast<size_t>(h) * HD;
  const size_t koff = static_cast<size_t>(b) * T * ks + static_cast<size_t>(g) * HD;
  const size_t rows = (static_cast<size_t>(b) * NH + h) * T;
  const int32_t* row_starts = starts ? starts + static_cast<size_t>(b) * T : nullptr;
  const int32_t* row_ends = ends ? ends + static_cast<size_t>(b) * T : nullptr;
  load_tile<HD>(s.q, q.at(qoff), qs, q0, T, scale);
  load_tile<HD>(s.dout, dout.at(qoff), qs, q0, T, 1.0f);
  load_rows<HD>(s, lse + rows, D + rows, row_starts, row_ends, q0, T);
  for (int i = threadIdx.x; i < kTile * (HD + 4); i += blockDim.x) s.acc1[i] = 0.0f;
  const int kb_last = last_key_tile(row_ends, qb, T);
  for (int kb = row_starts ? row_starts[q0] / kTile : 0; kb <= kb_last; ++kb) {
    __syncthreads();
    load_tile<HD>(s.k, k.at(koff), ks, kb * kTile, T, 1.0f);
    load_tile<HD>(s.v, v.at(koff), ks, kb * kTile, T, 1.0f);
    __syncthreads();
    probabilities<HD>(s, q0, kb * kTile, T);
    strip_accumulate<HD, false>(s.acc1, s.ds, s.k);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kTile * HD; i += blockDim.x) {
    const int r = i / HD, d = i % HD;
    if (q0 + r < T) dq.set(qoff + static_cast<size_t>(q0 + r) * qs + d, s.acc1[r * (HD + 4) + d] * scale);
  }
}

// Block (b * KV + g, key tile): dV = P^T dO and dK = scale * dS^T Q over the query tiles that
// see it and the query heads of the group; overwrites dk and dv.
template <int HD>
__global__ void flash_backward_dkv_kernel(Ref dk, Ref dv, Ref dout, Ref q, Ref k, Ref v, const float* lse, const float* D,
                                          const int32_t* starts, const int32_t* ends, int T, int NH, int KV, float scale) {
  LLMKIT_DYNAMIC_SHARED(char, smem);
  Carve carve{smem};
  const BackwardSmem<HD> s = BackwardSmem<HD>::carve(carve);
  const int kb = blockIdx.y, b = blockIdx.x / KV, g = blockIdx.x % KV, k0 = kb * kTile, group = NH / KV;
  const int32_t* row_starts = starts ? starts + static_cast<size_t>(b) * T : nullptr;
  const int32_t* row_ends = ends ? ends + static_cast<size_t>(b) * T : nullptr;
  // The query tiles that see this tile's keys: causal, from this one until the first whose
  // sequences all start after its keys; bidirectional, from the tile where its first key's
  // sequence starts to the one where its last key's ends.
  int first_tile = kb, tiles = (T + kTile - 1) / kTile;
  if (row_ends) {
    first_tile = row_starts ? row_starts[k0] / kTile : 0;
    tiles = (row_ends[min(k0 + kTile - 1, T - 1)] - 1) / kTile + 1;
  } else if (row_starts) {
    for (int qb = kb; qb < tiles; ++qb)
      if (row_starts[qb * kTile] > k0 + kTile - 1) {
        tiles = qb;
        break;
      }
  }
  const size_t qs = static_cast<size_t>(NH) * HD, ks = static_cast<size_t>(KV) * HD;
  const size_t koff = static_cast<size_t>(b) * T * ks + static_cast<size_t>(g) * HD;
  load_tile<HD>(s.k, k.at(koff), ks, k0, T, 1.0f);
  load_tile<HD>(s.v, v.at(koff), ks, k0, T, 1.0f);
  for (int i = threadIdx.x; i < kTile * (HD + 4); i += blockDim.x) s.acc1[i] = s.acc2[i] = 0.0f;
  for (int h = g * group; h < (g + 1) * group; ++h) {
    const size_t qoff = static_cast<size_t>(b) * T * qs + static_cast<size_t>(h) * HD;
    const size_t rows = (static_cast<size_t>(b) * NH + h) * T;
    for (int qb = first_tile; qb < tiles; ++qb) {
      __syncthreads();
      load_tile<HD>(s.q, q.at(qoff), qs, qb * kTile, T, scale);
      load_tile<HD>(s.dout, dout.at(qoff), qs, qb * kTile, T, 1.0f);
      load_rows<HD>(s, lse + rows, D + rows, row_starts, row_ends, qb * kTile, T);
      __syncthreads();
      probabilities<HD>(s, qb * kTile, k0, T);
      strip_accumulate<HD, true>(s.acc2, s.p, s.dout);  // dV += P^T dO
      strip_accumulate<HD, true>(s.acc1, s.ds, s.q);    // dK += dS^T (scale Q)
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kTile * HD; i += blockDim.x) {
    const int r = i / HD, d = i % HD;
    if (k0 + r < T) {
      dk.set(koff + static_cast<size_t>(k0 + r) * ks + d, s.acc1[r * (HD + 4) + d]);
      dv.set(koff + static_cast<size_t>(k0 + r) * ks + d, s.acc2[r * (HD + 4) + d]);
    }
  }
}

template <class F>
size_t smem_bytes() {
  Carve c{nullptr};
  F::carve(c);
  return c.used;
}

template <int HD>
void forward(Ref out, float* lse, Ref q, Ref k, Ref v, const int32_t* starts, const int32_t* ends, int B, int T, int NH, int KV) {
  const size_t smem = smem_bytes<ForwardSmem<HD>>();
  allow_dynamic_smem(flash_forward_kernel<HD>, smem);
  const dim3 grid(static_cast<unsigned>(B * NH), static_cast<unsigned>((T + kTile - 1) / kTile));
  LLMKIT_LAUNCH(flash_forward_kernel<HD>, grid, kThreads, smem, out, lse, q, k, v, starts, ends, T, NH, KV,
                1.0f / std::sqrt(static_cast<float>(HD)));
  check_launch("flash attention forward");
}

template <int HD>
void backward(Ref dq, Ref dk, Ref dv, Ref dout, Ref q, Ref k, Ref v, Ref out, const float* lse, const int32_t* starts,
              const int32_t* ends, int B, int T, int NH, int KV) {
  const size_t rows = static_cast<size_t>(B) * T * NH;
  float* D = scratch(Slot::attn_rows, rows);
  attention_rowdot(D, dout, out, B, T, NH, HD);
  const size_t smem = smem_bytes<BackwardSmem<HD>>();
  allow_dynamic_smem(flash_backward_dq_kernel<HD>, smem);
  allow_dynamic_smem(flash_backward_dkv_kernel<HD>, smem);
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  const unsigned tiles = static_cast<unsigned>((T + kTile - 1) / kTile);
  LLMKIT_LAUNCH(flash_backward_dq_kernel<HD>, dim3(static_cast<unsigned>(B * NH), tiles), kThreads, smem, dq, dout, q, k, v, lse,
                static_cast<const float*>(D), starts, ends, T, NH, KV, scale);
  LLMKIT_LAUNCH(flash_backward_dkv_kernel<HD>, dim3(static_cast<unsigned>(B * KV), tiles), kThreads, smem, dk, dv, dout, q, k, v,
                lse, static_cast<const float*>(D), starts, ends, T, NH, KV, scale);
  check_launch("flash attention backward");
}

// The kernels' shared memory (static: none) must fit the GPU's blocks: about 73/125 KiB
// (forward/backward) at head size 64, 113/191 KiB at 128. An H100 (227 KiB) has it for all; an
// A100 (163 KiB) not at 128; the sm_86/89 GPUs (99 KiB) only at 32. Where not, attention.cu's
// GEMM path runs.
template <int HD>
bool fits() {
  return std::max(smem_bytes<ForwardSmem<HD>>(), smem_bytes<BackwardSmem<HD>>()) <= max_block_smem();
}

}  // namespace

bool flash_attention_supports(int hd) {
  switch (hd) {
    case 32: return fits<32>();
    case 64: return fits<64>();
    case 128: return fits<128>();
    default: return false;
  }
}

void flash_attention_forward(Ref out, float* lse, Ref q, Ref k, Ref v, const int32_t* starts, const int32_t* ends, int B, int T,
                             int NH, int KV, int hd) {
  if (B <= 0 || T <= 0) return;
  if (hd == 32) forward<32>(out, lse, q, k, v, starts, ends, B, T, NH, KV);
  else if (hd == 64) forward<64>(out, lse, q, k, v, starts, ends, B, T, NH, KV);
  else if (hd == 128) forward<128>(out, lse, q, k, v, starts, ends, B, T, NH, KV);
  else throw Error("", "internal: flash attention for head size " + std::to_string(hd));
}

void flash_attention_backward(Ref dq, Ref dk, Ref dv, Ref dout, Ref q, Ref k, Ref v, Ref out, const float* lse,
                              const int32_t* starts, const int32_t* ends, int B, int T, int NH, int KV, int hd) {
  if (B <= 0 || T <= 0) return;
  if (hd == 32) backward<32>(dq, dk, dv, dout, q, k, v, out, lse, starts, ends, B, T, NH, KV);
  else if (hd == 64) backward<64>(dq, dk, dv, dout, q, k, v, out, lse, starts, ends, B, T, NH, KV);
  else if (hd == 128) backward<128>(dq, dk, dv, dout, q, k, v, out, lse, starts, ends, B, T, NH, KV);
  else throw Error("", "internal: flash attention for head size " + std::to_string(hd));
}

}  // namespace llmkit::LLMKIT_CUDA_NS
