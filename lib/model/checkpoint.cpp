// Checkpoints: Hugging Face-named safetensors, moments, trainer state; see checkpoint.hpp.
#include "llmkit/checkpoint.hpp"
#include "llmkit/quant.hpp"

#include "llmkit/adapter.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/safetensors.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/wordpiece.hpp"

namespace llmkit {

namespace fs = std::filesystem;

// ---- Trainer state ---------------------------------------------------------------------------------

std::string TrainerState::to_json() const {
  nlohmann::ordered_json j;
  j["step"] = step;
  j["cursor"] = cursor;
  j["tokens_seen"] = tokens_seen;
  j["world_size"] = world_size;
  j["tensor_parallel"] = tensor_parallel;
  j["seed"] = seed;
  j["seq_len"] = seq_len;
  j["batch_sequences"] = batch_sequences;
  return j.dump(2) + "\n";
}

TrainerState TrainerState::from_json(const std::string& text, const std::string& where) {
  TrainerState s;
  try {
    auto j = nlohmann::json::parse(text);
    s.step = j.at("step").get<int64_t>();
    s.cursor = j.at("cursor").get<uint64_t>();
    s.tokens_seen = j.at("tokens_seen").get<uint64_t>();
    s.world_size = j.at("world_size").get<int>();
    s.tensor_parallel = j.value("tensor_parallel", 1);
    s.seed = j.at("seed").get<uint64_t>();
    s.seq_len = j.at("seq_len").get<int>();
    s.batch_sequences = j.at("batch_sequences").get<int64_t>();
  } catch (const std::exception& e) {
    throw Error(where, std::string("damaged trainer state: ") + e.what());
  }
  return s;
}

// ---- Hugging Face names ------------------------------------------------------------------------------

namespace {

// One Hugging Face tensor and how it maps onto the model's parameters: `parts` are internal
// tensors concatenated along the output dimension; `transpose` for GPT-2's Conv1D [in, out];
// `rows` trims padded vocabulary rows.
struct HfTensor {
  std::string name;
  std::vector<std::string> parts;
  bool transpose = false;
  int64_t rows = -1;
};

std::vector<HfTensor> hf_layout(const Model& m) {
  const ModelConfig& c = m.config();
  std::vector<HfTensor> out;
  if (c.family != ModelConfig::Family::gpt2) {  // Llama and BERT: Hugging Face's names and layouts already
    for (const auto& s : m.params()) {
      if (Model::is_lora_tensor(s.name)) continue;  // adapters go to their own file
      HfTensor t{s.name, {s.name}, false, -1};
      if (Model::vocabulary_rows(s.name)) t.rows = c.vocab_size;
      out.push_back(t);
    }
    return out;
  }
  out.push_back({"transformer.wte.weight", {"wte"}, false, c.vocab_size});
  out.push_back({"transformer.wpe.weight", {"wpe"}, false, -1});
  for (int l = 0; l < c.layers; ++l) {
    std::string p = "h." + std::to_string(l) + ".", hf = "transformer." + p;
    out.push_back({hf + "ln_1.weight", {p + "ln_1.weight"}});
    out.push_back({hf + "ln_1.bias", {p + "ln_1.bias"}});
    out.push_back({hf + "attn.c_attn.weight", {p + "attn.q.weight", p + "attn.k.weight", p + "attn.v.weight"}, true});
    out.push_back({hf + "attn.c_attn.bias", {p + "attn.q.bias", p + "attn.k.bias", p + "attn.v.bias"}});
    out.push_back({hf + "attn.c_proj.weight", {p + "attn.c_proj.weight"}, true});
    out.push_back({hf + "attn.c_proj.bias", {p + "attn.c_proj.bias"}});
    out.push_back({hf + "ln_2.weight", {p + "ln_2.weight"}});
    out.push_back({hf + "ln_2.bias", {p + "ln_2.bias"}});
    out.push_back({hf + "mlp.c_fc.weight", {p + "mlp.c_fc.weight"}, true});
    out.push_back({hf + "mlp.c_fc.bias", {p + "mlp.c_fc.bias"}});
    out.push_back({hf + "mlp.c_proj.weight", {p + "mlp.c_proj.weight"}, true});
    out.push_back({hf + "mlp.c_proj.bias", {p + "mlp.c_proj.bias"}});
  }
  out.push_back({"transformer.ln_f.weight", {"ln_f.weight"}});
  out.push_back({"transformer.ln_f.bias", {"ln_f.bias"}});
  if (m.options().scalar_head) out.push_back({"score.weight", {"score.weight"}});  // GPT2ForSequenceClassification's
  return out;
}

// The Hugging Face tensor's values (row-major in its own shape): a pointer into the model's
// host memory when the tensor is one parameter in the same layout (its first rows), otherwise
// gathered into `storage`.
const float* gather(const Model& m, const float* host, const HfTensor& t, std::vector<int64_t>& shape,
                    std::vector<float>& storage) {
  std::vector<const ParamSpec*> parts;
  int64_t out_rows = 0, cols = 0;
  for (const auto& name : t.parts) {
    parts.push_back(&m.param(name));
    const ParamSpec& s = *parts.back();
    out_rows += t.rows >= 0 ? t.rows : s.shape[0];
    cols = s.shape.size() > 1 ? s.shape[1] : 0;
  }
  storage.clear();
  if (cols == 0) {  // vectors (one with a value per token: its first t.rows)
    shape = {0};
    for (const ParamSpec* s : parts) shape[0] += t.rows >= 0 ? t.rows : static_cast<int64_t>(s->size);
    if (parts.size() == 1) return host + parts[0]->offset;
    for (const ParamSpec* s : parts) storage.insert(storage.end(), host + s->offset, host + s->offset + s->size);
    return storage.data();
  }
  shape = t.transpose ? std::vector<int64_t>{cols, out_rows} : std::vector<int64_t>{out_rows, cols};
  if (parts.size() == 1 && !t.transpose) return host + parts[0]->offset;
  storage.resize(static_cast<size_t>(out_rows * cols));
  int64_t r0 = 0;
  for (const ParamSpec* s : parts) {
    int64_t rows = t.rows >= 0 ? t.rows : s->shape[0];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float x = host[s->offset + static_cast<size_t>(r * cols + c)];
        if (t.transpose) storage[static_cast<size_t>(c * out_rows + r0 + r)] = x;  // [in, out]
        else storage[static_cast<size_t>((r0 + r) * cols + c)] = x;
      }
    r0 += rows;
  }
  return storage.data();
}

void scatter(const Model& m, float* host, const HfTensor& t, const std::vector<float>& v) {
  int64_t out_rows = 0, cols = 0;
  for (const auto& name : t.parts) {
    const ParamSpec& s = m.param(name);
    out_rows += t.rows >= 0 ? t.rows : s.shape[0];
    cols = s.shape.size() > 1 ? s.shape[1] : 0;
  }
  if (cols == 0) {
    size_t at = 0;
    for (const auto& name : t.parts) {
      const ParamSpec& s = m.param(name);
      const size_t n = t.rows >= 0 ? static_cast<size_t>(t.rows) : s.size;
      std::fill(host + s.offset, host + s.offset + s.size, 0.0f);
      std::copy(v.begin() + static_cast<long>(at), v.begin() + static_cast<long>(at + n), host + s.offset);
      at += n;
    }
    return;
  }
  int64_t r0 = 0;
  for (const auto& name : t.parts) {
    const ParamSpec& s = m.param(name);
    int64_t rows = t.rows >= 0 ? t.rows : s.shape[0];
    std::fill(host + s.offset, host + s.offset + s.size, 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        host[s.offset + static_cast<size_t>(r * cols + c)] =
            t.transpose ? v[static_cast<size_t>(c * out_rows + r0 + r)] : v[static_cast<size_t>((r0 + r) * cols + c)];
    r0 += rows;
  }
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string step_name(int64_t step) {
  char buf[32];
  snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

}  // namespace

void save_model(const std::string& path, Model& m, const std::string& dtype) {
  if (m.quantized()) throw Error(path, "a model with quantized matrices is not saved as a checkpoint (llm-quant writes GGUF files)");
  // Host memory: the model's own on the CPU, a copy otherwise.
  std::vector<float> copy;
  const float* host = m.backend().host_view(m.weights());
  if (!host) {
    copy.resize(m.num_params());
    m.backend().download(copy.data(), m.weights(), copy.size());
    host = copy.data();
  }
  auto layout = hf_layout(m);
  std::vector<std::vector<float>> storage(layout.size());  // only converted tensors hold data
  std::vector<TensorView> views;
  for (size_t i = 0; i < layout.size(); ++i) {
    std::vector<int64_t> shape;
    const float* data = gather(m, host, layout[i], shape, storage[i]);
    views.push_back({layout[i].name, DType::f32, shape, data});
  }
  std::map<std::string, std::string> meta = {{"format", "pt"}};
  write_safetensors_f32(path, views, dtype == "BF16" ? DType::bf16 : DType::f32, meta);
}

namespace {

// A tensor-parallel model's weights: the whole model read on the host, then this rank's slices.
std::vector<std::string> load_model_slices(const std::string& path, Model& m, const std::set<std::string>& optional) {
  std::unique_ptr<Backend> host = make_backend("cpu", "fp32");
  ModelOptions o = m.options();
  o.tp = TensorParallel{};
  o.inference = true;
  Model whole(m.config(), *host, o);
  const std::vector<std::string> missing = load_model(path, whole, optional);
  std::vector<float> local(m.num_params());
  m.backend().download(local.data(), m.weights(), local.size());
  for (const ParamSpec& s : m.params())
    if (std::find(missing.begin(), missing.end(), s.name) == missing.end())
      m.shard(s, whole.weights() + whole.param(s.name).offset, local.data() + s.offset);
  m.backend().upload(m.weights(), local.data(), local.size());
  m.backend().parameters_changed();
  return missing;
}

// A tensor of the model (its whole shape in the file) into `out`: this rank's slice of it.
void read_slice(SafetensorsFile& f, const std::string& name, const Model& m, const ParamSpec& s, float* out) {
  const std::vector<int64_t> shape = m.full_shape(s);
  if (shape == s.shape) return f.read_f32(name, out, s.size, s.shape);
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  std::vector<float> whole(n);
  f.read_f32(name, whole.data(), n, shape);
  m.shard(s, whole.data(), out);
}

}  // namespace

std::vector<std::string> load_model(const std::string& path, Model& m, const std::set<std::string>& optional) {
  if (m.quantized()) throw Error(path, "internal: fp32 weights loaded into a model with quantized matrices");
  if (m.tensor_parallel().on()) return load_model_slices(path, m, optional);
  std::vector<std::string> missing;
  SafetensorsFile f(path);
  // The model's current weights, so that what the file does not hold (adapters) is kept: its
  // own memory on the CPU (no second copy of the model while it loads), a copy elsewhere.
  std::vector<float> copy;
  float* host = m.backend().host_view(m.weights());
  if (!host) {
    copy.resize(m.num_params());
    m.backend().download(copy.data(), m.weights(), copy.size());
    host = copy.data();
  }
  for (const auto& t : hf_layout(m)) {
    std::string name = t.name;
    if (!f.has(name) && name.rfind("transformer.", 0) == 0 && f.has(name.substr(12))) name = name.substr(12);
    if (!f.has(name) && name.rfind("bert.", 0) == 0 && f.has(name.substr(5))) name = name.substr(5);  // BertModel's names
    // Checkpoints converted from Google's TensorFlow BERT name LayerNorm's weight and bias gamma and beta.
    if (!f.has(name) && name.find("LayerNorm.") != std::string::npos) {
      const std::string tf = has_suffix(name, ".weight") ? name.substr(0, name.size() - 7) + ".gamma"
                                                         : name.substr(0, name.size() - 5) + ".beta";
      if (f.has(tf)) name = tf;
    }
    if (!f.has(name) && optional.count(t.name)) {
      missing.push_back(t.name);
      continue;
    }
    if (!f.has(name)) throw Error(path, "tensor " + t.name + " is missing");
    std::vector<int64_t> shape;
    std::vector<float> scratch;
    gather(m, host, t, shape, scratch);  // for the shape
    size_t count = 1;
    for (int64_t d : shape) count *= static_cast<size_t>(d);
    std::vector<float> v(count);
    f.read_f32(name, v.data(), v.size(), shape);
    scatter(m, host, t, v);
  }
  if (!copy.empty()) m.backend().upload(m.weights(), copy.data(), copy.size());
  m.backend().parameters_changed();
  return missing;
}

// ---- llm.c GPT-2 checkpoints ------------------------------------------------------------------------

namespace {
constexpr int32_t kLlmcModelMagic = 20240326;

std::vector<int32_t> llmc_header(const std::string& path) {
  auto in = open_input(path);
  std::vector<int32_t> h(256, 0);
  size_t got = 0;
  char* p = reinterpret_cast<char*>(h.data());
  while (got < 1024) {
    size_t r = in->read(p + got, 1024 - got);
    if (r == 0) break;
    got += r;
  }
  if (got < 1024) h[0] = 0;
  return h;
}
}  // namespace

bool is_llmc_checkpoint(const std::string& path) {
  return !is_directory(path) && file_size(path) >= 1024 && llmc_header(path)[0] == kLlmcModelMagic;
}

ModelConfig llmc_config(const std::string& path) {
  std::vector<int32_t> h = llmc_header(path);
  if (h[0] != kLlmcModelMagic) throw Error(path, "not an llm.c GPT-2 checkpoint (magic)");
  if (h[1] != 3)
    throw Error(path, "llm.c checkpoint version " + std::to_string(h[1]) + ": only version 3 (fp32) is read");
  ModelConfig c;
  c.family = ModelConfig::Family::gpt2;
  c.max_seq = h[2];
  c.vocab_size = h[3];
  c.layers = h[4];
  c.heads = c.kv_heads = h[5];
  c.dim = h[6];
  c.ffn_dim = 4 * c.dim;
  c.tied_embeddings = true;
  c.validate(path);
  if (h[7] < c.vocab_size) throw Error(path, "padded vocabulary below the vocabulary");
  return c;
}

void load_llmc(const std::string& path, Model& m) {
  const ModelConfig c = llmc_config(path);
  const ModelConfig& mc = m.config();
  if (mc.family != ModelConfig::Family::gpt2 || mc.dim != c.dim || mc.layers != c.layers || mc.heads != c.heads ||
      mc.vocab_size != c.vocab_size || mc.max_seq < c.max_seq)
    throw Error(path, "the model to load into does not have this checkpoint's shape");
  const int64_t C = c.dim, L = c.layers, maxT = c.max_seq, Vp = llmc_header(path)[7];
  const int64_t sizes[16] = {Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                             L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  if (file_size(path) != static_cast<uint64_t>(1024 + 4 * total))
    throw Error(path, "is " + std::to_string(file_size(path)) + " bytes; the header says " +
                          std::to_string(1024 + 4 * total) + " (truncated?)");
  std::string bytes = read_file(path);
  const float* p = reinterpret_cast<const float*>(bytes.data() + 1024);
  std::vector<float> host(m.num_params(), 0.0f);
  auto put = [&](const std::string& name, const float* src, int64_t rows, int64_t cols) {
    const ParamSpec& s = m.param(name);
    std::copy(src, src + rows * cols, host.begin() + static_cast<long>(s.offset));
  };
  const float* t[16];
  for (int i = 0; i < 16; ++i) {
    t[i] = p;
    p += sizes[i];
  }
  put("wte", t[0], c.vocab_size, C);  // llm.c pads to Vp rows; ours are padded too, zero beyond V
  put("wpe", t[1], maxT, C);
  for (int64_t l = 0; l < L; ++l) {
    const std::string h = "h." + std::to_string(l) + ".";
    put(h + "ln_1.weight", t[2] + l * C, 1, C);
    put(h + "ln_1.bias", t[3] + l * C, 1, C);
    const float* qkv = t[4] + l * 3 * C * C;  // [3C, C]: q rows, then k, then v
    put(h + "attn.q.weight", qkv, C, C);
    put(h + "attn.k.weight", qkv + C * C, C, C);
    put(h + "attn.v.weight", qkv + 2 * C * C, C, C);
    const float* qkvb = t[5] + l * 3 * C;
    put(h + "attn.q.bias", qkvb, 1, C);
    put(h + "attn.k.bias", qkvb + C, 1, C);
    put(h + "attn.v.bias", qkvb + 2 * C, 1, C);
    put(h + "attn.c_proj.weight", t[6] + l * C * C, C, C);
    put(h + "attn.c_proj.bias", t[7] + l * C, 1, C);
    put(h + "ln_2.weight", t[8] + l * C, 1, C);
    put(h + "ln_2.bias", t[9] + l * C, 1, C);
    put(h + "mlp.c_fc.weight", t[10] + l * 4 * C * C, 4 * C, C);
    put(h + "mlp.c_fc.bias", t[11] + l * 4 * C, 1, 4 * C);
    put(h + "mlp.c_proj.weight", t[12] + l * C * 4 * C, C, 4 * C);
    put(h + "mlp.c_proj.bias", t[13] + l * C, 1, C);
  }
  put("ln_f.weight", t[14], 1, C);
  put("ln_f.bias", t[15], 1, C);
  m.backend().upload(m.weights(), host.data(), host.size());
}

std::string save_checkpoint(const std::string& out, Model& m, const float* mom, const float* var,
                            const TrainerState& state, const std::string& tokenizer, int keep,
                            const std::string& dtype, const std::function<void(const std::string& dir)>& extra) {
  fs::create_directories(out);
  const std::string name = step_name(state.step), final_dir = out + "/" + name, tmp = out + "/." + name + ".tmp";
  // A complete checkpoint of this step is already there (a finished run resumed, a signal before
  // the first step): training is deterministic, so it holds this very state; keep it.
  if (is_directory(final_dir) && file_size(final_dir + "/trainer_state.json") > 0) {
    write_file_atomic(out + "/latest", name + "\n");
    return final_dir;
  }
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write_file_atomic(tmp + "/config.json", m.config().to_json());
  // Adapters on a frozen base: the base is its own file, untouched; the checkpoint holds the
  // adapters (extra writes them as PEFT does) and their exact fp32 values as "w." tensors.
  bool base_trained = !m.has_lora();
  for (const auto& s : m.params())  // a reward model's score head goes with the adapter
    base_trained = base_trained || (s.trainable() && !Model::is_lora_tensor(s.name) && !Model::is_head_tensor(s.name));
  if (base_trained) save_model(tmp + "/model.safetensors", m, dtype);
  if (mom && var) {
    std::vector<TensorView> views;
    std::vector<float> copy;
    const float* master = nullptr;  // the fp32 weights, when model.safetensors rounds them or is not written
    if (dtype != "F32" || !base_trained) {
      master = m.backend().host_view(m.weights());
      if (!master) {
        copy.resize(m.num_params());
        m.backend().download(copy.data(), m.weights(), copy.size());
        master = copy.data();
      }
    }
    for (const auto& s : m.params()) {
      if (s.trainable()) {
        views.push_back({"m." + s.name, DType::f32, s.shape, mom + s.grad_offset});
        views.push_back({"v." + s.name, DType::f32, s.shape, var + s.grad_offset});
      }
      if (master && (base_trained || s.trainable())) views.push_back({"w." + s.name, DType::f32, s.shape, master + s.offset});
    }
    write_safetensors(tmp + "/optimizer.safetensors", views);
  }
  if (!tokenizer.empty()) {
    // A WordPiece vocabulary as a BERT checkpoint holds it (transformers' BertTokenizer reads it).
    const std::string bytes = read_file(tokenizer);
    if (WordPiece::looks_like_vocab(bytes)) Tokenizer(tokenizer).write_wordpiece_files(tmp, state.seq_len);
    else write_file_atomic(tmp + "/tokenizer.model", bytes);
  }
  if (extra) extra(tmp);
  write_file_atomic(tmp + "/trainer_state.json", state.to_json());
  fsync_dir(tmp);
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  fsync_dir(out);
  write_file_atomic(out + "/latest", name + "\n");
  if (keep > 0) {
    std::vector<std::string> steps;
    for (const auto& e : fs::directory_iterator(out)) {
      std::string n = e.path().filename().string();
      if (e.is_directory() && n.rfind("step-", 0) == 0) steps.push_back(n);
    }
    std::sort(steps.begin(), steps.end());
    for (size_t i = 0; i + static_cast<size_t>(keep) < steps.size(); ++i)
      if (steps[i] != name) fs::remove_all(out + "/" + steps[i]);
  }
  return final_dir;
}

std::string latest_checkpoint(const std::string& out) {
  std::string latest = out + "/latest";
  if (file_size(latest) == 0) return "";
  std::string name = read_file(latest);
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  std::string dir = out + "/" + name;
  if (!is_directory(dir)) throw Error(latest, "names " + name + ", which is not there");
  return dir;
}

TrainerState load_checkpoint(const std::string& dir, Model& m, float* mom, float* var) {
  // Without model.safetensors (adapters on a frozen base) the model holds its base already.
  if (file_size(dir + "/model.safetensors") > 0 || !m.has_lora()) load_model(dir + "/model.safetensors", m);
  // Exact fp32 weights in optimizer.safetensors: all of them under a bf16 model.safetensors,
  // the adapters' on a frozen base.
  const std::string opt = dir + "/optimizer.safetensors";
  if (file_size(opt) > 0) {
    SafetensorsFile f(opt);
    std::vector<float> host;
    for (const auto& s : m.params()) {
      if (!f.has("w." + s.name)) continue;
      if (host.empty()) {
        host.resize(m.num_params());
        m.backend().download(host.data(), m.weights(), host.size());
      }
      read_slice(f, "w." + s.name, m, s, host.data() + s.offset);
    }
    if (!host.empty()) {
      m.backend().upload(m.weights(), host.data(), host.size());
      m.backend().parameters_changed();
    }
  }
  if (mom && var) load_moments(dir, m, 0, m.num_grads(), mom, var);
  return TrainerState::from_json(read_file(dir + "/trainer_state.json"), dir + "/trainer_state.json");
}

void load_moments(const std::string& dir, const Model& m, size_t begin, size_t end, float* mom,
                  float* var) {
  SafetensorsFile f(dir + "/optimizer.safetensors");
  std::vector<float> whole;  // a tensor that the range cuts
  for (const auto& s : m.params()) {
    if (!s.trainable()) continue;
    const size_t go = s.grad_offset, b = std::max(begin, go), e = std::min(end, go + s.size);
    if (b >= e) continue;
    for (auto [prefix, out] : {std::pair{"m.", mom}, std::pair{"v.", var}}) {
      if (b == go && e == go + s.size) {
        read_slice(f, prefix + s.name, m, s, out + (b - begin));
        continue;
      }
      whole.resize(s.size);
      read_slice(f, prefix + s.name, m, s, whole.data());
      std::copy(whole.begin() + static_cast<ptrdiff_t>(b - go), whole.begin() + static_cast<ptrdiff_t>(e - go), out + (b - begin));
    }
  }
}

std::string checkpoint_dir(const std::string& path) {
  if (is_directory(path) && file_size(path + "/config.json") == 0 && file_size(path + "/latest") > 0) return latest_checkpoint(path);
  return path;
}

std::string checkpoint_tokenizer(const std::string& dir) {
  for (const char* name : {"/tokenizer.model", "/vocab.txt"})
    if (file_size(dir + name) > 0) return dir + name;
  return "";
}

void require_decoder(const Model& m, const std::string& path, const std::string& what) {
  if (m.config().encoder())
    throw UsageError(path + " is a BERT encoder: " + what + " needs a decoder (Llama, GPT-2); encoders train with llm-pretrain "
                     "--objective mlm and are scored with llm-eval mlm");
}

LoadedModel open_model(const std::string& path, Backend& be, ModelOptions options) {
  if (is_gguf_file(path)) return open_gguf_model(path, be, options);
  LoadedModel lm;
  const std::string dir = checkpoint_dir(path);
  if (is_adapter_dir(dir)) {
    // A LoRA adapter (PEFT's files): its base, the adapter on it, merged for inference.
    const AdapterConfig a = read_adapter_config(dir);
    if (a.base.empty()) throw Error(dir + "/adapter_config.json", "names no base_model_name_or_path");
    const std::string base = checkpoint_dir(a.base);
    if (!is_directory(base))
      throw Error(dir + "/adapter_config.json", "its base " + a.base + " is not a checkpoint directory here");
    if (!a.fingerprint.empty() && a.fingerprint != base_fingerprint(base))
      throw Error(dir, "was trained on another base than " + base + " (its weights differ from the ones the adapter recorded)");
    options.lora = a.lora;
    if (a.seq_cls) {
      // A sequence classifier's adapter: its base (a language model, a reward model) as the
      // classifier its run's config.json says (a reward model without one); the score head
      // comes with the adapter.
      ModelConfig mc = ModelConfig::load(base);
      mc.classifier = true;
      mc.nsp = false;
      mc.num_labels = 1;
      mc.labels.clear();
      if (file_size(dir + "/config.json") > 0) {
        const ModelConfig tuned = ModelConfig::load(dir);
        if (tuned.classifier) {
          mc.num_labels = tuned.num_labels;
          mc.labels = tuned.labels;
        }
      }
      options.scalar_head = true;
      options.lm_head = false;
      lm.model = std::make_unique<Model>(mc, be, options);
      const std::vector<std::string> head = lm.model->head_tensors();
      load_model(base + "/model.safetensors", *lm.model, std::set<std::string>(head.begin(), head.end()));
      lm.tokenizer = checkpoint_tokenizer(base);
    } else {
      lm = open_model(base, be, options);
    }
    load_adapter(dir, *lm.model);
    lm.model->merge_lora();
    if (!checkpoint_tokenizer(dir).empty()) lm.tokenizer = checkpoint_tokenizer(dir);
    if (file_size(dir + "/trainer_state.json") > 0)
      lm.train_seq_len = TrainerState::from_json(read_file(dir + "/trainer_state.json"), dir + "/trainer_state.json").seq_len;
    lm.source = dir;
    return lm;
  }
  if (is_directory(dir)) {
    const ModelConfig cfg = ModelConfig::load(dir);
    if (cfg.classifier) {  // a reward model
      options.scalar_head = true;
      options.lm_head = false;
    }
    lm.model = std::make_unique<Model>(cfg, be, options);
    // A language model asked for with a scalar head (PPO's value head): the head may be new.
    const bool value_head = options.scalar_head && options.lm_head;
    const std::vector<std::string> head = lm.model->head_tensors();
    load_model(dir + "/model.safetensors", *lm.model, value_head ? std::set<std::string>(head.begin(), head.end()) : std::set<std::string>{});
    if (!checkpoint_tokenizer(dir).empty()) lm.tokenizer = checkpoint_tokenizer(dir);
    if (file_size(dir + "/trainer_state.json") > 0)
      lm.train_seq_len = TrainerState::from_json(read_file(dir + "/trainer_state.json"), dir + "/trainer_state.json").seq_len;
  } else if (is_llmc_checkpoint(path)) {
    lm.model = std::make_unique<Model>(llmc_config(path), be, options);
    load_llmc(path, *lm.model);
  } else if (has_suffix(path, ".safetensors")) {
    std::string parent = fs::path(path).parent_path().string();
    if (parent.empty()) parent = ".";
    lm.model = std::make_unique<Model>(ModelConfig::load(parent), be, options);
    load_model(path, *lm.model);
    lm.tokenizer = checkpoint_tokenizer(parent);
  } else {
    throw Error(path, "not a checkpoint directory, a run directory, a .safetensors file or an llm.c GPT-2 file");
  }
  lm.source = dir;
  return lm;
}

std::string checkpoint_chat_template(const std::string& path) {
  if (!is_directory(path)) return "";
  const std::string dir = checkpoint_dir(path);
  if (file_size(dir + "/tokenizer_config.json") == 0) return "";
  try {
    return nlohmann::json::parse(read_file(dir + "/tokenizer_config.json")).value("llmkit_chat_template", "");
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

}  // namespace llmkit
