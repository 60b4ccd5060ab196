// Decoder-only transformers: configuration, parameters, forward and backward; see model.hpp.
#include "llmkit/model.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"

namespace llmkit {

// ---- Configuration ---------------------------------------------------------------------------

namespace {

template <class T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? fallback : it->get<T>();
}

}  // namespace

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw Error(where, std::string("invalid JSON: ") + e.what());
  }
  ModelConfig c;
  try {
    std::string type = get_or<std::string>(j, "model_type", "");
    if (type == "llama" || type == "mistral") {
      c.family = Family::llama;
      c.vocab_size = j.at("vocab_size").get<int>();
      c.dim = j.at("hidden_size").get<int>();
      c.layers = j.at("num_hidden_layers").get<int>();
      c.heads = j.at("num_attention_heads").get<int>();
      c.kv_heads = get_or<int>(j, "num_key_value_heads", c.heads);
      c.ffn_dim = j.at("intermediate_size").get<int>();
      c.max_seq = get_or<int>(j, "max_position_embeddings", 2048);
      c.norm_eps = get_or<float>(j, "rms_norm_eps", 1e-5f);
      c.rope_theta = get_or<float>(j, "rope_theta", 10000.0f);
      c.tied_embeddings = get_or<bool>(j, "tie_word_embeddings", false);
    } else if (type == "gpt2") {
      c.family = Family::gpt2;
      c.vocab_size = j.at("vocab_size").get<int>();
      c.dim = j.at("n_embd").get<int>();
      c.layers = j.at("n_layer").get<int>();
      c.heads = j.at("n_head").get<int>();
      c.kv_heads = c.heads;
      c.ffn_dim = get_or<int>(j, "n_inner", 4 * c.dim);
      c.max_seq = get_or<int>(j, "n_positions", 1024);
      c.norm_eps = get_or<float>(j, "layer_norm_epsilon", 1e-5f);
      c.tied_embeddings = true;
    } else {
      throw Error(where, "model_type '" + type + "' is not supported (llama, gpt2)");
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("config: ") + e.what());
  }
  c.validate(where);
  return c;
}

void ModelConfig::validate(const std::string& where) const {
  auto bad = [&](const std::string& what) { throw Error(where, "config: " + what); };
  if (vocab_size < 1 || dim < 1 || layers < 1 || heads < 1 || kv_heads < 1 || ffn_dim < 1 || max_seq < 1)
    bad("sizes must be positive");
  if (dim % heads) bad("hidden size " + std::to_string(dim) + " is not a multiple of " + std::to_string(heads) + " heads");
  if (heads % kv_heads) bad(std::to_string(heads) + " heads are not a multiple of " + std::to_string(kv_heads) + " key/value heads");
  if (family == Family::llama && head_dim() % 2) bad("RoPE needs an even head size");
}

ModelConfig ModelConfig::load(const std::string& name_or_path) {
  std::string path = name_or_path;
  if (!has_suffix(path, ".json") && path.find('/') == std::string::npos && !is_directory(path)) {
    try {
      path = data_file("models/" + path + ".json");
    } catch (const Error&) {
      // A name that is neither a preset nor a file: a bad option value, so a usage error.
      throw UsageError("--model: no such model preset '" + name_or_path +
                       "' (llama-tiny, llama-25m, gpt2-124m, llama-125m) or config.json");
    }
  } else if (is_directory(path)) {
    path += "/config.json";
  }
  return from_json(read_file(path), path);
}

std::string ModelConfig::to_json() const {
  nlohmann::ordered_json j;
  if (family == Family::llama) {
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["vocab_size"] = vocab_size;
    j["hidden_size"] = dim;
    j["intermediate_size"] = ffn_dim;
    j["num_hidden_layers"] = layers;
    j["num_attention_heads"] = heads;
    j["num_key_value_heads"] = kv_heads;
    j["max_position_embeddings"] = max_seq;
    j["rms_norm_eps"] = norm_eps;
    j["rope_theta"] = rope_theta;
    j["tie_word_embeddings"] = tied_embeddings;
    j["hidden_act"] = "silu";
  } else {
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    j["vocab_size"] = vocab_size;
    j["n_embd"] = dim;
    j["n_layer"] = layers;
    j["n_head"] = heads;
    j["n_inner"] = ffn_dim;
    j["n_positions"] = max_seq;
    j["layer_norm_epsilon"] = norm_eps;
    j["activation_function"] = "gelu_new";
    j["tie_word_embeddings"] = true;
  }
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

// ---- Parameters ----------------------------------------------------------------------------------

struct Model::Layer {
  // weights
  float *norm1_w = nullptr, *norm1_b = nullptr, *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
  float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
  float *norm2_w = nullptr, *norm2_b = nullptr, *w1 = nullptr, *w3 = nullptr, *w2 = nullptr, *b1 = nullptr, *b2 = nullptr;
  // gradients, same order
  float *d_norm1_w = nullptr, *d_norm1_b = nullptr, *dwq = nullptr, *dwk = nullptr, *dwv = nullptr, *dwo = nullptr;
  float *dbq = nullptr, *dbk = nullptr, *dbv = nullptr, *dbo = nullptr;
  float *d_norm2_w = nullptr, *d_norm2_b = nullptr, *dw1 = nullptr, *dw3 = nullptr, *dw2 = nullptr, *db1 = nullptr, *db2 = nullptr;
  // activations
  float *x = nullptr, *h1 = nullptr, *mean1 = nullptr, *rstd1 = nullptr, *q = nullptr, *k = nullptr, *v = nullptr;
  float *att = nullptr, *lse = nullptr, *xmid = nullptr, *h2 = nullptr, *mean2 = nullptr, *rstd2 = nullptr;
  float *f1 = nullptr, *f3 = nullptr, *act = nullptr;  // llama: gate, up, silu(gate)*up; gpt2: fc, -, gelu(fc)
};

struct Model::Top {
  float *wte = nullptr, *wpe = nullptr, *normf_w = nullptr, *normf_b = nullptr, *lm = nullptr, *score = nullptr;
  float *dwte = nullptr, *dwpe = nullptr, *d_normf_w = nullptr, *d_normf_b = nullptr, *dlm = nullptr, *dscore = nullptr;
  float *values = nullptr, *dvalues = nullptr;
  // activations and scratch
  float *xf = nullptr, *hf = nullptr, *meanf = nullptr, *rstdf = nullptr, *logp = nullptr;
  float *tmp = nullptr, *dres = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float *datt = nullptr, *df1 = nullptr, *df3 = nullptr, *dact = nullptr, *dlogp = nullptr;
};

void Model::build_specs() {
  const ModelConfig& c = cfg_;
  const int64_t C = c.dim, V = c.padded_vocab(), F = c.ffn_dim, hd = c.head_dim();
  const int64_t QC = c.heads * hd, KC = c.kv_heads * hd;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    specs_.push_back({name, std::move(shape), total_, n, decay});
    total_ += (n + 15) / 16 * 16;  // 64-byte aligned tensors
  };
  const bool llama = c.family == ModelConfig::Family::llama;
  if (llama) add("model.embed_tokens.weight", {V, C}, false);
  else {
    add("wte", {V, C}, false);
    add("wpe", {c.max_seq, C}, false);
  }
  for (int l = 0; l < c.layers; ++l) {
    layer_begin_.push_back(total_);
    std::string p = llama ? "model.layers." + std::to_string(l) + "." : "h." + std::to_string(l) + ".";
    if (llama) {
      add(p + "input_layernorm.weight", {C}, false);
      add(p + "self_attn.q_proj.weight", {QC, C}, true);
      add(p + "self_attn.k_proj.weight", {KC, C}, true);
      add(p + "self_attn.v_proj.weight", {KC, C}, true);
      add(p + "self_attn.o_proj.weight", {C, QC}, true);
      add(p + "post_attention_layernorm.weight", {C}, false);
      add(p + "mlp.gate_proj.weight", {F, C}, true);
      add(p + "mlp.up_proj.weight", {F, C}, true);
      add(p + "mlp.down_proj.weight", {C, F}, true);
    } else {
      add(p + "ln_1.weight", {C}, false);
      add(p + "ln_1.bias", {C}, false);
      add(p + "attn.q.weight", {C, C}, true);
      add(p + "attn.k.weight", {C, C}, true);
      add(p + "attn.v.weight", {C, C}, true);
      add(p + "attn.q.bias", {C}, false);
      add(p + "attn.k.bias", {C}, false);
      add(p + "attn.v.bias", {C}, false);
      add(p + "attn.c_proj.weight", {C, C}, true);
      add(p + "attn.c_proj.bias", {C}, false);
      add(p + "ln_2.weight", {C}, false);
      add(p + "ln_2.bias", {C}, false);
      add(p + "mlp.c_fc.weight", {F, C}, true);
      add(p + "mlp.c_fc.bias", {F}, false);
      add(p + "mlp.c_proj.weight", {C, F}, true);
      add(p + "mlp.c_proj.bias", {C}, false);
    }
  }
  layer_begin_.push_back(total_);
  if (llama) {
    add("model.norm.weight", {C}, false);
    if (!c.tied_embeddings) add("lm_head.weight", {V, C}, true);
  } else {
    add("ln_f.weight", {C}, false);
    add("ln_f.bias", {C}, false);
  }
  if (opts_.scalar_head) add("score.weight", {1, C}, true);
}

const ParamSpec& Model::param(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return s;
  throw Error("", "model has no parameter " + name);
}

float* Model::w(const std::string& name) { return w_ + param(name).offset; }

Model::Model(const ModelConfig& cfg, Backend& backend, ModelOptions options)
    : cfg_(cfg), opts_(options), be_(backend), top_(std::make_unique<Top>()) {
  cfg_.validate("model config");
  build_specs();
  frozen_.assign(specs_.size(), false);
  w_ = be_.alloc(total_);
  g_ = be_.alloc(total_);
  be_.set_parameters(w_, total_);
  bind();
}

void Model::bind() {
  const bool llama = cfg_.family == ModelConfig::Family::llama;
  // A frozen tensor's gradient pointer is null: every backward op then skips it.
  auto grad = [&](float* p) -> float* {
    if (!p) return nullptr;
    size_t off = static_cast<size_t>(p - w_);
    for (size_t i = 0; i < specs_.size(); ++i)
      if (specs_[i].offset == off) return frozen_[i] ? nullptr : g_ + off;
    return g_ + off;
  };
  layers_.resize(static_cast<size_t>(cfg_.layers));
  for (int l = 0; l < cfg_.layers; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    if (llama) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      L.norm1_w = w(p + "input_layernorm.weight");
      L.wq = w(p + "self_attn.q_proj.weight");
      L.wk = w(p + "self_attn.k_proj.weight");
      L.wv = w(p + "self_attn.v_proj.weight");
      L.wo = w(p + "self_attn.o_proj.weight");
      L.norm2_w = w(p + "post_attention_layernorm.weight");
      L.w1 = w(p + "mlp.gate_proj.weight");
      L.w3 = w(p + "mlp.up_proj.weight");
      L.w2 = w(p + "mlp.down_proj.weight");
    } else {
      std::string p = "h." + std::to_string(l) + ".";
      L.norm1_w = w(p + "ln_1.weight");
      L.norm1_b = w(p + "ln_1.bias");
      L.wq = w(p + "attn.q.weight");
      L.wk = w(p + "attn.k.weight");
      L.wv = w(p + "attn.v.weight");
      L.bq = w(p + "attn.q.bias");
      L.bk = w(p + "attn.k.bias");
      L.bv = w(p + "attn.v.bias");
      L.wo = w(p + "attn.c_proj.weight");
      L.bo = w(p + "attn.c_proj.bias");
      L.norm2_w = w(p + "ln_2.weight");
      L.norm2_b = w(p + "ln_2.bias");
      L.w1 = w(p + "mlp.c_fc.weight");
      L.b1 = w(p + "mlp.c_fc.bias");
      L.w2 = w(p + "mlp.c_proj.weight");
      L.b2 = w(p + "mlp.c_proj.bias");
    }
    L.d_norm1_w = grad(L.norm1_w), L.d_norm1_b = grad(L.norm1_b);
    L.dwq = grad(L.wq), L.dwk = grad(L.wk), L.dwv = grad(L.wv), L.dwo = grad(L.wo);
    L.dbq = grad(L.bq), L.dbk = grad(L.bk), L.dbv = grad(L.bv), L.dbo = grad(L.bo);
    L.d_norm2_w = grad(L.norm2_w), L.d_norm2_b = grad(L.norm2_b);
    L.dw1 = grad(L.w1), L.dw3 = grad(L.w3), L.dw2 = grad(L.w2), L.db1 = grad(L.b1), L.db2 = grad(L.b2);
  }
  Top& t = *top_;
  if (llama) {
    t.wte = w("model.embed_tokens.weight");
    t.normf_w = w("model.norm.weight");
    t.lm = cfg_.tied_embeddings ? t.wte : w("lm_head.weight");
  } else {
    t.wte = w("wte");
    t.wpe = w("wpe");
    t.normf_w = w("ln_f.weight");
    t.normf_b = w("ln_f.bias");
    t.lm = t.wte;
  }
  t.dwte = grad(t.wte), t.dwpe = grad(t.wpe), t.d_normf_w = grad(t.normf_w), t.d_normf_b = grad(t.normf_b);
  t.dlm = grad(t.lm);
  if (opts_.scalar_head) {
    t.score = w("score.weight");
    t.dscore = grad(t.score);
  }
}

void Model::freeze(const std::function<bool(const std::string&)>& frozen) {
  for (size_t i = 0; i < specs_.size(); ++i) frozen_[i] = frozen(specs_[i].name);
  bind();
}

bool Model::is_frozen(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return frozen_[i];
  throw Error("", "model has no parameter " + name);
}

Model::~Model() {
  if (acts_.buf) be_.release(acts_.buf);
  if (acts_.stats) be_.release(acts_.stats);
  be_.release(w_);
  be_.release(g_);
}

size_t Model::num_params_unpadded() const {
  size_t n = 0;
  for (const auto& s : specs_) {
    size_t rows = s.shape[0] == cfg_.padded_vocab() && (s.name.find("embed") != std::string::npos ||
                                                         s.name == "wte" || s.name == "lm_head.weight")
                      ? static_cast<size_t>(cfg_.vocab_size)
                      : static_cast<size_t>(s.shape[0]);
    n += s.size / static_cast<size_t>(s.shape[0]) * rows;
  }
  return n;
}

namespace {
// Standard normal values from a seeded 64-bit generator (Box-Muller), the same on every platform.
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  float next() {
    if (have_) {
      have_ = false;
      return spare_;
    }
    double u1 = (static_cast<double>(rng_() >> 11) + 0.5) / 9007199254740992.0;
    double u2 = static_cast<double>(rng_() >> 11) / 9007199254740992.0;
    double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * M_PI * u2;
    spare_ = static_cast<float>(r * std::sin(a));
    have_ = true;
    return static_cast<float>(r * std::cos(a));
  }

 private:
  std::mt19937_64 rng_;
  float spare_ = 0;
  bool have_ = false;
};
}  // namespace

void Model::init(uint64_t seed) {
  const float resid_std = 0.02f / std::sqrt(2.0f * static_cast<float>(cfg_.layers));
  float* direct = be_.host_view(w_);
  std::vector<float> staging;
  for (size_t i = 0; i < specs_.size(); ++i) {
    const ParamSpec& s = specs_[i];
    // Written in place on the CPU; elsewhere through one tensor-sized staging buffer.
    if (!direct) staging.assign(s.size, 0.0f);
    float* p = direct ? direct + s.offset : staging.data();
    std::fill(p, p + s.size, 0.0f);
    Normal normal(seed * 1000003ull + i);  // one stream per tensor: adding one changes no other
    const bool is_norm_w = s.shape.size() == 1 && s.name.find(".bias") == std::string::npos;
    if (s.shape.size() == 1) {
      if (is_norm_w) std::fill(p, p + s.size, 1.0f);
    } else {
      const bool resid = s.name.find("o_proj") != std::string::npos || s.name.find("down_proj") != std::string::npos ||
                         s.name.find("c_proj.weight") != std::string::npos;
      const float std = resid ? resid_std : 0.02f;
      size_t rows = static_cast<size_t>(s.shape[0]), cols = s.size / rows;
      bool vocab_rows = s.name == "wte" || s.name == "lm_head.weight" || s.name == "model.embed_tokens.weight";
      size_t live = vocab_rows ? static_cast<size_t>(cfg_.vocab_size) : rows;
      for (size_t k = 0; k < live * cols; ++k) p[k] = normal.next() * std;
    }
    if (!direct) be_.upload(w_ + s.offset, staging.data(), s.size);
  }
  zero_grad();
}

void Model::zero_grad() { be_.zero(g_, total_); }

// ---- Activations ---------------------------------------------------------------------------------

void Model::activation_sizes(size_t N, size_t& acts, size_t& stats) const {
  const size_t C = cfg_.dim, F = cfg_.ffn_dim, V = static_cast<size_t>(cfg_.padded_vocab());
  const size_t QC = static_cast<size_t>(cfg_.heads) * cfg_.head_dim(), KC = static_cast<size_t>(cfg_.kv_heads) * cfg_.head_dim();
  const size_t mlp = N * 3 * F;  // f1, f3, act: per layer, or once with recompute_mlp
  const size_t layer = N * (4 * C + 2 * QC + 2 * KC) + (opts_.recompute_mlp ? 0 : mlp);
  const size_t top = N * (2 * C + V) + (opts_.recompute_mlp ? mlp : 0);
  const size_t scratch = N * (2 * C + QC + 2 * KC + std::max(F, QC) + 2 * F);  // gradients
  acts = layer * cfg_.layers + top + scratch;
  stats = N * (4 + static_cast<size_t>(cfg_.heads)) * cfg_.layers + 6 * N;  // norms' mean, rstd; lse; logp...
}

size_t Model::activation_bytes(int B, int T) const {
  size_t acts = 0, stats = 0;
  activation_sizes(static_cast<size_t>(B) * T, acts, stats);
  return acts * be_.activation_value_bytes() + stats * 4;
}

void Model::ensure_acts(int B, int T) {
  if (T > cfg_.max_seq) throw Error("", "sequence length " + std::to_string(T) + " is above the model's " + std::to_string(cfg_.max_seq));
  B_ = B;
  T_ = T;
  ensure_rows(B * T);
}

void Model::ensure_rows(int tokens) {
  if (tokens <= cap_tokens_ && acts_.buf) {
    // Same capacity: the pointers stay, but lse and per-(B,T) layouts depend on B and T only
    // through N, which fits.
  } else {
    if (acts_.buf) be_.release(acts_.buf);
    if (acts_.stats) be_.release(acts_.stats);
    acts_.buf = acts_.stats = nullptr;
    activation_sizes(static_cast<size_t>(tokens), acts_.floats, acts_.stat_floats);
    acts_.buf = be_.alloc_activations(acts_.floats);
    acts_.stats = be_.alloc(acts_.stat_floats);
    cap_tokens_ = tokens;
  }
  // Carve (again: layouts depend on N = B*T only, and lse on B*NH*T = N*NH).
  const size_t N = static_cast<size_t>(cap_tokens_), C = cfg_.dim, F = cfg_.ffn_dim;
  const size_t QC = static_cast<size_t>(cfg_.heads) * cfg_.head_dim(), KC = static_cast<size_t>(cfg_.kv_heads) * cfg_.head_dim();
  float *p = acts_.buf, *ps = acts_.stats;
  auto take = [&](size_t n) {
    float* r = p;
    p += n;
    return r;
  };
  auto stat = [&](size_t n) {
    float* r = ps;
    ps += n;
    return r;
  };
  float *shared_f1 = nullptr, *shared_f3 = nullptr, *shared_act = nullptr;
  if (opts_.recompute_mlp) {
    shared_f1 = take(N * F);
    shared_f3 = take(N * F);
    shared_act = take(N * F);
  }
  for (Layer& L : layers_) {
    L.x = take(N * C);
    L.h1 = take(N * C);
    L.mean1 = stat(N);
    L.rstd1 = stat(N);
    L.q = take(N * QC);
    L.k = take(N * KC);
    L.v = take(N * KC);
    L.att = take(N * QC);
    L.lse = stat(N * cfg_.heads);
    L.xmid = take(N * C);
    L.h2 = take(N * C);
    L.mean2 = stat(N);
    L.rstd2 = stat(N);
    L.f1 = shared_f1 ? shared_f1 : take(N * F);
    L.f3 = shared_f3 ? shared_f3 : take(N * F);
    L.act = shared_act ? shared_act : take(N * F);
  }
  Top& t = *top_;
  t.xf = take(N * C);
  t.hf = take(N * C);
  t.meanf = stat(N);
  t.rstdf = stat(N);
  t.logp = stat(N);
  t.values = stat(N);
  t.dvalues = stat(N);
  acts_.logits = take(N * static_cast<size_t>(cfg_.padded_vocab()));
  t.tmp = take(N * C);
  t.dres = take(N * C);
  t.dq = take(N * QC);
  t.dk = take(N * KC);
  t.dv = take(N * KC);
  t.datt = take(N * std::max(F, QC));  // d(mlp act) [N, F], then d(attention out) [N, QC]
  t.df1 = take(N * F);
  t.df3 = take(N * F);
  t.dlogp = stat(N);
  if (static_cast<size_t>(p - acts_.buf) > acts_.floats || static_cast<size_t>(ps - acts_.stats) > acts_.stat_floats)
    throw Error("", "internal: activation layout overflow");
}

// ---- Forward ---------------------------------------------------------------------------------------

void Model::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  ensure_acts(B, T);
  const ModelConfig& c = cfg_;
  const int N = B * T, C = c.dim, F = c.ffn_dim, hd = c.head_dim(), NH = c.heads, KV = c.kv_heads;
  const int V = c.vocab_size, Vp = c.padded_vocab();
  const bool llama = c.family == ModelConfig::Family::llama;
  for (int n = 0; n < N; ++n)
    if (tokens[n] < 0 || tokens[n] >= V)
      throw Error("", "token id " + std::to_string(tokens[n]) + " outside the vocabulary of " + std::to_string(V));
  tokens_.assign(tokens, tokens + N);
  if (targets) targets_.assign(targets, targets + N);
  else targets_.assign(static_cast<size_t>(N), -1);
  Top& t = *top_;
  Backend& be = be_;

  be.embedding_forward(layers_.empty() ? t.xf : layers_[0].x, tokens_.data(), t.wte, t.wpe, B, T, C);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    float* out = l + 1 < layers_.size() ? layers_[l + 1].x : t.xf;
    if (llama) be.rmsnorm_forward(L.h1, L.rstd1, L.x, L.norm1_w, N, C, c.norm_eps);
    else be.layernorm_forward(L.h1, L.mean1, L.rstd1, L.x, L.norm1_w, L.norm1_b, N, C, c.norm_eps);
    be.matmul_forward(L.q, L.h1, L.wq, L.bq, N, C, NH * hd);
    be.matmul_forward(L.k, L.h1, L.wk, L.bk, N, C, KV * hd);
    be.matmul_forward(L.v, L.h1, L.wv, L.bv, N, C, KV * hd);
    if (llama) {
      be.rope_forward(L.q, B, T, NH, hd, c.rope_theta);
      be.rope_forward(L.k, B, T, KV, hd, c.rope_theta);
    }
    be.attention_forward(L.att, L.lse, L.q, L.k, L.v, B, T, NH, KV, hd);
    be.matmul_forward(t.tmp, L.att, L.wo, L.bo, N, NH * hd, C);
    be.add(L.xmid, L.x, t.tmp, static_cast<size_t>(N) * C);
    if (llama) {
      be.rmsnorm_forward(L.h2, L.rstd2, L.xmid, L.norm2_w, N, C, c.norm_eps);
      be.matmul_forward(L.f1, L.h2, L.w1, nullptr, N, C, F);
      be.matmul_forward(L.f3, L.h2, L.w3, nullptr, N, C, F);
      be.swiglu_forward(L.act, L.f1, L.f3, static_cast<size_t>(N) * F);
    } else {
      be.layernorm_forward(L.h2, L.mean2, L.rstd2, L.xmid, L.norm2_w, L.norm2_b, N, C, c.norm_eps);
      be.matmul_forward(L.f1, L.h2, L.w1, L.b1, N, C, F);
      be.gelu_forward(L.act, L.f1, static_cast<size_t>(N) * F);
    }
    be.matmul_forward(t.tmp, L.act, L.w2, L.b2, N, F, C);
    be.add(out, L.xmid, t.tmp, static_cast<size_t>(N) * C);
  }
  if (llama) be.rmsnorm_forward(t.hf, t.rstdf, t.xf, t.normf_w, N, C, c.norm_eps);
  else be.layernorm_forward(t.hf, t.meanf, t.rstdf, t.xf, t.normf_w, t.normf_b, N, C, c.norm_eps);
  be.matmul_forward(acts_.logits, t.hf, t.lm, nullptr, N, C, Vp);
  if (targets) be.crossentropy_forward(t.logp, acts_.logits, targets_.data(), N, V, Vp);
  if (t.score) be.matmul_forward(t.values, t.hf, t.score, nullptr, N, C, 1);
}

std::vector<float> Model::values() const {
  if (!top_->score) throw Error("", "the model has no scalar head");
  std::vector<float> out(static_cast<size_t>(B_) * T_);
  be_.download(out.data(), top_->values, out.size());
  return out;
}

const float* Model::logits_on_host() {
  if (const float* p = be_.host_view(acts_.logits)) return p;
  host_logits_.resize(static_cast<size_t>(B_) * T_ * static_cast<size_t>(cfg_.padded_vocab()));
  be_.download(host_logits_.data(), acts_.logits, host_logits_.size());
  return host_logits_.data();
}

std::vector<float> Model::logp() const {
  std::vector<float> out(static_cast<size_t>(B_) * T_);
  be_.download(out.data(), top_->logp, out.size());
  return out;
}

double Model::mean_loss() const {
  std::vector<float> lp = logp();
  double sum = 0;
  size_t count = 0;
  for (size_t i = 0; i < lp.size(); ++i)
    if (targets_[i] >= 0) {
      sum -= lp[i];
      ++count;
    }
  return count ? sum / static_cast<double>(count) : 0.0;
}

// ---- Backward --------------------------------------------------------------------------------------

void Model::backward_mean(float scale) {
  const size_t N = static_cast<size_t>(B_) * T_;
  size_t count = 0;
  for (size_t i = 0; i < N; ++i) count += targets_[i] >= 0;
  std::vector<float> dlogp(N, 0.0f);
  if (count)
    for (size_t i = 0; i < N; ++i)
      if (targets_[i] >= 0) dlogp[i] = -scale / static_cast<float>(count);
  backward(dlogp.data());
}

void Model::backward(const float* dlogp_host, const float* dvalue_host) {
  const ModelConfig& c = cfg_;
  const int B = B_, T = T_, N = B * T, C = c.dim, F = c.ffn_dim, hd = c.head_dim(), NH = c.heads, KV = c.kv_heads;
  const int V = c.vocab_size, Vp = c.padded_vocab();
  const bool llama = c.family == ModelConfig::Family::llama;
  Top& t = *top_;
  Backend& be = be_;
  const size_t NC = static_cast<size_t>(N) * C;

  be.zero(t.tmp, NC);  // d(final hidden state)
  if (dlogp_host) {
    be.upload(t.dlogp, dlogp_host, static_cast<size_t>(N));
    // The logits become their gradient in place (the forward's logits are not needed again).
    be.crossentropy_backward(acts_.logits, acts_.logits, targets_.data(), t.dlogp, N, V, Vp);
    be.matmul_backward(t.tmp, t.dlm, nullptr, acts_.logits, t.hf, t.lm, N, C, Vp);
  }
  if (dvalue_host) {
    if (!t.score) throw Error("", "backward: the model has no scalar head");
    be.upload(t.dvalues, dvalue_host, static_cast<size_t>(N));
    be.matmul_backward(t.tmp, t.dscore, nullptr, t.dvalues, t.hf, t.score, N, C, 1);
  }
  be.zero(t.dres, NC);
  if (llama) be.rmsnorm_backward(t.dres, t.d_normf_w, t.tmp, t.xf, t.normf_w, t.rstdf, N, C);
  else be.layernorm_backward(t.dres, t.d_normf_w, t.d_normf_b, t.tmp, t.xf, t.normf_w, t.meanf, t.rstdf, N, C);

  for (size_t li = layers_.size(); li-- > 0;) {
    Layer& L = layers_[li];
    // MLP: out = xmid + mlp(norm2(xmid)); dres flows to xmid unchanged plus through the MLP.
    // Recomputed MLP activations: the forward left the last layer's in the shared buffers.
    if (opts_.recompute_mlp && li + 1 < layers_.size()) {
      if (llama) {
        be.matmul_forward(L.f1, L.h2, L.w1, nullptr, N, C, F);
        be.matmul_forward(L.f3, L.h2, L.w3, nullptr, N, C, F);
        be.swiglu_forward(L.act, L.f1, L.f3, static_cast<size_t>(N) * F);
      } else {
        be.matmul_forward(L.f1, L.h2, L.w1, L.b1, N, C, F);
        be.gelu_forward(L.act, L.f1, static_cast<size_t>(N) * F);
      }
    }
    float* dact = t.datt;
    be.zero(dact, static_cast<size_t>(N) * F);
    be.matmul_backward(dact, L.dw2, L.db2, t.dres, L.act, L.w2, N, F, C);
    be.zero(t.tmp, NC);
    if (llama) {
      be.swiglu_backward(t.df1, t.df3, dact, L.f1, L.f3, static_cast<size_t>(N) * F);
      be.matmul_backward(t.tmp, L.dw1, nullptr, t.df1, L.h2, L.w1, N, C, F);
      be.matmul_backward(t.tmp, L.dw3, nullptr, t.df3, L.h2, L.w3, N, C, F);
      be.rmsnorm_backward(t.dres, L.d_norm2_w, t.tmp, L.xmid, L.norm2_w, L.rstd2, N, C);
    } else {
      be.gelu_backward(t.df1, dact, L.f1, static_cast<size_t>(N) * F);
      be.matmul_backward(t.tmp, L.dw1, L.db1, t.df1, L.h2, L.w1, N, C, F);
      be.layernorm_backward(t.dres, L.d_norm2_w, L.d_norm2_b, t.tmp, L.xmid, L.norm2_w, L.mean2, L.rstd2, N, C);
    }
    // Attention: xmid = x + o_proj(attention(norm1(x))).
    float* datt = t.datt;
    be.zero(datt, static_cast<size_t>(N) * NH * hd);
    be.matmul_backward(datt, L.dwo, L.dbo, t.dres, L.att, L.wo, N, NH * hd, C);
    be.attention_backward(t.dq, t.dk, t.dv, datt, L.q, L.k, L.v, L.att, L.lse, B, T, NH, KV, hd);
    if (llama) {
      be.rope_backward(t.dq, B, T, NH, hd, c.rope_theta);
      be.rope_backward(t.dk, B, T, KV, hd, c.rope_theta);
    }
    be.zero(t.tmp, NC);
    be.matmul_backward(t.tmp, L.dwq, L.dbq, t.dq, L.h1, L.wq, N, C, NH * hd);
    be.matmul_backward(t.tmp, L.dwk, L.dbk, t.dk, L.h1, L.wk, N, C, KV * hd);
    be.matmul_backward(t.tmp, L.dwv, L.dbv, t.dv, L.h1, L.wv, N, C, KV * hd);
    if (llama) be.rmsnorm_backward(t.dres, L.d_norm1_w, t.tmp, L.x, L.norm1_w, L.rstd1, N, C);
    else be.layernorm_backward(t.dres, L.d_norm1_w, L.d_norm1_b, t.tmp, L.x, L.norm1_w, L.mean1, L.rstd1, N, C);
    if (hook_) hook_(layer_begin_[li], layer_begin_[li + 1] - layer_begin_[li]);
  }
  be.embedding_backward(t.dwte, t.dwpe, t.dres, tokens_.data(), B, T, C);
  if (hook_) {
    hook_(0, layer_begin_.front());
    hook_(layer_begin_.back(), total_ - layer_begin_.back());
  }
}

// ---- Inference ---------------------------------------------------------------------------------------

KVCache::KVCache(Backend& be, int layers, int slots, int max_len, int kv_dim)
    : be_(be), slots_(slots), max_len_(max_len), kv_dim_(kv_dim) {
  size_t n = static_cast<size_t>(layers) * slots * static_cast<size_t>(max_len) * kv_dim;
  k_ = be_.alloc_activations(n);  // copied from the activations' keys and values
  v_ = be_.alloc_activations(n);
}

KVCache::~KVCache() {
  be_.release(k_);
  be_.release(v_);
}

void Model::forward_cached(const int32_t* tokens, int rows, const std::vector<CacheSegment>& segments,
                           KVCache& cache) {
  const ModelConfig& c = cfg_;
  const int N = rows, C = c.dim, F = c.ffn_dim, hd = c.head_dim(), NH = c.heads, KV = c.kv_heads;
  const int V = c.vocab_size, Vp = c.padded_vocab(), kvd = KV * hd;
  const bool llama = c.family == ModelConfig::Family::llama;
  std::vector<int32_t> pos(static_cast<size_t>(N), -1);
  for (const CacheSegment& s : segments) {
    if (s.slot < 0 || s.slot >= cache.slots() || s.start < 0 || s.count < 0 || s.row < 0 || s.row + s.count > N)
      throw Error("", "forward_cached: a segment outside the batch or the cache");
    if (s.start + s.count > cache.max_len() || s.start + s.count > c.max_seq)
      throw Error("", "sequence of " + std::to_string(s.start + s.count) + " tokens is above the context of " +
                          std::to_string(std::min(cache.max_len(), c.max_seq)));
    for (int i = 0; i < s.count; ++i) pos[static_cast<size_t>(s.row + i)] = s.start + i;
  }
  for (int n = 0; n < N; ++n) {
    if (pos[static_cast<size_t>(n)] < 0) throw Error("", "forward_cached: a row belongs to no segment");
    if (tokens[n] < 0 || tokens[n] >= V)
      throw Error("", "token id " + std::to_string(tokens[n]) + " outside the vocabulary of " + std::to_string(V));
  }
  B_ = 1;
  T_ = N;
  ensure_rows(N);
  tokens_.assign(tokens, tokens + N);
  targets_.assign(static_cast<size_t>(N), -1);
  Top& t = *top_;
  Backend& be = be_;
  // Every layer works in layer 0's buffers: nothing is kept for a backward pass.
  Layer& L0 = layers_.at(0);
  float* x = L0.x;
  be.embedding_at(x, tokens_.data(), pos.data(), t.wte, t.wpe, N, C);
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    if (llama) be.rmsnorm_forward(L0.h1, L0.rstd1, x, L.norm1_w, N, C, c.norm_eps);
    else be.layernorm_forward(L0.h1, L0.mean1, L0.rstd1, x, L.norm1_w, L.norm1_b, N, C, c.norm_eps);
    be.matmul_forward(L0.q, L0.h1, L.wq, L.bq, N, C, NH * hd);
    be.matmul_forward(L0.k, L0.h1, L.wk, L.bk, N, C, kvd);
    be.matmul_forward(L0.v, L0.h1, L.wv, L.bv, N, C, kvd);
    if (llama) {
      be.rope_at(L0.q, pos.data(), N, NH, hd, c.rope_theta);
      be.rope_at(L0.k, pos.data(), N, KV, hd, c.rope_theta);
    }
    for (const CacheSegment& s : segments) {
      float* kc = cache.k(static_cast<int>(l), s.slot);
      float* vc = cache.v(static_cast<int>(l), s.slot);
      be.copy(kc + static_cast<size_t>(s.start) * kvd, L0.k + static_cast<size_t>(s.row) * kvd, static_cast<size_t>(s.count) * kvd);
      be.copy(vc + static_cast<size_t>(s.start) * kvd, L0.v + static_cast<size_t>(s.row) * kvd, static_cast<size_t>(s.count) * kvd);
      if (s.count > 0)
        be.attention_cached(L0.att + static_cast<size_t>(s.row) * NH * hd, L0.q + static_cast<size_t>(s.row) * NH * hd,
                            kc, vc, s.start, s.count, NH, KV, hd);
    }
    be.matmul_forward(t.tmp, L0.att, L.wo, L.bo, N, NH * hd, C);
    be.add(L0.xmid, x, t.tmp, static_cast<size_t>(N) * C);
    if (llama) {
      be.rmsnorm_forward(L0.h2, L0.rstd2, L0.xmid, L.norm2_w, N, C, c.norm_eps);
      be.matmul_forward(L0.f1, L0.h2, L.w1, nullptr, N, C, F);
      be.matmul_forward(L0.f3, L0.h2, L.w3, nullptr, N, C, F);
      be.swiglu_forward(L0.act, L0.f1, L0.f3, static_cast<size_t>(N) * F);
    } else {
      be.layernorm_forward(L0.h2, L0.mean2, L0.rstd2, L0.xmid, L.norm2_w, L.norm2_b, N, C, c.norm_eps);
      be.matmul_forward(L0.f1, L0.h2, L.w1, L.b1, N, C, F);
      be.gelu_forward(L0.act, L0.f1, static_cast<size_t>(N) * F);
    }
    be.matmul_forward(t.tmp, L0.act, L.w2, L.b2, N, F, C);
    be.add(x, L0.xmid, t.tmp, static_cast<size_t>(N) * C);
  }
  if (llama) be.rmsnorm_forward(t.hf, t.rstdf, x, t.normf_w, N, C, c.norm_eps);
  else be.layernorm_forward(t.hf, t.meanf, t.rstdf, x, t.normf_w, t.normf_b, N, C, c.norm_eps);
  be.matmul_forward(acts_.logits, t.hf, t.lm, nullptr, N, C, Vp);
  if (t.score) be.matmul_forward(t.values, t.hf, t.score, nullptr, N, C, 1);
}

// ---- Cost ------------------------------------------------------------------------------------------

double Model::flops_per_step(int B, int T) const {
  const double C = cfg_.dim, F = cfg_.ffn_dim, L = cfg_.layers, hd = cfg_.head_dim();
  const double QC = cfg_.heads * hd, KC = cfg_.kv_heads * hd;
  const double ffn_mats = cfg_.family == ModelConfig::Family::llama ? 3 : 2;
  const double matmul_params = L * (C * QC + 2 * C * KC + QC * C + ffn_mats * C * F) + C * cfg_.padded_vocab();
  const double tokens = static_cast<double>(B) * T;
  // attention: QK^T and PV, forward 2 * 2 * T * T/2 * QC per sequence and layer (causal), x3 with backward
  const double attn = 3.0 * 2.0 * 2.0 * L * QC * static_cast<double>(T) * T / 2.0 * B;
  return 6.0 * matmul_params * tokens + attn;
}

}  // namespace llmkit
