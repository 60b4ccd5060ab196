// LoRA adapters as PEFT writes them; see llmkit/adapter.hpp.
#include "llmkit/adapter.hpp"

#include <xxhash.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <vector>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/safetensors.hpp"

namespace llmkit {

namespace fs = std::filesystem;

bool is_adapter_dir(const std::string& dir) { return is_directory(dir) && file_size(dir + "/adapter_config.json") > 0; }

std::string peft_name(const ModelConfig& c, const std::string& name) {
  // Llama's tensor names are Hugging Face's already; GPT-2's are llmkit's "h.N..." for HF's
  // "transformer.h.N...".
  return "base_model.model." + (c.family == ModelConfig::Family::gpt2 ? "transformer." + name : name);
}

AdapterConfig read_adapter_config(const std::string& dir) {
  const std::string path = dir + "/adapter_config.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("invalid JSON: ") + e.what());
  }
  AdapterConfig a;
  try {
    if (j.value("peft_type", "LORA") != "LORA") throw Error(path, "peft_type " + j["peft_type"].dump() + ": llmkit runs LORA adapters");
    if (j.value("bias", "none") != "none") throw Error(path, "bias \"" + j["bias"].get<std::string>() + "\": llmkit's adapters train no biases");
    a.lora.rank = j.at("r").get<int>();
    a.lora.alpha = j.at("lora_alpha").get<float>();
    a.lora.dropout = j.value("lora_dropout", 0.0f);
    a.lora.rslora = j.value("use_rslora", false);
    const auto& t = j.at("target_modules");
    if (t.is_string()) a.lora.targets = {t.get<std::string>()};
    else a.lora.targets = t.get<std::vector<std::string>>();
    a.base = j.value("base_model_name_or_path", "");
    a.seq_cls = j.value("task_type", "CAUSAL_LM") == "SEQ_CLS";
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("not a LoRA adapter config: ") + e.what());
  }
  if (a.lora.rank < 1) throw Error(path, "r must be at least 1");
  if (!a.base.empty() && a.base[0] != '/' && !is_directory(a.base) && is_directory(dir + "/" + a.base)) a.base = dir + "/" + a.base;
  if (file_size(dir + "/llmkit_base.json") > 0) {
    try {
      a.fingerprint = nlohmann::json::parse(read_file(dir + "/llmkit_base.json")).value("fingerprint", "");
    } catch (const nlohmann::json::exception& e) {
      throw Error(dir + "/llmkit_base.json", std::string("invalid JSON: ") + e.what());
    }
  }
  return a;
}

std::string base_fingerprint(const std::string& base_dir) {
  const std::string weights = base_dir + "/model.safetensors";
  std::string bytes = read_file(base_dir + "/config.json");
  const uint64_t size = file_size(weights);
  bytes += std::to_string(size);
  if (size > 0) {
    auto in = open_input(weights);
    std::vector<char> buf(65536);
    size_t got = in->read(buf.data(), buf.size());
    bytes.append(buf.data(), got);
    if (size > buf.size()) {
      FILE* f = std::fopen(weights.c_str(), "rb");
      if (f && std::fseek(f, -static_cast<long>(buf.size()), SEEK_END) == 0) bytes.append(buf.data(), std::fread(buf.data(), 1, buf.size(), f));
      if (f) std::fclose(f);
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(XXH3_64bits(bytes.data(), bytes.size())));
  return hex;
}

void save_adapter(const std::string& dir, Model& m, const std::string& base) {
  const LoraOptions& lo = m.options().lora;
  const ModelConfig& c = m.config();
  std::vector<float> host(m.num_params());
  m.backend().download(host.data(), m.weights(), host.size());
  std::vector<TensorView> views;
  for (const ParamSpec& s : m.params())
    if (Model::is_lora_tensor(s.name)) views.push_back({peft_name(c, s.name), DType::f32, s.shape, host.data() + s.offset});
  // A sequence classifier's score head (a reward model's, BERT's pooler and classifier), trained
  // in full: PEFT's modules_to_save. (PPO's value head on a language model is not the
  // adapter's: the checkpoint's optimizer state keeps it.)
  const bool seq_cls = m.options().scalar_head && !m.options().lm_head;
  if (seq_cls)
    for (const std::string& name : m.head_tensors()) {
      const ParamSpec& s = m.param(name);
      views.push_back({"base_model.model." + name, DType::f32, s.shape, host.data() + s.offset});
    }
  if (views.empty()) throw Error(dir, "internal: the model has no adapter to save");
  write_safetensors_f32(dir + "/adapter_model.safetensors", views, DType::f32, {{"format", "pt"}});
  std::vector<std::string> targets = lo.targets;
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = seq_cls ? "SEQ_CLS" : "CAUSAL_LM";
  j["base_model_name_or_path"] = base;
  j["r"] = lo.rank;
  // float options as the decimal they were given (0.1, not 0.10000000149)
  auto decimal = [](float x) { return std::stod(std::to_string(static_cast<double>(x)).substr(0, 10)); };
  j["lora_alpha"] = decimal(lo.alpha);
  j["lora_dropout"] = decimal(lo.dropout);
  j["target_modules"] = targets.size() == 1 && targets[0] == "all-linear" ? nlohmann::ordered_json("all-linear") : nlohmann::ordered_json(targets);
  j["use_rslora"] = lo.rslora;
  j["bias"] = "none";
  j["fan_in_fan_out"] = c.family == ModelConfig::Family::gpt2;  // GPT-2's Conv1D weights are [in, out]
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  j["modules_to_save"] = !seq_cls          ? nlohmann::ordered_json(nullptr)
                         : c.encoder() ? nlohmann::ordered_json({"classifier", "pooler"})
                                       : nlohmann::ordered_json({"score"});
  write_file_atomic(dir + "/adapter_config.json", j.dump(2) + "\n");
  nlohmann::ordered_json b;
  b["base"] = base;
  b["fingerprint"] = is_directory(base) && file_size(base + "/config.json") > 0 ? base_fingerprint(base) : "";
  write_file_atomic(dir + "/llmkit_base.json", b.dump(2) + "\n");
}

void load_adapter(const std::string& dir, Model& m) {
  const std::string path = dir + "/adapter_model.safetensors";
  SafetensorsFile f(path);
  std::vector<float> host(m.num_params());
  m.backend().download(host.data(), m.weights(), host.size());
  int read = 0;
  for (const ParamSpec& s : m.params()) {
    if (!Model::is_lora_tensor(s.name)) continue;
    const std::string name = peft_name(m.config(), s.name);
    if (!f.has(name)) throw Error(path, "tensor " + name + " is missing (an adapter of other target modules?)");
    f.read_f32(name, host.data() + s.offset, s.size, s.shape);
    ++read;
  }
  if (read == 0) throw Error(path, "the model has no adapter tensors to read");
  if (m.options().scalar_head && !m.options().lm_head)
    for (const std::string& name : m.head_tensors()) {
      const ParamSpec& s = m.param(name);
      if (!f.has("base_model.model." + name))
        throw Error(path, "tensor base_model.model." + name + " is missing (a sequence classifier's adapter saves its score head)");
      f.read_f32("base_model.model." + name, host.data() + s.offset, s.size, s.shape);
    }
  m.backend().upload(m.weights(), host.data(), host.size());
  m.backend().parameters_changed();
}

}  // namespace llmkit
