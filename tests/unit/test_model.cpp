// The transformer (lib/model/model.cpp) on the CPU backend: configs, the whole model's gradient
// against finite differences (both families), loss at initialisation, overfitting one batch.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "llmkit/backend.hpp"
#include "llmkit/error.hpp"
#include "llmkit/model.hpp"
#include "util.hpp"

using namespace llmkit;

namespace {

ModelConfig tiny(ModelConfig::Family family) { return test::two_layer_model(family, 37, 16, 24, 64, 16, false); }  // Llama untied: lm_head checked too

using llmkit::test::random_ids;

double loss_of(Model& m, const std::vector<int32_t>& tok, const std::vector<int32_t>& tgt, int B, int T) {
  m.forward(tok.data(), tgt.data(), B, T);
  return m.mean_loss();
}

}  // namespace

TEST_CASE("Configs parse from Hugging Face config.json and are checked", "[model]") {
  ModelConfig c = ModelConfig::from_json(
      R"({"model_type":"llama","vocab_size":100,"hidden_size":32,"intermediate_size":64,
          "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2})", "x.json");
  CHECK(c.family == ModelConfig::Family::llama);
  CHECK(c.kv_heads == 2);
  CHECK(c.padded_vocab() == 128);
  ModelConfig back = ModelConfig::from_json(c.to_json(), "back");
  CHECK(back.dim == 32);
  CHECK(back.ffn_dim == 64);
  ModelConfig g = ModelConfig::from_json(R"({"model_type":"gpt2","vocab_size":50257,"n_embd":768,
      "n_layer":12,"n_head":12,"n_positions":1024})", "g.json");
  CHECK(g.ffn_dim == 3072);
  CHECK_THROWS_WITH(ModelConfig::from_json(R"({"model_type":"llama","vocab_size":100,"hidden_size":30,
      "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4})", "bad.json"),
      Catch::Contains("not a multiple"));
  CHECK_THROWS_WITH(ModelConfig::from_json(R"({"model_type":"t5"})", "b.json"), Catch::Contains("not supported (llama, gpt2, bert)"));
  CHECK_THROWS_WITH(ModelConfig::from_json("{", "c.json"), Catch::Contains("invalid JSON"));
  for (const char* preset : {"llama-tiny", "llama-25m", "gpt2-124m", "llama-125m"}) CHECK_NOTHROW(ModelConfig::load(preset));
  CHECK_THROWS_WITH(ModelConfig::load("llama-7t"), Catch::Contains("no such model preset 'llama-7t'"));
  CHECK_THROWS_AS(ModelConfig::load("llama-7t"), UsageError);  // exit 2, as llm-pretrain(1) says
}

TEST_CASE("Presets have the advertised sizes", "[model]") {
  auto be = make_cpu_backend();
  Model gpt2(ModelConfig::load("gpt2-124m"), *be);
  CHECK(gpt2.num_params_unpadded() == 124439808);  // GPT-2 small as Hugging Face counts it
}

TEST_CASE("The whole model's gradient matches finite differences", "[model]") {
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    Model m(tiny(family), *be);
    m.init(3);
    const int B = 2, T = 7;
    auto tok = random_ids(B * T, 37, 1), tgt = random_ids(B * T, 37, 2);
    tgt[3] = -1;  // an ignored position
    m.zero_grad();
    m.forward(tok.data(), tgt.data(), B, T);
    m.backward_mean();
    std::vector<float> grad(m.grads(), m.grads() + m.num_params());
    std::mt19937_64 rng(9);
    int checked = 0;
    for (const ParamSpec& s : m.params()) {
      for (int k = 0; k < 3; ++k) {
        size_t live = s.size;
        if (s.shape[0] == m.config().padded_vocab()) live = static_cast<size_t>(m.config().vocab_size) * (s.size / static_cast<size_t>(s.shape[0]));
        size_t i = s.offset + rng() % live;
        float saved = m.weights()[i];
        const float eps = 1e-2f;
        m.weights()[i] = saved + eps;
        double up = loss_of(m, tok, tgt, B, T);
        m.weights()[i] = saved - eps;
        double down = loss_of(m, tok, tgt, B, T);
        m.weights()[i] = saved;
        double numeric = (up - down) / (2.0 * eps);
        INFO(s.name << " index " << i - s.offset << ": analytic " << grad[i] << " numeric " << numeric);
        CHECK(std::abs(grad[i] - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
        ++checked;
      }
    }
    CHECK(checked > 40);
  }
}

TEST_CASE("Loss at initialisation is about ln(vocab); one batch is overfitted", "[model]") {
  auto be = make_cpu_backend();
  ModelConfig c = tiny(ModelConfig::Family::llama);
  c.vocab_size = 200;
  Model m(c, *be);
  m.init(1);
  const int B = 2, T = 16;
  auto tok = random_ids(B * T + 1, 200, 5);
  std::vector<int32_t> in(tok.begin(), tok.begin() + B * T), tgt(tok.begin() + 1, tok.end());
  double first = loss_of(m, in, tgt, B, T);
  CHECK(std::abs(first - std::log(200.0)) < 0.1);
  std::vector<float> mom(m.num_params(), 0.0f), var(m.num_params(), 0.0f);
  double last = first;
  for (int step = 1; step <= 150; ++step) {
    m.zero_grad();
    m.forward(in.data(), tgt.data(), B, T);
    last = m.mean_loss();
    m.backward_mean();
    be->adamw(m.weights(), m.grads(), mom.data(), var.data(), m.num_params(), 1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, step);
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.2);
}

TEST_CASE("Tokens outside the vocabulary and sequences past max_seq are errors", "[model]") {
  auto be = make_cpu_backend();
  Model m(tiny(ModelConfig::Family::gpt2), *be);
  std::vector<int32_t> bad = {1, 2, 40};
  CHECK_THROWS_WITH(m.forward(bad.data(), nullptr, 1, 3), Catch::Contains("outside the vocabulary"));
  std::vector<int32_t> longer(17, 1);
  CHECK_THROWS_WITH(m.forward(longer.data(), nullptr, 1, 17), Catch::Contains("above the model"));
}

TEST_CASE("The scalar head's gradient matches finite differences; the LM head can be left out", "[model]") {
  auto be = make_cpu_backend();
  Model m(tiny(ModelConfig::Family::llama), *be, ModelOptions{true});
  m.init(4);
  const int B = 2, T = 5;
  auto tok = random_ids(B * T, 37, 11);
  std::vector<float> R(static_cast<size_t>(B * T));
  for (size_t i = 0; i < R.size(); ++i) R[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
  auto objective = [&] { return test::weighted_values(m, tok, B, T, R); };
  m.zero_grad();
  objective();
  m.backward(nullptr, R.data());
  std::vector<float> grad(m.grads(), m.grads() + m.num_params());
  for (const char* name : {"score.weight", "model.layers.1.mlp.up_proj.weight", "model.norm.weight", "model.embed_tokens.weight"}) {
    const ParamSpec& s = m.param(name);
    for (size_t k : {size_t{0}, size_t{3}, s.size / 5}) {
      size_t i = s.offset + k;
      float saved = m.weights()[i];
      m.weights()[i] = saved + 1e-2f;
      double up = objective();
      m.weights()[i] = saved - 1e-2f;
      double down = objective();
      m.weights()[i] = saved;
      double numeric = (up - down) / 2e-2;
      INFO(name << "[" << k << "] analytic " << grad[i] << " numeric " << numeric);
      CHECK(std::abs(grad[i] - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
    }
  }
  // No LM-head gradient was asked for: lm_head gets none.
  const ParamSpec& lm = m.param("lm_head.weight");
  double lm_sq = 0;
  for (size_t i = 0; i < lm.size; ++i) lm_sq += grad[lm.offset + i] * grad[lm.offset + i];
  CHECK(lm_sq == 0.0);
  Model plain(tiny(ModelConfig::Family::llama), *be);
  CHECK_THROWS_WITH(plain.values(), Catch::Contains("no score head"));
}

TEST_CASE("Frozen parameters get no gradient and leave the others' unchanged", "[model]") {
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    Model a(tiny(family), *be), b(tiny(family), *be);
    a.init(2);
    b.init(2);
    auto frozen = [](const std::string& n) {
      return n.find("layers.0.") != std::string::npos || n.find("h.0.") != std::string::npos ||
             n == "model.embed_tokens.weight" || n == "wpe";
    };
    b.freeze(frozen);
    const int B = 2, T = 6;
    auto tok = random_ids(B * T, 37, 3), tgt = random_ids(B * T, 37, 4);
    for (Model* m : {&a, &b}) {
      m->zero_grad();
      m->forward(tok.data(), tgt.data(), B, T);
      m->backward_mean();
    }
    CHECK(a.mean_loss() == b.mean_loss());
    int frozen_count = 0;
    size_t trainable = 0;
    for (const ParamSpec& s : a.params()) {
      const bool f = frozen(s.name);
      frozen_count += f;
      CHECK(b.is_frozen(s.name) == f);
      const ParamSpec& sb = b.param(s.name);
      INFO(s.name);
      CHECK(sb.trainable() == !f);  // a frozen tensor has no place in the gradient buffer
      if (f) continue;
      trainable += (s.size + 15) / 16 * 16;
      double diff = 0;
      for (size_t i = 0; i < s.size; ++i) diff += std::abs(a.grads()[s.grad_offset + i] - b.grads()[sb.grad_offset + i]);
      CHECK(diff == 0.0);
    }
    CHECK(frozen_count > 5);
    CHECK(b.num_grads() == trainable);
    CHECK(a.num_grads() == a.num_params());
  }
}

TEST_CASE("Recomputing the MLP's activations gives the same gradients with fewer activation bytes", "[model]") {
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    ModelConfig c = tiny(family);
    Model plain(c, *be), re(c, *be, ModelOptions{false, true});
    plain.init(5);
    re.init(5);
    const int B = 3, T = 11;
    auto tok = random_ids(B * T, c.vocab_size, 1), tgt = random_ids(B * T, c.vocab_size, 2);
    for (Model* m : {&plain, &re}) {
      m->zero_grad();
      m->forward(tok.data(), tgt.data(), B, T);
      m->backward_mean();
    }
    CHECK(plain.mean_loss() == re.mean_loss());
    std::vector<float> a(plain.grads(), plain.grads() + plain.num_params()), b(re.grads(), re.grads() + re.num_params());
    CHECK(a == b);
    CHECK(re.activation_bytes(B, T) + 4ull * (c.layers - 1) * B * T * 3 * c.ffn_dim == plain.activation_bytes(B, T));
  }
}

TEST_CASE("The gradient hook reports ranges that tile the buffer, each final when reported", "[model]") {
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    auto be = make_cpu_backend();
    ModelConfig c = tiny(family);
    Model m(c, *be);
    m.init(3);
    const int B = 2, T = 9;
    auto tok = random_ids(B * T, c.vocab_size, 4), tgt = random_ids(B * T, c.vocab_size, 5);
    std::vector<std::pair<size_t, std::vector<float>>> seen;
    m.set_gradient_hook([&](size_t off, size_t n) { seen.emplace_back(off, std::vector<float>(m.grads() + off, m.grads() + off + n)); });
    m.zero_grad();
    m.forward(tok.data(), tgt.data(), B, T);
    m.backward_mean();
    REQUIRE(seen.size() == static_cast<size_t>(c.layers) + 2);
    std::vector<int> covered(m.num_params(), 0);
    for (const auto& [off, values] : seen) {
      for (size_t i = 0; i < values.size(); ++i) ++covered[off + i];
      CHECK(std::equal(values.begin(), values.end(), m.grads() + off));  // nothing changed it later
    }
    CHECK(std::all_of(covered.begin(), covered.end(), [](int k) { return k == 1; }));
    CHECK(seen[0].first > seen[1].first);  // the last layer first
  }
}

TEST_CASE("A packed batch computes what its sequences compute one by one", "[model][packing]") {
  // Five sequences packed best-fit into two rows of 20 (17 + 3 padding, 19 + 1 padding); the
  // padding tokens form sequences of their own with no targets. Log-probabilities and every
  // gradient (GPT-2's learned positions included) must equal the sum over the sequences run
  // alone, up to the order of sums.
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    INFO((family == ModelConfig::Family::llama ? "llama" : "gpt2"));
    ModelConfig c = tiny(family);
    c.max_seq = 20;
    auto be = make_cpu_backend();
    Model m(c, *be);
    m.init(11);
    const std::vector<std::vector<int>> rows = {{5, 9, 3}, {12, 7}};
    const int B = 2, T = 20;
    std::vector<int32_t> tok(B * T, 1), tgt(B * T, -1), starts(B * T);
    std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> seqs;
    std::vector<int> at;  // where each sequence sits in the packed batch
    uint64_t seed = 40;
    for (int b = 0; b < B; ++b) {
      int t = 0;
      for (int len : rows[static_cast<size_t>(b)]) {
        auto s = random_ids(len, c.vocab_size, seed++), g = random_ids(len, c.vocab_size, seed++);
        g[0] = -1;  // an untrained token inside a sequence too
        for (int i = 0; i < len; ++i) {
          tok[static_cast<size_t>(b * T + t + i)] = s[static_cast<size_t>(i)];
          tgt[static_cast<size_t>(b * T + t + i)] = g[static_cast<size_t>(i)];
          starts[static_cast<size_t>(b * T + t + i)] = t;
        }
        seqs.emplace_back(s, g);
        at.push_back(b * T + t);
        t += len;
      }
      for (; t < T; ++t) starts[static_cast<size_t>(b * T + t)] = t;  // padding
    }
    auto dlogp_of = [](const std::vector<int32_t>& g) {
      std::vector<float> d(g.size());
      for (size_t i = 0; i < g.size(); ++i) d[i] = g[i] >= 0 ? -1.0f : 0.0f;
      return d;
    };
    m.zero_grad();
    m.forward(tok.data(), tgt.data(), B, T, starts.data());
    const std::vector<float> packed_lp = m.logp();
    m.backward(dlogp_of(tgt).data());
    const std::vector<float> packed_grad(m.grads(), m.grads() + m.num_params());
    m.zero_grad();
    double worst_lp = 0;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const auto& [s, g] = seqs[i];
      m.forward(s.data(), g.data(), 1, static_cast<int>(s.size()));
      const std::vector<float> lp = m.logp();
      for (size_t j = 0; j < s.size(); ++j)
        worst_lp = std::max(worst_lp, static_cast<double>(std::abs(lp[j] - packed_lp[static_cast<size_t>(at[i]) + j])));
      m.backward(dlogp_of(g).data());
    }
    CHECK(worst_lp < 1e-5);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < packed_grad.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::abs(packed_grad[i] - m.grads()[i])));
      scale = std::max(scale, static_cast<double>(std::abs(m.grads()[i])));
    }
    INFO("worst gradient difference " << worst << " of " << scale);
    CHECK(scale > 0);
    CHECK(worst <= 1e-5 * scale);
    // Starts that do not describe sequences are refused.
    starts[5] = 2;
    CHECK_THROWS_WITH(m.forward(tok.data(), tgt.data(), B, T, starts.data()), Catch::Contains("packed rows: token 5 of row 0"));
  }
}
