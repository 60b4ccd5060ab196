// LoRA adapters (lib/model/layers.hpp, model.cpp): gradients against finite differences with
// the base frozen and dropout on, step 0 equal to the base, merged equal to unmerged, PEFT's
// tensor names and shapes, adapters off giving the base.
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

ModelConfig tiny(ModelConfig::Family family) { return test::two_layer_model(family, 37, 16, 24, 64, 16, false); }

ModelOptions lora(int rank, float alpha, float dropout, std::vector<std::string> targets) {
  ModelOptions o;
  o.lora.rank = rank;
  o.lora.alpha = alpha;
  o.lora.dropout = dropout;
  o.lora.targets = std::move(targets);
  return o;
}

std::vector<int32_t> tokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return t;
}

// Every adapter tensor filled with N(0, 0.3): B no longer zero, so both A and B have gradients.
void randomise_adapters(Model& m, uint64_t seed) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> d(0.0f, 0.3f);
  for (const ParamSpec& s : m.params())
    if (Model::is_lora_tensor(s.name))
      for (size_t i = 0; i < s.size; ++i) m.weights()[s.offset + i] = d(rng);
}

std::vector<float> logits_of(Model& m, const std::vector<int32_t>& tok, int B, int T) {
  m.forward(tok.data(), nullptr, B, T);
  const size_t n = static_cast<size_t>(B) * T * m.config().padded_vocab();
  return std::vector<float>(m.logits(), m.logits() + n);
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
  return d;
}

}  // namespace

TEST_CASE("LoRA: adapters' gradients match finite differences, base frozen, dropout on", "[lora]") {
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    INFO((family == ModelConfig::Family::llama ? "llama" : "gpt2"));
    auto be = make_cpu_backend();
    Model m(tiny(family), *be, lora(3, 6.0f, 0.25f, {"all-linear"}));
    m.init(2);
    randomise_adapters(m, 5);
    m.freeze([](const std::string& name) { return !Model::is_lora_tensor(name); });
    const int B = 2, T = 6;
    auto tok = tokens(B * T, 37, 1), tgt = tokens(B * T, 37, 2);
    m.set_dropout_seed(12345);  // the same mask for every forward below
    m.zero_grad();
    m.forward(tok.data(), tgt.data(), B, T);
    m.backward_mean();
    CHECK(m.num_grads() < m.num_params() / 2);  // the frozen base has no gradient buffer
    std::vector<float> grad(m.grads(), m.grads() + m.num_grads());
    auto loss = [&] {
      m.forward(tok.data(), tgt.data(), B, T);
      return m.mean_loss();
    };
    std::mt19937_64 rng(9);
    int checked = 0;
    double base_grad = 0;
    for (const ParamSpec& s : m.params()) {
      if (!Model::is_lora_tensor(s.name)) {
        if (s.trainable()) base_grad = 1;  // it should be frozen
        continue;
      }
      for (int k = 0; k < 3; ++k) {
        const size_t k_in = rng() % s.size, i = s.offset + k_in, gi = s.grad_offset + k_in;
        const float saved = m.weights()[i];
        const float eps = 1e-2f;
        m.weights()[i] = saved + eps;
        const double up = loss();
        m.weights()[i] = saved - eps;
        const double down = loss();
        m.weights()[i] = saved;
        const double numeric = (up - down) / (2.0 * eps);
        INFO(s.name << " index " << k_in << ": analytic " << grad[gi] << " numeric " << numeric);
        CHECK(std::abs(grad[gi] - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
        ++checked;
      }
    }
    CHECK(checked >= 2 * 2 * 3 * 4);  // layers x (A, B) x 3 x modules
    CHECK(base_grad == 0);  // the base is frozen
    // Dropout is on: another seed gives another loss; seed 0 is evaluation (no dropout).
    const double with_mask = loss();
    m.set_dropout_seed(999);
    CHECK(loss() != with_mask);
    m.set_dropout_seed(0);
    CHECK(loss() != with_mask);
  }
}

TEST_CASE("LoRA: step 0 is the base; merged equals unmerged; adapters off give the base", "[lora]") {
  for (auto family : {ModelConfig::Family::llama, ModelConfig::Family::gpt2}) {
    INFO((family == ModelConfig::Family::llama ? "llama" : "gpt2"));
    auto be = make_cpu_backend();
    const ModelConfig c = tiny(family);
    Model base(c, *be);
    base.init(4);
    Model m(c, *be, lora(4, 8.0f, 0.0f, {"all-linear"}));
    m.init(4);  // the same base tensors: one stream per tensor, adapters after them
    const int B = 2, T = 7;
    auto tok = tokens(B * T, 37, 3);
    const auto want = logits_of(base, tok, B, T);
    CHECK(max_diff(logits_of(m, tok, B, T), want) == 0);  // B = 0
    randomise_adapters(m, 6);
    const auto adapted = logits_of(m, tok, B, T);
    CHECK(max_diff(adapted, want) > 1e-2);
    m.set_lora_enabled(false);
    CHECK(max_diff(logits_of(m, tok, B, T), want) == 0);
    m.set_lora_enabled(true);
    m.merge_lora();
    CHECK_FALSE(m.has_lora());
    const auto merged = logits_of(m, tok, B, T);
    double scale = 0;
    for (float x : adapted) scale = std::max(scale, static_cast<double>(std::abs(x)));
    INFO("merged vs unmerged: " << max_diff(merged, adapted) << " of " << scale);
    CHECK(max_diff(merged, adapted) <= 1e-5 * scale);
  }
}

TEST_CASE("LoRA: PEFT's tensor names and shapes; targets are checked", "[lora]") {
  auto be = make_cpu_backend();
  ModelConfig c = tiny(ModelConfig::Family::llama);
  Model m(c, *be, lora(8, 16.0f, 0.0f, {"q_proj", "v_proj"}));
  CHECK(m.param("model.layers.1.self_attn.q_proj.lora_A.weight").shape == std::vector<int64_t>{8, 16});
  CHECK(m.param("model.layers.1.self_attn.v_proj.lora_B.weight").shape == std::vector<int64_t>{8, 8});  // KV 2 x hd 4
  CHECK_THROWS(m.param("model.layers.0.self_attn.k_proj.lora_A.weight"));
  CHECK(m.options().lora.scale() == Approx(2.0f));
  ModelOptions rs = lora(4, 8.0f, 0.0f, {"c_attn"});
  rs.lora.rslora = true;
  CHECK(rs.lora.scale() == Approx(4.0f));
  Model g(tiny(ModelConfig::Family::gpt2), *be, rs);
  CHECK(g.param("h.0.attn.c_attn.lora_B.weight").shape == std::vector<int64_t>{48, 4});  // q, k, v rows
  CHECK_THROWS_WITH(Model(c, *be, lora(4, 8, 0, {"c_attn"})),
                    Catch::Contains("'c_attn' is not a linear module of a Llama model (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all-linear)"));
}
