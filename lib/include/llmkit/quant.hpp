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
#include <functional>
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
  // UsageError for an unknown one. "nf4" too: QLoRA's NF4 base (ggml.hpp), every matrix in it,
  // held in memory only (export_gguf refuses it).
  static QuantScheme named(const std::string& name);
  static std::vector<std::string> names();  // the GGUF file types
};

// GPTQ calibration (lib/quant/gptq.cpp): windows of token shards as make_imatrix reads them.
struct GptqConfig {
  std::vector<std::string> calib;  // token shards
  int seq_len = 0;                 // 0: min(512, the model's context)
  int64_t chunks = 100;            // windows read at most
  double damp = 0.01;              // added to H's diagonal, times its mean
};

struct ExportReport {
  size_t tensors = 0, bytes = 0;
  size_t weighted = 0;  // tensors quantized with the importance matrix
  // GPTQ: the matrices it quantized, and the sums over them of the output error (tr(D H D^T),
  // D the weight error) of GPTQ, of round-to-nearest with the imatrix, and of plain rounding.
  size_t gptq = 0;
  double gptq_error = 0, imatrix_error = 0, rtn_error = 0;
  int64_t calib_tokens = 0;
  double params = 0;
  std::vector<std::pair<std::string, int>> types;  // tensors per ggml type
};

// Writes the model of `checkpoint` (a checkpoint or run directory, an adapter merged) as GGUF;
// with `imatrix` (a file of make_imatrix), the types that use one (Q4_0, Q4_K, Q5_K, Q6_K) are
// quantized weighting each column by its importance, as llama-quantize --imatrix does.
// With `gptq`, every quantized matrix but the token embedding is quantized by GPTQ
// (gptq_quantize) on the Hessians of its inputs over the calibration windows.
ExportReport export_gguf(const std::string& checkpoint, const std::string& out, const QuantScheme& scheme,
                         const std::string& name = "", const std::string& imatrix = "", const GptqConfig* gptq = nullptr);

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
// The calibration pass both use: the model run over consecutive windows of seq_len tokens of
// the shards (up to `chunks` of them), each matrix's inputs x [N, C] (host memory) given to
// `seen` with the matrix's GGUF name; GPT-2's key and value, which read the query's input (one
// attn_qkv), only once. Adds the windows and tokens read to r.
using CalibrationObserver = std::function<void(const std::string& gguf_name, const float* x, int N, int C)>;
void run_calibration(Model& m, const std::vector<std::string>& calib, int seq_len, int64_t chunks, ImatrixReport& r,
                     const CalibrationObserver& seen);
// The window length of a calibration: seq_len, or min(512, the model's context) for 0.
int calibration_window(const ModelConfig& c, int seq_len);
// Such a file as GGUF tensor name -> each column's mean square (in_sum2 / counts).
std::map<std::string, std::vector<float>> read_imatrix(const std::string& path);

// ---- GPTQ (lib/quant/gptq.cpp) ----

// The sums of x x^T over the calibration inputs x of the model's matrices, one per input: keyed
// by the GGUF name of the first matrix reading it (attn_q for attn_k and attn_v, ffn_gate for
// ffn_up in Llama; GPT-2's attn_qkv is one matrix; gptq_input_key maps any matrix to its
// key). The token embedding has none (its rows are looked up, not multiplied).
std::map<std::string, std::vector<float>> collect_hessians(Model& m, const GptqConfig& cfg, ImatrixReport& r);
std::string gptq_input_key(const ModelConfig& c, const std::string& gguf_name);

struct GptqResult {
  std::vector<uint8_t> bytes;  // rows x row_bytes(t, cols)
  // tr(D H D^T) of the weight error D: GPTQ's, round-to-nearest's with the importance diag(H)
  // (as llama-quantize --imatrix), and plain round-to-nearest's
  double output_error = 0, rtn_output_error = 0, plain_output_error = 0;
};
// GPTQ of w [rows, cols] in the block type t, on the inputs' second moments H (cols x cols,
// row-major); damp times H's mean diagonal is added to its diagonal.
GptqResult gptq_quantize(ggml::Type t, const float* w, int64_t rows, int cols, const std::vector<float>& hessian, double damp = 0.01);

}  // namespace llmkit
