// The BERT encoder (lib/model/model.cpp, Family::bert): its config, Hugging Face's parameter
// count, its logits against a plain double-precision transcription of BertForMaskedLM's forward,
// the whole gradient against finite differences (token types, packed rows, masked targets), and
// what makes it an encoder: a position's output depends on later tokens.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include <unistd.h>

#include <cstdio>

#include "llmkit/backend.hpp"
#include "llmkit/checkpoint.hpp"
#include "llmkit/safetensors.hpp"
#include "llmkit/error.hpp"
#include "llmkit/model.hpp"
#include "util.hpp"

using namespace llmkit;

namespace {

ModelConfig tiny_bert(int vocab = 37) {
  ModelConfig c;
  c.family = ModelConfig::Family::bert;
  c.vocab_size = vocab;
  c.dim = 16;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 4;
  c.ffn_dim = 40;
  c.max_seq = 16;
  c.type_vocab_size = 2;
  c.norm_eps = 1e-12f;
  c.gelu_erf = true;
  return c;
}

using llmkit::test::random_ids;

using vd = std::vector<double>;

// BertForMaskedLM's forward as Hugging Face writes it (modeling_bert.py), in doubles, for one
// sequence: logits [T, V].
struct Reference {
  const Model& m;
  const float* w;
  const ModelConfig& c;
  Reference(const Model& model, const float* weights) : m(model), w(weights), c(model.config()) {}
  const float* p(const std::string& name) const { return w + m.param(name).offset; }
  vd linear(const vd& x, int N, int in, int out, const std::string& mod) const {
    const float *W = p(mod + ".weight"), *b = p(mod + ".bias");
    vd y(static_cast<size_t>(N) * out);
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < out; ++o) {
        double s = b[o];
        for (int i = 0; i < in; ++i) s += x[static_cast<size_t>(n) * in + i] * W[static_cast<size_t>(o) * in + i];
        y[static_cast<size_t>(n) * out + o] = s;
      }
    return y;
  }
  vd layernorm(const vd& x, int N, const std::string& mod) const {
    const int C = c.dim;
    const float *g = p(mod + ".weight"), *b = p(mod + ".bias");
    vd y(x.size());
    for (int n = 0; n < N; ++n) {
      double mean = 0, var = 0;
      for (int i = 0; i < C; ++i) mean += x[static_cast<size_t>(n) * C + i] / C;
      for (int i = 0; i < C; ++i) var += std::pow(x[static_cast<size_t>(n) * C + i] - mean, 2) / C;
      for (int i = 0; i < C; ++i)
        y[static_cast<size_t>(n) * C + i] = (x[static_cast<size_t>(n) * C + i] - mean) / std::sqrt(var + c.norm_eps) * g[i] + b[i];
    }
    return y;
  }
  static vd gelu(vd x) {
    for (double& v : x) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    return x;
  }
  static vd add(vd a, const vd& b) {
    for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
    return a;
  }
  vd logits(const std::vector<int32_t>& tok, const std::vector<int32_t>& types) const {
    const int T = static_cast<int>(tok.size()), C = c.dim, H = c.heads, hd = C / H, F = c.ffn_dim, V = c.vocab_size;
    vd x(static_cast<size_t>(T) * C);
    const float *we = p("bert.embeddings.word_embeddings.weight"), *pe = p("bert.embeddings.position_embeddings.weight"),
                *te = p("bert.embeddings.token_type_embeddings.weight");
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < C; ++i)
        x[static_cast<size_t>(t) * C + i] = static_cast<double>(we[static_cast<size_t>(tok[t]) * C + i]) + pe[static_cast<size_t>(t) * C + i] +
                                            te[static_cast<size_t>(types[t]) * C + i];
    x = layernorm(x, T, "bert.embeddings.LayerNorm");
    for (int l = 0; l < c.layers; ++l) {
      const std::string pre = "bert.encoder.layer." + std::to_string(l) + ".";
      const vd q = linear(x, T, C, C, pre + "attention.self.query"), k = linear(x, T, C, C, pre + "attention.self.key"),
               v = linear(x, T, C, C, pre + "attention.self.value");
      vd ctx(static_cast<size_t>(T) * C, 0.0);
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < T; ++i) {
          vd s(static_cast<size_t>(T));
          double mx = -1e300, sum = 0;
          for (int j = 0; j < T; ++j) {
            double d = 0;
            for (int e = 0; e < hd; ++e) d += q[static_cast<size_t>(i) * C + h * hd + e] * k[static_cast<size_t>(j) * C + h * hd + e];
            s[static_cast<size_t>(j)] = d / std::sqrt(static_cast<double>(hd));
            mx = std::max(mx, s[static_cast<size_t>(j)]);
          }
          for (double& e : s) sum += (e = std::exp(e - mx));
          for (int j = 0; j < T; ++j)
            for (int e = 0; e < hd; ++e)
              ctx[static_cast<size_t>(i) * C + h * hd + e] += s[static_cast<size_t>(j)] / sum * v[static_cast<size_t>(j) * C + h * hd + e];
        }
      const vd h1 = layernorm(add(linear(ctx, T, C, C, pre + "attention.output.dense"), x), T, pre + "attention.output.LayerNorm");
      const vd f = gelu(linear(h1, T, C, F, pre + "intermediate.dense"));
      x = layernorm(add(linear(f, T, F, C, pre + "output.dense"), h1), T, pre + "output.LayerNorm");
    }
    const vd t = layernorm(gelu(linear(x, T, C, C, "cls.predictions.transform.dense")), T, "cls.predictions.transform.LayerNorm");
    vd out(static_cast<size_t>(T) * V);
    const float* bias = p("cls.predictions.bias");
    for (int n = 0; n < T; ++n)
      for (int o = 0; o < V; ++o) {
        double s = bias[o];
        for (int i = 0; i < C; ++i) s += t[static_cast<size_t>(n) * C + i] * we[static_cast<size_t>(o) * C + i];
        out[static_cast<size_t>(n) * V + o] = s;
      }
    return out;
  }
};

// Perturbs every tensor's values a little so that biases, LayerNorm weights and the decoder bias
// are not their initial 0 and 1: the reference then checks they are used where they should be.
void perturb(Model& m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-0.2f, 0.2f);
  for (const ParamSpec& s : m.params())
    for (size_t i = 0; i < s.size; ++i)
      if (!Model::vocabulary_rows(s.name) || i / (s.size / static_cast<size_t>(s.shape[0])) < static_cast<size_t>(m.config().vocab_size))
        m.weights()[s.offset + i] += s.shape.size() == 1 ? u(rng) : u(rng) * 0.5f;
}

}  // namespace

TEST_CASE("BERT configs parse, round-trip and have Hugging Face's parameter counts", "[bert]") {
  const ModelConfig c = ModelConfig::from_json(R"({"architectures":["BertForMaskedLM"],"model_type":"bert","vocab_size":30522,
      "hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,"hidden_act":"gelu",
      "max_position_embeddings":512,"type_vocab_size":2,"layer_norm_eps":1e-12})", "bert.json");
  CHECK(c.family == ModelConfig::Family::bert);
  CHECK(c.encoder());
  CHECK(c.gelu_erf);
  CHECK(c.type_vocab_size == 2);
  const ModelConfig back = ModelConfig::from_json(c.to_json(), "back");
  CHECK(back.family == ModelConfig::Family::bert);
  CHECK(back.max_seq == 512);
  CHECK(back.norm_eps == Approx(1e-12));
  CHECK(back.gelu_erf);
  CHECK_THROWS_WITH(ModelConfig::from_json(R"({"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
      "num_attention_heads":2,"intermediate_size":8,"position_embedding_type":"relative_key"})", "r.json"),
      Catch::Contains("relative_key"));
  CHECK_THROWS_WITH(ModelConfig::from_json(R"({"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
      "num_attention_heads":2,"intermediate_size":8,"hidden_act":"relu"})", "a.json"), Catch::Contains("relu"));
  auto be = make_cpu_backend();
  // bert-base-uncased as BertForMaskedLM: 109,514,298 parameters in Hugging Face's count.
  Model base(ModelConfig::load("bert-base"), *be, ModelOptions{false, false, {}, true, {}, true});
  CHECK(base.num_params_unpadded() == 109514298);
  CHECK_NOTHROW(ModelConfig::load("bert-tiny"));
}

TEST_CASE("BERT's logits are BertForMaskedLM's", "[bert]") {
  auto be = make_cpu_backend();
  const ModelConfig c = tiny_bert();
  Model m(c, *be);
  m.init(5);
  perturb(m, 6);
  const int T = 9;
  const auto tok = random_ids(T, c.vocab_size, 7);
  const std::vector<int32_t> types = {0, 0, 0, 0, 1, 1, 1, 1, 1};
  m.set_token_types(types);
  m.forward(tok.data(), nullptr, 1, T);
  const float* got = m.logits_on_host();
  const vd want = Reference(m, m.weights()).logits(tok, types);
  double worst = 0;
  for (int t = 0; t < T; ++t)
    for (int v = 0; v < c.vocab_size; ++v)
      worst = std::max(worst, std::abs(got[static_cast<size_t>(t) * c.padded_vocab() + v] - want[static_cast<size_t>(t) * c.vocab_size + v]));
  INFO("largest difference " << worst);
  CHECK(worst < 2e-4);
}

TEST_CASE("BERT attends both ways: a token's output depends on later tokens; packed rows are their sequences", "[bert]") {
  auto be = make_cpu_backend();
  const ModelConfig c = tiny_bert();
  Model m(c, *be);
  m.init(8);
  const int T = 10, V = c.padded_vocab();
  auto tok = random_ids(T, c.vocab_size, 9);
  m.forward(tok.data(), nullptr, 1, T);
  const std::vector<float> first(m.logits(), m.logits() + V);
  tok[T - 1] = (tok[T - 1] + 1) % c.vocab_size;  // the last token changes
  m.forward(tok.data(), nullptr, 1, T);
  double moved = 0;
  for (int v = 0; v < V; ++v) moved = std::max(moved, static_cast<double>(std::abs(m.logits()[v] - first[static_cast<size_t>(v)])));
  CHECK(moved > 1e-4);  // position 0 saw it

  // Two sequences packed in one row give what each gives alone.
  const auto a = random_ids(6, c.vocab_size, 10), b = random_ids(4, c.vocab_size, 11);
  std::vector<int32_t> row(a), starts(10, 0);
  row.insert(row.end(), b.begin(), b.end());
  for (int t = 6; t < 10; ++t) starts[static_cast<size_t>(t)] = 6;
  m.forward(row.data(), nullptr, 1, 10, starts.data());
  const std::vector<float> packed(m.logits(), m.logits() + static_cast<size_t>(10) * V);
  m.forward(a.data(), nullptr, 1, 6);
  std::vector<float> alone(m.logits(), m.logits() + static_cast<size_t>(6) * V);
  m.forward(b.data(), nullptr, 1, 4);
  alone.insert(alone.end(), m.logits(), m.logits() + static_cast<size_t>(4) * V);
  double diff = 0;
  for (size_t i = 0; i < alone.size(); ++i) diff = std::max(diff, static_cast<double>(std::abs(alone[i] - packed[i])));
  CHECK(diff < 1e-5);
}

TEST_CASE("BERT's whole gradient matches finite differences (token types, packed rows, masked targets)", "[bert]") {
  auto be = make_cpu_backend();
  const ModelConfig c = tiny_bert();
  Model m(c, *be);
  m.init(12);
  perturb(m, 13);
  const int B = 2, T = 7;
  const auto tok = random_ids(B * T, c.vocab_size, 14);
  std::vector<int32_t> tgt(static_cast<size_t>(B) * T, -1), types(static_cast<size_t>(B) * T, 0);
  for (int n : {1, 4, 5, 9, 13}) tgt[static_cast<size_t>(n)] = (tok[static_cast<size_t>(n)] + 3) % c.vocab_size;  // masked positions
  for (int t = 3; t < T; ++t) types[static_cast<size_t>(T + t)] = 1;
  const std::vector<int32_t> starts = {0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2};  // row 1: sequences of 2 and 5
  auto loss = [&] {
    m.set_token_types(types);
    m.forward(tok.data(), tgt.data(), B, T, starts.data());
    return m.mean_loss();
  };
  m.zero_grad();
  loss();
  m.backward_mean();
  const std::vector<float> grad(m.grads(), m.grads() + m.num_grads());
  std::mt19937_64 rng(15);
  int checked = 0;
  for (const ParamSpec& s : m.params()) {
    const size_t cols = s.size / static_cast<size_t>(s.shape[0]);
    const size_t live = Model::vocabulary_rows(s.name) ? static_cast<size_t>(c.vocab_size) * cols : s.size;
    for (int k = 0; k < 3; ++k) {
      const size_t i = rng() % live;
      float& wi = m.weights()[s.offset + i];
      const float saved = wi, eps = 1e-2f;
      wi = saved + eps;
      const double up = loss();
      wi = saved - eps;
      const double down = loss();
      wi = saved;
      const double numeric = (up - down) / (2.0 * eps), analytic = grad[s.grad_offset + i];
      INFO(s.name << " index " << i << ": analytic " << analytic << " numeric " << numeric);
      CHECK(std::abs(analytic - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
      ++checked;
    }
  }
  CHECK(checked > 80);
}

TEST_CASE("BERT refuses what an encoder does not do", "[bert]") {
  auto be = make_cpu_backend();
  Model m(tiny_bert(), *be);
  KVCache cache(*be, 2, 1, 16, 16);
  const std::vector<int32_t> tok = {1, 2};
  CHECK_THROWS_WITH(m.forward_cached(tok.data(), 2, {{0, 0, 2, 0}}, cache), Catch::Contains("does not generate"));
  m.set_token_types({0, 2});
  CHECK_THROWS_WITH(m.forward(tok.data(), nullptr, 1, 2), Catch::Contains("token type 2"));
}

TEST_CASE("BERT checkpoints carry BertForMaskedLM's names and unpadded shapes, and load back", "[bert]") {
  auto be = make_cpu_backend();
  const ModelConfig c = tiny_bert();  // vocabulary 37, padded to 64 in memory
  Model a(c, *be);
  a.init(16);
  perturb(a, 17);
  const std::string path = "/tmp/llmkit-test-bert-" + std::to_string(::getpid()) + ".safetensors";
  save_model(path, a);
  {
    SafetensorsFile f(path);
    CHECK(f.get("bert.embeddings.word_embeddings.weight").shape == std::vector<int64_t>{37, 16});
    CHECK(f.get("cls.predictions.bias").shape == std::vector<int64_t>{37});
    CHECK(f.get("bert.encoder.layer.1.attention.self.query.weight").shape == std::vector<int64_t>{16, 16});
    CHECK(f.get("bert.encoder.layer.0.intermediate.dense.bias").shape == std::vector<int64_t>{40});
    CHECK(f.has("bert.embeddings.token_type_embeddings.weight"));
    CHECK(f.names().size() == a.params().size());
  }
  Model b(c, *be);
  load_model(path, b);
  const auto tok = random_ids(8, c.vocab_size, 18);
  a.forward(tok.data(), nullptr, 1, 8);
  const std::vector<float> la(a.logits(), a.logits() + static_cast<size_t>(8) * c.padded_vocab());
  b.forward(tok.data(), nullptr, 1, 8);
  for (size_t i = 0; i < la.size(); ++i) REQUIRE(b.logits()[i] == la[i]);
  // A BertModel's file (no "bert." prefix, no MLM head) gives a classifier its encoder.
  {
    SafetensorsFile f(path);
    std::vector<std::vector<float>> data;
    std::vector<TensorView> views;
    for (const std::string& name : f.names())
      if (name.rfind("bert.", 0) == 0) {
        const auto& e = f.get(name);
        size_t n = 1;
        for (int64_t d : e.shape) n *= static_cast<size_t>(d);
        data.emplace_back(n);
        f.read_f32(name, data.back().data(), n);
        views.push_back({name.substr(5), DType::f32, e.shape, data.back().data()});
      }
    write_safetensors_f32(path + ".bertmodel", views, DType::f32);
  }
  ModelConfig cc = c;
  cc.classifier = true;
  cc.num_labels = 2;
  ModelOptions o;
  o.scalar_head = true;
  o.lm_head = false;
  Model cls(cc, *be, o);
  CHECK(load_model(path + ".bertmodel", cls, {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}).size() == 4);
  const ParamSpec& q = cls.param("bert.encoder.layer.0.attention.self.query.weight");
  for (size_t i = 0; i < q.size; ++i) REQUIRE(cls.weights()[q.offset + i] == a.weights()[a.param(q.name).offset + i]);
  std::remove((path + ".bertmodel").c_str());
  std::remove(path.c_str());
}

TEST_CASE("A K-label score head (BERT's pooler and classifier, a decoder's score) matches finite differences", "[bert]") {
  // The third: BertForPreTraining's next-sentence head (2 outputs) beside the MLM head.
  for (int variant = 0; variant < 3; ++variant) {
    const auto family = variant == 1 ? ModelConfig::Family::llama : ModelConfig::Family::bert;
    const bool nsp = variant == 2;
    auto be = make_cpu_backend();
    ModelConfig c = tiny_bert();
    if (family == ModelConfig::Family::llama) {
      c.family = family;
      c.kv_heads = 2;
      c.norm_eps = 1e-5f;
    }
    ModelOptions o;
    if (nsp) {
      c.nsp = true;
    } else {
      c.classifier = true;
      c.num_labels = 3;
      c.labels = {"de", "en", "fr"};
      o.scalar_head = true;
      o.lm_head = false;
    }
    Model m(c, *be, o);
    m.init(21);
    perturb(m, 22);
    const int K = nsp ? 2 : 3;
    CHECK(m.score_outputs() == K);
    CHECK(m.head_tensors().size() == (family == ModelConfig::Family::bert ? 4u : 1u));
    CHECK(ModelConfig::from_json(c.to_json(), "c").labels == c.labels);
    CHECK(ModelConfig::from_json(c.to_json(), "c").nsp == nsp);
    const int B = 2, T = 5;
    const auto tok = random_ids(B * T, c.vocab_size, 23);
    std::vector<float> R(static_cast<size_t>(B * T * K));
    for (size_t i = 0; i < R.size(); ++i) R[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
    auto objective = [&] { return test::weighted_values(m, tok, B, T, R); };
    m.zero_grad();
    objective();
    m.backward(nullptr, R.data());
    const std::vector<float> grad(m.grads(), m.grads() + m.num_grads());
    int checked = 0;
    for (const ParamSpec& s : m.params())
      for (size_t k : {size_t{0}, s.size / 3, s.size - 1}) {
        float& wi = m.weights()[s.offset + k];
        const float saved = wi;
        wi = saved + 1e-2f;
        const double up = objective();
        wi = saved - 1e-2f;
        const double down = objective();
        wi = saved;
        const double numeric = (up - down) / 2e-2, analytic = grad[s.grad_offset + k];
        if (Model::vocabulary_rows(s.name) && k >= static_cast<size_t>(c.vocab_size) * static_cast<size_t>(c.dim)) continue;
        INFO(s.name << "[" << k << "] analytic " << analytic << " numeric " << numeric);
        CHECK(std::abs(analytic - numeric) <= 2e-3 + 2e-2 * std::abs(numeric));
        ++checked;
      }
    CHECK(checked > 30);
  }
}
