// LoRA adapters on disk as Hugging Face PEFT writes them (lib/model/adapter.cpp,
// llmkit-checkpoint(5)): adapter_config.json and adapter_model.safetensors with PEFT's tensor
// names ("base_model.model." + the base's module path + ".lora_A.weight"), so that
// PeftModel.from_pretrained loads them; llmkit_base.json beside them records which base they
// were trained on (a fingerprint of its files), so that an adapter is not run on another base.
#pragma once
#include <string>

#include "llmkit/model.hpp"

namespace llmkit {

struct AdapterConfig {
  std::string base;  // base_model_name_or_path: the base checkpoint directory
  LoraOptions lora;
  std::string fingerprint;  // of the base, from llmkit_base.json ("" when absent)
  // task_type SEQ_CLS: a reward model's adapter, whose score head is trained in full and saved
  // with it (PEFT's modules_to_save ["score"]: base_model.model.score.weight).
  bool seq_cls = false;
};

// True when `dir` holds adapter_config.json.
bool is_adapter_dir(const std::string& dir);
// Reads adapter_config.json (and llmkit_base.json when there): r, lora_alpha, lora_dropout,
// target_modules, use_rslora, base_model_name_or_path (relative paths taken from `dir`). An
// Error naming the file for what llmkit cannot run (another peft_type, bias training).
AdapterConfig read_adapter_config(const std::string& dir);
// A fingerprint of a checkpoint directory's weights: config.json, the size of
// model.safetensors and its first and last 64 KiB.
std::string base_fingerprint(const std::string& base_dir);
// Writes the model's adapters into `dir` (which exists): adapter_config.json naming `base`,
// adapter_model.safetensors (fp32), llmkit_base.json.
void save_adapter(const std::string& dir, Model& model, const std::string& base);
// Reads an adapter's tensors into a model built with its LoraOptions: every tensor present
// with its shape, or an Error naming the file and the tensor.
void load_adapter(const std::string& dir, Model& model);
// PEFT's name of an adapter tensor of the model ("base_model.model.model.layers.0...").
std::string peft_name(const ModelConfig& c, const std::string& name);

}  // namespace llmkit
