// llmkit models to GGUF and back; see llmkit/quant.hpp.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "llmkit/backend.hpp"
#include "llmkit/error.hpp"
#include "llmkit/gguf.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/model.hpp"
#include "llmkit/quant.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"

#include <xxhash.h>

namespace llmkit {

namespace {

// llama.cpp's LLAMA_FTYPE_* numbers.
const std::vector<QuantScheme>& schemes() {
  static const std::vector<QuantScheme> s = {
      {"f32", 0, ggml::Type::f32},   {"f16", 1, ggml::Type::f16},   {"bf16", 32, ggml::Type::bf16},
      {"q8_0", 7, ggml::Type::q8_0}, {"q4_0", 2, ggml::Type::q4_0}, {"q4_1", 3, ggml::Type::q4_1},
      {"q5_0", 8, ggml::Type::q5_0}, {"q5_1", 9, ggml::Type::q5_1}, {"q4_k_s", 14, ggml::Type::q4_k, QuantScheme::Mix::k_s},
      {"q4_k_m", 15, ggml::Type::q4_k, QuantScheme::Mix::k_m}, {"q5_k_m", 17, ggml::Type::q5_k, QuantScheme::Mix::k_m},
      {"q6_k", 18, ggml::Type::q6_k},
  };
  return s;
}

bool quantized(ggml::Type t) { return t != ggml::Type::f32 && t != ggml::Type::f16 && t != ggml::Type::bf16; }

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third between.
bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// Which matrix a tensor is, for the choice of its type.
enum class Role { other, output, attn_v, ffn_down };

// The type a tensor gets, as llama-quantize's llama_tensor_get_type chooses it for the types
// here: the output matrix (or the embedding when tied) Q6_K unless the file is Q8_0; attn_v
// (GPT-2's fused attn_qkv with it) and ffn_down Q6_K in the "more bits" layers of Q4_K_M and
// Q5_K_M, Q5_K in the first 4 attn_v and the first eighth of ffn_down under Q4_K_S; then a row
// that is not whole blocks falls back as tensor_type_fallback does (Q4_K to Q5_0, Q5_K to Q5_1,
// Q6_K to Q8_0; F16 when even that does not fit).
ggml::Type tensor_type(const QuantScheme& s, int64_t row, int dims, Role role, int layer, int layers) {
  if (dims < 2) return ggml::Type::f32;  // norms and biases
  ggml::Type t = s.base;
  if (!quantized(s.base)) return t;
  if (t == ggml::Type::nf4) return row % ggml::kNF4Block == 0 ? t : ggml::Type::f16;  // every matrix, as QLoRA
  const bool k_m = s.mix == QuantScheme::Mix::k_m, k_s = s.mix == QuantScheme::Mix::k_s;
  if (role == Role::output) {
    if (row % 256 != 0) t = ggml::Type::q8_0;
    else if (s.base != ggml::Type::q8_0) t = ggml::Type::q6_k;
  } else if (role == Role::attn_v) {
    if (k_m && more_bits(layer, layers)) t = ggml::Type::q6_k;
    else if (k_s && layer < 4) t = ggml::Type::q5_k;
  } else if (role == Role::ffn_down) {
    if (k_m && more_bits(layer, layers)) t = ggml::Type::q6_k;
    else if (k_s && layer < layers / 8) t = ggml::Type::q5_k;
  }
  if (row % ggml::traits(t).block != 0) {
    if (t == ggml::Type::q4_k) t = ggml::Type::q5_0;
    else if (t == ggml::Type::q5_k) t = ggml::Type::q5_1;
    else if (t == ggml::Type::q6_k) t = ggml::Type::q8_0;
    if (row % ggml::traits(t).block != 0) t = ggml::Type::f16;
  }
  return t;
}

// Hugging Face's rotate-half rows of one projection into llama.cpp's interleaved order (its
// converter's permute): within each head, row j * (hd / 2) + i goes to row 2 i + j. Rows of
// row_bytes bytes: fp32 values or a row's blocks alike.
std::vector<uint8_t> permute_rows(const void* w, int64_t rows, size_t row_bytes, int heads, bool inverse) {
  std::vector<uint8_t> out(static_cast<size_t>(rows) * row_bytes);
  const auto* in = static_cast<const uint8_t*>(w);
  const int64_t hd = rows / heads, half = hd / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i) {
        const int64_t hf = h * hd + j * half + i, gg = h * hd + 2 * i + j;
        const int64_t from = inverse ? gg : hf, to = inverse ? hf : gg;
        std::memcpy(out.data() + static_cast<size_t>(to) * row_bytes, in + static_cast<size_t>(from) * row_bytes, row_bytes);
      }
  return out;
}
std::vector<float> permute_heads(const float* w, int64_t rows, int64_t cols, int heads, bool inverse) {
  const std::vector<uint8_t> b = permute_rows(w, rows, static_cast<size_t>(cols) * sizeof(float), heads, inverse);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// What llama-quantize's choice sees of an llmkit tensor: the role and layer of the GGUF tensor
// it becomes (GPT-2's q, k and v: the fused attn_qkv, an attn_v).
Role role_of(const ModelConfig& c, const std::string& name, int& layer) {
  layer = 0;
  for (const char* prefix : {"model.layers.", "h.", "bert.encoder.layer."})
    if (name.rfind(prefix, 0) == 0) layer = std::atoi(name.c_str() + std::strlen(prefix));
  const bool llama = c.family == ModelConfig::Family::llama;
  if (c.encoder()) {  // BERT's value and MLP output matrices, as llama-quantize's attn_v and ffn_down
    if (has_suffix(name, "attention.self.value.weight")) return Role::attn_v;
    if (has_suffix(name, ".output.dense.weight") && name.find("attention.output") == std::string::npos) return Role::ffn_down;
    return Role::other;
  }
  if (name == "lm_head.weight") return Role::output;
  if (name == "model.embed_tokens.weight" || name == "wte") return !llama || c.tied_embeddings ? Role::output : Role::other;
  if (has_suffix(name, "v_proj.weight") || has_suffix(name, "attn.q.weight") || has_suffix(name, "attn.k.weight") ||
      has_suffix(name, "attn.v.weight"))
    return Role::attn_v;
  if (has_suffix(name, "down_proj.weight") || has_suffix(name, "mlp.c_proj.weight")) return Role::ffn_down;
  return Role::other;
}

// The type llama-quantize gives the GGUF tensor an llmkit tensor becomes.
ggml::Type scheme_type(const ModelConfig& c, const QuantScheme& s, const ParamSpec& spec) {
  // A BERT (QLoRA only: no GGUF) keeps what it cannot hold as blocks exact.
  if (c.encoder() && !Model::can_hold_blocks(spec.name)) return ggml::Type::f32;
  int layer = 0;
  const Role role = role_of(c, spec.name, layer);
  return tensor_type(s, spec.shape.back(), static_cast<int>(spec.shape.size()), role, layer, c.layers);
}

// Whether a Model holds a tensor of this type as blocks (the others as fp32: norms, biases,
// GPT-2's position table, F16 and BF16 matrices).
bool held_as_blocks(const std::string& name, ggml::Type t) { return quantized(t) && Model::can_hold_blocks(name); }

std::string blk(int l, const char* what) { return "blk." + std::to_string(l) + "." + what; }

// ---- A SentencePiece model from a GGUF file's tokenizer.ggml.* ("llama" vocabularies) ----

// Protocol-buffer wire format, the few pieces a ModelProto needs.
void varint(std::string& o, uint64_t v) {
  while (v >= 0x80) {
    o += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  o += static_cast<char>(v);
}
void field_varint(std::string& o, int field, uint64_t v) {
  varint(o, static_cast<uint64_t>(field) << 3);
  varint(o, v);
}
void field_bytes(std::string& o, int field, const std::string& b) {
  varint(o, (static_cast<uint64_t>(field) << 3) | 2);
  varint(o, b.size());
  o += b;
}
void field_float(std::string& o, int field, float f) {
  varint(o, (static_cast<uint64_t>(field) << 3) | 5);
  char b[4];
  std::memcpy(b, &f, 4);
  o.append(b, 4);
}

// The serialized ModelProto of the vocabulary llama.cpp tokenizes with: pieces, scores and
// types as they are, BPE on the scores (llama.cpp's SPM tokenizer merges by score), byte
// fallback when there are byte pieces, no normalization beyond the whitespace escape and the
// dummy prefix (tokenizer.ggml.add_space_prefix, default true), as llama.cpp does.
std::string spm_model_from_gguf(const GgufFile& f) {
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  const GgufValue* scores = f.find("tokenizer.ggml.scores");
  const GgufValue* types = f.find("tokenizer.ggml.token_type");
  if (!tokens || tokens->type != GgufValue::array || tokens->elem != GgufValue::string || tokens->strs.empty())
    throw Error(f.path(), "has no tokenizer.ggml.tokens");
  const size_t n = tokens->strs.size();
  if ((scores && scores->nums.size() != n) || (types && types->nums.size() != n))
    throw Error(f.path(), "tokenizer.ggml.scores or token_type does not have one value per token");
  std::string proto;
  bool bytes = false;
  int unk = -1, bos = -1, eos = -1, pad = -1;
  for (size_t i = 0; i < n; ++i) {
    int type = types ? static_cast<int>(types->nums[i]) : 1;
    if (type < 1 || type > 6) type = 1;
    const std::string& piece = tokens->strs[i];
    if (type == 2 && unk < 0) unk = static_cast<int>(i);
    if (type == 3 && piece == "<s>") bos = static_cast<int>(i);
    if (type == 3 && piece == "</s>") eos = static_cast<int>(i);
    if (type == 3 && piece == "<pad>") pad = static_cast<int>(i);
    bytes = bytes || type == 6;
    std::string sp;
    field_bytes(sp, 1, piece);
    field_float(sp, 2, scores ? static_cast<float>(scores->nums[i]) : 0.0f);
    field_varint(sp, 3, static_cast<uint64_t>(type));
    field_bytes(proto, 1, sp);
  }
  if (unk < 0) throw Error(f.path(), "its vocabulary has no unknown token (token type 2), which a SentencePiece model needs");
  std::string trainer;
  field_varint(trainer, 3, 2);  // BPE
  field_varint(trainer, 4, n);
  field_varint(trainer, 35, bytes ? 1 : 0);
  field_varint(trainer, 40, static_cast<uint64_t>(unk));
  field_varint(trainer, 41, static_cast<uint64_t>(static_cast<int64_t>(bos)));
  field_varint(trainer, 42, static_cast<uint64_t>(static_cast<int64_t>(eos)));
  field_varint(trainer, 43, static_cast<uint64_t>(static_cast<int64_t>(pad)));
  field_bytes(proto, 2, trainer);
  const GgufValue* prefix = f.find("tokenizer.ggml.add_space_prefix");
  std::string norm;
  field_bytes(norm, 1, "identity");
  field_varint(norm, 3, prefix ? (prefix->num != 0) : 1);
  field_varint(norm, 4, 0);
  field_varint(norm, 5, 1);
  field_bytes(proto, 3, norm);
  return proto;
}

// Bytes as a file in the temporary directory named by their hash (written once).
std::string temp_model_file(const std::string& bytes) {
  char name[64];
  std::snprintf(name, sizeof name, "llmkit-gguf-%016llx.model", static_cast<unsigned long long>(XXH3_64bits(bytes.data(), bytes.size())));
  const std::string tmp = (std::filesystem::temp_directory_path() / name).string();
  if (file_size(tmp) != bytes.size()) write_file_atomic(tmp, bytes);
  return tmp;
}

}  // namespace

QuantScheme QuantScheme::named(const std::string& name) {
  std::string low = name;
  for (char& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (low == "nf4") return {"nf4", 0, ggml::Type::nf4};  // QLoRA's, in memory only
  for (const QuantScheme& s : schemes())
    if (s.name == low) return s;
  std::string all;
  for (const std::string& n : names()) all += (all.empty() ? "" : ", ") + n;
  throw UsageError("--type: '" + name + "' is not one of " + all);
}

std::vector<std::string> QuantScheme::names() {
  std::vector<std::string> n;
  for (const QuantScheme& s : schemes()) n.push_back(s.name);
  return n;
}

bool is_gguf_file(const std::string& path) {
  if (is_directory(path) || file_size(path) < 4) return false;
  char head[4] = {};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const size_t got = std::fread(head, 1, 4, f);
  std::fclose(f);
  return got == 4 && std::memcmp(head, "GGUF", 4) == 0;
}

ExportReport export_gguf(const std::string& checkpoint, const std::string& out, const QuantScheme& s, const std::string& name,
                         const std::string& imatrix, const GptqConfig* gptq) {
  if (gptq && !imatrix.empty())
    throw UsageError("--gptq and --imatrix: GPTQ weighs the columns by its own calibration (give one of them)");
  if (s.base == ggml::Type::nf4)
    throw UsageError("--type nf4 is QLoRA's in-memory type (llm-sft --qlora nf4): GGUF and llama.cpp have no NF4; write q4_k_m or q4_0");
  std::map<std::string, std::vector<float>> importance;
  if (!imatrix.empty()) importance = read_imatrix(imatrix);
  auto be = make_cpu_backend();
  LoadedModel lm = open_model(checkpoint, *be);
  Model& m = *lm.model;
  require_decoder(m, checkpoint, "GGUF export (llama.cpp's decoder architectures)");
  const ModelConfig& c = m.config();
  if (c.classifier) throw Error(checkpoint, "is a reward model: GGUF export takes language models");
  if (lm.tokenizer.empty()) throw Error(checkpoint, "has no tokenizer.model to put in the GGUF file");
  const Tokenizer tok(lm.tokenizer);
  std::vector<float> w(m.num_params());
  be->download(w.data(), m.weights(), w.size());
  auto weight = [&](const std::string& n) { return w.data() + m.param(n).offset; };
  const bool llama = c.family == ModelConfig::Family::llama;
  const std::string arch = llama ? "llama" : "gpt2";
  ExportReport r;
  std::map<std::string, std::vector<float>> hessians;
  if (gptq) {
    ImatrixReport cal;
    hessians = collect_hessians(m, *gptq, cal);
    r.calib_tokens = cal.tokens;
  }

  GgufWriter g;
  g.set("general.architecture", GgufValue::text(arch));
  std::string title = name;
  if (title.empty()) title = std::filesystem::path(lm.source).filename().string();
  g.set("general.name", GgufValue::text(title));
  g.set("general.file_type", GgufValue::u32v(s.file_type));
  g.set("general.quantization_version", GgufValue::u32v(2));
  g.set("general.alignment", GgufValue::u32v(32));
  g.set(arch + ".context_length", GgufValue::u32v(static_cast<uint32_t>(c.max_seq)));
  g.set(arch + ".embedding_length", GgufValue::u32v(static_cast<uint32_t>(c.dim)));
  g.set(arch + ".block_count", GgufValue::u32v(static_cast<uint32_t>(c.layers)));
  g.set(arch + ".feed_forward_length", GgufValue::u32v(static_cast<uint32_t>(c.ffn_dim)));
  g.set(arch + ".attention.head_count", GgufValue::u32v(static_cast<uint32_t>(c.heads)));
  if (llama) {
    g.set(arch + ".attention.head_count_kv", GgufValue::u32v(static_cast<uint32_t>(c.kv_heads)));
    g.set(arch + ".rope.dimension_count", GgufValue::u32v(static_cast<uint32_t>(c.head_dim())));
    g.set(arch + ".rope.freq_base", GgufValue::f32v(c.rope_theta));
    g.set(arch + ".attention.layer_norm_rms_epsilon", GgufValue::f32v(c.norm_eps));
    g.set(arch + ".vocab_size", GgufValue::u32v(static_cast<uint32_t>(c.vocab_size)));
  } else {
    g.set(arch + ".attention.layer_norm_epsilon", GgufValue::f32v(c.norm_eps));
  }
  // The vocabulary, padded to the embedding's rows.
  const uint32_t n_tok = static_cast<uint32_t>(tok.vocab_size());
  if (n_tok > static_cast<uint32_t>(c.vocab_size))
    throw Error(lm.tokenizer, "has more pieces than the model's vocabulary of " + std::to_string(c.vocab_size));
  std::vector<std::string> pieces;
  std::vector<double> scores, types;
  for (uint32_t i = 0; i < n_tok; ++i) {
    pieces.push_back(tok.piece(i));
    scores.push_back(tok.score(i));
    types.push_back(static_cast<double>(tok.piece_type(i)));
  }
  for (uint32_t i = n_tok; i < static_cast<uint32_t>(c.vocab_size); ++i) {
    pieces.push_back("[PAD" + std::to_string(i) + "]");
    scores.push_back(-1000.0);
    types.push_back(static_cast<double>(Tokenizer::PieceType::unused));
  }
  g.set("tokenizer.ggml.model", GgufValue::text("llama"));
  g.set("tokenizer.ggml.tokens", GgufValue::texts(std::move(pieces)));
  g.set("tokenizer.ggml.scores", GgufValue::numbers(GgufValue::f32, std::move(scores)));
  g.set("tokenizer.ggml.token_type", GgufValue::numbers(GgufValue::i32, std::move(types)));
  // llmkit's models begin every document with </s> (the separator they were trained with): it is
  // the token llama.cpp puts first (BOS), and the end of sequence too.
  g.set("tokenizer.ggml.bos_token_id", GgufValue::u32v(static_cast<uint32_t>(kEosId)));
  g.set("tokenizer.ggml.eos_token_id", GgufValue::u32v(static_cast<uint32_t>(kEosId)));
  g.set("tokenizer.ggml.unknown_token_id", GgufValue::u32v(static_cast<uint32_t>(kUnkId)));
  g.set("tokenizer.ggml.padding_token_id", GgufValue::u32v(static_cast<uint32_t>(kPadId)));
  g.set("tokenizer.ggml.add_bos_token", GgufValue::boolv(true));
  g.set("tokenizer.ggml.add_eos_token", GgufValue::boolv(false));
  const std::string dir = is_directory(lm.source) ? lm.source : std::filesystem::path(lm.source).parent_path().string();
  if (file_size(dir + "/tokenizer_config.json") > 0) {
    const nlohmann::json tc = nlohmann::json::parse(read_file(dir + "/tokenizer_config.json"), nullptr, false);
    if (tc.is_object() && tc.contains("chat_template") && tc["chat_template"].is_string()) {
      // llama.cpp puts the BOS token (</s> here) first itself: a template that writes it too
      // would give two.
      std::string t = tc["chat_template"].get<std::string>();
      if (t.rfind("{{ eos_token }}", 0) == 0) t = t.substr(15);
      g.set("tokenizer.chat_template", GgufValue::text(t));
    }
  }
  {  // the SentencePiece model, for llmkit to read the file back with the same tokenizer
    const std::string bytes = read_file(lm.tokenizer);
    std::vector<double> b(bytes.begin(), bytes.end());
    for (double& x : b) x = static_cast<double>(static_cast<uint8_t>(static_cast<char>(x)));
    g.set("llmkit.tokenizer.model", GgufValue::numbers(GgufValue::u8, std::move(b)));
  }

  // Tensors.
  const int64_t C = c.dim, V = c.vocab_size;
  const bool tied = !llama || c.tied_embeddings;
  size_t weighted = 0;
  std::vector<std::string> unweighted;
  auto add = [&](const std::string& gname, std::vector<int64_t> ne, const float* data, Role role = Role::other, int layer = 0) {
    throw_if_stopped();
    const ggml::Type t = tensor_type(s, ne[0], static_cast<int>(ne.size()), role, layer, c.layers);
    if (gptq && ne.size() == 2 && ggml::traits(t).block > 1) {
      const auto h = hessians.find(gptq_input_key(c, gname));
      if (h != hessians.end()) {
        GptqResult q = gptq_quantize(t, data, ne[1], static_cast<int>(ne[0]), h->second, gptq->damp);
        ++r.gptq;
        r.gptq_error += q.output_error, r.imatrix_error += q.rtn_output_error, r.rtn_error += q.plain_output_error;
        LLMKIT_DEBUG("GPTQ %s (%s): output error %.4g, round-to-nearest %.4g (with imatrix) %.4g (plain)", gname.c_str(),
                     ggml::traits(t).name, q.output_error, q.rtn_output_error, q.plain_output_error);
        g.add_tensor_bytes(gname, std::move(ne), t, std::move(q.bytes));
        return;
      }
    }
    const float* imp = nullptr;
    if (!importance.empty() && ne.size() == 2 && ggml::uses_importance(t)) {
      const auto it = importance.find(gname);
      if (it == importance.end()) {
        unweighted.push_back(gname);
      } else {
        if (static_cast<int64_t>(it->second.size()) != ne[0])
          throw Error(imatrix, gname + " has " + std::to_string(it->second.size()) + " columns, the model's " + std::to_string(ne[0]) +
                                   ": an importance matrix of another model");
        imp = it->second.data();
        ++weighted;
      }
    }
    g.add_tensor(gname, std::move(ne), t, data, imp);
  };
  add("token_embd.weight", {C, V}, weight(llama ? "model.embed_tokens.weight" : "wte"), tied ? Role::output : Role::other);
  if (!llama) add("position_embd.weight", {C, c.max_seq}, weight("wpe"));
  for (int l = 0; l < c.layers; ++l) {
    if (llama) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const int64_t QC = static_cast<int64_t>(c.heads) * c.head_dim(), KC = static_cast<int64_t>(c.kv_heads) * c.head_dim();
      add(blk(l, "attn_norm.weight"), {C}, weight(p + "input_layernorm.weight"));
      const std::vector<float> q = permute_heads(weight(p + "self_attn.q_proj.weight"), QC, C, c.heads, false);
      const std::vector<float> k = permute_heads(weight(p + "self_attn.k_proj.weight"), KC, C, c.kv_heads, false);
      add(blk(l, "attn_q.weight"), {C, QC}, q.data());
      add(blk(l, "attn_k.weight"), {C, KC}, k.data());
      add(blk(l, "attn_v.weight"), {C, KC}, weight(p + "self_attn.v_proj.weight"), Role::attn_v, l);
      add(blk(l, "attn_output.weight"), {QC, C}, weight(p + "self_attn.o_proj.weight"));
      add(blk(l, "ffn_norm.weight"), {C}, weight(p + "post_attention_layernorm.weight"));
      add(blk(l, "ffn_gate.weight"), {C, c.ffn_dim}, weight(p + "mlp.gate_proj.weight"));
      add(blk(l, "ffn_up.weight"), {C, c.ffn_dim}, weight(p + "mlp.up_proj.weight"));
      add(blk(l, "ffn_down.weight"), {c.ffn_dim, C}, weight(p + "mlp.down_proj.weight"), Role::ffn_down, l);
    } else {
      const std::string p = "h." + std::to_string(l) + ".";
      add(blk(l, "attn_norm.weight"), {C}, weight(p + "ln_1.weight"));
      add(blk(l, "attn_norm.bias"), {C}, weight(p + "ln_1.bias"));
      std::vector<float> qkv, qkv_b;
      for (const char* x : {"q", "k", "v"}) {
        const float* wp = weight(p + "attn." + x + ".weight");
        qkv.insert(qkv.end(), wp, wp + C * C);
        const float* bp = weight(p + "attn." + x + ".bias");
        qkv_b.insert(qkv_b.end(), bp, bp + C);
      }
      add(blk(l, "attn_qkv.weight"), {C, 3 * C}, qkv.data(), Role::attn_v, l);
      add(blk(l, "attn_qkv.bias"), {3 * C}, qkv_b.data());
      add(blk(l, "attn_output.weight"), {C, C}, weight(p + "attn.c_proj.weight"));
      add(blk(l, "attn_output.bias"), {C}, weight(p + "attn.c_proj.bias"));
      add(blk(l, "ffn_norm.weight"), {C}, weight(p + "ln_2.weight"));
      add(blk(l, "ffn_norm.bias"), {C}, weight(p + "ln_2.bias"));
      add(blk(l, "ffn_up.weight"), {C, c.ffn_dim}, weight(p + "mlp.c_fc.weight"));
      add(blk(l, "ffn_up.bias"), {c.ffn_dim}, weight(p + "mlp.c_fc.bias"));
      add(blk(l, "ffn_down.weight"), {c.ffn_dim, C}, weight(p + "mlp.c_proj.weight"), Role::ffn_down, l);
      add(blk(l, "ffn_down.bias"), {C}, weight(p + "mlp.c_proj.bias"));
    }
  }
  if (llama) {
    add("output_norm.weight", {C}, weight("model.norm.weight"));
    if (!c.tied_embeddings) add("output.weight", {C, V}, weight("lm_head.weight"), Role::output);
  } else {
    add("output_norm.weight", {C}, weight("ln_f.weight"));
    add("output_norm.bias", {C}, weight("ln_f.bias"));
  }
  if (!importance.empty() && weighted == 0)
    throw Error(imatrix, "names none of the model's matrices: an importance matrix of another model");
  if (!unweighted.empty())
    LLMKIT_WARN("%s: no importance for %zu matrices (%s%s): quantized without it", imatrix.c_str(), unweighted.size(),
                unweighted.front().c_str(), unweighted.size() > 1 ? ", ..." : "");
  g.write(out);
  r.weighted = weighted;
  const GgufFile back(out);
  std::map<std::string, int> count;
  for (const GgufTensor& t : back.tensors()) {
    ++r.tensors;
    r.bytes += t.bytes;
    r.params += static_cast<double>(t.elements());
    ++count[ggml::traits(t.type).name];
  }
  r.types.assign(count.begin(), count.end());
  return r;
}

std::unique_ptr<Model> quantize_model(Model& m, const QuantScheme& s) {
  const ModelConfig& c = m.config();
  if (m.quantized()) throw Error("", "the model's matrices are quantized already");
  Backend& be = m.backend();
  ModelOptions o = m.options();
  o.weight_types.clear();
  for (const ParamSpec& spec : m.params())
    if (const ggml::Type t = scheme_type(c, s, spec); held_as_blocks(spec.name, t)) o.weight_types[spec.name] = t;
  auto q = std::make_unique<Model>(c, be, o);
  std::vector<float> w(m.num_params()), out(q->num_params(), 0.0f);
  be.download(w.data(), m.weights(), w.size());
  for (const ParamSpec& from : m.params()) {
    throw_if_stopped();
    const ParamSpec& to = q->param(from.name);
    const float* v = w.data() + from.offset;
    // The vocabulary's rows only: the padding stays zero, as a GGUF file read back has it.
    const bool vocab = from.name == "lm_head.weight" || from.name == "model.embed_tokens.weight" || from.name == "wte";
    const int64_t cols = from.shape.back(), rows = vocab ? c.vocab_size : static_cast<int64_t>(from.size) / cols;
    const ggml::Type t = Model::is_lora_tensor(from.name) || Model::is_head_tensor(from.name) ? ggml::Type::f32 : scheme_type(c, s, from);
    if (to.quantized()) {
      std::vector<uint8_t> blocks(static_cast<size_t>(rows) * to.row_bytes);
      for (int64_t r = 0; r < rows; ++r) ggml::quantize(t, v + r * cols, blocks.data() + static_cast<size_t>(r) * to.row_bytes, cols);
      q->set_quantized(from.name, blocks.data(), rows);
    } else if (t != ggml::Type::f32) {  // held as fp32, the values the file's type leaves
      std::vector<uint8_t> row(ggml::row_bytes(t, cols));
      for (int64_t r = 0; r < rows; ++r) {
        ggml::quantize(t, v + r * cols, row.data(), cols);
        ggml::dequantize(t, row.data(), out.data() + to.offset + static_cast<size_t>(r * cols), cols);
      }
    } else {
      std::copy(v, v + from.size, out.begin() + static_cast<ptrdiff_t>(to.offset));
    }
  }
  be.upload(q->weights(), out.data(), out.size());
  be.parameters_changed();
  return q;
}

LoadedModel open_gguf_model(const std::string& path, Backend& be, ModelOptions options) {
  const GgufFile f(path);
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama" && arch != "gpt2") throw Error(path, "architecture '" + arch + "': llmkit reads llama and gpt2 GGUF files");
  const bool llama = arch == "llama";
  ModelConfig c;
  c.family = llama ? ModelConfig::Family::llama : ModelConfig::Family::gpt2;
  auto u = [&](const std::string& k) { return static_cast<int>(f.get_number(arch + "." + k)); };
  c.dim = u("embedding_length");
  c.layers = u("block_count");
  c.ffn_dim = u("feed_forward_length");
  c.heads = u("attention.head_count");
  c.kv_heads = llama && f.find(arch + ".attention.head_count_kv") ? u("attention.head_count_kv") : c.heads;
  c.max_seq = u("context_length");
  const GgufTensor* emb = f.tensor("token_embd.weight");
  if (!emb || emb->ne.size() != 2) throw Error(path, "has no token_embd.weight matrix");
  c.vocab_size = static_cast<int>(emb->ne[1]);
  if (llama) {
    c.norm_eps = static_cast<float>(f.get_number(arch + ".attention.layer_norm_rms_epsilon"));
    c.rope_theta = f.find(arch + ".rope.freq_base") ? static_cast<float>(f.get_number(arch + ".rope.freq_base")) : 10000.0f;
    c.tied_embeddings = f.tensor("output.weight") == nullptr;
    if (f.find(arch + ".rope.dimension_count") && u("rope.dimension_count") != c.dim / c.heads)
      throw Error(path, "rotates part of each head (rope.dimension_count): llmkit's Llama rotates all of it");
  } else {
    c.norm_eps = static_cast<float>(f.get_number(arch + ".attention.layer_norm_epsilon"));
    c.tied_embeddings = true;
  }
  c.validate(path);
  // Where each GGUF tensor goes: (file tensor, llmkit tensor, shape in the file, heads whose rows
  // to permute back, first row of the file tensor: GPT-2's attn_qkv holds q, k and v).
  struct Place {
    std::string gname, name;
    std::vector<int64_t> ne;
    int heads = 0;
    int64_t row0 = 0;
  };
  std::vector<Place> places;
  const int64_t C = c.dim, V = c.vocab_size, F = c.ffn_dim;
  places.push_back({"token_embd.weight", llama ? "model.embed_tokens.weight" : "wte", {C, V}});
  if (!llama) places.push_back({"position_embd.weight", "wpe", {C, c.max_seq}});
  for (int l = 0; l < c.layers; ++l) {
    if (llama) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const int64_t QC = static_cast<int64_t>(c.heads) * c.head_dim(), KC = static_cast<int64_t>(c.kv_heads) * c.head_dim();
      places.push_back({blk(l, "attn_norm.weight"), p + "input_layernorm.weight", {C}});
      places.push_back({blk(l, "attn_q.weight"), p + "self_attn.q_proj.weight", {C, QC}, c.heads});
      places.push_back({blk(l, "attn_k.weight"), p + "self_attn.k_proj.weight", {C, KC}, c.kv_heads});
      places.push_back({blk(l, "attn_v.weight"), p + "self_attn.v_proj.weight", {C, KC}});
      places.push_back({blk(l, "attn_output.weight"), p + "self_attn.o_proj.weight", {QC, C}});
      places.push_back({blk(l, "ffn_norm.weight"), p + "post_attention_layernorm.weight", {C}});
      places.push_back({blk(l, "ffn_gate.weight"), p + "mlp.gate_proj.weight", {C, F}});
      places.push_back({blk(l, "ffn_up.weight"), p + "mlp.up_proj.weight", {C, F}});
      places.push_back({blk(l, "ffn_down.weight"), p + "mlp.down_proj.weight", {F, C}});
    } else {
      const std::string p = "h." + std::to_string(l) + ".";
      places.push_back({blk(l, "attn_norm.weight"), p + "ln_1.weight", {C}});
      places.push_back({blk(l, "attn_norm.bias"), p + "ln_1.bias", {C}});
      int k = 0;
      for (const char* x : {"q", "k", "v"}) {
        places.push_back({blk(l, "attn_qkv.weight"), p + "attn." + x + ".weight", {C, 3 * C}, 0, k * C});
        places.push_back({blk(l, "attn_qkv.bias"), p + "attn." + x + ".bias", {3 * C}, 0, k * C});
        ++k;
      }
      places.push_back({blk(l, "attn_output.weight"), p + "attn.c_proj.weight", {C, C}});
      places.push_back({blk(l, "attn_output.bias"), p + "attn.c_proj.bias", {C}});
      places.push_back({blk(l, "ffn_norm.weight"), p + "ln_2.weight", {C}});
      places.push_back({blk(l, "ffn_norm.bias"), p + "ln_2.bias", {C}});
      places.push_back({blk(l, "ffn_up.weight"), p + "mlp.c_fc.weight", {C, F}});
      places.push_back({blk(l, "ffn_up.bias"), p + "mlp.c_fc.bias", {F}});
      places.push_back({blk(l, "ffn_down.weight"), p + "mlp.c_proj.weight", {F, C}});
      places.push_back({blk(l, "ffn_down.bias"), p + "mlp.c_proj.bias", {C}});
    }
  }
  places.push_back({"output_norm.weight", llama ? "model.norm.weight" : "ln_f.weight", {C}});
  if (!llama) places.push_back({"output_norm.bias", "ln_f.bias", {C}});
  if (llama && !c.tied_embeddings) places.push_back({"output.weight", "lm_head.weight", {C, V}});
  // The file's tensors, checked, and the matrices that stay in their blocks.
  std::vector<const GgufTensor*> found;
  for (const Place& pl : places) {
    const GgufTensor* t = f.tensor(pl.gname);
    if (!t) throw Error(path, "has no tensor " + pl.gname);
    if (t->ne != pl.ne) {
      std::string want, got;
      for (int64_t d : pl.ne) want += (want.empty() ? "" : " x ") + std::to_string(d);
      for (int64_t d : t->ne) got += (got.empty() ? "" : " x ") + std::to_string(d);
      throw Error(path, "tensor " + pl.gname + " is " + got + ", the model's config wants " + want);
    }
    found.push_back(t);
    if (held_as_blocks(pl.name, t->type)) options.weight_types[pl.name] = t->type;
  }
  LoadedModel lm;
  lm.model = std::make_unique<Model>(c, be, options);
  Model& m = *lm.model;
  std::vector<float> w(m.num_params(), 0.0f);
  for (size_t i = 0; i < places.size(); ++i) {
    throw_if_stopped();
    const Place& pl = places[i];
    const GgufTensor& t = *found[i];
    const ParamSpec& s = m.param(pl.name);
    const int64_t cols = pl.ne[0];
    if (s.quantized()) {  // the blocks as they are, rows permuted back where the export permuted them
      const size_t rb = ggml::row_bytes(t.type, cols);
      // The model's rows that the file holds: a third of GPT-2's attn_qkv, the vocabulary's
      // rows of the (padded) embedding, else all.
      const int64_t n = std::min(s.shape[0], pl.ne[1] - pl.row0);
      const uint8_t* src = f.data(t) + static_cast<size_t>(pl.row0) * rb;
      if (pl.heads > 0) {
        const std::vector<uint8_t> b = permute_rows(src, n, rb, pl.heads, true);
        m.set_quantized(pl.name, b.data(), n);
      } else {
        m.set_quantized(pl.name, src, n);
      }
      release_mapped_pages(f.data(t), t.bytes);  // copied: the file's pages need not stay resident
      continue;
    }
    std::vector<float> v = f.values(t);
    release_mapped_pages(f.data(t), t.bytes);
    if (pl.heads > 0) v = permute_heads(v.data(), pl.ne[1], cols, pl.heads, true);
    const size_t first = static_cast<size_t>(pl.row0) * (pl.ne.size() == 2 ? static_cast<size_t>(cols) : 1);
    std::memcpy(w.data() + s.offset, v.data() + first, std::min(v.size() - first, s.size) * sizeof(float));
  }
  be.upload(m.weights(), w.data(), w.size());
  be.parameters_changed();
  if (m.quantized())
    LLMKIT_INFO("%s: %zu matrices kept in their blocks, %.1f MiB of weights in memory; quantized matmuls: %s", path.c_str(),
                options.weight_types.size(), static_cast<double>(m.weight_bytes()) / 1048576.0, be.quant_kernel().c_str());
  if (const GgufValue* t = f.find("llmkit.tokenizer.model"); t && t->type == GgufValue::array && t->elem == GgufValue::u8) {
    std::string bytes(t->nums.size(), '\0');
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(static_cast<uint8_t>(t->nums[i]));
    lm.tokenizer = temp_model_file(bytes);
  } else if (const GgufValue* m = f.find("tokenizer.ggml.model"); m && m->type == GgufValue::string && m->str == "llama") {
    lm.tokenizer = temp_model_file(spm_model_from_gguf(f));  // a file llama.cpp's converter wrote
  }
  lm.source = path;
  return lm;
}

}  // namespace llmkit
