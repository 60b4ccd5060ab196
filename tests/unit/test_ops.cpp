// Tests of the CPU backend's operations (llmkit/backend.hpp): every forward against a naive
// fp64 reference written here, every backward against central finite differences (in double)
// of the scalar loss L = sum(out * R) for a fixed random R (so dout = R), the accumulate (+=)
// versus overwrite contracts, AdamW against hand-computed steps, and sum_squares.
//
// Shapes are small and deliberately awkward (not multiples of 8 or 64); attention also runs
// with T = 70 so that the backend's 64-query blocks end in a partial block.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/error.hpp"

namespace {

using vd = std::vector<double>;
using vf = std::vector<float>;

// Forward results against the fp64 reference.
constexpr double kFwdRtol = 1e-5;
constexpr double kFwdAtol = 1e-6;
// Analytic fp32 gradients against fp64 central differences.
constexpr double kGradRtol = 1e-3;
constexpr double kGradAtol = 1e-4;
constexpr double kFdEps = 1e-4;
// Value that "overwrites" outputs are prefilled with, to catch a missing overwrite.
constexpr float kGarbage = 1000.0f;

// std::mt19937 with our own conversion to uniform numbers (the standard distributions are not
// specified bit for bit across library implementations).
class Rng {
 public:
  explicit Rng(uint32_t seed) : gen_(seed) {}
  // In [0, 1), 24 random bits: exactly representable as a float.
  double uniform() { return static_cast<double>(gen_() >> 8) * (1.0 / 16777216.0); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(uniform()); }
  int index(int n) { return static_cast<int>(uniform() * n); }
  vf vec(size_t n, float lo = -1.0f, float hi = 1.0f) {
    vf v(n);
    for (auto& x : v) x = uniform(lo, hi);
    return v;
  }

 private:
  std::mt19937 gen_;
};

vd to_double(const vf& v) { return vd(v.begin(), v.end()); }

double dot(const vd& a, const vf& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<size_t> all_indices(size_t n) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  return idx;
}

// Checks |got[i] - want[i]| <= rtol * |want[i]| + atol for each i (NaN fails), reporting the
// number of failures and the worst element.
void expect_close(const float* got, const vd& want, double rtol, double atol, const std::string& what) {
  size_t bad = 0, worst = 0;
  double worst_ratio = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    double tol = rtol * std::fabs(want[i]) + atol;
    double ratio = std::isnan(err) ? 1e300 : err / tol;
    if (!(err <= tol)) ++bad;
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  INFO(what << ": " << bad << " of " << want.size() << " elements out of tolerance (rtol " << rtol
            << ", atol " << atol << "); worst [" << worst << "]: got "
            << (want.empty() ? 0.0 : static_cast<double>(got[worst])) << ", want "
            << (want.empty() ? 0.0 : want[worst]));
  CHECK(bad == 0);
}
void expect_close(const vf& got, const vd& want, double rtol, double atol, const std::string& what) {
  REQUIRE(got.size() == want.size());
  expect_close(got.data(), want, rtol, atol, what);
}

// The same, at the given indices of got only (want[j] belongs to got[idx[j]]).
void expect_close_at(const vf& got, const std::vector<size_t>& idx, const vd& want, double rtol,
                     double atol, const std::string& what) {
  REQUIRE(idx.size() == want.size());
  vf picked(idx.size());
  for (size_t j = 0; j < idx.size(); ++j) picked[j] = got[idx[j]];
  expect_close(picked, want, rtol, atol, what);
}

// got - base, in double (for gradients accumulated onto a prefilled buffer).
vf minus(const vf& got, const vf& base) {
  vf d(got.size());
  for (size_t i = 0; i < got.size(); ++i) d[i] = got[i] - base[i];
  return d;
}

vd times(const vf& v, double s) {
  vd r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = v[i] * s;
  return r;
}

// Central differences of loss() with respect to x[i] for each i in idx; loss reads x.
vd numeric_grad(const std::function<double()>& loss, vd& x, const std::vector<size_t>& idx,
                double eps = kFdEps) {
  vd g(idx.size());
  for (size_t j = 0; j < idx.size(); ++j) {
    const double x0 = x[idx[j]];
    x[idx[j]] = x0 + eps;
    const double lp = loss();
    x[idx[j]] = x0 - eps;
    const double lm = loss();
    x[idx[j]] = x0;
    g[j] = (lp - lm) / (2 * eps);
  }
  return g;
}
vd numeric_grad(const std::function<double()>& loss, vd& x) {
  return numeric_grad(loss, x, all_indices(x.size()));
}

// ---- fp64 references ----

vd ref_embedding(const std::vector<int32_t>& tokens, const vd& wte, const vd* wpe, int B, int T, int C) {
  vd out(static_cast<size_t>(B) * T * C);
  for (int n = 0; n < B * T; ++n)
    for (int c = 0; c < C; ++c)
      out[static_cast<size_t>(n) * C + c] = wte[static_cast<size_t>(tokens[n]) * C + c] +
                                            (wpe ? (*wpe)[static_cast<size_t>(n % T) * C + c] : 0.0);
  return out;
}

vd ref_rmsnorm(const vd& x, const vd& w, int N, int C, double eps, vd* rstd = nullptr) {
  vd out(x.size());
  if (rstd) rstd->assign(N, 0.0);
  for (int n = 0; n < N; ++n) {
    double ss = 0;
    for (int c = 0; c < C; ++c) ss += x[n * C + c] * x[n * C + c];
    const double r = 1.0 / std::sqrt(ss / C + eps);
    for (int c = 0; c < C; ++c) out[n * C + c] = x[n * C + c] * r * w[c];
    if (rstd) (*rstd)[n] = r;
  }
  return out;
}

vd ref_layernorm(const vd& x, const vd& w, const vd& b, int N, int C, double eps, vd* mean = nullptr,
                 vd* rstd = nullptr) {
  vd out(x.size());
  if (mean) mean->assign(N, 0.0);
  if (rstd) rstd->assign(N, 0.0);
  for (int n = 0; n < N; ++n) {
    double m = 0;
    for (int c = 0; c < C; ++c) m += x[n * C + c];
    m /= C;
    double var = 0;
    for (int c = 0; c < C; ++c) var += (x[n * C + c] - m) * (x[n * C + c] - m);
    var /= C;
    const double r = 1.0 / std::sqrt(var + eps);
    for (int c = 0; c < C; ++c) out[n * C + c] = (x[n * C + c] - m) * r * w[c] + b[c];
    if (mean) (*mean)[n] = m;
    if (rstd) (*rstd)[n] = r;
  }
  return out;
}

// out[N, OC] = x[N, C] @ w[OC, C]^T + bias
vd ref_matmul(const vd& x, const vd& w, const vd* bias, int N, int C, int OC) {
  vd out(static_cast<size_t>(N) * OC);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int c = 0; c < C; ++c) s += x[n * C + c] * w[o * C + c];
      out[n * OC + o] = s;
    }
  return out;
}

// Hugging Face Llama: out = x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1), angle of
// pair i at position t = t * theta^(-2i/hd).
vd ref_rope(const vd& x, int B, int T, int H, int hd, double theta) {
  vd out(x.size());
  const int half = hd / 2;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) {
        const size_t row = ((static_cast<size_t>(b) * T + t) * H + h) * hd;
        for (int i = 0; i < half; ++i) {
          const double a = t * std::pow(theta, -2.0 * i / hd);
          const double x1 = x[row + i], x2 = x[row + i + half];
          out[row + i] = x1 * std::cos(a) - x2 * std::sin(a);
          out[row + i + half] = x2 * std::cos(a) + x1 * std::sin(a);
        }
      }
  return out;
}

// Causal attention, q [B,T,NH,hd], k and v [B,T,KV,hd]; head h reads kv head h / (NH/KV);
// lse [B,NH,T].
// Causal: query t sees keys lo..t; bidirectional: lo..the last of its sequence. lo is its
// sequence's start (packed rows: starts, [B, T]) or 0.
vd ref_attention(const vd& q, const vd& k, const vd& v, int B, int T, int NH, int KV, int hd,
                 vd* lse = nullptr, bool causal = true, const std::vector<int32_t>* starts = nullptr) {
  vd out(static_cast<size_t>(B) * T * NH * hd, 0.0);
  if (lse) lse->assign(static_cast<size_t>(B) * NH * T, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const int group = NH / KV;
  vd s(T);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const int g = h / group;
      for (int t = 0; t < T; ++t) {
        auto start = [&](int j) { return starts ? (*starts)[static_cast<size_t>(b) * T + j] : 0; };
        const int lo = start(t);
        int hi = t;
        if (!causal)
          while (hi + 1 < T && start(hi + 1) == lo) ++hi;
        const size_t qi = ((static_cast<size_t>(b) * T + t) * NH + h) * hd;
        double m = -1e300;
        for (int j = lo; j <= hi; ++j) {
          const size_t ki = ((static_cast<size_t>(b) * T + j) * KV + g) * hd;
          double d = 0;
          for (int e = 0; e < hd; ++e) d += q[qi + e] * k[ki + e];
          s[j] = d * scale;
          m = std::max(m, s[j]);
        }
        double sum = 0;
        for (int j = lo; j <= hi; ++j) sum += std::exp(s[j] - m);
        for (int j = lo; j <= hi; ++j) {
          const double p = std::exp(s[j] - m) / sum;
          const size_t vi = ((static_cast<size_t>(b) * T + j) * KV + g) * hd;
          for (int e = 0; e < hd; ++e) out[qi + e] += p * v[vi + e];
        }
        if (lse) (*lse)[(static_cast<size_t>(b) * NH + h) * T + t] = m + std::log(sum);
      }
    }
  return out;
}

vd ref_swiglu(const vd& gate, const vd& up) {
  vd out(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return out;
}

vd ref_gelu(const vd& x, bool erf = false) {
  const double k = std::sqrt(2.0 / M_PI);
  vd out(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    out[i] = erf ? 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0)))
                 : 0.5 * x[i] * (1.0 + std::tanh(k * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
  return out;
}

// logp[n] = log softmax(logits[n, :V])[target]; 0 for targets < 0.
vd ref_crossentropy(const vd& logits, const std::vector<int32_t>& targets, int N, int V, int Vp) {
  vd logp(N, 0.0);
  for (int n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    const double* l = logits.data() + static_cast<size_t>(n) * Vp;
    double m = -1e300;
    for (int j = 0; j < V; ++j) m = std::max(m, l[j]);
    double s = 0;
    for (int j = 0; j < V; ++j) s += std::exp(l[j] - m);
    logp[n] = l[targets[n]] - (m + std::log(s));
  }
  return logp;
}

// A distillation divergence per row (backend.hpp's Divergence), in probabilities rather than
// the backend's log-space: s = softmax(z / tau), t = softmax(zt / tau).
vd ref_divergence(const vd& z, const vd& zt, int N, int V, int Vp, const llmkit::Divergence& d) {
  vd out(N, 0.0);
  const double tau = d.temperature, beta = d.beta;
  for (int n = 0; n < N; ++n) {
    auto softmax = [&](const double* l) {
      vd p(V);
      double m = -1e300, sum = 0;
      for (int j = 0; j < V; ++j) m = std::max(m, l[j] / tau);
      for (int j = 0; j < V; ++j) sum += p[j] = std::exp(l[j] / tau - m);
      for (double& x : p) x /= sum;
      return p;
    };
    const vd s = softmax(z.data() + static_cast<size_t>(n) * Vp), t = softmax(zt.data() + static_cast<size_t>(n) * Vp);
    auto kl = [&](const vd& p, const vd& q) {
      double r = 0;
      for (int j = 0; j < V; ++j) r += p[j] * std::log(p[j] / q[j]);
      return r;
    };
    if (d.kind == llmkit::Divergence::Kind::kl) {
      out[n] = tau * tau * kl(t, s);
    } else if (beta == 0) {
      out[n] = kl(t, s);
    } else if (beta == 1) {
      out[n] = kl(s, t);
    } else {
      vd m(V);
      for (int j = 0; j < V; ++j) m[j] = beta * t[j] + (1 - beta) * s[j];
      out[n] = beta * kl(t, m) + (1 - beta) * kl(s, m);
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("ops: memory and elementwise helpers", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(1);
  const size_t n = 37;
  float* p = be->alloc(n);
  REQUIRE(p != nullptr);
  for (size_t i = 0; i < n; ++i) CHECK(p[i] == 0.0f);

  vf a = rng.vec(n), b = rng.vec(n), back(n);
  be->upload(p, a.data(), n);
  be->download(back.data(), p, n);
  CHECK(back == a);

  vf out(n, kGarbage);
  be->add(out.data(), a.data(), b.data(), n);
  for (size_t i = 0; i < n; ++i) CHECK(out[i] == a[i] + b[i]);

  be->accumulate(p, b.data(), n);
  for (size_t i = 0; i < n; ++i) CHECK(p[i] == a[i] + b[i]);

  be->scale(p, -0.75f, n);
  for (size_t i = 0; i < n; ++i) CHECK(p[i] == (a[i] + b[i]) * -0.75f);

  be->zero(p, n);
  for (size_t i = 0; i < n; ++i) CHECK(p[i] == 0.0f);
  be->release(p);
}

TEST_CASE("ops: embedding", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(2);
  const int B = 2, T = 5, C = 12, vocab = 11, maxT = 7;  // wpe has more rows than T
  const std::vector<int32_t> tokens = {3, 7, 3, 0, 10, 7, 7, 1, 3, 10};  // repeats within and across rows
  const vf wte = rng.vec(static_cast<size_t>(vocab) * C), wpe = rng.vec(static_cast<size_t>(maxT) * C);
  const vf R = rng.vec(static_cast<size_t>(B) * T * C);
  vd wte_d = to_double(wte), wpe_d = to_double(wpe);

  SECTION("forward with wpe") {
    vf out(R.size(), kGarbage);
    be->embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    expect_close(out, ref_embedding(tokens, wte_d, &wpe_d, B, T, C), kFwdRtol, kFwdAtol, "embedding out");
  }
  SECTION("forward without wpe") {
    vf out(R.size(), kGarbage);
    be->embedding_forward(out.data(), tokens.data(), wte.data(), nullptr, B, T, C);
    expect_close(out, ref_embedding(tokens, wte_d, nullptr, B, T, C), kFwdRtol, kFwdAtol, "embedding out");
  }
  SECTION("backward against finite differences") {
    vf dwte(wte.size(), 0.0f), dwpe(wpe.size(), 0.0f);
    be->embedding_backward(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, T, C);
    auto loss = [&] { return dot(ref_embedding(tokens, wte_d, &wpe_d, B, T, C), R); };
    expect_close(dwte, numeric_grad(loss, wte_d), kGradRtol, kGradAtol, "dwte");
    expect_close(dwpe, numeric_grad(loss, wpe_d), kGradRtol, kGradAtol, "dwpe");  // rows >= T stay 0

    // Without dwpe: the same dwte.
    vf dwte2(wte.size(), 0.0f);
    be->embedding_backward(dwte2.data(), nullptr, R.data(), tokens.data(), B, T, C);
    expect_close(dwte2, to_double(dwte), 0.0, 0.0, "dwte without dwpe");
  }
  SECTION("backward accumulates") {
    vf dwte(wte.size(), 0.0f), dwpe(wpe.size(), 0.0f);
    be->embedding_backward(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, T, C);
    const vf once_te = dwte, once_pe = dwpe;
    be->embedding_backward(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, T, C);
    expect_close(dwte, times(once_te, 2.0), 1e-6, 1e-7, "dwte after two calls");
    expect_close(dwpe, times(once_pe, 2.0), 1e-6, 1e-7, "dwpe after two calls");
  }
}

TEST_CASE("ops: rmsnorm", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(3);
  const int N = 10, C = 12;
  const float eps = 1e-5f;
  const vf x = rng.vec(static_cast<size_t>(N) * C, -2.0f, 2.0f), w = rng.vec(C, 0.5f, 1.5f);
  const vf R = rng.vec(x.size());
  vd x_d = to_double(x), w_d = to_double(w);

  vf out(x.size(), kGarbage), rstd(N, kGarbage);
  be->rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
  vd rstd_ref;
  const vd out_ref = ref_rmsnorm(x_d, w_d, N, C, eps, &rstd_ref);
  expect_close(out, out_ref, kFwdRtol, kFwdAtol, "rmsnorm out");
  expect_close(rstd, rstd_ref, kFwdRtol, kFwdAtol, "rmsnorm rstd");

  SECTION("backward against finite differences") {
    const vf base = rng.vec(x.size());  // dinp accumulates onto this
    vf dinp = base, dw(C, 0.0f);
    be->rmsnorm_backward(dinp.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
    auto loss = [&] { return dot(ref_rmsnorm(x_d, w_d, N, C, eps), R); };
    expect_close(minus(dinp, base), numeric_grad(loss, x_d), kGradRtol, kGradAtol, "rmsnorm dinp");
    expect_close(dw, numeric_grad(loss, w_d), kGradRtol, kGradAtol, "rmsnorm dw");
  }
  SECTION("backward accumulates") {
    vf dinp(x.size(), 0.0f), dw(C, 0.0f);
    be->rmsnorm_backward(dinp.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
    const vf once_x = dinp, once_w = dw;
    be->rmsnorm_backward(dinp.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
    expect_close(dw, times(once_w, 2.0), 1e-6, 1e-7, "rmsnorm dw after two calls");
    expect_close(dinp, times(once_x, 2.0), 1e-6, 1e-7, "rmsnorm dinp after two calls");
  }
}

TEST_CASE("ops: layernorm", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(4);
  const int N = 10, C = 12;
  const float eps = 1e-5f;
  vf x = rng.vec(static_cast<size_t>(N) * C, -2.0f, 2.0f);
  for (int n = 0; n < N; ++n)  // rows with nonzero means
    for (int c = 0; c < C; ++c) x[static_cast<size_t>(n) * C + c] += 0.3f * static_cast<float>(n - 4);
  const vf w = rng.vec(C, 0.5f, 1.5f), b = rng.vec(C), R = rng.vec(x.size());
  vd x_d = to_double(x), w_d = to_double(w), b_d = to_double(b);

  vf out(x.size(), kGarbage), mean(N, kGarbage), rstd(N, kGarbage);
  be->layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, eps);
  vd mean_ref, rstd_ref;
  const vd out_ref = ref_layernorm(x_d, w_d, b_d, N, C, eps, &mean_ref, &rstd_ref);
  expect_close(out, out_ref, kFwdRtol, kFwdAtol, "layernorm out");
  expect_close(mean, mean_ref, kFwdRtol, kFwdAtol, "layernorm mean");
  expect_close(rstd, rstd_ref, kFwdRtol, kFwdAtol, "layernorm rstd");

  SECTION("backward against finite differences") {
    const vf base = rng.vec(x.size());
    vf dinp = base, dw(C, 0.0f), db(C, 0.0f);
    be->layernorm_backward(dinp.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(),
                           rstd.data(), N, C);
    auto loss = [&] { return dot(ref_layernorm(x_d, w_d, b_d, N, C, eps), R); };
    expect_close(minus(dinp, base), numeric_grad(loss, x_d), kGradRtol, kGradAtol, "layernorm dinp");
    expect_close(dw, numeric_grad(loss, w_d), kGradRtol, kGradAtol, "layernorm dw");
    expect_close(db, numeric_grad(loss, b_d), kGradRtol, kGradAtol, "layernorm db");
  }
  SECTION("backward accumulates") {
    vf dinp(x.size(), 0.0f), dw(C, 0.0f), db(C, 0.0f);
    be->layernorm_backward(dinp.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(),
                           rstd.data(), N, C);
    const vf once_x = dinp, once_w = dw, once_b = db;
    be->layernorm_backward(dinp.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(),
                           rstd.data(), N, C);
    expect_close(dw, times(once_w, 2.0), 1e-6, 1e-7, "layernorm dw after two calls");
    expect_close(db, times(once_b, 2.0), 1e-6, 1e-7, "layernorm db after two calls");
    expect_close(dinp, times(once_x, 2.0), 1e-6, 1e-7, "layernorm dinp after two calls");
  }
}

TEST_CASE("ops: matmul", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(5);
  const int N = 10, C = 12, OC = 7;
  const vf x = rng.vec(static_cast<size_t>(N) * C), w = rng.vec(static_cast<size_t>(OC) * C),
           bias = rng.vec(OC), R = rng.vec(static_cast<size_t>(N) * OC);
  vd x_d = to_double(x), w_d = to_double(w), bias_d = to_double(bias);

  SECTION("forward with bias") {
    vf out(R.size(), kGarbage);
    be->matmul_forward(out.data(), x.data(), w.data(), bias.data(), N, C, OC);
    expect_close(out, ref_matmul(x_d, w_d, &bias_d, N, C, OC), kFwdRtol, kFwdAtol, "matmul out (bias)");
  }
  SECTION("forward without bias") {
    vf out(R.size(), kGarbage);
    be->matmul_forward(out.data(), x.data(), w.data(), nullptr, N, C, OC);
    expect_close(out, ref_matmul(x_d, w_d, nullptr, N, C, OC), kFwdRtol, kFwdAtol, "matmul out");
  }
  SECTION("backward against finite differences") {
    const vf base = rng.vec(x.size());
    vf dinp = base, dw(w.size(), 0.0f), dbias(OC, 0.0f);
    be->matmul_backward(dinp.data(), dw.data(), dbias.data(), R.data(), x.data(), w.data(), N, C, OC);
    auto loss = [&] { return dot(ref_matmul(x_d, w_d, &bias_d, N, C, OC), R); };
    expect_close(minus(dinp, base), numeric_grad(loss, x_d), kGradRtol, kGradAtol, "matmul dinp");
    expect_close(dw, numeric_grad(loss, w_d), kGradRtol, kGradAtol, "matmul dw");
    expect_close(dbias, numeric_grad(loss, bias_d), kGradRtol, kGradAtol, "matmul dbias");
  }
  SECTION("backward accumulates") {
    vf dinp(x.size(), 0.0f), dw(w.size(), 0.0f), dbias(OC, 0.0f);
    be->matmul_backward(dinp.data(), dw.data(), dbias.data(), R.data(), x.data(), w.data(), N, C, OC);
    const vf once_x = dinp, once_w = dw, once_b = dbias;
    be->matmul_backward(dinp.data(), dw.data(), dbias.data(), R.data(), x.data(), w.data(), N, C, OC);
    expect_close(dw, times(once_w, 2.0), 1e-6, 1e-7, "matmul dw after two calls");
    expect_close(dbias, times(once_b, 2.0), 1e-6, 1e-7, "matmul dbias after two calls");
    expect_close(dinp, times(once_x, 2.0), 1e-6, 1e-7, "matmul dinp after two calls");
  }
  SECTION("null gradient pointers are skipped") {
    vf dinp(x.size(), 0.0f), dw(w.size(), 0.0f), dbias(OC, 0.0f);
    be->matmul_backward(dinp.data(), dw.data(), dbias.data(), R.data(), x.data(), w.data(), N, C, OC);

    vf only_dinp(x.size(), 0.0f);  // frozen weight and bias
    be->matmul_backward(only_dinp.data(), nullptr, nullptr, R.data(), x.data(), w.data(), N, C, OC);
    expect_close(only_dinp, to_double(dinp), 1e-6, 1e-7, "dinp alone");

    vf only_dw(w.size(), 0.0f);  // first layer: no input gradient
    be->matmul_backward(nullptr, only_dw.data(), nullptr, R.data(), x.data(), w.data(), N, C, OC);
    expect_close(only_dw, to_double(dw), 1e-6, 1e-7, "dw alone");

    vf only_db(OC, 0.0f);
    be->matmul_backward(nullptr, nullptr, only_db.data(), R.data(), x.data(), w.data(), N, C, OC);
    expect_close(only_db, to_double(dbias), 1e-6, 1e-7, "dbias alone");

    be->matmul_backward(nullptr, nullptr, nullptr, R.data(), x.data(), w.data(), N, C, OC);  // no-op
    SUCCEED();
  }
}

TEST_CASE("ops: rope", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(6);
  const int B = 2, H = 3;
  const float theta = 10000.0f;
  for (int T : {5, 70}) {
    for (int hd : {6, 10}) {
      DYNAMIC_SECTION("T=" << T << " hd=" << hd) {
        const size_t n = static_cast<size_t>(B) * T * H * hd;
        const vf x = rng.vec(n), y = rng.vec(n);
        vd x_d = to_double(x);

        vf rx = x;
        be->rope_forward(rx.data(), B, T, H, hd, theta);
        expect_close(rx, ref_rope(x_d, B, T, H, hd, theta), kFwdRtol, 1e-5, "rope forward");

        // Backward is the transpose of forward: <rope(x), y> == <x, rope_backward(y)>.
        vf ry = y;
        be->rope_backward(ry.data(), B, T, H, hd, theta);
        double lhs = 0, rhs = 0, mag = 0;
        for (size_t i = 0; i < n; ++i) {
          lhs += static_cast<double>(rx[i]) * y[i];
          rhs += static_cast<double>(x[i]) * ry[i];
          mag += std::fabs(static_cast<double>(x[i]) * y[i]);
        }
        INFO("<rope(x), y> = " << lhs << ", <x, rope_backward(y)> = " << rhs);
        CHECK(std::fabs(lhs - rhs) <= 1e-5 * mag);

        // And the gradient of sum(rope(x) * y) with respect to x.
        if (T == 5) {
          auto loss = [&] { return dot(ref_rope(x_d, B, T, H, hd, theta), y); };
          expect_close(ry, numeric_grad(loss, x_d), kGradRtol, kGradAtol, "rope dx");
        }

        // A rotation: backward undoes forward.
        be->rope_backward(rx.data(), B, T, H, hd, theta);
        expect_close(rx, x_d, 0.0, 1e-5, "rope_backward(rope_forward(x))");
      }
    }
  }
}

TEST_CASE("ops: attention forward", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(7);
  const int B = 2, NH = 4, hd = 6;
  for (int T : {5, 70}) {
    for (int KV : {1, 2, 4}) {
      DYNAMIC_SECTION("T=" << T << " KV=" << KV) {
        const vf q = rng.vec(static_cast<size_t>(B) * T * NH * hd, -1.5f, 1.5f);
        const vf k = rng.vec(static_cast<size_t>(B) * T * KV * hd, -1.5f, 1.5f);
        const vf v = rng.vec(static_cast<size_t>(B) * T * KV * hd);
        vf out(q.size(), kGarbage), lse(static_cast<size_t>(B) * NH * T, kGarbage);
        be->attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, T, NH, KV, hd);
        vd lse_ref;
        const vd out_ref = ref_attention(to_double(q), to_double(k), to_double(v), B, T, NH, KV, hd, &lse_ref);
        expect_close(out, out_ref, kFwdRtol, kFwdAtol, "attention out");
        expect_close(lse, lse_ref, kFwdRtol, kFwdAtol, "attention lse");
      }
    }
  }
}

TEST_CASE("ops: attention backward against finite differences", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(8);
  const int B = 2, NH = 4, hd = 6;
  // T = 5: every element of dq, dk, dv. T = 70: a partial second 64-query block; a sample of
  // the elements, half of them at positions >= 64.
  for (int T : {5, 70}) {
    for (int KV : {1, 2, 4}) {
      if (T == 70 && KV == 4) continue;  // keep the run short: KV 1 and 2 cover the grouping
      DYNAMIC_SECTION("T=" << T << " KV=" << KV) {
        const size_t nq = static_cast<size_t>(B) * T * NH * hd, nk = static_cast<size_t>(B) * T * KV * hd;
        const vf q = rng.vec(nq, -1.5f, 1.5f), k = rng.vec(nk, -1.5f, 1.5f), v = rng.vec(nk), R = rng.vec(nq);
        vd q_d = to_double(q), k_d = to_double(k), v_d = to_double(v);

        vf out(nq), lse(static_cast<size_t>(B) * NH * T);
        be->attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, T, NH, KV, hd);
        vf dq(nq, kGarbage), dk(nk, kGarbage), dv(nk, kGarbage);  // overwritten
        be->attention_backward(dq.data(), dk.data(), dv.data(), R.data(), q.data(), k.data(), v.data(),
                               out.data(), lse.data(), B, T, NH, KV, hd);

        auto sample = [&](size_t n, int heads) {
          if (T < 64) return all_indices(n);
          std::vector<size_t> idx;
          const size_t row = static_cast<size_t>(heads) * hd;  // floats per position
          for (int j = 0; j < 40; ++j) {  // anywhere
            idx.push_back(static_cast<size_t>(rng.index(static_cast<int>(n))));
          }
          for (int j = 0; j < 40; ++j) {  // in the partial block (t >= 64) of either batch row
            const int b = rng.index(B), t = 64 + rng.index(T - 64);
            idx.push_back((static_cast<size_t>(b) * T + t) * row + static_cast<size_t>(rng.index(static_cast<int>(row))));
          }
          return idx;
        };
        const auto iq = sample(nq, NH), ik = sample(nk, KV), iv = sample(nk, KV);
        auto loss = [&] { return dot(ref_attention(q_d, k_d, v_d, B, T, NH, KV, hd), R); };
        expect_close_at(dq, iq, numeric_grad(loss, q_d, iq), kGradRtol, kGradAtol, "attention dq");
        expect_close_at(dk, ik, numeric_grad(loss, k_d, ik), kGradRtol, kGradAtol, "attention dk");
        expect_close_at(dv, iv, numeric_grad(loss, v_d, iv), kGradRtol, kGradAtol, "attention dv");

        // Overwrite, not accumulate: a second call on the same buffers gives the same values.
        const vf dq1 = dq, dk1 = dk, dv1 = dv;
        be->attention_backward(dq.data(), dk.data(), dv.data(), R.data(), q.data(), k.data(), v.data(),
                               out.data(), lse.data(), B, T, NH, KV, hd);
        expect_close(dq, to_double(dq1), 1e-6, 1e-7, "dq after a second call");
        expect_close(dk, to_double(dk1), 1e-6, 1e-7, "dk after a second call");
        expect_close(dv, to_double(dv1), 1e-6, 1e-7, "dv after a second call");
      }
    }
  }
}

TEST_CASE("ops: bidirectional attention, whole rows and packed ones, against the reference and finite differences", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(17);
  const int B = 2, NH = 4, KV = 2, hd = 6;
  // T = 70: two query blocks, a sequence across their edge; rows with and without packing.
  for (int T : {5, 70}) {
    for (bool packed : {false, true}) {
      DYNAMIC_SECTION("T=" << T << (packed ? " packed" : "")) {
        std::vector<int32_t> starts(static_cast<size_t>(B) * T);
        for (int b = 0; b < B; ++b)
          for (int t = 0; t < T; ++t) {
            // Row 0: sequences of 3 (T=5) or 40 then 30 tokens; row 1: 2 then the rest.
            const int cut = b == 0 ? (T == 5 ? 3 : 40) : 2;
            starts[static_cast<size_t>(b) * T + t] = packed ? (t < cut ? 0 : cut) : 0;
          }
        CHECK(llmkit::sequence_ends(packed ? starts.data() : nullptr, B, T)[0] == (packed ? (T == 5 ? 3 : 40) : T));
        const int32_t* st = packed ? starts.data() : nullptr;
        const size_t nq = static_cast<size_t>(B) * T * NH * hd, nk = static_cast<size_t>(B) * T * KV * hd;
        const vf q = rng.vec(nq, -1.5f, 1.5f), k = rng.vec(nk, -1.5f, 1.5f), v = rng.vec(nk), R = rng.vec(nq);
        vd q_d = to_double(q), k_d = to_double(k), v_d = to_double(v);
        vf out(nq, kGarbage), lse(static_cast<size_t>(B) * NH * T, kGarbage);
        be->attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, T, NH, KV, hd, st, false);
        vd lse_ref;
        const std::vector<int32_t>* sp = packed ? &starts : nullptr;
        expect_close(out, ref_attention(q_d, k_d, v_d, B, T, NH, KV, hd, &lse_ref, false, sp), kFwdRtol, kFwdAtol, "out");
        expect_close(lse, lse_ref, kFwdRtol, kFwdAtol, "lse");
        // Position 0's output depends on the later keys: not what causal attention gives.
        vf causal(nq);
        be->attention_forward(causal.data(), lse.data(), q.data(), k.data(), v.data(), B, T, NH, KV, hd, st, true);
        CHECK(std::fabs(causal[0] - out[0]) > 1e-4);
        be->attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, T, NH, KV, hd, st, false);

        vf dq(nq, kGarbage), dk(nk, kGarbage), dv(nk, kGarbage);
        be->attention_backward(dq.data(), dk.data(), dv.data(), R.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), B,
                               T, NH, KV, hd, st, false);
        auto sample = [&](size_t n) {
          if (T < 64) return all_indices(n);
          std::vector<size_t> idx;
          for (int j = 0; j < 60; ++j) idx.push_back(static_cast<size_t>(rng.index(static_cast<int>(n))));
          return idx;
        };
        const auto iq = sample(nq), ik = sample(nk), iv = sample(nk);
        auto loss = [&] { return dot(ref_attention(q_d, k_d, v_d, B, T, NH, KV, hd, nullptr, false, sp), R); };
        expect_close_at(dq, iq, numeric_grad(loss, q_d, iq), kGradRtol, kGradAtol, "dq");
        expect_close_at(dk, ik, numeric_grad(loss, k_d, ik), kGradRtol, kGradAtol, "dk");
        expect_close_at(dv, iv, numeric_grad(loss, v_d, iv), kGradRtol, kGradAtol, "dv");
      }
    }
  }
}

TEST_CASE("ops: attention rejects heads that are not a multiple of the kv heads", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  const int B = 1, T = 3, NH = 4, KV = 3, hd = 2;
  vf q(static_cast<size_t>(B) * T * NH * hd, 0.1f), kv(static_cast<size_t>(B) * T * KV * hd, 0.1f);
  vf out(q.size()), lse(static_cast<size_t>(B) * NH * T);
  CHECK_THROWS_AS(be->attention_forward(out.data(), lse.data(), q.data(), kv.data(), kv.data(), B, T, NH, KV, hd),
                  llmkit::Error);
}

TEST_CASE("ops: swiglu", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(9);
  const size_t n = 37;
  const vf gate = rng.vec(n, -6.0f, 6.0f), up = rng.vec(n, -2.0f, 2.0f), R = rng.vec(n);
  vd gate_d = to_double(gate), up_d = to_double(up);

  vf out(n, kGarbage);
  be->swiglu_forward(out.data(), gate.data(), up.data(), n);
  expect_close(out, ref_swiglu(gate_d, up_d), kFwdRtol, kFwdAtol, "swiglu out");

  vf dgate(n, kGarbage), dup(n, kGarbage);  // overwritten
  be->swiglu_backward(dgate.data(), dup.data(), R.data(), gate.data(), up.data(), n);
  auto loss = [&] { return dot(ref_swiglu(gate_d, up_d), R); };
  expect_close(dgate, numeric_grad(loss, gate_d), kGradRtol, kGradAtol, "swiglu dgate");
  expect_close(dup, numeric_grad(loss, up_d), kGradRtol, kGradAtol, "swiglu dup");
}

TEST_CASE("ops: gelu", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(10);
  const size_t n = 37;
  const vf x = rng.vec(n, -5.0f, 5.0f), R = rng.vec(n);
  vd x_d = to_double(x);

  vf out(n, kGarbage);
  be->gelu_forward(out.data(), x.data(), n);
  expect_close(out, ref_gelu(x_d), kFwdRtol, kFwdAtol, "gelu out");

  vf dinp(n, kGarbage);  // overwritten
  be->gelu_backward(dinp.data(), R.data(), x.data(), n);
  auto loss = [&] { return dot(ref_gelu(x_d), R); };
  expect_close(dinp, numeric_grad(loss, x_d), kGradRtol, kGradAtol, "gelu dinp");

  // BERT's exact GELU, x Phi(x).
  be->gelu_forward(out.data(), x.data(), n, true);
  expect_close(out, ref_gelu(x_d, true), kFwdRtol, kFwdAtol, "gelu (erf) out");
  be->gelu_backward(dinp.data(), R.data(), x.data(), n, true);
  auto loss_erf = [&] { return dot(ref_gelu(x_d, true), R); };
  expect_close(dinp, numeric_grad(loss_erf, x_d), kGradRtol, kGradAtol, "gelu (erf) dinp");
}

TEST_CASE("ops: tanh", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(12);
  const size_t n = 37;
  const vf x = rng.vec(n, -4.0f, 4.0f), R = rng.vec(n);
  vd x_d = to_double(x);
  auto ref = [&] {
    vd y(n);
    for (size_t i = 0; i < n; ++i) y[i] = std::tanh(x_d[i]);
    return y;
  };
  vf out(n, kGarbage), dinp(n, kGarbage);
  be->tanh_forward(out.data(), x.data(), n);
  expect_close(out, ref(), kFwdRtol, kFwdAtol, "tanh out");
  be->tanh_backward(dinp.data(), R.data(), out.data(), n);
  auto loss = [&] { return dot(ref(), R); };
  expect_close(dinp, numeric_grad(loss, x_d), kGradRtol, kGradAtol, "tanh dinp");
}

TEST_CASE("ops: crossentropy", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(11);
  const int N = 10, V = 11, Vp = 16;
  const std::vector<int32_t> targets = {2, -1, 10, 0, 5, 5, -1, 7, 10, 1};
  vf logits = rng.vec(static_cast<size_t>(N) * Vp, -3.0f, 3.0f);
  for (int n = 0; n < N; ++n)  // padding columns hold large values that must not be read
    for (int j = V; j < Vp; ++j) logits[static_cast<size_t>(n) * Vp + j] = 50.0f;
  vf dlogp = rng.vec(N);
  dlogp[4] = 0.0f;  // a counted row with a zero coefficient (an SFT prompt token)
  vd logits_d = to_double(logits);

  vf logp(N, kGarbage);
  be->crossentropy_forward(logp.data(), logits.data(), targets.data(), N, V, Vp);
  expect_close(logp, ref_crossentropy(logits_d, targets, N, V, Vp), kFwdRtol, kFwdAtol, "logp");
  CHECK(logp[1] == 0.0f);
  CHECK(logp[6] == 0.0f);

  vf dlogits(logits.size(), kGarbage);  // overwritten
  be->crossentropy_backward(dlogits.data(), logits.data(), targets.data(), dlogp.data(), N, V, Vp);
  auto loss = [&] { return dot(ref_crossentropy(logits_d, targets, N, V, Vp), dlogp); };
  expect_close(dlogits, numeric_grad(loss, logits_d), kGradRtol, kGradAtol, "dlogits");
  for (int n = 0; n < N; ++n)
    for (int j = 0; j < Vp; ++j) {
      const float d = dlogits[static_cast<size_t>(n) * Vp + j];
      if (j >= V || targets[n] < 0 || dlogp[n] == 0.0f) {
        INFO("row " << n << " column " << j);
        CHECK(d == 0.0f);
      }
    }

  SECTION("in place (dlogits == logits)") {
    vf buf = logits;
    be->crossentropy_backward(buf.data(), buf.data(), targets.data(), dlogp.data(), N, V, Vp);
    expect_close(buf, to_double(dlogits), 1e-6, 1e-7, "in-place dlogits");
  }
}

// Tensor parallel's vocabulary shards: two halves of the logits, each with its shard's targets
// (-1 where the target is in the other half), give through logsumexp and a log-sum-exp over
// both what the whole row gives: the same logp and the same d(logits), column for column.
TEST_CASE("ops: crossentropy over vocabulary shards", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(13);
  const int N = 6, V = 21, Vp = 32, half = Vp / 2;  // shard 1 holds columns 16..20 and padding
  const std::vector<int32_t> targets = {2, 17, -1, 20, 15, 16};
  vf logits = rng.vec(static_cast<size_t>(N) * Vp, -3.0f, 3.0f);
  const vf dlogp = rng.vec(N);
  vf logp(N), whole(logits.size());
  be->crossentropy_forward(logp.data(), logits.data(), targets.data(), N, V, Vp);
  be->crossentropy_backward(whole.data(), logits.data(), targets.data(), dlogp.data(), N, V, Vp);
  vf lse_total(N), shard_logp(N * 2);
  std::vector<vf> shards(2, vf(static_cast<size_t>(N) * half)), lse(2, vf(N));
  std::vector<std::vector<int32_t>> local(2, std::vector<int32_t>(N));
  for (int s = 0; s < 2; ++s) {
    for (int n = 0; n < N; ++n) {
      std::copy_n(logits.begin() + n * Vp + s * half, half, shards[s].begin() + n * half);
      const int t = targets[n] - s * half;
      local[s][n] = targets[n] >= 0 && t >= 0 && t < half ? t : -1;
    }
    const int valid = std::clamp(V - s * half, 0, half);
    be->logsumexp(lse[s].data(), shards[s].data(), N, valid, half);
    be->crossentropy_forward(shard_logp.data() + s * N, shards[s].data(), local[s].data(), N, valid, half);
  }
  for (int n = 0; n < N; ++n) {
    const double hi = std::max(lse[0][n], lse[1][n]);
    lse_total[n] = static_cast<float>(hi + std::log(std::exp(lse[0][n] - hi) + std::exp(lse[1][n] - hi)));
    if (targets[n] < 0) continue;
    const int s = targets[n] >= half;  // the shard that holds the target: its logit from logp + its lse
    CHECK(shard_logp[s * N + n] + lse[s][n] - lse_total[n] == Approx(logp[n]).epsilon(1e-5));
  }
  vf d(N);
  for (int n = 0; n < N; ++n) d[n] = targets[n] < 0 ? 0.0f : dlogp[n];  // ignored rows carry 0
  for (int s = 0; s < 2; ++s) {
    const int valid = std::clamp(V - s * half, 0, half);
    vf grad(shards[s].size(), kGarbage);
    be->crossentropy_backward(grad.data(), shards[s].data(), local[s].data(), d.data(), N, valid, half, lse_total.data());
    for (int n = 0; n < N; ++n)
      for (int j = 0; j < half; ++j) {
        INFO("shard " << s << " row " << n << " column " << j);
        CHECK(grad[n * half + j] == Approx(whole[n * Vp + s * half + j]).margin(1e-6));
      }
  }
  vf none(N);
  be->logsumexp(none.data(), shards[1].data(), N, 0, half);  // a shard of padding only
  CHECK(std::isinf(none[0]));
  CHECK(none[0] < 0);
  // The greedy token of each shard with its logit, which the ranks compare.
  std::vector<int32_t> best(N);
  vf value(N);
  be->argmax(best.data(), shards[0].data(), N, half, half, value.data());
  for (int n = 0; n < N; ++n) {
    CHECK(value[n] == *std::max_element(shards[0].begin() + n * half, shards[0].begin() + (n + 1) * half));
    CHECK(value[n] == shards[0][n * half + best[n]]);
  }
  be->argmax(best.data(), shards[1].data(), N, 0, half, value.data());
  CHECK(std::isinf(value[0]));
}

TEST_CASE("ops: embedding rows of another vocabulary shard", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(14);
  const int B = 1, T = 4, C = 8;
  const std::vector<int32_t> tokens = {1, -1, 0, -1};
  const vf wte = rng.vec(2 * C), wpe = rng.vec(T * C), dout = rng.vec(T * C);
  vf out(T * C, kGarbage);
  be->embedding_forward(out.data(), tokens.data(), wte.data(), nullptr, B, T, C);
  for (int c = 0; c < C; ++c) {
    CHECK(out[1 * C + c] == 0.0f);
    CHECK(out[0 * C + c] == wte[C + c]);
  }
  be->embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  for (int c = 0; c < C; ++c) CHECK(out[3 * C + c] == wpe[3 * C + c]);  // the position only
  vf dwte(2 * C, 0.0f), dwpe(T * C, 0.0f);
  be->embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
  for (int c = 0; c < C; ++c) {
    CHECK(dwte[c] == dout[2 * C + c]);  // token 0 at position 2 only
    CHECK(dwte[C + c] == dout[c]);
    CHECK(dwpe[3 * C + c] == dout[3 * C + c]);  // every position gets its gradient
  }
}

TEST_CASE("ops: distill_backward against finite differences", "[ops]") {
  using llmkit::Divergence;
  auto be = llmkit::make_cpu_backend();
  Rng rng(12);
  const int N = 8, V = 13, Vp = 16;
  const std::vector<int32_t> targets = {2, -1, 12, 0, 5, 5, -1, 7};
  vf logits = rng.vec(static_cast<size_t>(N) * Vp, -3.0f, 3.0f), teacher = rng.vec(static_cast<size_t>(N) * Vp, -3.0f, 3.0f);
  for (int n = 0; n < N; ++n)  // padding columns hold large values that must not be read
    for (int j = V; j < Vp; ++j) logits[static_cast<size_t>(n) * Vp + j] = teacher[static_cast<size_t>(n) * Vp + j] = 50.0f;
  vf dlogp = rng.vec(N), weight = rng.vec(N, 0.1f, 1.0f);
  dlogp[3] = 0.0f;   // a row with a divergence only
  weight[4] = 0.0f;  // a row with the cross-entropy only
  weight[1] = 0.0f;  // an ignored row: nothing at all
  weight[6] = 0.0f;
  vd z = to_double(logits);
  const vd zt = to_double(teacher);

  struct Case {
    const char* name;
    Divergence d;
  };
  const std::vector<Case> cases = {
      {"kl, temperature 1", {Divergence::Kind::kl, 1.0f, 0.5f}},
      {"kl, temperature 2", {Divergence::Kind::kl, 2.0f, 0.5f}},
      {"jsd, beta 0.5", {Divergence::Kind::jsd, 1.0f, 0.5f}},
      {"jsd, beta 0.1, temperature 0.7", {Divergence::Kind::jsd, 0.7f, 0.1f}},
      {"jsd, beta 0 (forward KL)", {Divergence::Kind::jsd, 1.0f, 0.0f}},
      {"jsd, beta 1 (reverse KL)", {Divergence::Kind::jsd, 1.5f, 1.0f}},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    vf dlogits(logits.size(), kGarbage), kd_loss(N, kGarbage);
    be->distill_backward(dlogits.data(), kd_loss.data(), logits.data(), teacher.data(), targets.data(), dlogp.data(), weight.data(), N,
                         V, Vp, c.d);
    vd want = ref_divergence(z, zt, N, V, Vp, c.d);
    for (int n = 0; n < N; ++n)
      if (weight[n] == 0.0f) want[n] = 0.0;
    expect_close(kd_loss, want, 1e-5, 1e-6, "kd_loss");
    auto loss = [&] {
      const vd div = ref_divergence(z, zt, N, V, Vp, c.d);
      double l = dot(ref_crossentropy(z, targets, N, V, Vp), dlogp);
      for (int n = 0; n < N; ++n) l += div[n] * weight[n];
      return l;
    };
    expect_close(dlogits, numeric_grad(loss, z), kGradRtol, kGradAtol, "dlogits");
    for (int n = 0; n < N; ++n)
      for (int j = V; j < Vp; ++j) CHECK(dlogits[static_cast<size_t>(n) * Vp + j] == 0.0f);
    for (int j = 0; j < Vp; ++j) CHECK(dlogits[static_cast<size_t>(1) * Vp + j] == 0.0f);

    // In place, as the model calls it.
    vf buf = logits, kd2(N);
    be->distill_backward(buf.data(), kd2.data(), buf.data(), teacher.data(), targets.data(), dlogp.data(), weight.data(), N, V, Vp, c.d);
    expect_close(buf, to_double(dlogits), 1e-6, 1e-7, "in-place dlogits");

    // The teacher is the student: the divergence and its gradient are 0, what is left is the
    // cross-entropy's gradient.
    vf same(logits.size()), ce(logits.size()), kd0(N, kGarbage);
    be->distill_backward(same.data(), kd0.data(), logits.data(), logits.data(), targets.data(), dlogp.data(), weight.data(), N, V, Vp,
                         c.d);
    be->crossentropy_backward(ce.data(), logits.data(), targets.data(), dlogp.data(), N, V, Vp);
    expect_close(kd0, vd(N, 0.0), 0, 1e-6, "kd_loss, teacher = student");
    expect_close(same, to_double(ce), 1e-5, 1e-6, "dlogits, teacher = student");
  }
}

TEST_CASE("ops: adamw", "[ops]") {
  auto be = llmkit::make_cpu_backend();

  SECTION("one value, two steps, by hand") {
    // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.1, p = 1.
    // t=1, g=0.5:   m = 0.05, v = 0.00025, m^ = 0.5, v^ = 0.25,
    //               p = 1 - 0.1 * (0.5 / (0.5 + 1e-8) + 0.1 * 1) = 0.890000002
    // t=2, g=-0.25: m = 0.9*0.05 - 0.025 = 0.02, v = 0.999*0.00025 + 0.001*0.0625 = 0.00031225,
    //               m^ = 0.02 / 0.19, v^ = 0.00031225 / 0.001999,
    //               p = 0.890000002 - 0.1 * (m^ / (sqrt(v^) + 1e-8) + 0.1 * 0.890000002) = 0.85446630
    float p = 1.0f, m = 0.0f, v = 0.0f, g = 0.5f;
    be->adamw(&p, &g, &m, &v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
    // 1 - 0.999f is 0.00099998713 in float: v carries that 1.3e-5 relative rounding (and so
    // does the bias correction 1 - 0.999f^t, so that v^ and p do not).
    CHECK(m == Approx(0.05).epsilon(1e-6));
    CHECK(v == Approx(0.00025).epsilon(1e-4));
    CHECK(p == Approx(0.890000002).epsilon(1e-6));
    g = -0.25f;
    be->adamw(&p, &g, &m, &v, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f, 2);
    CHECK(m == Approx(0.02).epsilon(1e-5));
    CHECK(v == Approx(0.00031225).epsilon(1e-4));
    CHECK(p == Approx(0.8544662987).epsilon(1e-6));
  }

  SECTION("vector, two steps, against a double loop") {
    Rng rng(12);
    const size_t n = 29;
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
    vf p = rng.vec(n), m(n, 0.0f), v(n, 0.0f);
    vd pr = to_double(p), mr(n, 0.0), vr(n, 0.0);
    for (int64_t t = 1; t <= 2; ++t) {
      const vf g = rng.vec(n, -0.1f, 0.1f);
      be->adamw(p.data(), g.data(), m.data(), v.data(), n, static_cast<float>(lr), static_cast<float>(b1),
                static_cast<float>(b2), static_cast<float>(eps), static_cast<float>(wd), t);
      for (size_t i = 0; i < n; ++i) {
        // Constants rounded to float as the backend receives them.
        const double B1 = static_cast<float>(b1), B2 = static_cast<float>(b2);
        const double LR = static_cast<float>(lr), EPS = static_cast<float>(eps), WD = static_cast<float>(wd);
        mr[i] = B1 * mr[i] + (1 - B1) * g[i];
        vr[i] = B2 * vr[i] + (1 - B2) * g[i] * g[i];
        const double mh = mr[i] / (1 - std::pow(B1, t)), vh = vr[i] / (1 - std::pow(B2, t));
        pr[i] -= LR * (mh / (std::sqrt(vh) + EPS) + WD * pr[i]);  // decoupled decay on the old p
      }
      INFO("step " << t);
      expect_close(m, mr, 1e-5, 1e-9, "adamw m");
      expect_close(v, vr, 1e-5, 1e-12, "adamw v");
      expect_close(p, pr, 1e-6, 1e-6, "adamw p");
    }
  }
}

TEST_CASE("ops: sum_squares", "[ops]") {
  auto be = llmkit::make_cpu_backend();
  Rng rng(13);
  // Float sums over blocks of 4096, added in double: a relative error of a few float ulps.
  const vf x = rng.vec(10003, -3.0f, 3.0f);
  double want = 0;
  for (float f : x) want += static_cast<double>(f) * f;
  CHECK(be->sum_squares(x.data(), x.size()) == Approx(want).epsilon(1e-6));
  CHECK(be->sum_squares(x.data(), 0) == 0.0);
  CHECK(be->sum_squares(x.data(), 1) == Approx(static_cast<double>(x[0]) * x[0]).epsilon(1e-7));
}
