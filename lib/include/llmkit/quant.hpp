// llm-quant (lib/quant/export.cpp): llmkit models to GGUF files that llama.cpp runs as they are,
// and GGUF files back into llmkit models.
//
// Export: the Llama family as llama.cpp's "llama" architecture (tensor names blk.N.attn_q ...,
// the query and key rows permuted from Hugging Face's rotate-half order to llama.cpp's, as its
// converter does), GPT-2 as "gpt2" (q, k and v fused into attn_qkv); the SentencePiece
// vocabulary as tokenizer.ggml.model "llama" (pieces, scores, types; rows past the tokenizer
// padded with unique [PADn] pieces), the chat template when the checkpoint has one, and the
// SentencePiece model itself (llmkit.tokenizer.model) so that llmkit reads the file back
// exactly. Weight types by --type, per tensor as llama-quantize assigns them: norms and biases
// F32; in the quantized mixes the output (or tied embedding) Q6_K, and under Q4_K_M/Q5_K_M
// attn_v and ffn_down Q6_K in llama.cpp's "more bits" layers; a row that is not whole blocks of
// the type falls back as llama-quantize's do (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, else F16).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/checkpoint.hpp"
#include "llmkit/ggml.hpp"

namespace llmkit {

class GgufFile;

// A file type of --type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m, q5_k_m, q6_k.
struct QuantScheme {
  std::string name;
  uint32_t file_type = 0;  // llama.cpp's LLAMA_FTYPE_*
  ggml::Type base = ggml::Type::f32;
  // llama-quantize's mixes: K_M gives attn_v and ffn_down Q6_K in the "more bits" layers, K_S
  // Q5_K in the first few.
  enum class Mix { none, k_s, k_m } mix = Mix::none;
  static QuantScheme named(const std::string& name);  // UsageError for an unknown one
  static std::vector<std::string> names();
};

struct ExportReport {
  size_t tensors = 0, bytes = 0;
  size_t weighted = 0;  // tensors quantized with the importance matrix
  double params = 0;
  std::vector<std::pair<std::string, int>> types;  // tensors per ggml type
};

// Writes the model of `checkpoint` (a checkpoint or run directory, an adapter merged) as GGUF;
// with `imatrix` (a file of make_imatrix), the types that use one (Q4_0, Q4_K, Q5_K, Q6_K) are
// quantized weighting each column by its importance, as llama-quantize --imatrix does.
ExportReport export_gguf(const std::string& checkpoint, const std::string& out, const QuantScheme& scheme,
                         const std::string& name = "", const std::string& imatrix = "");

// A GGUF file as an llmkit model on `backend`: its quantized matrices (Q8_0, Q4_K, ...) held
// in their blocks, the rest (F32, F16, BF16) as fp32 values. The file: one that
// llm-quant wrote, or a Llama-architecture file that llama.cpp's converter wrote (its
// tokenizer then rebuilt from the vocabulary metadata is not supported: give --tokenizer).
// `tokenizer` gets the path of a SentencePiece model extracted next to nothing (a temporary file
// the caller may read) when the file holds llmkit.tokenizer.model, else "".
LoadedModel open_gguf_model(const std::string& path, Backend& backend, ModelOptions options = {});

bool is_gguf_file(const std::string& path);

// A copy of model m (on its backend) with its matrices quantized in memory as export_gguf
// writes them under scheme s: the linear layers' weights and the token embedding held in their
// blocks, tensors that the file holds as F16 or that the model keeps in fp32 (GPT-2's position
// table) rounded through their type. Evaluating it gives exactly what evaluating the GGUF file
// read back (open_gguf_model) gives.
std::unique_ptr<Model> quantize_model(Model& m, const QuantScheme& s);

// ---- Importance matrices (lib/quant/imatrix.cpp) ----

// The GGUF tensor an llmkit matrix becomes ("blk.3.attn_q.weight"; GPT-2's q, k and v all
// "blk.N.attn_qkv.weight"); "" for a tensor that is no matrix of the file's.
std::string gguf_tensor_name(const ModelConfig& c, const std::string& name);

struct ImatrixConfig {
  std::string model;               // a checkpoint, run directory or GGUF file
  std::vector<std::string> calib;  // token shards
  int seq_len = 0;                 // 0: min(512, the model's context)
  int64_t chunks = 100;            // windows of seq_len tokens read at most
  std::string out;
};
struct ImatrixReport {
  size_t tensors = 0;
  int64_t chunks = 0, tokens = 0;
};
// Runs the model over consecutive windows of the calibration shards and writes, for every
// matrix, the sum of each input column's squares and the rows seen, as llama.cpp's llama-imatrix
// writes its GGUF files: <tensor>.in_sum2 [columns] and <tensor>.counts [1] (F32), with
// general.type "imatrix", imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size.
ImatrixReport make_imatrix(const ImatrixConfig& cfg);
// Such a file as GGUF tensor name -> each column's mean square (in_sum2 / counts).
std::map<std::string, std::vector<float>> read_imatrix(const std::string& path);

}  // namespace llmkit
