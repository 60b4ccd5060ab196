// Checkpoints (man5/llmkit-checkpoint.5): OUT/step-NNNNNNNN/ holding config.json,
// model.safetensors with Hugging Face tensor names (LlamaForCausalLM / GPT2LMHeadModel),
// the tokenizer model, optimizer.safetensors (AdamW moments) and trainer_state.json. A
// checkpoint directory is written under a temporary name and renamed whole; OUT/latest names
// the newest complete one and is replaced last.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "llmkit/model.hpp"

namespace llmkit {

struct TrainerState {
  int64_t step = 0;          // optimizer steps done
  uint64_t cursor = 0;       // sequences of the shuffled order consumed
  uint64_t tokens_seen = 0;  // target tokens trained on
  int world_size = 1;       // data-parallel ranks
  int tensor_parallel = 1;  // tensor-parallel ranks (the checkpoint's tensors are whole whatever it is)
  uint64_t seed = 0;
  int seq_len = 0;
  int64_t batch_sequences = 0;  // global batch
  std::string to_json() const;
  static TrainerState from_json(const std::string& json, const std::string& where);
};

// Model weights with Hugging Face names and layouts (GPT-2's Conv1D [in, out] weights and
// fused c_attn converted), embeddings trimmed to vocab_size rows. dtype "F32" or "BF16".
void save_model(const std::string& path, Model& model, const std::string& dtype = "F32");
// Reads Hugging Face-named weights (Llama, or GPT-2 with or without the "transformer."
// prefix) into the model, checking every shape; a missing or misshapen tensor is an Error
// naming the file and the tensor.
// Tensors named in `optional` may be missing (a reward model's score.weight when its start is a
// language model): they keep their values, and their names are returned.
std::vector<std::string> load_model(const std::string& path, Model& model, const std::set<std::string>& optional = {});

// llm.c's GPT-2 checkpoints (gpt2_124M.bin: 256 int32 header, magic 20240326, version 3 = fp32
// weights; maxT, V, L, NH, C, padded V; then the tensors in llm.c's order): true when `path`
// is one; its model configuration; its weights read into a GPT-2 model of that configuration.
bool is_llmc_checkpoint(const std::string& path);
ModelConfig llmc_config(const std::string& path);
void load_llmc(const std::string& path, Model& model);

// Writes OUT/step-NNNNNNNN/ and then OUT/latest; removes all but the newest `keep` (0: keep all).
// `moments` are AdamW's m and v, each num_grads() floats in the gradient buffer's layout (host
// memory); frozen tensors have none. Adapter tensors (LoRA) are not in model.safetensors.
// model.safetensors is written as `dtype` (F32 or BF16); with BF16 the fp32 master weights go
// into optimizer.safetensors too ("w." tensors), so that --resume continues exactly.
// `extra` writes more files into the checkpoint's temporary directory before it is renamed
// (an adapter, tokenizer_config.json).
std::string save_checkpoint(const std::string& out, Model& model, const float* m, const float* v,
                            const TrainerState& state, const std::string& tokenizer, int keep,
                            const std::string& dtype = "F32",
                            const std::function<void(const std::string& dir)>& extra = nullptr);
// The newest complete checkpoint directory under OUT ("" when there is none).
std::string latest_checkpoint(const std::string& out);
// The checkpoint a path names: a run directory's latest (a directory with `latest` and no
// config.json), else the path itself.
std::string checkpoint_dir(const std::string& path);
// The tokenizer a checkpoint directory holds: its tokenizer.model (SentencePiece), else its
// vocab.txt (a BERT's WordPiece vocabulary, with tokenizer_config.json); "" when neither.
std::string checkpoint_tokenizer(const std::string& dir);
// Loads weights (the fp32 master weights when the checkpoint has them), moments (when m and v
// are given) and state from a checkpoint directory.
TrainerState load_checkpoint(const std::string& dir, Model& model, float* m, float* v);
// AdamW's m and v for the range [begin, end) of the model's gradient buffer, from a checkpoint
// directory's optimizer.safetensors into host arrays of end - begin floats each: what a rank
// that holds a segment of the optimizer state (ZeRO-1) needs, without the whole of it.
void load_moments(const std::string& dir, const Model& model, size_t begin, size_t end, float* m,
                  float* v);

// A model to run: a checkpoint directory (config.json, model.safetensors, tokenizer.model when
// there), a run directory (its latest checkpoint), a model.safetensors with config.json beside
// it, or an llm.c GPT-2 file. `tokenizer` is the path of the tokenizer found, "" if none.
struct LoadedModel {
  std::unique_ptr<Model> model;
  std::string tokenizer;
  std::string source;  // the checkpoint directory or file read
  int train_seq_len = 0;  // the sequence length it was trained with (trainer_state.json), 0 if unknown
};
LoadedModel open_model(const std::string& path, Backend& backend, ModelOptions options = {});
// A UsageError naming `path` when the model is an encoder (BERT): `what` (generation, a chat
// model's tuning, GGUF export...) needs a decoder.
void require_decoder(const Model& m, const std::string& path, const std::string& what);
// The chat template a checkpoint (or a run directory's latest) was tuned with, from its
// tokenizer_config.json ("llmkit_chat_template"); "" when it names none.
std::string checkpoint_chat_template(const std::string& path);

}  // namespace llmkit
