// llm-quant: an llmkit model as a GGUF file that llama.cpp, Ollama and LM Studio run as it is
// (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_S, Q4_K_M, Q5_K_M, Q6_K), and `llm-quant inspect` of any GGUF file.

#include <cmath>
#include <cstdio>
#include <cstring>

#include "llmkit/error.hpp"
#include "llmkit/gguf.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/options.hpp"
#include "llmkit/quant.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

int inspect_main(int argc, char** argv) {
  bool all = false;
  OptionParser op("llm-quant inspect", "llm-quant inspect [OPTIONS] FILE.gguf...",
                  "Prints a GGUF file's metadata and tensors: each tensor's type, shape and size,\n"
                  "the bytes per type and the bits per weight of the whole.");
  op.flag("all", 'a', &all, "every array element of the metadata (default: the first few)");
  std::vector<std::string> files = op.parse(argc, argv);
  if (files.empty()) throw UsageError("give one or more GGUF files");
  for (const std::string& path : files) {
    const GgufFile f(path);
    std::printf("%s: GGUF v%u, %zu metadata keys, %zu tensors, %llu bytes\n", path.c_str(), f.version(), f.metadata().size(),
                f.tensors().size(), static_cast<unsigned long long>(f.file_size()));
    for (const auto& [k, v] : f.metadata()) {
      std::string text = v.describe();
      if (all && v.type == GgufValue::array) {
        text.clear();
        const size_t n = v.elem == GgufValue::string ? v.strs.size() : v.nums.size();
        for (size_t i = 0; i < n; ++i) text += (i ? " " : "") + (v.elem == GgufValue::string ? v.strs[i] : GgufValue::number(v.elem, v.nums[i]).describe());
      } else if (all && v.type == GgufValue::string) {
        text = "\"" + v.str + "\"";
      }
      std::printf("  %-44s %s\n", k.c_str(), text.c_str());
    }
    double weights = 0, bytes = 0;
    std::vector<std::pair<std::string, std::pair<double, double>>> per_type;
    for (const GgufTensor& t : f.tensors()) {
      std::string shape;
      for (int64_t d : t.ne) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
      const char* type = ggml::traits(t.type).name;
      std::printf("  tensor %-36s %-5s %-18s %10zu bytes\n", t.name.c_str(), type, shape.c_str(), t.bytes);
      weights += static_cast<double>(t.elements());
      bytes += static_cast<double>(t.bytes);
      bool found = false;
      for (auto& [name, wb] : per_type)
        if (name == type) wb.first += static_cast<double>(t.elements()), wb.second += static_cast<double>(t.bytes), found = true;
      if (!found) per_type.push_back({type, {static_cast<double>(t.elements()), static_cast<double>(t.bytes)}});
    }
    for (const auto& [name, wb] : per_type)
      std::printf("  %-5s %12.0f weights %12.0f bytes  %.2f bits per weight\n", name.c_str(), wb.first, wb.second, wb.second * 8 / wb.first);
    std::printf("  all   %12.0f weights %12.0f bytes  %.2f bits per weight\n", weights, bytes, weights > 0 ? bytes * 8 / weights : 0.0);
  }
  return 0;
}

int imatrix_main(int argc, char** argv) {
  ImatrixConfig cfg;
  int64_t seq_len = 0;
  OptionParser op("llm-quant imatrix", "llm-quant imatrix --model CHECKPOINT -o IMATRIX.gguf SHARD.tok...",
                  "Computes an importance matrix: runs the model over calibration token shards (llm-tok\n"
                  "encode's) and writes, for every matrix, the mean square of each input column, as\n"
                  "llama.cpp's llama-imatrix does. llm-quant --imatrix then quantizes each matrix\n"
                  "weighting its columns by that importance.");
  op.string("model", 'm', "PATH", &cfg.model, "the model: a checkpoint or run directory (required)");
  op.string("out", 'o', "FILE", &cfg.out, "the importance matrix, a GGUF file (required)");
  op.integer("seq-len", 0, "T", &seq_len, "tokens per window (default: 512 or the model's context if shorter)");
  op.integer("chunks", 0, "N", &cfg.chunks, "windows read at most, in file order (default 100)");
  cfg.calib = op.parse(argc, argv);
  if (cfg.model.empty()) throw UsageError("--model PATH is required");
  if (cfg.out.empty()) throw UsageError("-o FILE is required");
  if (cfg.out == "-") throw UsageError("-o: the importance matrix is written to a file, not to standard output");
  if (seq_len < 0) throw UsageError("--seq-len must be positive");
  cfg.seq_len = static_cast<int>(seq_len);
  check_output_file(cfg.out, "-o");
  const ImatrixReport r = make_imatrix(cfg);
  LLMKIT_INFO("wrote %s: %zu matrices, %lld windows, %lld tokens", cfg.out.c_str(), r.tensors, static_cast<long long>(r.chunks),
              static_cast<long long>(r.tokens));
  return 0;
}

int quant_main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "inspect") == 0) return inspect_main(argc - 1, argv + 1);
  if (argc > 1 && std::strcmp(argv[1], "imatrix") == 0) return imatrix_main(argc - 1, argv + 1);
  std::string model, out, type = "q8_0", name, imatrix;
  bool gptq = false;
  GptqConfig gcfg;
  int64_t seq_len = 0;
  std::string types;
  for (const std::string& n : QuantScheme::names()) types += (types.empty() ? "" : ", ") + n;
  OptionParser op("llm-quant",
                  "llm-quant --model CHECKPOINT --type TYPE [--imatrix FILE] -o FILE.gguf\n"
                  "       llm-quant --model CHECKPOINT --type TYPE --gptq -o FILE.gguf SHARD.tok...\n"
                  "       llm-quant imatrix --model CHECKPOINT -o IMATRIX.gguf SHARD.tok...\n"
                  "       llm-quant inspect FILE.gguf...",
                  "Writes a model (an llmkit checkpoint or run directory, a merged adapter) as a GGUF\n"
                  "file that llama.cpp runs as it is, its weights in 8 or 4 bits or 16-bit floats, the\n"
                  "tokenizer and chat template with it.");
  op.string("model", 'm', "PATH", &model, "the model: a checkpoint or run directory (required)");
  op.string("type", 't', "TYPE", &type, "weights: " + types + " (default q8_0)");
  op.string("out", 'o', "FILE", &out, "the GGUF file to write (required)");
  op.string("name", 0, "TEXT", &name, "general.name in the file (default: the checkpoint directory's name)");
  op.string("imatrix", 0, "FILE", &imatrix,
            "an importance matrix (llm-quant imatrix, or llama.cpp's GGUF one): Q4_0, Q4_K, Q5_K and\n"
            "Q6_K matrices quantized weighting each column by it, as llama-quantize --imatrix");
  op.flag("gptq", 0, &gptq,
          "quantize the matrices by GPTQ: each column rounded in turn, its error spread over the\n"
          "columns after it by the inverse Hessian of the matrix's inputs over the calibration\n"
          "token shards given as arguments (the blocks' scales chosen as with --imatrix)");
  op.integer("seq-len", 0, "T", &seq_len, "--gptq: tokens per calibration window (default: 512 or the model's context if shorter)");
  op.integer("chunks", 0, "N", &gcfg.chunks, "--gptq: calibration windows read at most, in file order (default 100)");
  op.number("damp", 0, "F", &gcfg.damp, "--gptq: F times the Hessian's mean diagonal added to its diagonal (default 0.01)");
  op.epilog(
      "Types as llama-quantize's: in the quantized types the output matrix (the embedding when\n"
      "tied) is Q6_K, in Q4_K_M and Q5_K_M also attn_v and ffn_down in llama.cpp's \"more bits\"\n"
      "layers; norms and biases stay F32.\n\n"
      "Exit status: 0 done, 1 runtime error, 2 usage error. See llm-quant(1) and llmkit-gguf(5).\n\n"
      "Examples:\n"
      "  llm-quant --model runs/sft --type q4_k_m -o model.gguf && llm-quant inspect model.gguf\n"
      "  llm-quant imatrix --model runs/sft -o imatrix.gguf shards/train-*.tok\n"
      "  llm-quant --model runs/sft --type q4_k_m --imatrix imatrix.gguf -o model.gguf\n"
      "  llm-quant --model runs/sft --type q4_k_m --gptq -o model.gguf shards/train-*.tok");
  std::vector<std::string> rest = op.parse(argc, argv);
  if (!gptq && !rest.empty()) throw UsageError("unexpected argument '" + rest[0] + "' (calibration shards are --gptq's)");
  if (gptq && rest.empty()) throw UsageError("--gptq: give the calibration token shards as arguments");
  if (seq_len < 0) throw UsageError("--seq-len must be positive");
  gcfg.calib = rest;
  gcfg.seq_len = static_cast<int>(seq_len);
  if (model.empty()) throw UsageError("--model PATH is required");
  if (out.empty()) throw UsageError("-o FILE.gguf is required");
  if (out == "-") throw UsageError("-o: a GGUF file is written to a file (its tensor offsets are known only at the end), not to standard output");
  const QuantScheme scheme = QuantScheme::named(type);
  if (gptq && (scheme.base == ggml::Type::f32 || scheme.base == ggml::Type::f16 || scheme.base == ggml::Type::bf16))
    throw UsageError("--gptq: --type " + scheme.name + " has no blocks to round (give a quantized type: q4_k_m, q4_0, q8_0, ...)");
  if (!(gcfg.damp > 0)) throw UsageError("--damp must be positive");
  check_output_file(out, "-o");
  const ExportReport r = export_gguf(model, out, scheme, name, imatrix, gptq ? &gcfg : nullptr);
  if (!imatrix.empty()) LLMKIT_INFO("%zu matrices quantized with the importance matrix %s", r.weighted, imatrix.c_str());
  if (gptq && r.gptq > 0)
    LLMKIT_INFO("GPTQ: %zu matrices on %lld calibration tokens; their output error %.4g, %.1f%% of round-to-nearest's with the "
                "importance matrix (%.4g) and %.1f%% of plain round-to-nearest's (%.4g)",
                r.gptq, static_cast<long long>(r.calib_tokens), r.gptq_error, 100 * r.gptq_error / r.imatrix_error, r.imatrix_error,
                100 * r.gptq_error / r.rtn_error, r.rtn_error);
  std::string types_line;
  for (const auto& [t, n] : r.types) types_line += (types_line.empty() ? "" : ", ") + std::to_string(n) + " " + t;
  LLMKIT_INFO("wrote %s: %s, %zu tensors (%s), %.2fM weights in %.2f MiB, %.2f bits per weight", out.c_str(), scheme.name.c_str(), r.tensors,
              types_line.c_str(), r.params / 1e6, static_cast<double>(r.bytes) / (1 << 20), static_cast<double>(r.bytes) * 8 / r.params);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-quant", argc, argv, quant_main); }
