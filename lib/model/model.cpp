// Decoder-only transformers: configuration, parameters, forward and backward; see model.hpp.
#include "llmkit/model.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "layers.hpp"

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
    if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
        j["architectures"][0].is_string()) {
      const std::string arch = j["architectures"][0].get<std::string>();
      c.nsp = arch == "BertForPreTraining";
      if (has_suffix(arch, "ForSequenceClassification")) {
        c.classifier = true;
        // Hugging Face's default is 2 labels; id2label, when given, names them.
        const auto names = j.find("id2label");
        const int given = names != j.end() && names->is_object() ? static_cast<int>(names->size()) : 2;
        c.num_labels = get_or<int>(j, "num_labels", given);
        if (names != j.end() && names->is_object() && static_cast<int>(names->size()) == c.num_labels) {
          c.labels.assign(static_cast<size_t>(c.num_labels), "");
          for (const auto& [k, v] : names->items()) {
            const int id = !k.empty() && k.size() < 8 && k.find_first_not_of("0123456789") == std::string::npos ? std::stoi(k) : -1;
            if (id < 0 || id >= c.num_labels || !v.is_string()) throw Error(where, "config: id2label has a bad entry '" + k + "'");
            c.labels[static_cast<size_t>(id)] = v.get<std::string>();
          }
        }
      }
    }
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
    } else if (type == "bert") {
      c.family = Family::bert;
      c.vocab_size = j.at("vocab_size").get<int>();
      c.dim = j.at("hidden_size").get<int>();
      c.layers = j.at("num_hidden_layers").get<int>();
      c.heads = j.at("num_attention_heads").get<int>();
      c.kv_heads = c.heads;
      c.ffn_dim = j.at("intermediate_size").get<int>();
      c.max_seq = get_or<int>(j, "max_position_embeddings", 512);
      c.type_vocab_size = get_or<int>(j, "type_vocab_size", 2);
      c.norm_eps = get_or<float>(j, "layer_norm_eps", 1e-12f);
      c.tied_embeddings = get_or<bool>(j, "tie_word_embeddings", true);
      const std::string act = get_or<std::string>(j, "hidden_act", "gelu");
      if (act != "gelu" && act != "gelu_new" && act != "gelu_pytorch_tanh")
        throw Error(where, "config: hidden_act '" + act + "' (llmkit's BERT has gelu, gelu_new, gelu_pytorch_tanh)");
      c.gelu_erf = act == "gelu";
      const std::string pos = get_or<std::string>(j, "position_embedding_type", "absolute");
      if (pos != "absolute") throw Error(where, "config: position_embedding_type '" + pos + "' (llmkit's BERT has absolute)");
      if (!c.tied_embeddings) throw Error(where, "config: a BERT whose decoder is not tied to the word embeddings");
    } else {
      throw Error(where, "model_type '" + type + "' is not supported (llama, gpt2, bert)");
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
  if (family == Family::bert && type_vocab_size < 1) bad("type_vocab_size must be positive");
  if (classifier && num_labels < 1) bad("num_labels must be positive");
  if (nsp && (family != Family::bert || classifier)) bad("next-sentence prediction is BERT's pretraining head");
  if (!labels.empty() && static_cast<int>(labels.size()) != num_labels) bad("id2label does not name num_labels labels");
}

ModelConfig ModelConfig::load(const std::string& name_or_path) {
  std::string path = name_or_path;
  if (!has_suffix(path, ".json") && path.find('/') == std::string::npos && !is_directory(path)) {
    try {
      path = data_file("models/" + path + ".json");
    } catch (const Error&) {
      // A name that is neither a preset nor a file: a bad option value, so a usage error.
      throw UsageError("--model: no such model preset '" + name_or_path +
                       "' (llama-tiny, llama-25m, gpt2-124m, llama-125m, bert-tiny, bert-base) or config.json");
    }
  } else if (is_directory(path)) {
    path += "/config.json";
  }
  return from_json(read_file(path), path);
}

std::string ModelConfig::to_json() const {
  nlohmann::ordered_json j;
  if (family == Family::llama) {
    j["architectures"] = {classifier ? "LlamaForSequenceClassification" : "LlamaForCausalLM"};
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
  } else if (family == Family::bert) {
    j["architectures"] = {classifier ? "BertForSequenceClassification" : nsp ? "BertForPreTraining" : "BertForMaskedLM"};
    j["model_type"] = "bert";
    j["vocab_size"] = vocab_size;
    j["hidden_size"] = dim;
    j["num_hidden_layers"] = layers;
    j["num_attention_heads"] = heads;
    j["intermediate_size"] = ffn_dim;
    j["hidden_act"] = gelu_erf ? "gelu" : "gelu_new";
    j["max_position_embeddings"] = max_seq;
    j["type_vocab_size"] = type_vocab_size;
    j["layer_norm_eps"] = norm_eps;
    j["position_embedding_type"] = "absolute";
    j["initializer_range"] = 0.02;
    // llmkit trains without dropout: a model fine-tuned elsewhere gets what it was trained with.
    j["hidden_dropout_prob"] = 0.0;
    j["attention_probs_dropout_prob"] = 0.0;
    j["pad_token_id"] = 0;  // WordPiece's [PAD]
    j["tie_word_embeddings"] = true;
  } else {
    j["architectures"] = {classifier ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel"};
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
  if (classifier) {
    j["num_labels"] = num_labels;
    nlohmann::ordered_json id2label, label2id;
    for (int i = 0; i < num_labels; ++i) {
      const std::string name = labels.empty() ? "LABEL_" + std::to_string(i) : labels[static_cast<size_t>(i)];
      id2label[std::to_string(i)] = name;
      label2id[name] = i;
    }
    j["id2label"] = id2label;
    j["label2id"] = label2id;
    if (num_labels > 1) j["problem_type"] = "single_label_classification";
    // Decoders: llm-tok's <pad>, before which Hugging Face reads the score (the last token).
    if (family != Family::bert) j["pad_token_id"] = 3;
  }
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

// ---- Parameters ----------------------------------------------------------------------------------

// A transformer block's weights: attention and MLP, each after a norm (pre-LN: Llama, GPT-2) or
// each followed by one (post-LN: BERT, norm1 after attention, norm2 after the MLP), with
// residuals. Llama: mlp_in is gate_proj, mlp_up up_proj, mlp_out down_proj (SwiGLU); GPT-2 and
// BERT: mlp_in c_fc / intermediate.dense, mlp_out c_proj / output.dense (GELU), no mlp_up.
struct Model::Layer {
  Norm norm1, norm2;
  Linear q, k, v, o, mlp_in, mlp_up, mlp_out;
};

// What a block's forward keeps for its backward (training: one set per layer; inference: layer
// 0's serve every layer). x is the block's input. Post-LN (BERT) uses the same buffers in its
// own order: q, k, v from x; xmid = x + o(att); h2 = norm1(xmid); h1 = h2 + mlp(h2), the input
// of norm2 (mean2, rstd2), whose output is the block's.
struct Model::LayerActs {
  float *x = nullptr, *h1 = nullptr, *mean1 = nullptr, *rstd1 = nullptr;   // h1 = norm1(x)
  float *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr, *lse = nullptr;  // att = attention(q, k, v)
  float *xmid = nullptr, *h2 = nullptr, *mean2 = nullptr, *rstd2 = nullptr;  // xmid = x + o(att), h2 = norm2(xmid)
  float *f1 = nullptr, *f3 = nullptr, *act = nullptr;  // Llama: gate, up, silu(gate) * up; GPT-2: fc, -, gelu(fc)
  // Adapters: scale * dropout(input) A^T [N, rank] of q, k, v, o, mlp_in, mlp_up, mlp_out.
  float *mid_q = nullptr, *mid_k = nullptr, *mid_v = nullptr, *mid_o = nullptr;
  float *mid_in = nullptr, *mid_up = nullptr, *mid_out = nullptr;
};

struct Model::Top {
  float *wte = nullptr, *wpe = nullptr, *dwte = nullptr, *dwpe = nullptr;
  // BERT: token-type embeddings, the embeddings' LayerNorm over the sum (kept in emb), and the
  // MLM head's transform (dense, then GELU into head_act, then normf) before the decoder (lm).
  float *wtt = nullptr, *dwtt = nullptr;
  Norm emb_norm;
  Linear transform;
  float *emb = nullptr, *mean_emb = nullptr, *rstd_emb = nullptr, *head_pre = nullptr, *head_act = nullptr;
  // BERT's score head: the pooler (dense, then tanh in place: pooled) before the classifier (score).
  Linear pooler;
  float* pooled = nullptr;
  QuantWeight qwte;  // the token embedding's blocks when it is held quantized (wte null)
  Norm normf;
  Linear lm, score;  // score.w null without a scalar head
  float *values = nullptr, *dvalues = nullptr;
  // activations and scratch
  float *xf = nullptr, *hf = nullptr, *meanf = nullptr, *rstdf = nullptr, *logp = nullptr;
  float* vocab_lse = nullptr;  // tensor parallel: each row's log-sum-exp over the whole vocabulary
  float *tmp = nullptr, *dres = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float *datt = nullptr, *df1 = nullptr, *df3 = nullptr, *dlogp = nullptr;
  float *kd_weight = nullptr, *kd_loss = nullptr;  // distillation's per-row weight and divergence
  LoraScratch lora;
};

// Where a block's attention finds its keys and values, and how positions are applied: the
// batch itself (training; B sequences of T from position 0) or a KV cache (inference). forward:
// q, k, v of the block's activations (before RoPE) to att and lse; backward: datt to dq, dk, dv.
class Model::AttentionSite {
 public:
  virtual ~AttentionSite() = default;
  virtual void forward(int layer, LayerActs& a, int N) = 0;
  virtual void backward(int layer, LayerActs& a, const float* datt, float* dq, float* dk, float* dv, int N) = 0;
};

namespace {

// Training and whole-sequence scoring: causal attention within each of B rows of T tokens, or
// within each sequence of packed rows (starts: see backend.hpp).
class BatchAttention final : public Model::AttentionSite {
 public:
  BatchAttention(Backend& be, const ModelConfig& c, int B, int T, const int32_t* starts)
      : be_(be), c_(c), B_(B), T_(T), starts_(starts) {}
  void forward(int, Model::LayerActs& a, int) override {
    const int hd = c_.head_dim();
    if (c_.family == ModelConfig::Family::llama) {
      be_.rope_forward(a.q, B_, T_, c_.heads, hd, c_.rope_theta, starts_);
      be_.rope_forward(a.k, B_, T_, c_.kv_heads, hd, c_.rope_theta, starts_);
    }
    be_.attention_forward(a.att, a.lse, a.q, a.k, a.v, B_, T_, c_.heads, c_.kv_heads, hd, starts_, !c_.encoder());
  }
  void backward(int, Model::LayerActs& a, const float* datt, float* dq, float* dk, float* dv, int) override {
    const int hd = c_.head_dim();
    be_.attention_backward(dq, dk, dv, datt, a.q, a.k, a.v, a.att, a.lse, B_, T_, c_.heads, c_.kv_heads, hd, starts_,
                           !c_.encoder());
    if (c_.family == ModelConfig::Family::llama) {
      be_.rope_backward(dq, B_, T_, c_.heads, hd, c_.rope_theta, starts_);
      be_.rope_backward(dk, B_, T_, c_.kv_heads, hd, c_.rope_theta, starts_);
    }
  }

 private:
  Backend& be_;
  const ModelConfig& c_;
  int B_, T_;
  const int32_t* starts_;
};

// Inference: each segment's new rows continue its cache slot at explicit positions; their keys
// and values are written into the cache and the queries attend to everything cached before.
class CachedAttention final : public Model::AttentionSite {
 public:
  CachedAttention(Backend& be, const ModelConfig& c, const std::vector<CacheSegment>& segments, const std::vector<int32_t>& pos,
                  KVCache& cache)
      : be_(be), c_(c), segments_(segments), pos_(pos), cache_(cache) {}
  void forward(int layer, Model::LayerActs& a, int N) override {
    const int hd = c_.head_dim(), NH = c_.heads, KV = c_.kv_heads, kvd = KV * hd;
    if (c_.family == ModelConfig::Family::llama) {
      be_.rope_at(a.q, pos_.data(), N, NH, hd, c_.rope_theta);
      be_.rope_at(a.k, pos_.data(), N, KV, hd, c_.rope_theta);
    }
    for (const CacheSegment& s : segments_) {
      const std::vector<int32_t>& table = cache_.table(s.slot);
      // The new rows' keys and values into their blocks, a run of rows per block.
      for (int i = 0; i < s.count;) {
        const int p = s.start + i, b = p / KVCache::kBlock, off = p % KVCache::kBlock;
        const int run = std::min(s.count - i, KVCache::kBlock - off);
        const size_t dst = static_cast<size_t>(off) * kvd, src = static_cast<size_t>(s.row + i) * kvd;
        be_.copy(cache_.k(layer, table[static_cast<size_t>(b)]) + dst, a.k + src, static_cast<size_t>(run) * kvd);
        be_.copy(cache_.v(layer, table[static_cast<size_t>(b)]) + dst, a.v + src, static_cast<size_t>(run) * kvd);
        i += run;
      }
      if (s.count > 0)
        be_.attention_paged(a.att + static_cast<size_t>(s.row) * NH * hd, a.q + static_cast<size_t>(s.row) * NH * hd,
                            cache_.k_pool(layer), cache_.v_pool(layer), table.data(), KVCache::kBlock, s.start, s.count, NH, KV,
                            hd);
    }
  }
  void backward(int, Model::LayerActs&, const float*, float*, float*, float*, int) override {
    throw Error("", "internal: no backward pass through a KV cache");
  }

 private:
  Backend& be_;
  const ModelConfig& c_;
  const std::vector<CacheSegment>& segments_;
  const std::vector<int32_t>& pos_;
  KVCache& cache_;
};

}  // namespace

namespace {

// A linear module an adapter can sit on: its path in a layer (our tensor names' module part),
// the PEFT target name that selects it, and its sizes.
struct AdapterSite {
  std::string module, target;
  int64_t in, out;
};

std::vector<AdapterSite> adapter_sites(const ModelConfig& c, int layer) {
  const int64_t C = c.dim, F = c.ffn_dim, QC = c.heads * c.head_dim(), KC = c.kv_heads * c.head_dim();
  if (c.family == ModelConfig::Family::bert) {  // PEFT's names: query, key, value, dense (all three)
    const std::string p = "bert.encoder.layer." + std::to_string(layer) + ".";
    return {{p + "attention.self.query", "query", C, C}, {p + "attention.self.key", "key", C, C},
            {p + "attention.self.value", "value", C, C}, {p + "attention.output.dense", "dense", C, C},
            {p + "intermediate.dense", "dense", C, F},     {p + "output.dense", "dense", F, C}};
  }
  if (c.family == ModelConfig::Family::llama) {
    const std::string p = "model.layers." + std::to_string(layer) + ".";
    return {{p + "self_attn.q_proj", "q_proj", C, QC}, {p + "self_attn.k_proj", "k_proj", C, KC},
            {p + "self_attn.v_proj", "v_proj", C, KC}, {p + "self_attn.o_proj", "o_proj", QC, C},
            {p + "mlp.gate_proj", "gate_proj", C, F},  {p + "mlp.up_proj", "up_proj", C, F},
            {p + "mlp.down_proj", "down_proj", F, C}};
  }
  const std::string p = "h." + std::to_string(layer) + ".";
  return {{p + "attn.c_attn", "c_attn", C, 3 * C}, {p + "attn.c_proj", "c_proj", C, C},
          {p + "mlp.c_fc", "c_fc", C, F}, {p + "mlp.c_proj", "c_proj", F, C}};
}

bool targeted(const LoraOptions& o, const std::string& target) {
  for (const auto& t : o.targets)
    if (t == target || t == "all-linear") return true;
  return false;
}

}  // namespace

float LoraOptions::scale() const {
  return rank > 0 ? (rslora ? alpha / std::sqrt(static_cast<float>(rank)) : alpha / static_cast<float>(rank)) : 0.0f;
}

size_t Model::adapted_linears() const {
  size_t n = 0;
  if (opts_.lora.rank > 0)
    for (const auto& site : adapter_sites(cfg_, 0))
      if (targeted(opts_.lora, site.target)) n += site.target == "c_attn" ? 3 : 1;  // q, k, v each keep theirs
  return n;
}

bool Model::is_lora_tensor(const std::string& name) {
  return has_suffix(name, ".lora_A.weight") || has_suffix(name, ".lora_B.weight");
}

namespace {
// The token embedding's tensor name.
const char* token_embedding(const ModelConfig& c) {
  return c.family == ModelConfig::Family::llama  ? "model.embed_tokens.weight"
         : c.family == ModelConfig::Family::bert ? "bert.embeddings.word_embeddings.weight"
                                                 : "wte";
}
// Whether a tensor is a table rows are looked up in (no matmul reads it, unless tied to a head).
bool embedding_table(const std::string& name) {
  return name == "wte" || name == "wpe" || name == "model.embed_tokens.weight" || name.rfind("bert.embeddings.", 0) == 0;
}
}  // namespace

bool Model::vocabulary_rows(const std::string& name) {
  return name == "wte" || name == "lm_head.weight" || name == "model.embed_tokens.weight" ||
         name == "bert.embeddings.word_embeddings.weight" || name == "cls.predictions.bias";
}

bool Model::can_hold_blocks(const std::string& name) {
  if (is_lora_tensor(name)) return false;
  // BERT: the encoder's matrices (query, key, value, the attention's output, the MLP's two); its
  // embedding tables and heads stay fp32.
  if (name.rfind("bert.encoder.layer.", 0) == 0)
    return has_suffix(name, ".query.weight") || has_suffix(name, ".key.weight") || has_suffix(name, ".value.weight") ||
           has_suffix(name, ".dense.weight");
  return has_suffix(name, "_proj.weight") || has_suffix(name, "attn.q.weight") || has_suffix(name, "attn.k.weight") ||
         has_suffix(name, "attn.v.weight") || has_suffix(name, "c_proj.weight") || has_suffix(name, "c_fc.weight") ||
         name == "lm_head.weight" || name == "model.embed_tokens.weight" || name == "wte";
}

void Model::build_specs() {
  const ModelConfig& c = cfg_;
  // This rank's slice under tensor parallelism (the whole model otherwise).
  const int64_t C = c.dim, V = vocab_l_, F = ffn_l_, hd = c.head_dim();
  const int64_t QC = heads_l_ * hd, KC = kv_l_ * hd;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    ParamSpec spec{name, std::move(shape), total_, n, decay};
    const auto t = opts_.weight_types.find(name);
    if (t != opts_.weight_types.end() && t->second != ggml::Type::f32) {
      if (!can_hold_blocks(name)) throw Error("", "internal: " + name + " cannot be held as ggml blocks");
      const ggml::TypeTraits& tr = ggml::traits(t->second);
      if (t->second == ggml::Type::f16 || t->second == ggml::Type::bf16)
        throw Error("", std::string("internal: ") + tr.name + " matrices are held as fp32");
      spec.type = t->second;
      spec.row_bytes = ggml::row_bytes(t->second, spec.shape[1]);
      spec.qoffset = qtotal_;
      qtotal_ += (static_cast<size_t>(spec.shape[0]) * spec.row_bytes + 63) / 64 * 64;
      specs_.push_back(std::move(spec));
      return;
    }
    specs_.push_back(std::move(spec));
    total_ += (n + 15) / 16 * 16;  // 64-byte aligned tensors
  };
  const bool llama = c.family == ModelConfig::Family::llama, bert = c.family == ModelConfig::Family::bert;
  if (llama) add("model.embed_tokens.weight", {V, C}, false);
  else if (bert) {
    add("bert.embeddings.word_embeddings.weight", {V, C}, false);
    add("bert.embeddings.position_embeddings.weight", {c.max_seq, C}, false);
    add("bert.embeddings.token_type_embeddings.weight", {c.type_vocab_size, C}, false);
    add("bert.embeddings.LayerNorm.weight", {C}, false);
    add("bert.embeddings.LayerNorm.bias", {C}, false);
  } else {
    add("wte", {V, C}, false);
    add("wpe", {c.max_seq, C}, false);
  }
  for (int l = 0; l < c.layers; ++l) {
    layer_begin_.push_back(total_);
    std::string p = llama ? "model.layers." + std::to_string(l) + "." : "h." + std::to_string(l) + ".";
    if (bert) {
      p = "bert.encoder.layer." + std::to_string(l) + ".";
      for (const char* m : {"attention.self.query", "attention.self.key", "attention.self.value"}) {
        add(p + m + ".weight", {QC, C}, true);
        add(p + m + ".bias", {QC}, false);
      }
      add(p + "attention.output.dense.weight", {C, QC}, true);
      add(p + "attention.output.dense.bias", {C}, false);
      add(p + "attention.output.LayerNorm.weight", {C}, false);
      add(p + "attention.output.LayerNorm.bias", {C}, false);
      add(p + "intermediate.dense.weight", {F, C}, true);
      add(p + "intermediate.dense.bias", {F}, false);
      add(p + "output.dense.weight", {C, F}, true);
      add(p + "output.dense.bias", {C}, false);
      add(p + "output.LayerNorm.weight", {C}, false);
      add(p + "output.LayerNorm.bias", {C}, false);
    } else if (llama) {
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
      add(p + "attn.q.weight", {QC, C}, true);
      add(p + "attn.k.weight", {KC, C}, true);
      add(p + "attn.v.weight", {KC, C}, true);
      add(p + "attn.q.bias", {QC}, false);
      add(p + "attn.k.bias", {KC}, false);
      add(p + "attn.v.bias", {KC}, false);
      add(p + "attn.c_proj.weight", {C, QC}, true);
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
  if (bert) {
    if (opts_.lm_head) {
      add("cls.predictions.transform.dense.weight", {C, C}, true);
      add("cls.predictions.transform.dense.bias", {C}, false);
      add("cls.predictions.transform.LayerNorm.weight", {C}, false);
      add("cls.predictions.transform.LayerNorm.bias", {C}, false);
      add("cls.predictions.bias", {V}, false);
    }
  } else if (llama) {
    add("model.norm.weight", {C}, false);
    if (!c.tied_embeddings && opts_.lm_head) add("lm_head.weight", {V, C}, true);
  } else {
    add("ln_f.weight", {C}, false);
    add("ln_f.bias", {C}, false);
  }
  if (opts_.scalar_head) {
    const int64_t K = score_outputs();
    if (bert) {  // BertForSequenceClassification, BertForPreTraining: the pooler, then the classifier
      const std::string head = c.nsp ? "cls.seq_relationship" : "classifier";
      add("bert.pooler.dense.weight", {C, C}, true);
      add("bert.pooler.dense.bias", {C}, false);
      add(head + ".weight", {K, C}, true);
      add(head + ".bias", {K}, false);
    } else {
      add("score.weight", {K, C}, true);
    }
  }
  const LoraOptions& lo = opts_.lora;
  if (lo.rank > 0) {
    const auto sites = adapter_sites(c, 0);
    for (const auto& t : lo.targets) {
      bool known = t == "all-linear";
      for (const auto& site : sites) known = known || site.target == t;
      if (!known) {
        std::string names;
        for (const auto& site : sites)
          if (names.find(site.target) == std::string::npos) names += (names.empty() ? "" : ", ") + site.target;
        throw UsageError("--lora-targets: '" + t + "' is not a linear module of a " +
                         (llama ? std::string("Llama") : bert ? std::string("BERT") : std::string("GPT-2")) + " model (" + names +
                         ", all-linear)");
      }
    }
    if (lo.targets.empty()) throw UsageError("--lora-targets: no modules given");
    for (int l = 0; l < c.layers; ++l)
      for (const auto& site : adapter_sites(c, l))
        if (targeted(lo, site.target)) {
          add(site.module + ".lora_A.weight", {lo.rank, site.in}, true);
          add(site.module + ".lora_B.weight", {site.out, lo.rank}, true);
        }
  }
  for (const auto& [name, type] : opts_.weight_types)
    if (type != ggml::Type::f32 && !std::any_of(specs_.begin(), specs_.end(), [&](const ParamSpec& s) { return s.name == name; }))
      throw Error("", "internal: weight type for " + name + ", which the model does not have");
}

const ParamSpec& Model::param(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return s;
  throw Error("", "model has no parameter " + name);
}

float* Model::w(const std::string& name) { return weight_at(param(name).offset); }

Model::Model(const ModelConfig& cfg, Backend& backend, ModelOptions options)
    : cfg_(cfg), opts_(options), be_(backend), top_(std::make_unique<Top>()) {
  cfg_.validate("model config");
  if (cfg_.nsp) opts_.scalar_head = true;  // the NSP head is the score head
  setup_tensor_parallel();
  build_specs();
  frozen_.assign(specs_.size(), false);
  for (size_t i = 0; i < specs_.size(); ++i) frozen_[i] = opts_.inference || specs_[i].quantized();
  w_ = be_.alloc(total_);
  be_.set_parameters(w_, total_);
  if (qtotal_) q_ = be_.alloc((qtotal_ + 3) / 4);
  layout_grads();
  bind();
}

size_t Model::weight_bytes() const {
  size_t n = 0;
  for (const ParamSpec& s : specs_) n += s.quantized() ? static_cast<size_t>(s.shape[0]) * s.row_bytes : s.size * 4;
  return n;
}

void Model::set_quantized(const std::string& name, const void* blocks, int64_t rows) {
  const ParamSpec& s = param(name);
  if (!s.quantized()) throw Error("", "internal: " + name + " is not held as ggml blocks");
  if (rows < 0 || rows > s.shape[0]) throw Error("", "internal: " + std::to_string(rows) + " rows for " + name);
  // Whole floats of the block buffer: the tensor starts 64-byte aligned and its slot is a
  // multiple of 64 bytes, zero past the rows given.
  const size_t slot = (static_cast<size_t>(s.shape[0]) * s.row_bytes + 63) / 64 * 64;
  std::vector<float> staging(slot / 4, 0.0f);
  std::memcpy(staging.data(), blocks, static_cast<size_t>(rows) * s.row_bytes);
  be_.upload(q_ + s.qoffset / 4, staging.data(), staging.size());
}

void Model::bind() {
  const ModelConfig& c = cfg_;
  const bool llama = c.family == ModelConfig::Family::llama, bert = c.family == ModelConfig::Family::bert;
  const int C = c.dim, F = ffn_l_, QC = heads_l_ * c.head_dim(), KC = kv_l_ * c.head_dim();
  // A frozen tensor's gradient pointer is null: every backward op then skips it.
  auto grad = [&](const std::string& name) -> float* {
    if (name.empty()) return nullptr;
    const ParamSpec& s = param(name);
    return s.trainable() ? grad_at(s.grad_offset) : nullptr;
  };
  // A matrix's fp32 values, or null with its blocks in q.
  auto matrix = [&](const std::string& name, QuantWeight& q) -> float* {
    const ParamSpec& s = param(name);
    if (!s.quantized()) return w(name);
    q = {s.type, reinterpret_cast<const uint8_t*>(q_) + s.qoffset, s.row_bytes};
    return nullptr;
  };
  auto linear = [&](int in, int out, const std::string& weight, const std::string& bias) {
    Linear lin;
    lin.in = in;
    lin.out = out;
    lin.w = matrix(weight, lin.qw);
    lin.name = &param(weight).name;
    lin.b = bias.empty() ? nullptr : w(bias);
    lin.dw = grad(weight);
    lin.db = grad(bias);
    return lin;
  };
  auto norm = [&](const std::string& weight, const std::string& bias) {
    Norm n;
    n.rms = llama;
    n.C = C;
    n.eps = c.norm_eps;
    n.w = w(weight);
    n.b = bias.empty() ? nullptr : w(bias);
    n.dw = grad(weight);
    n.db = grad(bias);
    return n;
  };
  layers_.resize(static_cast<size_t>(c.layers));
  for (int l = 0; l < c.layers; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    if (bert) {
      const std::string p = "bert.encoder.layer." + std::to_string(l) + ".";
      auto dense = [&](int in, int out, const std::string& m) { return linear(in, out, p + m + ".weight", p + m + ".bias"); };
      L.q = dense(C, QC, "attention.self.query");
      L.k = dense(C, KC, "attention.self.key");
      L.v = dense(C, KC, "attention.self.value");
      L.o = dense(QC, C, "attention.output.dense");
      L.norm1 = norm(p + "attention.output.LayerNorm.weight", p + "attention.output.LayerNorm.bias");
      L.mlp_in = dense(C, F, "intermediate.dense");
      L.mlp_out = dense(F, C, "output.dense");
      L.norm2 = norm(p + "output.LayerNorm.weight", p + "output.LayerNorm.bias");
    } else if (llama) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      L.norm1 = norm(p + "input_layernorm.weight", "");
      L.q = linear(C, QC, p + "self_attn.q_proj.weight", "");
      L.k = linear(C, KC, p + "self_attn.k_proj.weight", "");
      L.v = linear(C, KC, p + "self_attn.v_proj.weight", "");
      L.o = linear(QC, C, p + "self_attn.o_proj.weight", "");
      L.norm2 = norm(p + "post_attention_layernorm.weight", "");
      L.mlp_in = linear(C, F, p + "mlp.gate_proj.weight", "");
      L.mlp_up = linear(C, F, p + "mlp.up_proj.weight", "");
      L.mlp_out = linear(F, C, p + "mlp.down_proj.weight", "");
    } else {
      const std::string p = "h." + std::to_string(l) + ".";
      L.norm1 = norm(p + "ln_1.weight", p + "ln_1.bias");
      L.q = linear(C, QC, p + "attn.q.weight", p + "attn.q.bias");
      L.k = linear(C, KC, p + "attn.k.weight", p + "attn.k.bias");
      L.v = linear(C, KC, p + "attn.v.weight", p + "attn.v.bias");
      L.o = linear(QC, C, p + "attn.c_proj.weight", p + "attn.c_proj.bias");
      L.norm2 = norm(p + "ln_2.weight", p + "ln_2.bias");
      L.mlp_in = linear(C, F, p + "mlp.c_fc.weight", p + "mlp.c_fc.bias");
      L.mlp_out = linear(F, C, p + "mlp.c_proj.weight", p + "mlp.c_proj.bias");
    }
    // Row-parallel matrices' outputs are partial sums, all-reduced: their bias (replicated) is
    // added by one rank. Its gradient is every rank's (the output's gradient is replicated).
    L.o.add_bias = L.mlp_out.add_bias = opts_.tp.rank == 0;
  }
  if (opts_.lora.rank > 0) bind_lora();
  Top& t = *top_;
  const std::string embed = token_embedding(c);
  t.wte = matrix(embed, t.qwte);
  const std::string positions = llama ? "" : bert ? "bert.embeddings.position_embeddings.weight" : "wpe";
  t.wpe = llama ? nullptr : w(positions);
  t.dwte = grad(embed);
  t.dwpe = grad(positions);
  if (bert) {
    t.wtt = w("bert.embeddings.token_type_embeddings.weight");
    t.dwtt = grad("bert.embeddings.token_type_embeddings.weight");
    t.emb_norm = norm("bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias");
    if (opts_.lm_head) {
      t.transform = linear(C, C, "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias");
      t.normf = norm("cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias");
      t.lm = linear(C, vocab_l_, embed, "cls.predictions.bias");
    }
    if (opts_.scalar_head) {
      t.pooler = linear(C, C, "bert.pooler.dense.weight", "bert.pooler.dense.bias");
      const std::string head = c.nsp ? "cls.seq_relationship" : "classifier";
      t.score = linear(C, score_outputs(), head + ".weight", head + ".bias");
    }
    return;
  }
  t.normf = llama ? norm("model.norm.weight", "") : norm("ln_f.weight", "ln_f.bias");
  t.lm = linear(C, vocab_l_, llama && !c.tied_embeddings && opts_.lm_head ? "lm_head.weight" : embed, "");
  if (opts_.scalar_head) t.score = linear(C, score_outputs(), "score.weight", "");
}

std::vector<std::string> Model::head_tensors() const {
  if (!opts_.scalar_head) return {};
  if (cfg_.nsp) return {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.seq_relationship.weight", "cls.seq_relationship.bias"};
  if (cfg_.encoder()) return {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"};
  return {"score.weight"};
}

bool Model::is_head_tensor(const std::string& name) {
  return name == "score.weight" || name.rfind("bert.pooler.", 0) == 0 || name.rfind("classifier.", 0) == 0 ||
         name.rfind("cls.seq_relationship.", 0) == 0;
}

// Each adapted Linear's adapter pointers. GPT-2's c_attn adapter serves q, k and v: one A (its
// gradient summed over the three), B's rows cut in three.
void Model::bind_lora() {
  const LoraOptions& lo = opts_.lora;
  const ModelConfig::Family family = cfg_.family;
  auto grad = [&](const std::string& name) -> float* {
    const ParamSpec& s = param(name);
    return s.trainable() ? grad_at(s.grad_offset) : nullptr;
  };
  for (int l = 0; l < cfg_.layers; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    // The Linears each of adapter_sites() adapts, in its order.
    using Sites = std::vector<std::vector<Linear*>>;
    const Sites on = family == ModelConfig::Family::llama ? Sites{{&L.q}, {&L.k}, {&L.v}, {&L.o}, {&L.mlp_in}, {&L.mlp_up}, {&L.mlp_out}}
                     : family == ModelConfig::Family::bert ? Sites{{&L.q}, {&L.k}, {&L.v}, {&L.o}, {&L.mlp_in}, {&L.mlp_out}}
                                                           : Sites{{&L.q, &L.k, &L.v}, {&L.o}, {&L.mlp_in}, {&L.mlp_out}};
    const auto sites = adapter_sites(cfg_, l);
    for (size_t i = 0; i < sites.size(); ++i) {
      if (!targeted(lo, sites[i].target)) continue;
      const std::string A = sites[i].module + ".lora_A.weight", B = sites[i].module + ".lora_B.weight";
      size_t row = 0;
      for (Linear* lin : on[i]) {
        Lora& a = lin->lora;
        a.rank = lo.rank;
        a.scale = lo.scale();
        a.dropout = lo.dropout;
        a.stream = static_cast<uint64_t>(l) * 16 + i + 1;
        a.a = w(A);
        a.da = grad(A);
        const size_t off = row * static_cast<size_t>(lo.rank);
        a.b = w(B) + off;
        float* gb = grad(B);
        a.db = gb ? gb + off : nullptr;
        row += static_cast<size_t>(lin->out);
      }
    }
  }
}

void Model::freeze(const std::function<bool(const std::string&)>& frozen) {
  for (size_t i = 0; i < specs_.size(); ++i) frozen_[i] = specs_[i].quantized() || frozen(specs_[i].name);
  layout_grads();
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
  if (wshard_) be_.release(wshard_);
  be_.release(g_);
  if (q_) be_.release(q_);
}

size_t Model::num_params_unpadded() const {
  size_t n = 0;
  for (const auto& s : specs_) {
    // A vocabulary table's token rows (this rank's, under tensor parallelism).
    const size_t tokens = static_cast<size_t>(std::clamp(cfg_.vocab_size - vocab_lo_, 0, vocab_l_));
    size_t rows = vocabulary_rows(s.name) ? tokens : static_cast<size_t>(s.shape[0]);
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
    if (is_lora_tensor(s.name)) continue;  // init_lora's
    if (s.quantized()) throw Error("", "internal: init() of a model with quantized matrices");
    // Written in place on the CPU; elsewhere through one tensor-sized staging buffer. A slice of
    // a tensor-parallel model is cut from the whole tensor, drawn as one rank would draw it, so
    // that every layout starts from the same model.
    const std::vector<int64_t> shape = full_shape(s);
    size_t full_size = 1;
    for (int64_t d : shape) full_size *= static_cast<size_t>(d);
    std::vector<float> whole(full_size != s.size ? full_size : 0);
    if (!direct) staging.assign(s.size, 0.0f);
    float* p = !whole.empty() ? whole.data() : direct ? direct + s.offset : staging.data();
    std::fill(p, p + full_size, 0.0f);
    Normal normal(seed * 1000003ull + i);  // one stream per tensor: adding one changes no other
    const bool is_norm_w = s.shape.size() == 1 && s.name.find(".bias") == std::string::npos;
    if (s.shape.size() == 1) {
      if (is_norm_w) std::fill(p, p + full_size, 1.0f);
    } else {
      const bool resid = s.name.find("o_proj") != std::string::npos || s.name.find("down_proj") != std::string::npos ||
                         s.name.find("c_proj.weight") != std::string::npos;
      const float std = resid ? resid_std : 0.02f;
      size_t rows = static_cast<size_t>(shape[0]), cols = full_size / rows;
      size_t live = vocabulary_rows(s.name) ? static_cast<size_t>(cfg_.vocab_size) : rows;
      for (size_t k = 0; k < live * cols; ++k) p[k] = normal.next() * std;
    }
    if (!whole.empty()) shard(s, whole.data(), direct ? direct + s.offset : staging.data());
    if (!direct) be_.upload(w_ + s.offset, staging.data(), s.size);
  }
  init_lora(seed);
  zero_grad();
}

void Model::init_lora(uint64_t seed) {
  for (size_t i = 0; i < specs_.size(); ++i) {
    const ParamSpec& s = specs_[i];
    if (!is_lora_tensor(s.name)) continue;
    std::vector<float> v(s.size, 0.0f);
    if (has_suffix(s.name, ".lora_A.weight")) {  // PEFT: kaiming_uniform_(a=sqrt(5)), bound 1/sqrt(in)
      std::mt19937_64 rng(seed * 1000003ull + i + 0x4C6F5241ull);
      const double bound = 1.0 / std::sqrt(static_cast<double>(s.shape[1]));
      for (float& x : v) x = static_cast<float>((static_cast<double>(rng() >> 11) / 9007199254740992.0 * 2.0 - 1.0) * bound);
    }
    be_.upload(w_ + s.offset, v.data(), s.size);
  }
}

void Model::set_lora_enabled(bool on) { lora_on_ = on; }

void Model::merge_lora() {
  for (Layer& L : layers_)
    for (Linear* lin : {&L.q, &L.k, &L.v, &L.o, &L.mlp_in, &L.mlp_up, &L.mlp_out}) {
      if (!lin->adapted()) continue;
      if (lin->qw.data)
        throw Error("", "adapters on quantized matrices are not merged into them: save the adapter and apply it to the base");
      // W [out, in] += scale B [out, r] (A [r, in]): A^T as a [in, r] weight of matmul_accumulate.
      const int r = lin->lora.rank;
      std::vector<float> a(static_cast<size_t>(r) * lin->in), at(a.size());
      be_.download(a.data(), lin->lora.a, a.size());
      for (int i = 0; i < r; ++i)
        for (int j = 0; j < lin->in; ++j) at[static_cast<size_t>(j) * r + i] = a[static_cast<size_t>(i) * lin->in + j];
      float* at_dev = be_.alloc(at.size());
      be_.upload(at_dev, at.data(), at.size());
      be_.matmul_accumulate(lin->w, lin->lora.b, at_dev, lin->out, r, lin->in, lin->lora.scale);
      be_.release(at_dev);
      lin->lora = Lora{};
    }
  be_.parameters_changed();
  opts_.lora.rank = 0;
}

void Model::zero_grad() { be_.zero(g_, grad_floats_); }

// Gradient offsets for the trainable tensors in spec order (the weights' layout when nothing is
// frozen), each layer's range, and a zeroed buffer of that size.
void Model::layout_grads() {
  total_grads_ = 0;
  grad_layer_begin_.clear();
  size_t next_layer = 0;
  for (ParamSpec& s : specs_) {
    while (next_layer < layer_begin_.size() && s.offset >= layer_begin_[next_layer]) {
      grad_layer_begin_.push_back(total_grads_);
      ++next_layer;
    }
    const size_t i = static_cast<size_t>(&s - specs_.data());
    s.grad_offset = frozen_.empty() || !frozen_[i] ? total_grads_ : ParamSpec::kFrozen;
    if (s.trainable()) total_grads_ += (s.size + 15) / 16 * 16;
  }
  while (grad_layer_begin_.size() < layer_begin_.size()) grad_layer_begin_.push_back(total_grads_);
  // The gradient window (ZeRO-2): the blocks' ranges share one buffer of the largest one's size,
  // between the gradients before the blocks and those after them.
  window_ = opts_.gradient_window ? largest_block(grad_layer_begin_) : 0;
  grad_floats_ = opts_.gradient_window ? windowed(grad_layer_begin_, window_, total_grads_) : total_grads_;
  if (g_) be_.release(g_);
  g_ = be_.alloc(std::max<size_t>(grad_floats_, 1));
}

float* Model::grad_at(size_t offset) {
  return g_ + (opts_.gradient_window ? windowed(grad_layer_begin_, window_, offset) : offset);
}

size_t Model::num_trainable_unpadded() const {
  size_t n = 0;
  for (const auto& s : specs_)
    if (s.trainable()) n += s.size;
  return n;
}

// ---- Activations ---------------------------------------------------------------------------------

void Model::activation_sizes(size_t N, size_t& acts, size_t& stats, bool inference) const {
  const size_t C = cfg_.dim, F = static_cast<size_t>(ffn_l_), V = static_cast<size_t>(vocab_l_);
  const size_t QC = static_cast<size_t>(heads_l_) * cfg_.head_dim(), KC = static_cast<size_t>(kv_l_) * cfg_.head_dim();
  const size_t layers = inference ? 1 : static_cast<size_t>(cfg_.layers);
  const size_t mlp = N * 3 * F;  // f1, f3, act: per layer, or once with recompute_mlp
  const size_t layer = N * (4 * C + 2 * QC + 2 * KC) + (opts_.recompute_mlp ? 0 : mlp);
  const size_t top = N * (3 * C + (opts_.lm_head ? V : 0)) + (opts_.recompute_mlp ? mlp : 0) +  // xf, hf, tmp; logits
                     (cfg_.encoder() ? 3 * N * C : 0) +                           // BERT: emb, head_pre, head_act
                     (cfg_.encoder() && opts_.scalar_head ? N * C : 0);           // pooled
  const size_t scratch = inference ? 0 : N * (C + QC + 2 * KC + std::max(F, QC) + 2 * F);  // gradients
  // Adapters: [N, rank] per adapted linear and layer; scratch of [N, widest input] twice and [N, rank].
  const size_t r = static_cast<size_t>(std::max(0, opts_.lora.rank));
  const size_t lora = r ? N * r * (adapted_linears() * layers + 1) + 2 * N * std::max({C, F, QC}) : 0;
  acts = layer * layers + top + scratch + lora;
  const size_t K = static_cast<size_t>(score_outputs());
  stats = N * (4 + static_cast<size_t>(heads_l_)) * layers + 11 * N + 2 * N * (K - 1);  // norms' mean, rstd; lse; logp, values...
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

void Model::ensure_rows(int tokens, bool inference) {
  if (tokens <= cap_tokens_ && acts_.buf && (inference || !acts_inference_)) {
    // Same capacity (a training layout serves inference too): the pointers stay, but lse and
    // per-(B,T) layouts depend on B and T only through N, which fits.
  } else {
    if (acts_.buf) be_.release(acts_.buf);
    if (acts_.stats) be_.release(acts_.stats);
    acts_.buf = acts_.stats = nullptr;
    activation_sizes(static_cast<size_t>(tokens), acts_.floats, acts_.stat_floats, inference);
    acts_.buf = be_.alloc_activations(acts_.floats);
    acts_.stats = be_.alloc(acts_.stat_floats);
    cap_tokens_ = tokens;
    acts_inference_ = inference;
  }
  // Carve (again: layouts depend on N = B*T only, and lse on B*NH*T = N*NH).
  const size_t N = static_cast<size_t>(cap_tokens_), C = cfg_.dim, F = static_cast<size_t>(ffn_l_);
  const size_t QC = static_cast<size_t>(heads_l_) * cfg_.head_dim(), KC = static_cast<size_t>(kv_l_) * cfg_.head_dim();
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
  acts_layers_.resize(acts_inference_ ? 1 : layers_.size());
  const size_t R = static_cast<size_t>(std::max(0, opts_.lora.rank));
  for (size_t l = 0; l < acts_layers_.size(); ++l) {
    LayerActs& L = acts_layers_[l];
    const Layer& W = layers_[l];
    auto mid = [&](const Linear& lin) { return lin.adapted() ? take(N * R) : nullptr; };
    L.mid_q = mid(W.q);
    L.mid_k = mid(W.k);
    L.mid_v = mid(W.v);
    L.mid_o = mid(W.o);
    L.mid_in = mid(W.mlp_in);
    L.mid_up = mid(W.mlp_up);
    L.mid_out = mid(W.mlp_out);
    L.x = take(N * C);
    L.h1 = take(N * C);
    L.mean1 = stat(N);
    L.rstd1 = stat(N);
    L.q = take(N * QC);
    L.k = take(N * KC);
    L.v = take(N * KC);
    L.att = take(N * QC);
    L.lse = stat(N * static_cast<size_t>(heads_l_));
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
  t.vocab_lse = stat(N);
  t.values = stat(N * static_cast<size_t>(score_outputs()));
  t.dvalues = stat(N * static_cast<size_t>(score_outputs()));
  acts_.logits = take(opts_.lm_head ? N * static_cast<size_t>(vocab_l_) : 0);
  t.tmp = take(N * C);
  const bool grads = !acts_inference_;
  t.dres = grads ? take(N * C) : nullptr;
  t.dq = grads ? take(N * QC) : nullptr;
  t.dk = grads ? take(N * KC) : nullptr;
  t.dv = grads ? take(N * KC) : nullptr;
  t.datt = grads ? take(N * std::max(F, QC)) : nullptr;  // d(mlp act) [N, F], then d(attention out) [N, QC]
  t.df1 = grads ? take(N * F) : nullptr;
  t.df3 = grads ? take(N * F) : nullptr;
  t.dlogp = stat(N);
  t.kd_weight = stat(N);
  t.kd_loss = stat(N);
  if (cfg_.encoder()) {
    t.emb = take(N * C);
    t.head_pre = take(N * C);
    t.head_act = take(N * C);
    t.mean_emb = stat(N);
    t.rstd_emb = stat(N);
    t.pooled = opts_.scalar_head ? take(N * C) : nullptr;
  }
  if (R) {
    const size_t widest = std::max({C, F, QC});
    t.lora.x = take(N * widest);
    t.lora.dx = take(N * widest);
    t.lora.t = take(N * R);
  }
  if (static_cast<size_t>(p - acts_.buf) > acts_.floats || static_cast<size_t>(ps - acts_.stats) > acts_.stat_floats)
    throw Error("", "internal: activation layout overflow");
}

// ---- One block -------------------------------------------------------------------------------------
//
// Shapes: x, h1, xmid, h2, out [N, C]; q, att [N, NH*hd]; k, v [N, KV*hd]; f1, f3, act [N, F].

// The MLP's hidden activation from h2: the forward, and the recomputation under recompute_mlp.
// A linear layer's forward and backward with the model's adapter state: its scratch, the
// dropout seed, and whether adapters are on.
void Model::linear_forward(const Linear& lin, float* y, const float* x, int N, float* mid) {
  if (observer_ && lin.name) observer_(*lin.name, x, N, lin.in);
  lin.forward(be_, y, x, N, lora_on_ ? mid : nullptr, &top_->lora, dropout_seed_, dropout_row0_, exact_);
}
void Model::linear_backward(const Linear& lin, float* dx, const float* dy, const float* x, int N, const float* mid) {
  lin.backward(be_, dx, dy, x, N, lora_on_ ? mid : nullptr, &top_->lora, dropout_seed_, dropout_row0_);
}

void Model::mlp_hidden(const Layer& L, LayerActs& a, int N) {
  const size_t NF = static_cast<size_t>(N) * ffn_l_;
  linear_forward(L.mlp_in, a.f1, a.h2, N, a.mid_in);
  if (cfg_.family == ModelConfig::Family::llama) {
    linear_forward(L.mlp_up, a.f3, a.h2, N, a.mid_up);
    be_.swiglu_forward(a.act, a.f1, a.f3, NF);
  } else {
    be_.gelu_forward(a.act, a.f1, NF, cfg_.gelu_erf);
  }
}

// out = xmid + mlp(norm2(xmid)), xmid = x + o(attention(norm1(x))), x = a.x. out may be a.x.
// Post-LN (BERT): out = norm2(h1), h1 = h2 + mlp(h2), h2 = norm1(xmid), xmid = x + o(attention(x)).
void Model::layer_forward(int l, LayerActs& a, float* out, int N, AttentionSite& site) {
  const Layer& L = layers_[static_cast<size_t>(l)];
  const size_t NC = static_cast<size_t>(N) * cfg_.dim;
  const bool post = cfg_.encoder();
  float* tmp = top_->tmp;
  if (!post) L.norm1.forward(be_, a.h1, a.mean1, a.rstd1, a.x, N);
  const float* in = post ? a.x : a.h1;  // the attention's input
  linear_forward(L.q, a.q, in, N, a.mid_q);
  linear_forward(L.k, a.k, in, N, a.mid_k);
  linear_forward(L.v, a.v, in, N, a.mid_v);
  site.forward(l, a, N);
  linear_forward(L.o, tmp, a.att, N, a.mid_o);
  tp_reduce(tmp, NC);  // the heads' parts of the output, summed over tensor-parallel ranks
  be_.add(a.xmid, a.x, tmp, NC);
  // The MLP's input h2: the attention's sum normed (post-LN's norm1 after it, pre-LN's norm2).
  if (post) L.norm1.forward(be_, a.h2, a.mean1, a.rstd1, a.xmid, N);
  else L.norm2.forward(be_, a.h2, a.mean2, a.rstd2, a.xmid, N);
  mlp_hidden(L, a, N);
  linear_forward(L.mlp_out, tmp, a.act, N, a.mid_out);
  tp_reduce(tmp, NC);
  if (!post) return be_.add(out, a.xmid, tmp, NC);
  be_.add(a.h1, a.h2, tmp, NC);
  L.norm2.forward(be_, out, a.mean2, a.rstd2, a.h1, N);
}

// The MLP's backward from d(its output) dy: its weights' gradients, and d(h2) written into dx
// (summed over the tensor-parallel ranks, each of which holds some of the units).
void Model::mlp_backward(int l, LayerActs& a, const float* dy, float* dx, int N) {
  const Layer& L = layers_[static_cast<size_t>(l)];
  Top& t = *top_;
  const size_t NF = static_cast<size_t>(N) * ffn_l_, NC = static_cast<size_t>(N) * cfg_.dim;
  be_.zero(dx, NC);
  be_.zero(t.datt, NF);
  linear_backward(L.mlp_out, t.datt, dy, a.act, N, a.mid_out);
  if (cfg_.family == ModelConfig::Family::llama) {
    be_.swiglu_backward(t.df1, t.df3, t.datt, a.f1, a.f3, NF);
    linear_backward(L.mlp_in, dx, t.df1, a.h2, N, a.mid_in);
    linear_backward(L.mlp_up, dx, t.df3, a.h2, N, a.mid_up);
  } else {
    be_.gelu_backward(t.df1, t.datt, a.f1, NF, cfg_.gelu_erf);
    linear_backward(L.mlp_in, dx, t.df1, a.h2, N, a.mid_in);
  }
  tp_reduce(dx, NC);
}

// The attention's backward from d(xmid) dy: o, the attention, q, k and v from `in` (their
// input), d(in) written into dx (summed over the tensor-parallel ranks, each of which holds some
// of the heads).
void Model::attention_backward(int l, LayerActs& a, AttentionSite& site, const float* dy, const float* in, float* dx, int N) {
  const Layer& L = layers_[static_cast<size_t>(l)];
  Top& t = *top_;
  const size_t NC = static_cast<size_t>(N) * cfg_.dim;
  be_.zero(dx, NC);
  be_.zero(t.datt, static_cast<size_t>(N) * L.o.in);
  linear_backward(L.o, t.datt, dy, a.att, N, a.mid_o);
  site.backward(l, a, t.datt, t.dq, t.dk, t.dv, N);
  linear_backward(L.q, dx, t.dq, in, N, a.mid_q);
  linear_backward(L.k, dx, t.dk, in, N, a.mid_k);
  linear_backward(L.v, dx, t.dv, in, N, a.mid_v);
  tp_reduce(dx, NC);  // the heads' parts, summed over the tensor-parallel ranks
}

// Given d(out) in dres, leaves d(x) there and accumulates the block's weight gradients.
void Model::layer_backward(int l, LayerActs& a, int N, AttentionSite& site, bool recompute) {
  const Layer& L = layers_[static_cast<size_t>(l)];
  Top& t = *top_;
  const size_t NC = static_cast<size_t>(N) * cfg_.dim;
  if (recompute) mlp_hidden(L, a, N);
  if (cfg_.encoder()) {
    // out = norm2(h1): d(h1) in tmp, which reaches h2 unchanged and through the MLP.
    be_.zero(t.tmp, NC);
    L.norm2.backward(be_, t.tmp, t.dres, a.h1, a.mean2, a.rstd2, N);
    mlp_backward(l, a, t.tmp, t.dres, N);
    be_.accumulate(t.dres, t.tmp, NC);
    // h2 = norm1(xmid): d(xmid) in tmp, which reaches x unchanged and through the attention.
    be_.zero(t.tmp, NC);
    L.norm1.backward(be_, t.tmp, t.dres, a.xmid, a.mean1, a.rstd1, N);
    attention_backward(l, a, site, t.tmp, a.x, t.dres, N);
    be_.accumulate(t.dres, t.tmp, NC);
    return;
  }
  // MLP: out = xmid + mlp(h2); dres reaches xmid unchanged and through the MLP and norm2.
  mlp_backward(l, a, t.dres, t.tmp, N);
  L.norm2.backward(be_, t.dres, t.tmp, a.xmid, a.mean2, a.rstd2, N);
  // Attention: xmid = x + o(att); dres reaches x unchanged and through o, attention, q/k/v, norm1.
  attention_backward(l, a, site, t.dres, a.h1, t.tmp, N);
  L.norm1.backward(be_, t.dres, t.tmp, a.x, a.mean1, a.rstd1, N);
}

// The final norm, the LM head and, with one, the scalar head, from the last block's output.
// BERT's MLM head: normf(gelu(transform(x))) into the decoder.
void Model::head_forward(const float* x, int N) {
  Top& t = *top_;
  if (cfg_.encoder()) {
    if (t.score.w) {  // BERT's pooler and classifier
      linear_forward(t.pooler, t.pooled, x, N, nullptr);
      be_.tanh_forward(t.pooled, t.pooled, static_cast<size_t>(N) * cfg_.dim);
      linear_forward(t.score, t.values, t.pooled, N, nullptr);
    }
    if (!opts_.lm_head) return;
    linear_forward(t.transform, t.head_pre, x, N, nullptr);
    be_.gelu_forward(t.head_act, t.head_pre, static_cast<size_t>(N) * cfg_.dim, cfg_.gelu_erf);
    x = t.head_act;
  }
  t.normf.forward(be_, t.hf, t.meanf, t.rstdf, x, N);
  if (opts_.lm_head) linear_forward(t.lm, acts_.logits, t.hf, N, nullptr);  // no adapter on the head
  if (t.score.w && !cfg_.encoder()) t.score.forward(be_, t.values, t.hf, N);
}

// ---- Forward ---------------------------------------------------------------------------------------

void Model::forward(const int32_t* tokens, const int32_t* targets, int B, int T, const int32_t* starts) {
  if (targets && !opts_.lm_head) throw Error("", "forward: targets for a model without an LM head");
  ensure_acts(B, T);
  const ModelConfig& c = cfg_;
  const int N = B * T, V = c.vocab_size;
  for (int n = 0; n < N; ++n)
    if (tokens[n] < 0 || tokens[n] >= V)
      throw Error("", "token id " + std::to_string(tokens[n]) + " outside the vocabulary of " + std::to_string(V));
  tokens_.assign(tokens, tokens + N);
  if (targets) targets_.assign(targets, targets + N);
  else targets_.assign(static_cast<size_t>(N), -1);
  // As rows of this rank's vocabulary shard, -1 for another rank's (the same ids without
  // tensor parallelism).
  auto local = [&](int32_t id) { return id >= vocab_lo_ && id < vocab_lo_ + vocab_l_ ? id - vocab_lo_ : -1; };
  tokens_l_.resize(static_cast<size_t>(N));
  targets_l_.resize(static_cast<size_t>(N));
  for (size_t n = 0; n < static_cast<size_t>(N); ++n) {
    tokens_l_[n] = local(tokens_[n]);
    targets_l_[n] = targets_[n] < 0 ? -1 : local(targets_[n]);
  }
  starts_.clear();
  if (starts) {
    for (int n = 0; n < N; ++n) {
      const int t = n % T;
      if (!(starts[n] == t || (t > 0 && starts[n] == starts[n - 1])))
        throw Error("", "packed rows: token " + std::to_string(t) + " of row " + std::to_string(n / T) + " has sequence start " +
                            std::to_string(starts[n]) + "; a start is the token's own index or its predecessor's start");
    }
    starts_.assign(starts, starts + N);
  }
  types_.clear();
  if (c.encoder()) {
    types_ = std::move(next_types_);
    if (types_.empty()) types_.assign(static_cast<size_t>(N), 0);
    if (types_.size() != static_cast<size_t>(N)) throw Error("", "internal: token types for another batch");
    for (int32_t ty : types_)
      if (ty < 0 || ty >= c.type_vocab_size)
        throw Error("", "token type " + std::to_string(ty) + " outside the model's " + std::to_string(c.type_vocab_size));
  }
  next_types_.clear();
  const int32_t* st = starts_.empty() ? nullptr : starts_.data();
  Top& t = *top_;
  exact_ = true;  // a backward may follow: quantized matrices multiply fp32 activations
  BatchAttention site(be_, attn_cfg_, B, T, st);
  embed_forward(layers_.empty() ? t.xf : acts_layers_[0].x, B, T, st);
  for (size_t l = 0; l < layers_.size(); ++l) {
    fetch_block(static_cast<int>(l));  // ZeRO-3: the block's parameters from their owners
    layer_forward(static_cast<int>(l), acts_layers_[l], l + 1 < layers_.size() ? acts_layers_[l + 1].x : t.xf, N, site);
  }
  head_forward(t.xf, N);
  if (targets && logit_temperature_ != 1.0f) be_.scale(acts_.logits, 1.0f / logit_temperature_, static_cast<size_t>(N) * vocab_l_);
  if (!targets) return;
  if (opts_.tp.on()) vocab_parallel_logp(t.logp, t.vocab_lse, N);
  else be_.crossentropy_forward(t.logp, acts_.logits, targets_.data(), N, V, vocab_l_);
}

// The first block's input: token (+ position) embeddings; BERT's also token types, and the
// LayerNorm over their sum.
// Tensor parallel: each rank looks up the tokens of its vocabulary rows (zero rows for the
// others'), rank 0 adds the positions, and the sum over ranks is the embedding.
void Model::embed_forward(float* x0, int B, int T, const int32_t* st) {
  Top& t = *top_;
  const int N = B * T, C = cfg_.dim;
  if (t.qwte.data) {
    std::vector<int32_t> pos(static_cast<size_t>(N));
    for (int n = 0; n < N; ++n) pos[static_cast<size_t>(n)] = n % T - (st ? st[n] : 0);
    be_.embedding_quant(x0, tokens_.data(), pos.data(), t.qwte, t.wpe, N, C);
    return;
  }
  float* sum = cfg_.encoder() ? t.emb : x0;
  be_.embedding_forward(sum, tokens_l_.data(), t.wte, opts_.tp.rank == 0 ? t.wpe : nullptr, B, T, C, st);
  tp_reduce(sum, static_cast<size_t>(N) * C);
  if (!cfg_.encoder()) return;
  be_.embedding_forward(t.tmp, types_.data(), t.wtt, nullptr, B, T, C);
  be_.accumulate(t.emb, t.tmp, static_cast<size_t>(N) * C);
  t.emb_norm.forward(be_, x0, t.mean_emb, t.rstd_emb, t.emb, N);
}

// Given d(first block's input) in dres.
// Tensor parallel: d(embedding) is replicated, so each rank adds its tokens' rows and every
// rank the positions'.
void Model::embed_backward(int B, int T, const int32_t* st) {
  Top& t = *top_;
  const int N = B * T, C = cfg_.dim;
  const int32_t* tokens = tokens_l_.data();
  if (!cfg_.encoder()) return be_.embedding_backward(t.dwte, t.dwpe, t.dres, tokens, B, T, C, st);
  be_.zero(t.tmp, static_cast<size_t>(N) * C);
  t.emb_norm.backward(be_, t.tmp, t.dres, t.emb, t.mean_emb, t.rstd_emb, N);
  be_.embedding_backward(t.dwte, t.dwpe, t.tmp, tokens, B, T, C, st);
  be_.embedding_backward(t.dwtt, nullptr, t.tmp, types_.data(), B, T, C);
}

std::vector<float> Model::values() const {
  if (!top_->score.w) throw Error("", "the model has no score head");
  std::vector<float> out(static_cast<size_t>(B_) * T_ * static_cast<size_t>(score_outputs()));
  be_.download(out.data(), top_->values, out.size());
  return out;
}

const float* Model::logits_on_host() {
  if (const float* p = be_.host_view(acts_.logits)) return p;
  host_logits_.resize(static_cast<size_t>(B_) * T_ * static_cast<size_t>(vocab_l_));
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

void Model::backward_mean(float scale, const float* dvalue) {
  const size_t N = static_cast<size_t>(B_) * T_;
  size_t count = 0;
  for (size_t i = 0; i < N; ++i) count += targets_[i] >= 0;
  std::vector<float> dlogp(N, 0.0f);
  if (count)
    for (size_t i = 0; i < N; ++i)
      if (targets_[i] >= 0) dlogp[i] = -scale / static_cast<float>(count);
  backward(dlogp.data(), dvalue);
}

void Model::backward(const float* dlogp_host, const float* dvalue_host, const Distillation* kd) {
  const ModelConfig& c = cfg_;
  const int B = B_, T = T_, N = B * T, V = c.vocab_size, Vp = vocab_l_;
  Top& t = *top_;
  const size_t NC = static_cast<size_t>(N) * c.dim;
  const bool tp = opts_.tp.on();

  be_.zero(t.tmp, NC);  // d(final hidden state)
  if (dlogp_host) {
    if (!opts_.lm_head) throw Error("", "backward: d(logp) for a model without an LM head");
    // Ignored rows carry 0 (a vocabulary shard's rows get -dlogp softmax whatever rank holds
    // the target, so the target's -1 there does not tell them apart).
    std::vector<float> d(dlogp_host, dlogp_host + N);
    for (size_t n = 0; n < static_cast<size_t>(N); ++n)
      if (targets_[n] < 0) d[n] = 0.0f;
    be_.upload(t.dlogp, d.data(), static_cast<size_t>(N));
    // The logits become their gradient in place (the forward's logits are not needed again).
    if (kd && tp) throw UsageError("distillation (--teacher) is not tensor-parallel: give --tp 1");
    if (tp) {
      const int valid = std::clamp(V - vocab_lo_, 0, Vp);
      be_.crossentropy_backward(acts_.logits, acts_.logits, targets_l_.data(), t.dlogp, N, valid, Vp, t.vocab_lse);
    } else if (kd) {
      be_.upload(t.kd_weight, kd->weight, static_cast<size_t>(N));
      be_.distill_backward(acts_.logits, t.kd_loss, acts_.logits, kd->teacher_logits, targets_.data(), t.dlogp, t.kd_weight, N, V,
                           Vp, kd->divergence);
      be_.download(kd->kd_loss, t.kd_loss, static_cast<size_t>(N));
    } else {
      be_.crossentropy_backward(acts_.logits, acts_.logits, targets_.data(), t.dlogp, N, V, Vp);
    }
    // d/d(logits) = d/d(logits / T) / T
    if (logit_temperature_ != 1.0f) be_.scale(acts_.logits, 1.0f / logit_temperature_, static_cast<size_t>(N) * Vp);
    t.lm.backward(be_, t.tmp, acts_.logits, t.hf, N);
    tp_reduce(t.tmp, NC);  // d(hf): the vocabulary shards' parts summed
  }
  if (dvalue_host) {
    if (!t.score.w) throw Error("", "backward: the model has no score head");
    be_.upload(t.dvalues, dvalue_host, static_cast<size_t>(N) * static_cast<size_t>(score_outputs()));
    if (!c.encoder()) t.score.backward(be_, t.tmp, t.dvalues, t.hf, N);
  }
  head_backward(N, dlogp_host != nullptr, dvalue_host != nullptr);
  const int32_t* st = starts_.empty() ? nullptr : starts_.data();
  BatchAttention site(be_, attn_cfg_, B, T, st);
  for (size_t li = layers_.size(); li-- > 0;) {
    // The gradient window holds one block's gradients: the hook took the previous block's.
    if (opts_.gradient_window) be_.zero(g_ + grad_layer_begin_.front(), window_);
    fetch_block(static_cast<int>(li));
    // With recompute_mlp the forward left only the last block's MLP activations.
    layer_backward(static_cast<int>(li), acts_layers_[li], N, site, opts_.recompute_mlp && li + 1 < layers_.size());
    if (hook_) hook_(grad_layer_begin_[li], grad_layer_begin_[li + 1] - grad_layer_begin_[li]);
  }
  embed_backward(B, T, st);
  if (hook_) {
    hook_(0, grad_layer_begin_.front());
    hook_(grad_layer_begin_.back(), total_grads_ - grad_layer_begin_.back());
  }
}

// From d(hf) in tmp to d(last block's output) in dres: the final norm's backward, and BERT's
// transform and GELU before it.
// lm, scored: whether d(logp) and d(value) came (BERT's heads are skipped without theirs).
void Model::head_backward(int N, bool lm, bool scored) {
  Top& t = *top_;
  const size_t NC = static_cast<size_t>(N) * cfg_.dim;
  be_.zero(t.dres, NC);
  if (!cfg_.encoder()) return t.normf.backward(be_, t.dres, t.tmp, t.xf, t.meanf, t.rstdf, N);
  if (lm) {
    t.normf.backward(be_, t.dres, t.tmp, t.head_act, t.meanf, t.rstdf, N);
    be_.gelu_backward(t.df1, t.dres, t.head_pre, NC, cfg_.gelu_erf);
    be_.zero(t.dres, NC);
    linear_backward(t.transform, t.dres, t.df1, t.xf, N, nullptr);
  }
  if (scored) {  // classifier, tanh, pooler: into dres
    be_.zero(t.tmp, NC);
    linear_backward(t.score, t.tmp, t.dvalues, t.pooled, N, nullptr);
    be_.tanh_backward(t.df1, t.tmp, t.pooled, NC);
    linear_backward(t.pooler, t.dres, t.df1, t.xf, N, nullptr);
  }
}

// ---- Inference ---------------------------------------------------------------------------------------

KVCache::KVCache(Backend& be, int layers, int kv_dim, int blocks)
    : be_(be), layers_(layers), kv_dim_(kv_dim), blocks_(blocks) {
  if (blocks <= 0) throw Error("", "KV cache: " + std::to_string(blocks) + " blocks");
  const size_t n = static_cast<size_t>(layers) * blocks * static_cast<size_t>(kBlock) * kv_dim;
  k_ = be_.alloc_activations(n);  // copied from the activations' keys and values
  v_ = be_.alloc_activations(n);
}

KVCache::KVCache(Backend& be, int layers, int slots, int max_len, int kv_dim)
    : KVCache(be, layers, kv_dim, slots * ((max_len + kBlock - 1) / kBlock)) {
  const int per = (max_len + kBlock - 1) / kBlock;
  set_slots(slots);
  for (int s = 0; s < slots; ++s)
    for (int b = 0; b < per; ++b) tables_[static_cast<size_t>(s)].push_back(s * per + b);
}

KVCache::~KVCache() {
  be_.release(k_);
  be_.release(v_);
}

void KVCache::copy_positions(int to, int from, int positions) {
  if (positions > capacity(to) || positions > capacity(from)) throw Error("", "internal: KV copy beyond a table");
  for (int b = 0; b * kBlock < positions; ++b) {
    const int32_t dst = table(to)[static_cast<size_t>(b)], src = table(from)[static_cast<size_t>(b)];
    if (dst == src) continue;
    const size_t n = static_cast<size_t>(std::min(kBlock, positions - b * kBlock)) * kv_dim_;
    for (int l = 0; l < layers_; ++l) {
      be_.copy(k(l, dst), k(l, src), n);
      be_.copy(v(l, dst), v(l, src), n);
    }
  }
}

void Model::forward_cached(const int32_t* tokens, int rows, const std::vector<CacheSegment>& segments,
                           KVCache& cache, bool last_only) {
  const ModelConfig& c = cfg_;
  if (c.encoder()) throw Error("", "a BERT encoder does not generate: no KV-cached decoding");
  if (opts_.tp.on()) throw UsageError("generation (a KV-cached forward) is not tensor-parallel: give --tp 1");
  const int N = rows, V = c.vocab_size;
  std::vector<int32_t> pos(static_cast<size_t>(N), -1);
  for (const CacheSegment& s : segments) {
    if (s.slot < 0 || s.slot >= cache.slots() || s.start < 0 || s.count < 0 || s.row < 0 || s.row + s.count > N)
      throw Error("", "forward_cached: a segment outside the batch or the cache");
    if (s.start + s.count > c.max_seq)
      throw Error("", "sequence of " + std::to_string(s.start + s.count) + " tokens is above the context of " +
                          std::to_string(c.max_seq));
    if (s.start + s.count > cache.capacity(s.slot))
      throw Error("", "internal: a sequence of " + std::to_string(s.start + s.count) + " tokens in KV blocks for " +
                          std::to_string(cache.capacity(s.slot)));
    for (int i = 0; i < s.count; ++i) pos[static_cast<size_t>(s.row + i)] = s.start + i;
  }
  for (int n = 0; n < N; ++n) {
    if (pos[static_cast<size_t>(n)] < 0) throw Error("", "forward_cached: a row belongs to no segment");
    if (tokens[n] < 0 || tokens[n] >= V)
      throw Error("", "token id " + std::to_string(tokens[n]) + " outside the vocabulary of " + std::to_string(V));
  }
  B_ = 1;
  T_ = N;
  ensure_rows(N, true);
  starts_.clear();
  tokens_.assign(tokens, tokens + N);
  targets_.assign(static_cast<size_t>(N), -1);
  Top& t = *top_;
  // Every block works in layer 0's activations, the residual stream in place in its x: nothing
  // is kept for a backward pass.
  LayerActs& a = acts_layers_.at(0);
  exact_ = false;  // inference: 8-bit activations against quantized matrices, as llama.cpp
  CachedAttention site(be_, c, segments, pos, cache);
  if (t.qwte.data) be_.embedding_quant(a.x, tokens_.data(), pos.data(), t.qwte, t.wpe, N, c.dim);
  else be_.embedding_at(a.x, tokens_.data(), pos.data(), t.wte, t.wpe, N, c.dim);
  for (size_t l = 0; l < layers_.size(); ++l) {
    fetch_block(static_cast<int>(l));
    layer_forward(static_cast<int>(l), a, a.x, N, site);
  }
  if (!last_only) return head_forward(a.x, N);
  // Each segment's last row, gathered in segment order (an empty segment has none: its
  // preceding row stands in, and its logits row is not to be read).
  const int S = static_cast<int>(segments.size());
  const size_t C = static_cast<size_t>(c.dim);
  for (int s = 0; s < S; ++s) {
    const int row = std::max(0, segments[static_cast<size_t>(s)].row + segments[static_cast<size_t>(s)].count - 1);
    be_.copy(t.tmp + static_cast<size_t>(s) * C, a.x + static_cast<size_t>(row) * C, C);
  }
  T_ = S;
  head_forward(t.tmp, S);
}

// ---- Cost ------------------------------------------------------------------------------------------

// Weights in matmuls (the LM head's included, tied or not) and attention's FLOPs of a forward.
static void forward_costs(const ModelConfig& c, bool lm_head, int B, int T, double& matmul_params, double& attn) {
  const double C = c.dim, F = c.ffn_dim, L = c.layers, QC = c.heads * static_cast<double>(c.head_dim());
  const double KC = c.kv_heads * static_cast<double>(c.head_dim());
  const double ffn_mats = c.family == ModelConfig::Family::llama ? 3 : 2;
  // BERT's MLM head adds its transform (C x C) before the decoder.
  matmul_params = L * (C * QC + 2 * C * KC + QC * C + ffn_mats * C * F) + (lm_head ? C * c.padded_vocab() : C) +
                  (c.encoder() && lm_head ? C * C : 0);
  // QK^T and PV: 2 * 2 * T * T/2 * QC per sequence and layer (causal), twice that bidirectional
  attn = 2.0 * 2.0 * L * QC * static_cast<double>(T) * T / (c.encoder() ? 1.0 : 2.0) * B;
}

// Per rank: a tensor-parallel rank does 1/tp of the matmuls and of the attention.
double Model::flops_per_forward(int B, int T) const {
  double matmul_params = 0, attn = 0;
  forward_costs(cfg_, opts_.lm_head, B, T, matmul_params, attn);
  return (2.0 * matmul_params * static_cast<double>(B) * T + attn) / opts_.tp.size;
}

double Model::flops_per_step(int B, int T) const {
  double matmul_params = 0, attn_forward = 0;
  forward_costs(cfg_, opts_.lm_head, B, T, matmul_params, attn_forward);
  const double C = cfg_.dim, tokens = static_cast<double>(B) * T;
  const double attn = 3.0 * attn_forward;  // x3 with backward
  const double tp = opts_.tp.size;  // this rank's share (the frozen and adapter sizes below are its own)
  // A weight costs 2 FLOPs per token forward, 2 for its input's gradient and 2 for its own, which
  // a frozen weight skips; adapters add their own (all trained).
  double frozen = 0, adapters = 0;
  for (const ParamSpec& s : specs_) {
    if (s.shape.size() != 2) continue;
    if (is_lora_tensor(s.name)) adapters += static_cast<double>(s.size);
    else if (!s.trainable() && !embedding_table(s.name)) frozen += static_cast<double>(s.size);
  }
  if (!specs_.empty() && !param(token_embedding(cfg_)).trainable() && cfg_.tied_embeddings && opts_.lm_head)
    frozen += C * vocab_l_;  // the tied LM head
  return (6.0 * matmul_params * tokens + attn) / tp - 2.0 * frozen * tokens + 6.0 * adapters * tokens;
}

}  // namespace llmkit
