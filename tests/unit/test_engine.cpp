// The inference engine (lib/model/engine.cpp): cached forward passes equal full ones, greedy
// decoding with the cache gives the tokens of recomputing everything each step, batched
// scoring equals unbatched, sampling is reproducible and respects its filters.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "llmkit/engine.hpp"
#include "llmkit/error.hpp"
#include "util.hpp"

using namespace llmkit;

namespace {

ModelConfig cfg(ModelConfig::Family f) { return test::tiny_model(f, 48); }
using test::random_ids;

// Logits of the last position by a full forward pass over the whole sequence.
std::vector<float> full_last(Model& m, const std::vector<int32_t>& s) {
  m.forward(s.data(), nullptr, 1, static_cast<int>(s.size()));
  const int Vp = m.config().padded_vocab();
  const float* l = m.logits() + (s.size() - 1) * static_cast<size_t>(Vp);
  return std::vector<float>(l, l + m.config().vocab_size);
}

}  // namespace

TEST_CASE("Cached forward passes give the full pass's logits, all at once or token by token", "[engine]") {
  for (auto f : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    Model m(cfg(f), *be);
    m.init(9);
    auto s = random_ids(20, 1);
    m.forward(s.data(), nullptr, 1, 20);
    const size_t V = 61, Vp = static_cast<size_t>(m.config().padded_vocab());
    std::vector<float> full(m.logits(), m.logits() + 20 * Vp);
    KVCache cache(*be, 2, 3, 32, m.config().kv_heads * m.config().head_dim());
    // Slot 2, prefill of 7, then one token at a time.
    m.forward_cached(s.data(), 7, {{2, 0, 7, 0}}, cache);
    for (size_t r = 0; r < 7; ++r)
      for (size_t j = 0; j < V; ++j) REQUIRE(m.logits()[r * Vp + j] == Approx(full[r * Vp + j]).margin(1e-4));
    for (int t = 7; t < 20; ++t) {
      m.forward_cached(s.data() + t, 1, {{2, t, 1, 0}}, cache);
      for (size_t j = 0; j < V; ++j) REQUIRE(m.logits()[j] == Approx(full[static_cast<size_t>(t) * Vp + j]).margin(1e-4));
    }
  }
}

TEST_CASE("Greedy decoding with the cache gives the tokens of recomputing every step", "[engine]") {
  for (auto f : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    Model m(cfg(f), *be);
    m.init(5);
    std::vector<std::vector<int32_t>> prompts = {random_ids(5, 2), random_ids(11, 3), random_ids(1, 4)};
    SamplingParams p;
    p.max_tokens = 16;
    Engine engine(m, nullptr, 2, 48);  // 3 prompts in batches of 2
    auto gens = engine.generate(prompts, p);
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::vector<int32_t> s = prompts[i], expect;
      for (int k = 0; k < 16; ++k) {
        auto l = full_last(m, s);
        int32_t t = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        expect.push_back(t);
        s.push_back(t);
      }
      CHECK(gens[i].tokens == expect);
      CHECK(gens[i].finish == "length");
    }
  }
}

TEST_CASE("Scores are log-likelihoods of the continuation, the same batched or not", "[engine]") {
  auto be = make_cpu_backend();
  Model m(cfg(ModelConfig::Family::llama), *be);
  m.init(6);
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> reqs = {
      {random_ids(6, 7), random_ids(3, 8)}, {random_ids(2, 9), random_ids(5, 10)}, {random_ids(12, 11), random_ids(1, 12)}};
  Engine batched(m, nullptr, 3, 48), single(m, nullptr, 1, 48);
  auto a = batched.score(reqs), b = single.score(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CHECK(a[i].logprob == Approx(b[i].logprob).margin(1e-4));
    CHECK(a[i].tokens == static_cast<int>(reqs[i].second.size()));
    // Against a full forward pass with targets.
    std::vector<int32_t> s = reqs[i].first;
    s.insert(s.end(), reqs[i].second.begin(), reqs[i].second.end());
    std::vector<int32_t> in(s.begin(), s.end() - 1), tgt(s.begin() + 1, s.end());
    for (size_t k = 0; k + reqs[i].second.size() < tgt.size(); ++k) tgt[k] = -1;
    m.forward(in.data(), tgt.data(), 1, static_cast<int>(in.size()));
    double sum = 0;
    for (float lp : m.logp()) sum += lp;
    CHECK(a[i].logprob == Approx(sum).margin(1e-4));
  }
  // A continuation that is the model's own greedy choice is flagged so.
  auto prompt = random_ids(4, 13);
  SamplingParams p;
  p.max_tokens = 3;
  auto g = batched.generate({prompt}, p);
  auto sc = batched.score({{prompt, g[0].tokens}});
  CHECK(sc[0].greedy);
}

TEST_CASE("Sampling is reproducible and keeps to top-k, top-p and min-p", "[engine]") {
  auto be = make_cpu_backend();
  Model m(cfg(ModelConfig::Family::gpt2), *be);
  m.init(1);
  Engine e(m, nullptr, 1, 48);
  std::vector<float> logits(61);
  for (int j = 0; j < 61; ++j) logits[static_cast<size_t>(j)] = static_cast<float>(j % 10) * 0.5f;  // best: 9,19,...,59
  SamplingParams p;
  p.temperature = 1.0;
  std::mt19937_64 r1(3), r2(3);
  for (int k = 0; k < 50; ++k) CHECK(e.sample(logits.data(), {}, p, r1) == e.sample(logits.data(), {}, p, r2));
  p.top_k = 3;
  std::set<int32_t> seen;
  for (int k = 0; k < 400; ++k) seen.insert(e.sample(logits.data(), {}, p, r1));
  CHECK(seen == std::set<int32_t>{9, 19, 29});  // ties broken by id: the three lowest of six
  p.top_k = 0;
  p.min_p = 0.9;  // only tokens nearly as likely as the best: the six with logit 4.5
  seen.clear();
  for (int k = 0; k < 400; ++k) seen.insert(e.sample(logits.data(), {}, p, r1));
  CHECK(seen == std::set<int32_t>{9, 19, 29, 39, 49, 59});
  p.min_p = 0;
  p.top_p = 0.01;
  seen.clear();
  for (int k = 0; k < 100; ++k) seen.insert(e.sample(logits.data(), {}, p, r1));
  CHECK(seen == std::set<int32_t>{9});
  // Greedy, and a repetition penalty that moves the choice off a token already used.
  SamplingParams g;
  CHECK(e.sample(logits.data(), {}, g, r1) == 9);
  g.repetition_penalty = 2.0;
  CHECK(e.sample(logits.data(), {9}, g, r1) == 19);
  // The entropy of the distribution drawn from, under the temperature, against a direct sum;
  // the draw is the one made without it.
  for (double temp : {0.0, 0.7, 1.0, 2.5}) {
    SamplingParams q;
    q.temperature = temp;
    const double T = temp > 0 ? temp : 1.0;
    double z = 0, h = 0;
    for (int j = 0; j < 61; ++j) z += std::exp(logits[static_cast<size_t>(j)] / T);
    for (int j = 0; j < 61; ++j) {
      const double pj = std::exp(logits[static_cast<size_t>(j)] / T) / z;
      h -= pj * std::log(pj);
    }
    std::mt19937_64 a(5), b(5);
    float ent = -1;
    CHECK(e.sample(logits.data(), {}, q, a, nullptr, &ent) == e.sample(logits.data(), {}, q, b));
    CHECK(ent == Approx(h).epsilon(1e-6));
  }
  std::vector<float> flat(61, 0.25f);
  float ent = 0;
  e.sample(flat.data(), {}, p, r1, nullptr, &ent);
  CHECK(ent == Approx(std::log(61.0)).epsilon(1e-6));
}

TEST_CASE("Samples of one prompt share its prefill; recorded log-probs are the trainer's", "[engine]") {
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    INFO((family == ModelConfig::Family::llama ? "llama" : "gpt2"));
    auto be = make_cpu_backend();
    Model m(cfg(family), *be);
    m.init(4);
    const std::vector<std::vector<int32_t>> prompts = {random_ids(7, 1), random_ids(3, 2)};
    SamplingParams p;
    p.temperature = family == ModelConfig::Family::llama ? 1.0 : 0.7;  // GPT-2: log-probs at the temperature
    p.max_tokens = 12;
    p.stop_at_eos = false;  // no tokenizer: run to the limit
    p.n = 3;
    for (uint64_t k = 0; k < 6; ++k) p.seeds.push_back(100 + 7 * k);
    Engine shared(m, nullptr, 6, 48);
    const std::vector<Generation> g = shared.generate(prompts, p);
    REQUIRE(g.size() == 6);
    // A prefill in parts (at most 5 rows a pass: one prompt each here) continues the same way.
    Engine parts(m, nullptr, 6, 48);
    parts.set_prefill_rows(5);
    const std::vector<Generation> gp = parts.generate(prompts, p);
    for (size_t i = 0; i < 6; ++i) {
      CHECK(gp[i].tokens == g[i].tokens);
      for (size_t k = 0; k < g[i].logprobs.size(); ++k) CHECK(gp[i].logprobs[k] == Approx(g[i].logprobs[k]).margin(1e-5));
    }
    // The same sequences, each alone from its own prefill, with its own seed.
    Engine alone(m, nullptr, 1, 48);
    for (size_t i = 0; i < 6; ++i) {
      SamplingParams q = p;
      q.n = 1;
      q.seeds = {p.seeds[i]};
      const Generation h = alone.generate({prompts[i / 3]}, q)[0];
      CHECK(h.tokens == g[i].tokens);
      REQUIRE(h.logprobs.size() == g[i].logprobs.size());
      for (size_t t = 0; t < h.logprobs.size(); ++t) CHECK(std::abs(h.logprobs[t] - g[i].logprobs[t]) < 1e-5);
    }
    // The three samples of a prompt differ (seeded apart).
    CHECK((g[0].tokens != g[1].tokens || g[1].tokens != g[2].tokens));
    // What a trainer recomputes: a full forward over prompt + response, log p of each response
    // token; fp32 agrees to 1e-5.
    for (size_t i = 0; i < 6; ++i) {
      std::vector<int32_t> all = prompts[i / 3];
      all.insert(all.end(), g[i].tokens.begin(), g[i].tokens.end());
      std::vector<int32_t> in(all.begin(), all.end() - 1), target(in.size(), -1);
      for (size_t t = prompts[i / 3].size() - 1; t < in.size(); ++t) target[t] = all[t + 1];
      m.set_logit_temperature(static_cast<float>(p.temperature));
      m.forward(in.data(), target.data(), 1, static_cast<int>(in.size()));
      m.set_logit_temperature(1.0f);
      const std::vector<float> lp = m.logp();
      REQUIRE(g[i].logprobs.size() == g[i].tokens.size());
      double worst = 0;
      for (size_t t = 0; t < g[i].tokens.size(); ++t)
        worst = std::max(worst, static_cast<double>(std::abs(lp[prompts[i / 3].size() - 1 + t] - g[i].logprobs[t])));
      CHECK(worst < 1e-5);
    }
  }
}

TEST_CASE("Log-probabilities at a temperature and their gradient, against finite differences", "[engine]") {
  auto be = make_cpu_backend();
  Model m(cfg(ModelConfig::Family::llama), *be);
  m.init(6);
  const std::vector<int32_t> in = random_ids(9, 7), target = random_ids(9, 8);
  const float T = 0.6f;
  auto loss = [&] {  // sum of logp at temperature T, weighted
    m.set_logit_temperature(T);
    m.forward(in.data(), target.data(), 1, 9);
    double l = 0;
    const std::vector<float> lp = m.logp();
    for (size_t i = 0; i < lp.size(); ++i) l += lp[i] * (0.5 + 0.1 * static_cast<double>(i));
    return l;
  };
  // logp at T is log softmax(logits / T): from the raw logits of a plain forward.
  m.set_logit_temperature(1.0f);
  m.forward(in.data(), nullptr, 1, 9);
  const int Vp = m.config().padded_vocab(), V = m.config().vocab_size;
  std::vector<double> want(9);
  for (size_t i = 0; i < 9; ++i) {
    const float* row = m.logits() + i * static_cast<size_t>(Vp);
    double mx = -1e300, sum = 0;
    for (int j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]) / T);
    for (int j = 0; j < V; ++j) sum += std::exp(static_cast<double>(row[j]) / T - mx);
    want[i] = static_cast<double>(row[target[i]]) / T - mx - std::log(sum);
  }
  loss();
  const std::vector<float> lp = m.logp();
  for (size_t i = 0; i < 9; ++i) CHECK(lp[i] == Approx(want[i]).margin(1e-5));
  // The gradient of the weighted sum in a few weights, against central differences.
  m.zero_grad();
  loss();
  std::vector<float> d(9);
  for (size_t i = 0; i < 9; ++i) d[i] = static_cast<float>(0.5 + 0.1 * static_cast<double>(i));
  m.backward(d.data());
  const ParamSpec& w = m.param("model.layers.0.mlp.down_proj.weight");
  for (size_t k : {size_t{3}, size_t{101}, size_t{250}}) {
    float* x = m.weights() + w.offset + k;
    const float x0 = *x, h = 1e-3f;
    *x = x0 + h;
    const double lp1 = loss();
    *x = x0 - h;
    const double lm1 = loss();
    *x = x0;
    CHECK(m.grads()[w.grad_offset + k] == Approx((lp1 - lm1) / (2 * h)).margin(2e-3));
  }
  m.set_logit_temperature(1.0f);
}

TEST_CASE("Cut-offs sort only the head they can draw from: the draws of a full sort", "[engine]") {
  auto be = make_cpu_backend();
  ModelConfig c = cfg(ModelConfig::Family::gpt2);
  c.vocab_size = 3000;
  Model m(c, *be);
  Engine e(m, nullptr, 1, 16);
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int trial = 0; trial < 12; ++trial) {
    std::vector<float> logits(3000);
    for (float& x : logits) x = normal(gen) * (trial % 3 == 0 ? 0.3f : 2.0f);  // flat and peaked
    SamplingParams p;
    p.temperature = 0.8;
    p.top_p = trial % 4 == 3 ? 1.0 : 0.95 - 0.2 * (trial % 4);
    p.top_k = trial % 3 == 1 ? 1000 : 0;
    p.min_p = trial % 5 == 2 ? 0.02 : 0.0;
    if (p.top_p >= 1 && p.top_k == 0 && p.min_p == 0) p.top_k = 700;
    // The reference: the whole vocabulary in order, the cut-offs as defined.
    std::vector<double> prob(3000);
    const double mx = *std::max_element(logits.begin(), logits.end());
    for (size_t j = 0; j < 3000; ++j) prob[j] = std::exp((logits[j] - mx) / p.temperature);
    std::vector<int> idx(3000);
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return prob[static_cast<size_t>(a)] != prob[static_cast<size_t>(b)] ? prob[static_cast<size_t>(a)] > prob[static_cast<size_t>(b)] : a < b; });
    size_t keep = 3000;
    if (p.top_k > 0) keep = std::min(keep, static_cast<size_t>(p.top_k));
    if (p.min_p > 0) {
      size_t k = 1;
      while (k < keep && prob[static_cast<size_t>(idx[k])] >= p.min_p) ++k;
      keep = k;
    }
    if (p.top_p < 1) {
      double mass = 0, t = 0;
      for (size_t i = 0; i < keep; ++i) mass += prob[static_cast<size_t>(idx[i])];
      size_t k = 0;
      while (k < keep && t < p.top_p * mass * (1 - 1e-12)) t += prob[static_cast<size_t>(idx[k++])];
      keep = std::max<size_t>(1, k);
    }
    std::set<int32_t> allowed(idx.begin(), idx.begin() + static_cast<long>(keep));
    std::mt19937_64 rng(100 + static_cast<uint64_t>(trial));
    std::set<int32_t> drawn;
    for (int d = 0; d < 300; ++d) {
      const int32_t tok = e.sample(logits.data(), {}, p, rng);
      drawn.insert(tok);
      CHECK(allowed.count(tok) == 1);
    }
    INFO("trial " << trial << " keep " << keep);
    CHECK(drawn.size() >= std::min<size_t>(keep, 20));
  }
}
