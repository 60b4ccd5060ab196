// llm-sft (lib/model/sft.cpp): instruction tuning on chat data (llmkit/chat.hpp) as an objective
// on the shared training loop: the masked next-token loss, averaged over the trained tokens of
// the whole global batch; full fine-tuning or LoRA adapters on a frozen base (PEFT's format);
// exact packing; distillation from a teacher model.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "llmkit/model.hpp"
#include "llmkit/trainer.hpp"

namespace llmkit {

class Stats;

struct SftConfig : TrainerOptions {
  std::vector<std::string> data, val;  // chat JSONL files (llmkit-chat(5))
  std::string chat_template = "chatml";
  bool packing = false;
  bool truncate = true;  // false (--no-truncate): an example longer than a row is an error
  bool strict = false;   // a malformed row stops the run
  double epochs = 0;     // > 0: the run's length in passes over the data, instead of --steps
  int64_t eval_batches = 0;  // 0: every validation row
  LoraOptions lora;      // rank 0: full fine-tuning
  int64_t limit = 0;     // rows read at most per file set; 0: all
  // Distillation: with a teacher, the loss is (1 - kd_alpha) NLL + kd_alpha divergence, both
  // means over the trained tokens of the global batch.
  std::string teacher;   // a checkpoint, run or adapter directory; empty: none
  double kd_alpha = 0.5;
  Divergence divergence;
};

// Runs training; 0 at the end, 1 when stopped by a signal after saving a checkpoint.
int run_sft(const SftConfig& cfg, Stats& stats);
// Prints the first n examples of the data with their trained tokens between [[ and ]].
void show_masks(const SftConfig& cfg, int64_t n, std::FILE* out);
// A base with an adapter (an adapter directory or a run whose checkpoint holds one) merged into
// a plain checkpoint directory `out`: config.json, model.safetensors (W + scale B A),
// tokenizer.model and tokenizer_config.json.
void merge_adapter(const std::string& adapter, const std::string& out);
// tokenizer_config.json for a checkpoint trained with `chat_template` (Hugging Face's keys).
std::string tokenizer_config_json(const std::string& chat_template, int max_length);

}  // namespace llmkit
