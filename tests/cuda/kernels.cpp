// The CUDA backend against the CPU backend: every operation of llmkit/backend.hpp on random
// inputs of awkward shapes (not multiples of block or tile sizes, repeated tokens, ignored
// targets, grouped-query heads), then whole training steps of small Llama and GPT-2 models.
//
// Built twice (tests/CMakeLists.txt): against the GPU (exit 77, CTest's SKIPPED, when there is
// no device) and against the CPU emulator of the same kernel sources (LLMKIT_TEST_EMULATED),
// which runs everywhere. `--quick` runs the smaller half of the shapes.
//
// Tolerances: the operations are compared with fp32 matmuls (--precision fp32), where only the
// order of sums differs: 1e-4 relative plus a small absolute term. With bf16 matmuls (8
// significant bits in, fp32 accumulation) a matmul is checked at 2e-2 relative to the size of
// its terms, and the model's losses within 2% of the CPU's over the steps.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/cuda.hpp"
#include "llmkit/engine.hpp"
#include "llmkit/error.hpp"
#include "llmkit/ggml.hpp"
#include "llmkit/model.hpp"
#include "llmkit/quant.hpp"
#include "llmkit/safetensors.hpp"  // f32_to_bf16, bf16_to_f32

#ifdef LLMKIT_TEST_EMULATED
#include "emu.hpp"
#endif

using namespace llmkit;

namespace {

int failures = 0, checks = 0;
bool quick = false;

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, double abs_tol,
                  const std::string& what) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::abs(static_cast<double>(got[i]) - want[i]);
    double allowed = abs_tol + rel * std::abs(static_cast<double>(want[i]));
    if (!std::isfinite(got[i]) && std::isfinite(want[i])) err = INFINITY;
    if (err / allowed > worst) {
      worst = err / allowed;
      at = i;
    }
  }
  ++checks;
  const bool ok = worst <= 1 && got.size() == want.size();
  if (!ok || !quick)
    std::printf("%-58s %s (worst %.3g of the tolerance%s)\n", what.c_str(), ok ? "ok" : "FAILED", worst,
                ok ? "" : (", at " + std::to_string(at) + ": " + std::to_string(got[at]) + " vs " + std::to_string(want[at])).c_str());
  failures += !ok;
}

std::vector<float> random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// A tensor on both backends: host values (the CPU backend's memory) and a device copy.
struct Both {
  Backend& gpu;
  std::vector<float> cpu;
  float* dev;
  Both(Backend& g, std::vector<float> values) : gpu(g), cpu(std::move(values)), dev(g.alloc(cpu.size())) {
    g.upload(dev, cpu.data(), cpu.size());
  }
  Both(Backend& g, size_t n) : Both(g, std::vector<float>(n, 0.0f)) {}
  ~Both() { gpu.release(dev); }
  Both(const Both&) = delete;
  float* c() { return cpu.data(); }
  std::vector<float> got() const {
    std::vector<float> h(cpu.size());
    gpu.download(h.data(), dev, h.size());
    return h;
  }
  void expect(const std::string& what, double rel = 1e-4, double abs_tol = 1e-5) const { expect_close(got(), cpu, rel, abs_tol, what); }
};

std::string shape(std::initializer_list<int> dims) {
  std::string s;
  for (int d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

// Packed rows: each row of T cut into sequences of random lengths (some of one token, some
// longer than a 64-tile), as backend.hpp's `starts`.
std::vector<int32_t> random_starts(int B, int T, std::mt19937& rng) {
  std::vector<int32_t> starts(static_cast<size_t>(B) * T);
  for (int b = 0; b < B; ++b)
    for (int t = 0, begin = 0, left = 0; t < T; ++t) {
      if (left == 0) {
        begin = t;
        left = 1 + static_cast<int>(rng() % static_cast<unsigned>(rng() % 3 == 0 ? 80 : 12));
      }
      starts[static_cast<size_t>(b) * T + t] = begin;
      --left;
    }
  return starts;
}

void test_embedding(Backend& cpu, Backend& gpu, std::mt19937& rng, int B, int T, int C, int V, bool positions) {
  std::vector<int32_t> tokens(static_cast<size_t>(B) * T);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % static_cast<unsigned>(V));
  Both wte(gpu, random(static_cast<size_t>(V) * C, rng)), wpe(gpu, random(static_cast<size_t>(T) * C, rng));
  Both out(gpu, static_cast<size_t>(B) * T * C), dout(gpu, random(static_cast<size_t>(B) * T * C, rng));
  Both dwte(gpu, random(wte.cpu.size(), rng)), dwpe(gpu, random(wpe.cpu.size(), rng));
  const std::string s = shape({B, T, C}) + " V=" + std::to_string(V) + (positions ? " +pos" : "");
  cpu.embedding_forward(out.c(), tokens.data(), wte.c(), positions ? wpe.c() : nullptr, B, T, C);
  gpu.embedding_forward(out.dev, tokens.data(), wte.dev, positions ? wpe.dev : nullptr, B, T, C);
  out.expect("embedding forward " + s, 0, 0);
  cpu.embedding_backward(dwte.c(), positions ? dwpe.c() : nullptr, dout.c(), tokens.data(), B, T, C);
  gpu.embedding_backward(dwte.dev, positions ? dwpe.dev : nullptr, dout.dev, tokens.data(), B, T, C);
  dwte.expect("  backward dwte (repeated tokens, accumulated)");
  if (positions) dwpe.expect("  backward dwpe (accumulated)");
  std::vector<int32_t> pos(tokens.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>((i * 7 + 3) % static_cast<size_t>(T));
  cpu.embedding_at(out.c(), tokens.data(), pos.data(), wte.c(), positions ? wpe.c() : nullptr, B * T, C);
  gpu.embedding_at(out.dev, tokens.data(), pos.data(), wte.dev, positions ? wpe.dev : nullptr, B * T, C);
  out.expect("  embedding_at", 0, 0);
  const std::vector<int32_t> starts = random_starts(B, T, rng);
  cpu.embedding_forward(out.c(), tokens.data(), wte.c(), positions ? wpe.c() : nullptr, B, T, C, starts.data());
  gpu.embedding_forward(out.dev, tokens.data(), wte.dev, positions ? wpe.dev : nullptr, B, T, C, starts.data());
  out.expect("  packed rows: forward", 0, 0);
  cpu.embedding_backward(dwte.c(), positions ? dwpe.c() : nullptr, dout.c(), tokens.data(), B, T, C, starts.data());
  gpu.embedding_backward(dwte.dev, positions ? dwpe.dev : nullptr, dout.dev, tokens.data(), B, T, C, starts.data());
  dwte.expect("  packed rows: backward dwte");
  // Tokens of another vocabulary shard (-1): zero rows (the position only), no gradient.
  for (size_t i = 0; i < tokens.size(); i += 3) tokens[i] = -1;
  cpu.embedding_forward(out.c(), tokens.data(), wte.c(), positions ? wpe.c() : nullptr, B, T, C);
  gpu.embedding_forward(out.dev, tokens.data(), wte.dev, positions ? wpe.dev : nullptr, B, T, C);
  out.expect("  another shard's tokens: forward", 0, 0);
  cpu.embedding_backward(dwte.c(), positions ? dwpe.c() : nullptr, dout.c(), tokens.data(), B, T, C);
  gpu.embedding_backward(dwte.dev, positions ? dwpe.dev : nullptr, dout.dev, tokens.data(), B, T, C);
  dwte.expect("  another shard's tokens: backward dwte");
  if (positions) dwpe.expect("  packed rows: backward dwpe (positions repeat)");
}

void test_norms(Backend& cpu, Backend& gpu, std::mt19937& rng, int N, int C) {
  const size_t NC = static_cast<size_t>(N) * C;
  Both x(gpu, random(NC, rng, 2.0f)), w(gpu, random(static_cast<size_t>(C), rng)), b(gpu, random(static_cast<size_t>(C), rng));
  Both out(gpu, NC), mean(gpu, static_cast<size_t>(N)), rstd(gpu, static_cast<size_t>(N)), dy(gpu, random(NC, rng));
  Both dx(gpu, random(NC, rng)), dw(gpu, random(static_cast<size_t>(C), rng)), db(gpu, random(static_cast<size_t>(C), rng));
  const std::string s = shape({N, C});
  cpu.rmsnorm_forward(out.c(), rstd.c(), x.c(), w.c(), N, C, 1e-5f);
  gpu.rmsnorm_forward(out.dev, rstd.dev, x.dev, w.dev, N, C, 1e-5f);
  out.expect("rmsnorm forward " + s);
  rstd.expect("  rstd");
  cpu.rmsnorm_backward(dx.c(), dw.c(), dy.c(), x.c(), w.c(), rstd.c(), N, C);
  gpu.rmsnorm_backward(dx.dev, dw.dev, dy.dev, x.dev, w.dev, rstd.dev, N, C);
  dx.expect("  backward dinp (accumulated)", 1e-4, 1e-4);
  dw.expect("  backward dw (accumulated)", 1e-4, 1e-4);
  cpu.layernorm_forward(out.c(), mean.c(), rstd.c(), x.c(), w.c(), b.c(), N, C, 1e-5f);
  gpu.layernorm_forward(out.dev, mean.dev, rstd.dev, x.dev, w.dev, b.dev, N, C, 1e-5f);
  out.expect("layernorm forward " + s);
  mean.expect("  mean", 1e-4, 1e-5);
  cpu.layernorm_backward(dx.c(), dw.c(), db.c(), dy.c(), x.c(), w.c(), mean.c(), rstd.c(), N, C);
  gpu.layernorm_backward(dx.dev, dw.dev, db.dev, dy.dev, x.dev, w.dev, mean.dev, rstd.dev, N, C);
  dx.expect("  backward dinp (accumulated)", 1e-4, 1e-4);
  dw.expect("  backward dw", 1e-4, 1e-4);
  db.expect("  backward db", 1e-4, 1e-4);
}

// rel: relative to the largest |term| scale of a dot product of length K with inputs in [-1, 1].
void test_matmul(Backend& cpu, Backend& gpu, std::mt19937& rng, int N, int C, int OC, bool bias, double rel) {
  Both inp(gpu, random(static_cast<size_t>(N) * C, rng)), w(gpu, random(static_cast<size_t>(OC) * C, rng));
  Both bs(gpu, random(static_cast<size_t>(OC), rng)), out(gpu, static_cast<size_t>(N) * OC);
  Both dout(gpu, random(static_cast<size_t>(N) * OC, rng)), dinp(gpu, random(inp.cpu.size(), rng));
  Both dw(gpu, random(w.cpu.size(), rng)), dbias(gpu, random(static_cast<size_t>(OC), rng));
  const double tol = rel * std::sqrt(static_cast<double>(C));
  const std::string s = shape({N, C, OC}) + (bias ? " +bias" : "");
  cpu.matmul_forward(out.c(), inp.c(), w.c(), bias ? bs.c() : nullptr, N, C, OC);
  gpu.matmul_forward(out.dev, inp.dev, w.dev, bias ? bs.dev : nullptr, N, C, OC);
  out.expect("matmul forward " + s, rel, tol);
  cpu.matmul_backward(dinp.c(), dw.c(), bias ? dbias.c() : nullptr, dout.c(), inp.c(), w.c(), N, C, OC);
  gpu.matmul_backward(dinp.dev, dw.dev, bias ? dbias.dev : nullptr, dout.dev, inp.dev, w.dev, N, C, OC);
  dinp.expect("  backward dinp (accumulated)", rel, rel * std::sqrt(static_cast<double>(OC)));
  dw.expect("  backward dw (accumulated)", rel, rel * std::sqrt(static_cast<double>(N)));
  if (bias) dbias.expect("  backward dbias", 1e-4, 1e-4);
  // A low-rank adapter's path: out += alpha inp w^T.
  cpu.matmul_accumulate(out.c(), inp.c(), w.c(), N, C, OC, 0.37f);
  gpu.matmul_accumulate(out.dev, inp.dev, w.dev, N, C, OC, 0.37f);
  out.expect("  matmul_accumulate (alpha 0.37)", rel, 2 * tol);
  // A frozen weight: null dw, only dinp.
  cpu.matmul_backward(dinp.c(), nullptr, nullptr, dout.c(), inp.c(), w.c(), N, C, OC);
  gpu.matmul_backward(dinp.dev, nullptr, nullptr, dout.dev, inp.dev, w.dev, N, C, OC);
  dinp.expect("  backward without dw", rel, 2 * rel * std::sqrt(static_cast<double>(OC)));
}

// A matrix of ggml blocks on both backends: the CPU's exact path (fp32 against the dequantized
// blocks) is the reference of the GPU's warp dot products (N <= 8) and dequantize + GEMM.
void test_quant(Backend& cpu, Backend& gpu, std::mt19937& rng, ggml::Type t, int N, int C, int OC, double rel) {
  const std::vector<float> wv = random(static_cast<size_t>(OC) * C, rng);
  const size_t rb = ggml::row_bytes(t, C);
  std::vector<float> blocks((rb * OC + 3) / 4);  // the bytes, in floats' memory
  for (int o = 0; o < OC; ++o)
    ggml::quantize(t, wv.data() + static_cast<size_t>(o) * C, reinterpret_cast<uint8_t*>(blocks.data()) + rb * o, C);
  Both wq(gpu, blocks);
  const QuantWeight qc{t, wq.c(), rb}, qg{t, wq.dev, rb};
  Both inp(gpu, random(static_cast<size_t>(N) * C, rng)), bs(gpu, random(static_cast<size_t>(OC), rng));
  Both out(gpu, static_cast<size_t>(N) * OC), dout(gpu, random(static_cast<size_t>(N) * OC, rng));
  Both dinp(gpu, random(inp.cpu.size(), rng));
  const std::string s = std::string(ggml::traits(t).name) + " " + shape({N, C, OC});
  cpu.matmul_forward_quant(out.c(), inp.c(), qc, bs.c(), N, C, OC, true);
  gpu.matmul_forward_quant(out.dev, inp.dev, qg, bs.dev, N, C, OC, true);
  out.expect("quantized matmul " + s, rel, rel * std::sqrt(static_cast<double>(C)));
  cpu.matmul_backward_quant(dinp.c(), dout.c(), qc, N, C, OC);
  gpu.matmul_backward_quant(dinp.dev, dout.dev, qg, N, C, OC);
  dinp.expect("  backward dinp (accumulated)", rel, rel * std::sqrt(static_cast<double>(OC)));
  // rows of it as an embedding, with learned positions
  std::vector<int32_t> tokens(static_cast<size_t>(N)), pos(static_cast<size_t>(N));
  for (int n = 0; n < N; ++n) tokens[static_cast<size_t>(n)] = static_cast<int32_t>(rng() % static_cast<unsigned>(OC)), pos[static_cast<size_t>(n)] = n % 3;
  Both wpe(gpu, random(static_cast<size_t>(3) * C, rng)), emb(gpu, static_cast<size_t>(N) * C);
  cpu.embedding_quant(emb.c(), tokens.data(), pos.data(), qc, wpe.c(), N, C);
  gpu.embedding_quant(emb.dev, tokens.data(), pos.data(), qg, wpe.dev, N, C);
  emb.expect("  embedding rows", 1e-6, 1e-6);
}

// A model quantized in memory on each backend (quantize_model): the training forward's loss
// (fp32 against the blocks on both), and the engine's scores, where the CPU's 8-bit activations
// against the GPU's fp32 ones leave about 1e-2.
void test_quant_model(Backend& cpu, Backend& gpu, const std::string& json, const char* scheme) {
  ModelConfig cfg = ModelConfig::from_json(json, scheme);
  Model a(cfg, cpu), b(cfg, gpu);
  a.init(13);
  gpu.upload(b.weights(), a.weights(), a.num_params());
  const QuantScheme qs = QuantScheme::named(scheme);
  auto qa = quantize_model(a, qs), qb = quantize_model(b, qs);
  const int B = 2, T = 11;
  std::mt19937 rng(9);
  std::vector<int32_t> tokens(static_cast<size_t>(B) * T), targets(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int32_t>(rng() % static_cast<unsigned>(cfg.vocab_size));
    targets[i] = static_cast<int32_t>(rng() % static_cast<unsigned>(cfg.vocab_size));
  }
  std::vector<float> la, lb;
  for (Model* m : {qa.get(), qb.get()}) {
    m->forward(tokens.data(), targets.data(), B, T);
    (m == qa.get() ? la : lb).push_back(static_cast<float>(m->mean_loss()));
  }
  expect_close(lb, la, 1e-4, 0, std::string("quantized ") + scheme + " model: loss");
  Engine ea(*qa, nullptr, 2, 30), eb(*qb, nullptr, 2, 30);
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> requests;
  for (int i = 0; i < 3; ++i)
    requests.push_back({std::vector<int32_t>(tokens.begin() + i, tokens.begin() + i + 6), std::vector<int32_t>(targets.begin(), targets.begin() + 1 + i)});
  auto sa = ea.score(requests), sb = eb.score(requests);
  std::vector<float> xa, xb;
  for (size_t i = 0; i < sa.size(); ++i) xa.push_back(static_cast<float>(sa[i].logprob)), xb.push_back(static_cast<float>(sb[i].logprob));
  expect_close(xb, xa, 2e-2, 2e-2, std::string("quantized ") + scheme + " model: engine scores");
}

void test_rope(Backend& cpu, Backend& gpu, std::mt19937& rng, int B, int T, int H, int hd) {
  Both x(gpu, random(static_cast<size_t>(B) * T * H * hd, rng));
  const std::string s = shape({B, T, H, hd});
  cpu.rope_forward(x.c(), B, T, H, hd, 10000.0f);
  gpu.rope_forward(x.dev, B, T, H, hd, 10000.0f);
  x.expect("rope forward " + s, 1e-4, 1e-5);
  cpu.rope_backward(x.c(), B, T, H, hd, 500000.0f);
  gpu.rope_backward(x.dev, B, T, H, hd, 500000.0f);
  x.expect("  backward", 1e-4, 1e-5);
  std::vector<int32_t> pos(static_cast<size_t>(B) * T);
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(1000 + i * 13);
  cpu.rope_at(x.c(), pos.data(), B * T, H, hd, 10000.0f);
  gpu.rope_at(x.dev, pos.data(), B * T, H, hd, 10000.0f);
  x.expect("  rope_at (positions above 1000)", 1e-4, 1e-4);
  const std::vector<int32_t> starts = random_starts(B, T, rng);
  cpu.rope_forward(x.c(), B, T, H, hd, 10000.0f, starts.data());
  gpu.rope_forward(x.dev, B, T, H, hd, 10000.0f, starts.data());
  x.expect("  packed rows: forward", 1e-4, 1e-4);
  cpu.rope_backward(x.c(), B, T, H, hd, 10000.0f, starts.data());
  gpu.rope_backward(x.dev, B, T, H, hd, 10000.0f, starts.data());
  x.expect("  packed rows: backward", 1e-4, 1e-4);
}

void test_attention(Backend& cpu, Backend& gpu, std::mt19937& rng, int B, int T, int NH, int KV, int hd, double rel = 1e-4,
                    double abs_tol = 1e-5) {
  const size_t qn = static_cast<size_t>(B) * T * NH * hd, kn = static_cast<size_t>(B) * T * KV * hd;
  Both q(gpu, random(qn, rng, 2.0f)), k(gpu, random(kn, rng, 2.0f)), v(gpu, random(kn, rng));
  Both out(gpu, qn), lse(gpu, static_cast<size_t>(B) * NH * T), dout(gpu, random(qn, rng));
  Both dq(gpu, random(qn, rng)), dk(gpu, random(kn, rng)), dv(gpu, random(kn, rng));
  const std::string s = shape({B, T, NH, KV, hd}) + (rel > 1e-3 ? " (bf16)" : "");
  cpu.attention_forward(out.c(), lse.c(), q.c(), k.c(), v.c(), B, T, NH, KV, hd);
  gpu.attention_forward(out.dev, lse.dev, q.dev, k.dev, v.dev, B, T, NH, KV, hd);
  out.expect("attention forward " + s, rel, abs_tol);
  lse.expect("  log-sum-exp", rel, abs_tol);
  cpu.attention_backward(dq.c(), dk.c(), dv.c(), dout.c(), q.c(), k.c(), v.c(), out.c(), lse.c(), B, T, NH, KV, hd);
  gpu.attention_backward(dq.dev, dk.dev, dv.dev, dout.dev, q.dev, k.dev, v.dev, out.dev, lse.dev, B, T, NH, KV, hd);
  dq.expect("  backward dq (overwritten)", 3 * rel, 3 * abs_tol);
  dk.expect("  backward dk (group summed)", 3 * rel, 3 * abs_tol);
  dv.expect("  backward dv", 3 * rel, 3 * abs_tol);
  // Cached: the last `rows` positions of sequence 0 against its keys in a paged cache, blocks of
  // 4 positions in reverse order; the CPU's against its full attention, the GPU's against the CPU's.
  const int rows = std::max(1, T / 3), start = T - rows, block = 4, nb = (T + block - 1) / block;
  std::vector<int32_t> table(static_cast<size_t>(nb));
  for (int b = 0; b < nb; ++b) table[static_cast<size_t>(b)] = nb - 1 - b;
  const size_t ks = static_cast<size_t>(KV) * hd;
  std::vector<float> kp(static_cast<size_t>(nb) * block * ks), vp(kp.size());
  for (int p = 0; p < T; ++p) {
    const size_t at = (static_cast<size_t>(table[static_cast<size_t>(p / block)]) * block + p % block) * ks;
    std::copy_n(k.c() + static_cast<size_t>(p) * ks, ks, kp.begin() + static_cast<long>(at));
    std::copy_n(v.c() + static_cast<size_t>(p) * ks, ks, vp.begin() + static_cast<long>(at));
  }
  Both kpool(gpu, kp), vpool(gpu, vp), o2(gpu, static_cast<size_t>(rows) * NH * hd);
  const size_t q0 = static_cast<size_t>(start) * NH * hd;
  cpu.attention_forward(out.c(), lse.c(), q.c(), k.c(), v.c(), B, T, NH, KV, hd);
  cpu.attention_paged(o2.c(), q.c() + q0, kpool.c(), vpool.c(), table.data(), block, start, rows, NH, KV, hd);
  expect_close(o2.cpu, std::vector<float>(out.cpu.begin() + static_cast<long>(q0), out.cpu.begin() + static_cast<long>(q0 + o2.cpu.size())),
               1e-4, 1e-5, "  attention_paged (CPU) as full attention, " + std::to_string(rows) + " rows from " + std::to_string(start));
  gpu.attention_paged(o2.dev, q.dev + q0, kpool.dev, vpool.dev, table.data(), block, start, rows, NH, KV, hd);
  o2.expect("  attention_paged, " + std::to_string(rows) + " rows from " + std::to_string(start), 1e-4, 1e-5);  // fp32 always
  // Packed rows: sequences of 1 to 80 tokens, across tile edges.
  const std::vector<int32_t> starts = random_starts(B, T, rng);
  cpu.attention_forward(out.c(), lse.c(), q.c(), k.c(), v.c(), B, T, NH, KV, hd, starts.data());
  gpu.attention_forward(out.dev, lse.dev, q.dev, k.dev, v.dev, B, T, NH, KV, hd, starts.data());
  out.expect("  packed rows: forward", rel, abs_tol);
  lse.expect("  packed rows: log-sum-exp", rel, abs_tol);
  cpu.attention_backward(dq.c(), dk.c(), dv.c(), dout.c(), q.c(), k.c(), v.c(), out.c(), lse.c(), B, T, NH, KV, hd, starts.data());
  gpu.attention_backward(dq.dev, dk.dev, dv.dev, dout.dev, q.dev, k.dev, v.dev, out.dev, lse.dev, B, T, NH, KV, hd, starts.data());
  dq.expect("  packed rows: backward dq", 3 * rel, 3 * abs_tol);
  dk.expect("  packed rows: backward dk", 3 * rel, 3 * abs_tol);
  dv.expect("  packed rows: backward dv", 3 * rel, 3 * abs_tol);
  // Bidirectional (an encoder's), whole rows and packed ones.
  for (const int32_t* st : {static_cast<const int32_t*>(nullptr), starts.data()}) {
    const std::string w = st ? "  bidirectional, packed rows: " : "  bidirectional: ";
    cpu.attention_forward(out.c(), lse.c(), q.c(), k.c(), v.c(), B, T, NH, KV, hd, st, false);
    gpu.attention_forward(out.dev, lse.dev, q.dev, k.dev, v.dev, B, T, NH, KV, hd, st, false);
    out.expect(w + "forward", rel, abs_tol);
    lse.expect(w + "log-sum-exp", rel, abs_tol);
    cpu.attention_backward(dq.c(), dk.c(), dv.c(), dout.c(), q.c(), k.c(), v.c(), out.c(), lse.c(), B, T, NH, KV, hd, st, false);
    gpu.attention_backward(dq.dev, dk.dev, dv.dev, dout.dev, q.dev, k.dev, v.dev, out.dev, lse.dev, B, T, NH, KV, hd, st, false);
    dq.expect(w + "backward dq", 3 * rel, 3 * abs_tol);
    dk.expect(w + "backward dk", 3 * rel, 3 * abs_tol);
    dv.expect(w + "backward dv", 3 * rel, 3 * abs_tol);
  }
}

void test_elementwise(Backend& cpu, Backend& gpu, std::mt19937& rng, size_t n) {
  Both a(gpu, random(n, rng, 4.0f)), b(gpu, random(n, rng)), out(gpu, n), d(gpu, random(n, rng)), da(gpu, n), db(gpu, n);
  const std::string s = " n=" + std::to_string(n);
  cpu.swiglu_forward(out.c(), a.c(), b.c(), n);
  gpu.swiglu_forward(out.dev, a.dev, b.dev, n);
  out.expect("swiglu forward" + s, 1e-5, 1e-6);
  cpu.swiglu_backward(da.c(), db.c(), d.c(), a.c(), b.c(), n);
  gpu.swiglu_backward(da.dev, db.dev, d.dev, a.dev, b.dev, n);
  da.expect("  backward dgate", 1e-5, 1e-6);
  db.expect("  backward dup", 1e-5, 1e-6);
  cpu.gelu_forward(out.c(), a.c(), n);
  gpu.gelu_forward(out.dev, a.dev, n);
  out.expect("gelu forward" + s, 1e-5, 1e-6);
  cpu.gelu_backward(da.c(), d.c(), a.c(), n);
  gpu.gelu_backward(da.dev, d.dev, a.dev, n);
  da.expect("  backward", 1e-5, 4e-6);  // the CPU tanh is a polynomial (1e-7 absolute)
  cpu.gelu_forward(out.c(), a.c(), n, true);
  gpu.gelu_forward(out.dev, a.dev, n, true);
  out.expect("gelu (erf) forward" + s, 1e-5, 1e-6);
  cpu.gelu_backward(da.c(), d.c(), a.c(), n, true);
  gpu.gelu_backward(da.dev, d.dev, a.dev, n, true);
  da.expect("  backward", 1e-5, 4e-6);
  cpu.tanh_forward(out.c(), a.c(), n);
  gpu.tanh_forward(out.dev, a.dev, n);
  out.expect("tanh forward" + s, 1e-5, 1e-6);
  cpu.tanh_backward(da.c(), d.c(), out.c(), n);
  gpu.tanh_backward(da.dev, d.dev, out.dev, n);
  da.expect("  backward", 1e-5, 1e-6);
  cpu.dropout(out.c(), a.c(), n, 0.3f, 77, 1000003);
  gpu.dropout(out.dev, a.dev, n, 0.3f, 77, 1000003);
  out.expect("dropout p=0.3 (the same elements)" + s, 1e-6, 0);
  cpu.add(out.c(), a.c(), b.c(), n);
  gpu.add(out.dev, a.dev, b.dev, n);
  out.expect("add, accumulate, scale" + s, 0, 0);
  cpu.accumulate(out.c(), d.c(), n);
  gpu.accumulate(out.dev, d.dev, n);
  cpu.scale(out.c(), -0.37f, n);
  gpu.scale(out.dev, -0.37f, n);
  out.expect("  after accumulate and scale", 1e-6, 0);
  const double want = cpu.sum_squares(a.c(), n), got = gpu.sum_squares(a.dev, n);
  expect_close({static_cast<float>(got)}, {static_cast<float>(want)}, 1e-5, 0, "sum_squares" + s);
  Both p(gpu, random(n, rng)), g(gpu, random(n, rng)), m(gpu, random(n, rng, 0.1f)), vv(gpu, random(n, rng, 0.01f));
  for (auto& x : vv.cpu) x = std::abs(x);
  vv.gpu.upload(vv.dev, vv.cpu.data(), n);
  for (int t = 1; t <= 3; ++t) {
    cpu.adamw(p.c(), g.c(), m.c(), vv.c(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f);
    gpu.adamw(p.dev, g.dev, m.dev, vv.dev, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t, 0.5f);
  }
  p.expect("adamw, 3 steps" + s, 1e-5, 1e-6);
  m.expect("  first moment", 1e-5, 1e-7);
  vv.expect("  second moment", 1e-5, 1e-8);
}

void test_crossentropy(Backend& cpu, Backend& gpu, std::mt19937& rng, int N, int V, int Vp) {
  Both logits(gpu, random(static_cast<size_t>(N) * Vp, rng, 8.0f)), logp(gpu, static_cast<size_t>(N));
  Both dlogp(gpu, random(static_cast<size_t>(N), rng)), dlogits(gpu, random(logits.cpu.size(), rng));
  std::vector<int32_t> targets(static_cast<size_t>(N));
  for (int n = 0; n < N; ++n) targets[static_cast<size_t>(n)] = n % 4 == 3 ? -1 : static_cast<int32_t>(rng() % static_cast<unsigned>(V));
  const std::string s = shape({N, V, Vp});
  cpu.crossentropy_forward(logp.c(), logits.c(), targets.data(), N, V, Vp);
  gpu.crossentropy_forward(logp.dev, logits.dev, targets.data(), N, V, Vp);
  logp.expect("crossentropy forward " + s + " (ignored rows)", 1e-5, 1e-5);
  {  // argmax: ties go to the first column (a row of equal values in the padded part's width)
    std::vector<float> l = logits.cpu;
    for (int j = 0; j < Vp; ++j) l[static_cast<size_t>(j)] = 1.0f;
    gpu.upload(logits.dev, l.data(), l.size());
    std::vector<int32_t> a(static_cast<size_t>(N)), b(a.size());
    std::vector<float> va(a.size()), vb(a.size());
    cpu.argmax(a.data(), l.data(), N, V, Vp, va.data());
    gpu.argmax(b.data(), logits.dev, N, V, Vp, vb.data());
    ++checks;
    const bool same = a == b && a[0] == 0 && va == vb && va[0] == 1.0f;
    std::printf("%-58s %s\n", ("  argmax " + s).c_str(), same ? "ok" : "FAILED");
    failures += !same;
    gpu.upload(logits.dev, logits.cpu.data(), logits.cpu.size());
  }
  cpu.crossentropy_backward(dlogits.c(), logits.c(), targets.data(), dlogp.c(), N, V, Vp);
  gpu.crossentropy_backward(dlogits.dev, logits.dev, targets.data(), dlogp.dev, N, V, Vp);
  dlogits.expect("  backward", 1e-4, 1e-6);
  // A vocabulary shard (tensor parallel): its log-sum-exp, and the backward against a given
  // whole-vocabulary one, rows whose target is elsewhere (-1) included.
  Both lse(gpu, static_cast<size_t>(N));
  cpu.logsumexp(lse.c(), logits.c(), N, V, Vp);
  gpu.logsumexp(lse.dev, logits.dev, N, V, Vp);
  lse.expect("  logsumexp", 1e-5, 1e-5);
  for (float& x : lse.cpu) x += 0.5f;  // the shard is part of a larger vocabulary
  gpu.upload(lse.dev, lse.cpu.data(), lse.cpu.size());
  cpu.crossentropy_backward(dlogits.c(), logits.c(), targets.data(), dlogp.c(), N, V, Vp, lse.c());
  gpu.crossentropy_backward(dlogits.dev, logits.dev, targets.data(), dlogp.dev, N, V, Vp, lse.dev);
  dlogits.expect("  backward of a vocabulary shard", 1e-4, 1e-6);
  cpu.crossentropy_backward(logits.c(), logits.c(), targets.data(), dlogp.c(), N, V, Vp);
  gpu.crossentropy_backward(logits.dev, logits.dev, targets.data(), dlogp.dev, N, V, Vp);
  logits.expect("  backward in place", 1e-4, 1e-6);
}

// Distillation: the cross-entropy's gradient plus a divergence's, every form, in place too;
// logits in the backend's activation type (bf16 on a bf16 backend).
void test_distill(Backend& cpu, Backend& gpu, std::mt19937& rng, int N, int V, int Vp, double tol) {
  std::vector<float> z = random(static_cast<size_t>(N) * Vp, rng, 6.0f), zt = random(z.size(), rng, 6.0f);
  if (gpu.activation_value_bytes() == 2)  // the values a bf16 buffer holds, on both sides
    for (auto* v : {&z, &zt})
      for (float& x : *v) x = bf16_to_f32(f32_to_bf16(x));
  float* logits = gpu.alloc_activations(z.size());
  float* teacher = gpu.alloc_activations(z.size());
  Both dlogp(gpu, random(static_cast<size_t>(N), rng)), weight(gpu, random(static_cast<size_t>(N), rng)), kd(gpu, static_cast<size_t>(N));
  for (int n = 0; n < N; ++n) {
    if (n % 3 == 1) weight.cpu[static_cast<size_t>(n)] = 0.0f;
    weight.cpu[static_cast<size_t>(n)] = std::fabs(weight.cpu[static_cast<size_t>(n)]);
  }
  gpu.upload(weight.dev, weight.cpu.data(), weight.cpu.size());
  std::vector<int32_t> targets(static_cast<size_t>(N));
  for (int n = 0; n < N; ++n) targets[static_cast<size_t>(n)] = n % 4 == 3 ? -1 : static_cast<int32_t>(rng() % static_cast<unsigned>(V));
  const std::string s = shape({N, V, Vp});
  for (Divergence d : {Divergence{Divergence::Kind::kl, 2.0f, 0.5f}, Divergence{Divergence::Kind::jsd, 1.0f, 0.3f},
                       Divergence{Divergence::Kind::jsd, 0.8f, 0.0f}, Divergence{Divergence::Kind::jsd, 1.0f, 1.0f}}) {
    const std::string form = d.kind == Divergence::Kind::kl ? "kl" : "jsd beta " + std::to_string(d.beta).substr(0, 3);
    std::vector<float> want = z, got(z.size());
    gpu.upload(logits, z.data(), z.size());
    gpu.upload(teacher, zt.data(), zt.size());
    cpu.distill_backward(want.data(), kd.c(), want.data(), zt.data(), targets.data(), dlogp.c(), weight.c(), N, V, Vp, d);
    gpu.distill_backward(logits, kd.dev, logits, teacher, targets.data(), dlogp.dev, weight.dev, N, V, Vp, d);
    kd.expect("distill " + form + " " + s + ": divergence", 1e-3, 1e-5);
    gpu.download(got.data(), logits, got.size());
    expect_close(got, want, tol, tol, "  gradient, in place");
  }
  gpu.release(logits);
  gpu.release(teacher);
}

// Two models' weights on one bf16 backend: each keeps its own bf16 copy, and an update of one
// leaves the other's copy as it was (a teacher or a reference model beside the trained one).
void test_weight_copies(Backend& cpu, Backend& gpu, std::mt19937& rng) {
  const int N = 5, C = 64, OC = 48;
  Both a(gpu, random(static_cast<size_t>(OC) * C, rng)), b(gpu, random(static_cast<size_t>(OC) * C, rng));
  Both inp(gpu, random(static_cast<size_t>(N) * C, rng)), out(gpu, static_cast<size_t>(N) * OC);
  Both g(gpu, random(a.cpu.size(), rng)), m(gpu, a.cpu.size()), v(gpu, a.cpu.size());
  gpu.set_parameters(a.dev, a.cpu.size());
  gpu.set_parameters(b.dev, b.cpu.size());
  const double tol = 2e-2 * std::sqrt(static_cast<double>(C));
  for (int round = 0; round < 2; ++round) {
    for (Both* w : {&a, &b, &a}) {
      cpu.matmul_forward(out.c(), inp.c(), w->c(), nullptr, N, C, OC);
      gpu.matmul_forward(out.dev, inp.dev, w->dev, nullptr, N, C, OC);
      out.expect(std::string("weights of model ") + (w == &a ? "a" : "b") + (round ? " after a's update" : ""), 2e-2, tol);
    }
    cpu.adamw(a.c(), g.c(), m.c(), v.c(), a.cpu.size(), 0.5f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    gpu.adamw(a.dev, g.dev, m.dev, v.dev, a.cpu.size(), 0.5f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
  }
}

// Activation buffers of a bf16 backend: half the bytes, values rounded to bf16 on the way in,
// copies between them and fp32 buffers converting.
void test_storage(Backend& gpu, std::mt19937& rng) {
  const size_t n = 1001;
  auto values = random(n, rng, 100.0f);
  float* act = gpu.alloc_activations(n);
  float* plain = gpu.alloc(n);
  gpu.upload(act, values.data(), n);
  std::vector<float> back(n), rounded(n);
  gpu.download(back.data(), act, n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &values[i], 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    std::memcpy(&rounded[i], &u, 4);
  }
  expect_close(back, rounded, 0, 0, "bf16 activations: upload rounds to nearest even");
  gpu.copy(plain, act + 1, n - 1);  // an offset handle, into fp32
  gpu.download(back.data(), plain, n - 1);
  expect_close(std::vector<float>(back.begin(), back.begin() + static_cast<long>(n - 1)),
               std::vector<float>(rounded.begin() + 1, rounded.end()), 0, 0, "  copy to fp32 from an offset");
  gpu.zero(act + 10, 5);
  gpu.download(back.data(), act, n);
  for (size_t i = 10; i < 15; ++i) rounded[i] = 0.0f;
  expect_close(back, rounded, 0, 0, "  zero a range");
  ++checks;
  const bool half = gpu.activation_value_bytes() == 2;
  std::printf("%-58s %s\n", "  2 bytes a value", half ? "ok" : "FAILED");
  failures += !half;
  gpu.release(act);
  gpu.release(plain);
}

// Steps of AdamW on a fixed batch with the model on each backend from the same weights: the
// losses (each step's forward) must track the CPU's.
void test_model(Backend& cpu, Backend& gpu, const std::string& json, const char* name, int steps, double rel) {
  ModelConfig cfg = ModelConfig::from_json(json, name);
  Model a(cfg, cpu), b(cfg, gpu);
  a.init(7);
  std::vector<float> w(a.num_params());
  std::memcpy(w.data(), a.weights(), w.size() * sizeof(float));
  gpu.upload(b.weights(), w.data(), w.size());
  const int B = 2, T = quick ? 12 : 19;
  std::mt19937 rng(3);
  std::vector<int32_t> tokens(static_cast<size_t>(B) * T), targets(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<int32_t>(rng() % static_cast<unsigned>(cfg.vocab_size));
    targets[i] = i % 5 == 4 ? -1 : static_cast<int32_t>(rng() % static_cast<unsigned>(cfg.vocab_size));
  }
  const size_t n = a.num_params();
  float *m1 = cpu.alloc(n), *v1 = cpu.alloc(n), *m2 = gpu.alloc(n), *v2 = gpu.alloc(n);
  std::vector<float> la, lb;
  for (int s = 1; s <= steps; ++s) {
    for (Model* m : {&a, &b}) {
      m->zero_grad();
      m->forward(tokens.data(), targets.data(), B, T);
      (m == &a ? la : lb).push_back(static_cast<float>(m->mean_loss()));
      m->backward_mean();
    }
    cpu.adamw(a.weights(), a.grads(), m1, v1, n, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, s, 1.0f);
    gpu.adamw(b.weights(), b.grads(), m2, v2, n, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.0f, s, 1.0f);
  }
  for (int s = 0; s < steps; ++s) std::printf("  %s step %d: loss cpu %.5f, cuda %.5f\n", name, s + 1, la[static_cast<size_t>(s)], lb[static_cast<size_t>(s)]);
  expect_close(lb, la, rel, 0, std::string(name) + ": " + std::to_string(steps) + " AdamW steps, losses");
  if (la.back() >= la.front()) {
    std::printf("%s: the loss did not fall\n", name);
    ++failures;
  }
  for (float* p : {m1, v1}) cpu.release(p);
  for (float* p : {m2, v2}) gpu.release(p);
}

#ifdef LLMKIT_TEST_EMULATED
// The emulator itself: a barrier that some threads skip and a shuffle that some lanes skip are
// errors, and barriers order shared-memory writes before reads in either thread order.
void test_emulator() {
  auto expect_error = [](const char* what, const std::function<void()>& body) {
    bool thrown = false;
    try {
      emu::launch(dim3(2), dim3(64), 0, body);
    } catch (const Error& e) {
      thrown = e.where() == "cuda emulator";
    }
    ++checks;
    std::printf("emulator: %-48s %s\n", what, thrown ? "ok (reported)" : "FAILED (not reported)");
    failures += !thrown;
  };
  expect_error("a thread returns before __syncthreads", [] {
    if (threadIdx.x == 5) return;
    __syncthreads();
  });
  expect_error("a barrier only half the block reaches", [] {
    if (threadIdx.x < 32) __syncthreads();
  });
  expect_error("a shuffle some lanes skip", [] {
    if (threadIdx.x % 32 < 16) (void)__shfl_xor_sync(0xffffffffu, 1.0f, 1);
  });
  std::vector<int> out(2 * 64, -1);
  emu::launch(dim3(2), dim3(64), 64 * sizeof(int), [&] {
    int* s = static_cast<int*>(emu::dynamic_shared());
    s[threadIdx.x] = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
    __syncthreads();
    out[blockIdx.x * 64 + threadIdx.x] = s[63 - threadIdx.x] + __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 3);
  });
  bool ok = true;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 64; ++t) ok &= out[static_cast<size_t>(b * 64 + t)] == b * 1000 + 63 - t + (t ^ 3);
  ++checks;
  std::printf("emulator: %-48s %s\n", "shared memory after a barrier, shuffles", ok ? "ok" : "FAILED");
  failures += !ok;
}
#endif

const char* kLlama = R"({"model_type": "llama", "vocab_size": 97, "hidden_size": 48, "intermediate_size": 88,
  "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2, "max_position_embeddings": 64,
  "tie_word_embeddings": false})";
// Rows of whole 32-value blocks: every matrix quantized (the K mixes' 256-value types fall
// back to Q5_0 and Q5_1 as llama-quantize's do).
const char* kLlamaQ = R"({"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
  "tie_word_embeddings": false})";
// Inference through the KV cache (embedding_at, rope_at, cache copies, attention_paged, the
// logits' download): scores of continuations and greedy generations as the CPU's.
// Greedy generations are compared in fp32 only: in bf16 a near tie may break the other way.
void test_engine(Backend& cpu, Backend& gpu, const std::string& json, const char* name, double rel) {
  ModelConfig cfg = ModelConfig::from_json(json, name);
  Model a(cfg, cpu), b(cfg, gpu);
  a.init(11);
  gpu.upload(b.weights(), a.weights(), a.num_params());
  Engine ea(a, nullptr, 3, 30), eb(b, nullptr, 3, 30);
  std::mt19937 rng(5);
  auto ids = [&](int n) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = 3 + static_cast<int32_t>(rng() % static_cast<unsigned>(cfg.vocab_size - 3));
    return v;
  };
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> requests;
  for (int i = 0; i < 4; ++i) requests.push_back({ids(5 + 3 * i), ids(1 + i)});
  auto sa = ea.score(requests), sb = eb.score(requests);
  std::vector<float> la, lb;
  for (size_t i = 0; i < sa.size(); ++i) {
    la.push_back(static_cast<float>(sa[i].logprob));
    lb.push_back(static_cast<float>(sb[i].logprob));
  }
  expect_close(lb, la, rel, rel, std::string(name) + ": engine scores (KV cache)");
  if (rel > 1e-3) return;
  SamplingParams p;
  p.max_tokens = 6;
  p.stop_at_eos = false;
  const std::vector<std::vector<int32_t>> prompts = {requests[0].first, requests[3].first, ids(2)};
  auto ga = ea.generate(prompts, p), gb = eb.generate(prompts, p);
  bool same = ga.size() == gb.size();
  for (size_t i = 0; same && i < ga.size(); ++i) same = ga[i].tokens == gb[i].tokens;
  ++checks;
  std::printf("%-58s %s\n", (std::string(name) + ": greedy generations").c_str(), same ? "ok" : "FAILED");
  failures += !same;
}

// Head size 32: the fused attention kernels in bf16.
const char* kLlama32 = R"({"model_type": "llama", "vocab_size": 89, "hidden_size": 64, "intermediate_size": 96,
  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64})";
const char* kGpt2 = R"({"model_type": "gpt2", "vocab_size": 101, "n_embd": 40, "n_layer": 2, "n_head": 4, "n_positions": 32})";
// BERT: token types, LayerNorms, exact GELU, bidirectional attention (fused in bf16: head size 32).
const char* kBert = R"({"model_type": "bert", "vocab_size": 89, "hidden_size": 64, "num_hidden_layers": 2,
  "num_attention_heads": 2, "intermediate_size": 96, "max_position_embeddings": 64})";

}  // namespace

int main(int argc, char** argv) {
  quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
#ifdef LLMKIT_TEST_EMULATED
  std::printf("the CUDA kernels on the CPU emulator%s\n", std::getenv("LLMKIT_EMU_REVERSE") ? ", threads in reverse order" : "");
  test_emulator();
  auto gpu = make_emulated_cuda_backend("fp32");
  auto gpu_bf16 = make_emulated_cuda_backend("bf16");
#else
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  std::printf("device 0: %s\n", cuda_device_name(0).c_str());
  auto gpu = make_cuda_backend(0, "fp32");
  auto gpu_bf16 = make_cuda_backend(0, "bf16");
#endif
  auto cpu = make_cpu_backend();
  std::mt19937 rng(1);
  Backend& g = *gpu;
  test_embedding(*cpu, g, rng, 2, 5, 7, 4, true);
  test_embedding(*cpu, g, rng, 3, 33, 65, 50, false);
  for (auto [N, C] : {std::pair{1, 1}, {7, 33}, {37, 300}}) test_norms(*cpu, g, rng, N, C);
  if (!quick) test_norms(*cpu, g, rng, 65, 768);
  for (auto [N, C, OC] : {std::tuple{1, 1, 1}, {5, 7, 3}, {33, 65, 17}}) test_matmul(*cpu, g, rng, N, C, OC, N != 5, 1e-5);
  if (!quick) test_matmul(*cpu, g, rng, 70, 130, 97, true, 1e-5);
  test_rope(*cpu, g, rng, 2, 5, 3, 8);
  test_rope(*cpu, g, rng, 1, 17, 2, 64);
  test_attention(*cpu, g, rng, 1, 1, 1, 1, 4);
  test_attention(*cpu, g, rng, 2, 7, 4, 2, 8);
  test_attention(*cpu, g, rng, 1, 33, 3, 1, 16);
  if (!quick) test_attention(*cpu, g, rng, 2, 40, 4, 4, 64);
  for (size_t n : {size_t{1}, size_t{1000}, size_t{4099}}) test_elementwise(*cpu, g, rng, n);
  test_crossentropy(*cpu, g, rng, 3, 10, 64);
  test_crossentropy(*cpu, g, rng, 9, 300, 320);
  test_distill(*cpu, g, rng, 3, 10, 64, 1e-5);
  test_distill(*cpu, g, rng, 9, 300, 320, 1e-5);
  for (ggml::Type t : {ggml::Type::q8_0, ggml::Type::q4_0, ggml::Type::q4_1, ggml::Type::q5_0, ggml::Type::q5_1, ggml::Type::q4_k,
                       ggml::Type::q5_k, ggml::Type::q6_k, ggml::Type::nf4}) {
    test_quant(*cpu, g, rng, t, 3, 512, 37, 1e-5);   // warp dot products
    test_quant(*cpu, g, rng, t, 19, 256, 21, 1e-5);  // dequantize + GEMM
  }
  test_quant_model(*cpu, g, kLlamaQ, "q8_0");
  test_quant_model(*cpu, g, kLlamaQ, "q4_k_m");
  test_model(*cpu, g, kLlama, "llama (fp32 matmuls)", 4, 1e-4);
  test_model(*cpu, g, kBert, "bert (fp32 matmuls)", 4, 1e-4);
  test_engine(*cpu, g, kLlama, "llama (fp32)", 1e-4);
  test_engine(*cpu, g, kGpt2, "gpt2 (fp32)", 1e-4);
  // bf16 matmuls: 8 significant bits in, fp32 sums; activations stored in bf16.
  Backend& b = *gpu_bf16;
  test_storage(b, rng);
  test_quant(*cpu, b, rng, ggml::Type::q4_k, 33, 256, 40, 2e-2);
  test_matmul(*cpu, b, rng, 33, 200, 50, true, 2e-2);
  // The fused (flash) attention: head sizes 32 and 64, lengths across tile edges, grouped heads.
  test_attention(*cpu, b, rng, 1, 70, 2, 1, 64, 1e-2, 1e-2);
  test_attention(*cpu, b, rng, 2, 33, 4, 4, 32, 1e-2, 1e-2);
  if (!quick) test_attention(*cpu, b, rng, 1, 130, 3, 1, 32, 1e-2, 1e-2);
  if (!quick) test_attention(*cpu, b, rng, 2, 200, 2, 1, 64, 1e-2, 1e-2);  // packed rows over several tiles
  test_attention(*cpu, b, rng, 1, 67, 2, 2, 128, 1e-2, 1e-2);  // fused where the GPU has the shared memory
  test_distill(*cpu, b, rng, 5, 300, 320, 2e-3);
  test_weight_copies(*cpu, b, rng);
  test_model(*cpu, b, kLlama, "llama (bf16 matmuls)", quick ? 4 : 8, 2e-2);
  test_model(*cpu, b, kGpt2, "gpt2 (bf16 matmuls)", quick ? 4 : 8, 2e-2);
  test_model(*cpu, b, kLlama32, "llama hd 32 (bf16, fused attention)", quick ? 4 : 8, 2e-2);
  test_model(*cpu, b, kBert, "bert hd 32 (bf16, fused bidirectional attention)", quick ? 4 : 8, 2e-2);
  test_engine(*cpu, b, kLlama32, "llama hd 32 (bf16)", 2e-2);
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
