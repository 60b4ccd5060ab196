// Self-attention with grouped-query heads, causal or (with `ends`, device [B, T]: each query's
// sequence end) bidirectional; with `starts` (device, [B, T]), packed rows: a query sees its own
// sequence's keys only. With bf16 matmuls and head sizes 32 and 64 the
// fused kernels of flash.cu run; otherwise (and with LLMKIT_ATTENTION=gemm) this file's path: by
// tensor-core GEMMs (gemm(), cuBLASLt) on
// the scores of a chunk of sequences, and small kernels for the causal softmax and its
// backward. Heads are first permuted to [B, heads, T, hd], so that the `group` query heads that
// share a key/value head form one [group*T, hd] matrix: one strided-batched GEMM per product
// covers every (sequence, kv head), and dK, dV sum over the group inside the GEMM.
//
// The scores of a chunk are materialised ([chunk, NH, T, T] floats, at most kScoreBudget) and
// the backward recomputes them from Q, K and the log-sum-exp instead of keeping them (what flash
// attention keeps too). The masked half of each score matrix is computed and discarded: the
// price of using the GEMM library instead of a fused kernel.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "kernels.cuh"

namespace llmkit::LLMKIT_CUDA_NS {

namespace {

constexpr unsigned kThreads = 256;
constexpr size_t kScoreBudget = size_t{1} << 28;  // floats of scores per chunk (1 GiB)

// [B, T, H, hd] <-> [B, H, T, hd]
__global__ void permute_kernel(Ref out, Ref in, int B, int T, int H, int hd, bool to_heads) {
  const size_t total = static_cast<size_t>(B) * T * H * hd;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    // i indexes the [B, T, H, hd] tensor
    const int d = static_cast<int>(i % hd);
    const int h = static_cast<int>(i / hd % H);
    const int t = static_cast<int>(i / (static_cast<size_t>(hd) * H) % T);
    const size_t b = i / (static_cast<size_t>(hd) * H * T);
    const size_t j = ((b * H + h) * T + t) * hd + d;
    if (to_heads) out.set(j, in.get(i));
    else out.set(i, in.get(j));
  }
}

// The first key that row `row` of a chunk's scores [Bc, NH, T, T] sees: its sequence's start in
// packed rows (starts of the chunk's sequences, [Bc, T]), else 0.
__device__ __forceinline__ int first_key(const int32_t* starts, size_t row, int NH, int T) {
  return starts ? starts[row / (static_cast<size_t>(NH) * T) * T + row % T] : 0;
}
// The last key it sees: its own position (causal: ends null), else its sequence's last.
__device__ __forceinline__ int last_key(const int32_t* ends, size_t row, int NH, int T) {
  return ends ? ends[row / (static_cast<size_t>(NH) * T) * T + row % T] - 1 : static_cast<int>(row % T);
}

// One warp per row of scores s[rows, T] (row r is query position r % T): the softmax in place (0
// past the last key seen and before the sequence's start) and its log-sum-exp.
// Warp-per-row kernels loop over rows by the grid's warps: the grid is capped (blocks_for).
__global__ void softmax_kernel(float* s, float* lse, const int32_t* starts, const int32_t* ends, size_t rows, int NH, int T) {
  const size_t warps = static_cast<size_t>(gridDim.x) * (blockDim.x / 32);
  for (size_t row = blockIdx.x * static_cast<size_t>(blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
    const int lane = threadIdx.x % 32, last = last_key(ends, row, NH, T), first = first_key(starts, row, NH, T);
    float* x = s + row * T;
    float m = -INFINITY;
    for (int j = first + lane; j <= last; j += 32) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = first + lane; j <= last; j += 32) sum += __expf(x[j] - m);
    sum = warp_sum(sum);
    const float inv = 1.0f / sum;
    for (int j = lane; j < T; j += 32) x[j] = j >= first && j <= last ? __expf(x[j] - m) * inv : 0.0f;
    if (lane == 0) lse[row] = m + logf(sum);
  }
}

// D[(b, h, t)] = sum over d of dout * out, rows in [B, T, H, hd] order written to [B, H, T].
__global__ void rowdot_kernel(float* D, Ref dout, Ref out, int B, int T, int H, int hd) {
  const size_t warps = static_cast<size_t>(gridDim.x) * (blockDim.x / 32), rows = static_cast<size_t>(B) * T * H;
  for (size_t row = blockIdx.x * static_cast<size_t>(blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {  // (b, t, h)
    const int lane = threadIdx.x % 32;
    float s = 0.0f;
    for (int d = lane; d < hd; d += 32) s += dout.get(row * hd + d) * out.get(row * hd + d);
    s = warp_sum(s);
    const int h = static_cast<int>(row % H), t = static_cast<int>(row / H % T);
    const size_t b = row / (static_cast<size_t>(H) * T);
    if (lane == 0) D[(b * H + h) * T + t] = s;
  }
}

// From the recomputed scores s and dP = dO V^T: s becomes P = exp(s - lse), dp becomes
// dS = P * (dP - D); both 0 past the last key seen and before the sequence's start.
__global__ void softmax_backward_kernel(float* s, float* dp, const float* lse, const float* D, const int32_t* starts,
                                        const int32_t* ends, size_t rows, int NH, int T) {
  const size_t total = rows * T;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t row = i / T;
    const int j = static_cast<int>(i % T), last = last_key(ends, row, NH, T);
    if (j <= last && j >= first_key(starts, row, NH, T)) {
      const float p = __expf(s[i] - lse[row]);
      s[i] = p;
      dp[i] = p * (dp[i] - D[row]);
    } else {
      s[i] = 0.0f;
      dp[i] = 0.0f;
    }
  }
}

// LLMKIT_ATTENTION=gemm keeps the GEMM path where the fused kernels would run (to compare).
bool use_flash(int hd) {
  static const bool forced_gemm = [] {
    const char* e = std::getenv("LLMKIT_ATTENTION");
    return e && std::string(e) == "gemm";
  }();
  return !forced_gemm && precision() == Precision::bf16 && flash_attention_supports(hd);
}

void permute(Ref out, Ref in, int B, int T, int H, int hd, bool to_heads) {
  const size_t n = static_cast<size_t>(B) * T * H * hd;
  if (!n) return;
  LLMKIT_LAUNCH(permute_kernel, blocks_for(n, kThreads), kThreads, 0, out, in, B, T, H, hd, to_heads);
  check_launch("attention (permute)");
}

void check_heads(int NH, int KV) {
  if (KV <= 0 || NH % KV != 0)
    throw Error("", "attention: " + std::to_string(NH) + " heads are not a multiple of " + std::to_string(KV) +
                        " key/value heads");
}

int chunk_sequences(int B, int T, int NH) {
  const size_t per_sequence = static_cast<size_t>(NH) * T * T;
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(B), kScoreBudget / per_sequence)));
}

// S = scale * Q K^T for every (sequence, kv head) of the chunk: [group*T, hd] x [T, hd]^T.
void scores(float* S, const float* qp, const float* kp, int Bc, int T, int KV, int group, int hd, float scale) {
  gemm(false, true, group * T, T, hd, scale, f32(qp), hd, static_cast<int64_t>(group) * T * hd, f32(kp), hd,
       static_cast<int64_t>(T) * hd, 0.0f, f32(S), T, static_cast<int64_t>(group) * T * T, Bc * KV);
}

}  // namespace

void attention_rowdot(float* D, Ref dout, Ref out, int B, int T, int H, int hd) {
  const size_t rows = static_cast<size_t>(B) * T * H;
  if (!rows) return;
  LLMKIT_LAUNCH(rowdot_kernel, blocks_for(rows, kThreads / 32), kThreads, 0, D, dout, out, B, T, H, hd);
  check_launch("attention backward (rowsum)");
}

namespace {

// The GEMM path's work in chunks of sequences: the sizes, the scratch for the permuted heads
// and the scores, and the permutation of a chunk's q, k, v.
struct Chunks {
  int B, T, NH, KV, hd, group, chunk;
  float scale;
  int64_t sq, sk, ss;  // batch strides of the GEMMs: a group's queries, a head's keys, scores
  float *qp, *kp, *vp, *S;
  Chunks(int B_, int T_, int NH_, int KV_, int hd_)
      : B(B_), T(T_), NH(NH_), KV(KV_), hd(hd_), group(NH_ / KV_), chunk(chunk_sequences(B_, T_, NH_)),
        scale(1.0f / std::sqrt(static_cast<float>(hd_))), sq(static_cast<int64_t>(group) * T * hd),
        sk(static_cast<int64_t>(T) * hd), ss(static_cast<int64_t>(group) * T * T) {
    qp = scratch(Slot::attn_q, q_floats());
    kp = scratch(Slot::attn_k, kv_floats());
    vp = scratch(Slot::attn_v, kv_floats());
    S = scratch(Slot::attn_s, static_cast<size_t>(chunk) * NH * T * T);
  }
  size_t q_floats() const { return static_cast<size_t>(chunk) * T * NH * hd; }
  size_t kv_floats() const { return static_cast<size_t>(chunk) * T * KV * hd; }
  size_t q_offset(int b0) const { return static_cast<size_t>(b0) * T * NH * hd; }
  size_t kv_offset(int b0) const { return static_cast<size_t>(b0) * T * KV * hd; }
  // Heads of sequences b0..b0+Bc-1 into qp, kp, vp; then S = scale Q K^T.
  void load_and_score(Ref q, Ref k, Ref v, int b0, int Bc) {
    permute(f32(qp), q.at(q_offset(b0)), Bc, T, NH, hd, true);
    permute(f32(kp), k.at(kv_offset(b0)), Bc, T, KV, hd, true);
    permute(f32(vp), v.at(kv_offset(b0)), Bc, T, KV, hd, true);
    scores(S, qp, kp, Bc, T, KV, group, hd, scale);
  }
};

}  // namespace

void attention_forward(Ref out, float* lse, Ref q, Ref k, Ref v, const int32_t* starts, const int32_t* ends, int B, int T, int NH,
                       int KV, int hd) {
  check_heads(NH, KV);
  if (B <= 0 || T <= 0) return;
  if (use_flash(hd)) return flash_attention_forward(out, lse, q, k, v, starts, ends, B, T, NH, KV, hd);
  Chunks c(B, T, NH, KV, hd);
  float* op = scratch(Slot::attn_o, c.q_floats());
  for (int b0 = 0; b0 < B; b0 += c.chunk) {
    const int Bc = std::min(c.chunk, B - b0);
    c.load_and_score(q, k, v, b0, Bc);
    const size_t rows = static_cast<size_t>(Bc) * NH * T;
    LLMKIT_LAUNCH(softmax_kernel, blocks_for(rows, kThreads / 32), kThreads, 0, c.S, lse + static_cast<size_t>(b0) * NH * T,
                  starts ? starts + static_cast<size_t>(b0) * T : nullptr, ends ? ends + static_cast<size_t>(b0) * T : nullptr,
                  rows, NH, T);
    check_launch("attention (softmax)");
    // O = P V: [group*T, T] x [T, hd]
    gemm(false, false, c.group * T, hd, T, 1.0f, f32(c.S), T, c.ss, f32(c.vp), hd, c.sk, 0.0f, f32(op), hd, c.sq, Bc * KV);
    permute(out.at(c.q_offset(b0)), f32(op), Bc, T, NH, hd, false);
  }
}

void attention_backward(Ref dq, Ref dk, Ref dv, Ref dout, Ref q, Ref k, Ref v, Ref out, const float* lse, const int32_t* starts,
                        const int32_t* ends, int B, int T, int NH, int KV, int hd) {
  check_heads(NH, KV);
  if (B <= 0 || T <= 0) return;
  if (use_flash(hd)) return flash_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, starts, ends, B, T, NH, KV, hd);
  Chunks c(B, T, NH, KV, hd);
  float* dop = scratch(Slot::attn_do, c.q_floats());
  float* dqp = scratch(Slot::attn_o, c.q_floats());
  float* dkp = scratch(Slot::attn_dk, c.kv_floats());
  float* dvp = scratch(Slot::attn_dv, c.kv_floats());
  float* dP = scratch(Slot::attn_dp, static_cast<size_t>(c.chunk) * NH * T * T);
  float* D = scratch(Slot::attn_rows, static_cast<size_t>(c.chunk) * NH * T);
  const int GT = c.group * T;
  for (int b0 = 0; b0 < B; b0 += c.chunk) {
    const int Bc = std::min(c.chunk, B - b0), batch = Bc * KV;
    const size_t q0 = c.q_offset(b0), rows = static_cast<size_t>(Bc) * NH * T;
    c.load_and_score(q, k, v, b0, Bc);
    permute(f32(dop), dout.at(q0), Bc, T, NH, hd, true);
    attention_rowdot(D, dout.at(q0), out.at(q0), Bc, T, NH, hd);
    // dP = dO V^T
    gemm(false, true, GT, T, hd, 1.0f, f32(dop), hd, c.sq, f32(c.vp), hd, c.sk, 0.0f, f32(dP), T, c.ss, batch);
    LLMKIT_LAUNCH(softmax_backward_kernel, blocks_for(rows * T, kThreads), kThreads, 0, c.S, dP,
                  lse + static_cast<size_t>(b0) * NH * T, static_cast<const float*>(D),
                  starts ? starts + static_cast<size_t>(b0) * T : nullptr, ends ? ends + static_cast<size_t>(b0) * T : nullptr,
                  rows, NH, T);
    check_launch("attention backward (softmax)");
    // dQ = scale dS K; dK = scale dS^T Q (summing the group); dV = P^T dO
    gemm(false, false, GT, hd, T, c.scale, f32(dP), T, c.ss, f32(c.kp), hd, c.sk, 0.0f, f32(dqp), hd, c.sq, batch);
    gemm(true, false, T, hd, GT, c.scale, f32(dP), T, c.ss, f32(c.qp), hd, c.sq, 0.0f, f32(dkp), hd, c.sk, batch);
    gemm(true, false, T, hd, GT, 1.0f, f32(c.S), T, c.ss, f32(dop), hd, c.sq, 0.0f, f32(dvp), hd, c.sk, batch);
    permute(dq.at(q0), f32(dqp), Bc, T, NH, hd, false);
    permute(dk.at(c.kv_offset(b0)), f32(dkp), Bc, T, KV, hd, false);
    permute(dv.at(c.kv_offset(b0)), f32(dvp), Bc, T, KV, hd, false);
  }
}

// ---- Inference against a KV cache ----

namespace {

constexpr unsigned kCachedThreads = 128;
constexpr int kMaxCachedKeys = 50 * 1024;  // scores in shared memory: 200 KiB

// The cache row of position j: row j % block of block table[j / block].
__device__ inline size_t paged_row(const int32_t* table, int block, int j) {
  return static_cast<size_t>(table[j / block]) * block + j % block;
}

// Block (row r, head h): scores of query r against keys 0..start+r in shared memory, softmax,
// then out = P V with one output channel per thread; keys and values through the block table.
__global__ void attention_paged_kernel(Ref out, Ref q, Ref kc, Ref vc, const int32_t* table, int block, int start,
                                       int NH, int KV, int hd, float scale) {
  LLMKIT_DYNAMIC_SHARED(float, s);
  const int r = blockIdx.x, h = blockIdx.y, g = h / (NH / KV), keys = start + r + 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const Ref qr = q.at((static_cast<size_t>(r) * NH + h) * hd);
  for (int j = warp; j < keys; j += warps) {
    const Ref kr = kc.at((paged_row(table, block, j) * KV + g) * hd);
    float dot = 0.0f;
    for (int d = lane; d < hd; d += 32) dot += qr.get(d) * kr.get(d);
    dot = warp_sum(dot);
    if (lane == 0) s[j] = dot * scale;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int j = threadIdx.x; j < keys; j += blockDim.x) m = fmaxf(m, s[j]);
  m = block_max(m);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < keys; j += blockDim.x) {
    s[j] = __expf(s[j] - m);
    sum += s[j];
  }
  sum = block_sum(sum);  // its barriers also publish s
  const float inv = 1.0f / sum;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < keys; ++j) acc += s[j] * vc.get((paged_row(table, block, j) * KV + g) * hd + d);
    out.set((static_cast<size_t>(r) * NH + h) * hd + d, acc * inv);
  }
}

}  // namespace

void attention_paged(Ref out, Ref q, Ref k_pool, Ref v_pool, const int32_t* table, int block, int start, int rows,
                     int NH, int KV, int hd) {
  check_heads(NH, KV);
  if (rows <= 0) return;
  const int keys = start + rows;
  if (keys > kMaxCachedKeys)
    throw Error("", "cached attention over " + std::to_string(keys) + " positions: the CUDA backend takes up to " +
                        std::to_string(kMaxCachedKeys));
  const size_t smem = static_cast<size_t>(keys) * sizeof(float);
  // The kernel's static shared memory (its block reductions') counts too.
  if (smem + kernel_static_smem(attention_paged_kernel) > max_block_smem())
    throw Error("", "cached attention over " + std::to_string(keys) + " positions: more scores than this GPU's blocks hold");
  const int32_t* dev_table = upload_ints(Slot::block_table, table, static_cast<size_t>((keys + block - 1) / block));
  allow_dynamic_smem(attention_paged_kernel, smem);
  LLMKIT_LAUNCH(attention_paged_kernel, dim3(static_cast<unsigned>(rows), static_cast<unsigned>(NH)), kCachedThreads, smem, out,
                q, k_pool, v_pool, dev_table, block, start, NH, KV, hd, 1.0f / std::sqrt(static_cast<float>(hd)));
  check_launch("attention_paged");
}

}  // namespace llmkit::LLMKIT_CUDA_NS
