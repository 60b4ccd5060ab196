// llm-tok: SentencePiece training, encoding into checksummed token shards (or llm.c and Megatron
// files), decoding, shard inspection and tokenizer statistics.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/jsonl.hpp"
#include "llmkit/log.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/options.hpp"
#include "llmkit/shard.hpp"
#include "llmkit/tok.hpp"
#include "llmkit/tool.hpp"

using namespace llmkit;

namespace {

const char* kSubcommands =
    "Subcommands:\n"
    "  train    train a SentencePiece model or a WordPiece vocab.txt from JSONL documents\n"
    "  encode   JSONL documents -> token shards (llmkit, llm.c or Megatron), or ids as text\n"
    "  decode   token shard -> text, one document per line\n"
    "  inspect  check shards and print their headers (exit 1 on a damaged one)\n"
    "  stats    tokens per document, bytes per token, unknown rate, fertility per language\n";

const char* kEpilog =
    "Exit status: 0 success, 1 runtime or data error (a damaged shard, a model that is not a\n"
    "SentencePiece model, a shard from another tokenizer), 2 usage error. See llm-tok(1).";

void add_input_options(OptionParser& op, SourceConfig& src) {
  op.string("text-field", 0, "NAME", &src.jsonl.text_field, "JSONL field holding the text (default \"text\")");
  op.flag("strict", 0, &src.strict, "stop with exit 1 at the first malformed input line");
}

int train_main(int argc, char** argv) {
  TrainConfig cfg;
  cfg.source.format = InputFormat::jsonl;
  cfg.source.jsonl_only = true;
  std::string specials;
  bool no_byte_fallback = false, no_split_digits = false, cased = false;
  OptionParser op("llm-tok train", "llm-tok train -o MODEL [OPTIONS] [INPUT...]",
                  "Trains a SentencePiece model (BPE or unigram) on the lines of JSONL documents.\n"
                  "Ids: <unk> 0, <s> 1, </s> 2, <pad> 3, then the --special tokens in order.\n"
                  "With --model-type wordpiece, a BERT vocab.txt as Hugging Face tokenizers trains\n"
                  "one: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, the --special tokens, the\n"
                  "alphabet, then the pieces merged.");
  op.string("output", 'o', "MODEL", &cfg.output, "the model file to write (required), e.g. tok.model");
  add_input_options(op, cfg.source);
  op.integer("vocab-size", 0, "N", &cfg.vocab_size, "vocabulary size (default 32000)");
  op.string("model-type", 0, "TYPE", &cfg.model_type,
            "bpe (default) or unigram (SentencePiece), or wordpiece (BERT's: -o names a vocab.txt)");
  op.flag("cased", 0, &cased, "wordpiece: keep case and accents (default: lower-cased, as BERT uncased)");
  op.number("character-coverage", 0, "F", &cfg.character_coverage,
            "share of characters the vocabulary covers; the rest fall back to bytes\n"
            "(default 0.9995, right for Chinese; 1.0 for small alphabets)");
  op.flag("no-byte-fallback", 0, &no_byte_fallback,
          "map characters outside the vocabulary to <unk> instead of to byte tokens");
  op.string("special", 0, "LIST", &specials,
            "comma-separated tokens reserved with fixed ids from 4, e.g. '<|im_start|>,<|im_end|>'");
  op.integer("sample", 0, "N", &cfg.sample,
             "train on about N lines sampled at random (default 10000000; 0: all lines, which\n"
             "SentencePiece holds in memory at once)");
  op.integer("max-sentence-bytes", 0, "N", &cfg.max_sentence_bytes, "longer lines are left out (default 16384)");
  op.string("normalization", 0, "RULE", &cfg.normalization,
            "identity (default: text as it is, as Llama's tokenizer), nfkc, nmt_nfkc, nfkc_cf,\n"
            "nmt_nfkc_cf");
  op.flag("no-split-digits", 0, &no_split_digits, "let pieces hold several digits");
  op.epilog(std::string(kEpilog) + "\n\nExample:\n  llm-tok train -o tok.model --vocab-size 32000 --special '<|im_start|>,<|im_end|>' clean/");
  std::vector<std::string> inputs = op.parse(argc, argv);
  if (cfg.output.empty()) throw UsageError("train: -o MODEL is required");
  if (cfg.vocab_size < 16) throw UsageError("--vocab-size must be at least 16");
  if (!(cfg.character_coverage > 0 && cfg.character_coverage <= 1))
    throw UsageError("--character-coverage must be in (0, 1]");
  if (cfg.sample < 0) throw UsageError("--sample must be 0 or more");
  static const char* rules[] = {"identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf"};
  if (std::find(std::begin(rules), std::end(rules), cfg.normalization) == std::end(rules))
    throw UsageError("--normalization: use identity, nfkc, nmt_nfkc, nfkc_cf or nmt_nfkc_cf");
  cfg.specials = split_list(specials);
  cfg.lowercase = !cased;
  if (cased && cfg.model_type != "wordpiece") throw UsageError("--cased is wordpiece's");
  cfg.byte_fallback = !no_byte_fallback;
  cfg.split_digits = !no_split_digits;
  cfg.seed = op.common().seed;
  cfg.threads = op.common().threads > 0 ? op.common().threads : omp_get_max_threads();
  check_output_file(cfg.output, "-o");
  Stats stats;
  train_tokenizer(inputs, cfg, stats);
  stats.write(op.common().stats_file, "llm-tok train", Comm::world());
  return 0;
}

int encode_main(int argc, char** argv) {
  EncodeConfig cfg;
  cfg.source.format = InputFormat::jsonl;
  cfg.source.jsonl_only = true;
  std::string output_format = "shards", format = "llmkit", dtype;
  double shard_tokens = 1e8;
  OptionParser op("llm-tok encode", "llm-tok encode --model MODEL -o DIR [OPTIONS] [INPUT...]",
                  "Encodes JSONL documents into token shards: each document's ids followed by </s>\n"
                  "(or preceded by <s> with --bos), in input order, DIR/train-NNNNN.tok and, with\n"
                  "--val-fraction, DIR/val-NNNNN.tok (DIR/train-RRRRR-NNNNN.tok under MPI).");
  op.string("model", 'm', "MODEL", &cfg.model, "the SentencePiece model (required)");
  op.string("output", 'o', "DIR", &cfg.output,
            "directory for the shards (created); with --output-format ids, a file (default stdout)");
  add_input_options(op, cfg.source);
  op.string("format", 0, "FMT", &format,
            "llmkit (default: .tok, see llmkit-shard(5)), llmc (llm.c .bin) or megatron\n"
            "(Megatron-LM .bin + .idx)");
  op.string("output-format", 0, "WHAT", &output_format,
            "shards (default), or ids: one line of space-separated ids per document, no special\n"
            "tokens, as spm_encode --output_format=id prints");
  op.flag("bos", 0, &cfg.bos, "precede each document with <s> instead of following it with </s>");
  op.number("shard-tokens", 0, "N", &shard_tokens, "start a new shard after N tokens (default 1e8)");
  op.number("val-fraction", 0, "F", &cfg.val_fraction,
            "send this fraction of documents (chosen by a hash of their id) to val shards\n"
            "(default 0); with F > 0 and two documents or more each side gets one at least");
  op.string("dtype", 0, "TYPE", &dtype, "u16 or u32 (default: u16 when the vocabulary fits)");
  op.epilog(std::string(kEpilog) + "\n\nExamples:\n  llm-tok encode -m tok.model --val-fraction 0.005 -o shards/ dedup.jsonl.zst\n"
            "  mpirun -np 8 llm-tok encode -m tok.model -o shards/ dedup/\n"
            "  llm-tok encode -m tok.model --output-format ids docs.jsonl | head");
  std::vector<std::string> inputs = op.parse(argc, argv);
  if (cfg.model.empty()) throw UsageError("encode: --model is required");
  if (output_format == "ids") cfg.ids_text = true;
  else if (output_format != "shards") throw UsageError("--output-format: use shards or ids");
  if (format == "llmkit") cfg.format = ShardFormat::llmkit;
  else if (format == "llmc") cfg.format = ShardFormat::llmc;
  else if (format == "megatron") cfg.format = ShardFormat::megatron;
  else throw UsageError("--format: use llmkit, llmc or megatron");
  if (dtype == "u16") cfg.token_bytes = 2;
  else if (dtype == "u32") cfg.token_bytes = 4;
  else if (!dtype.empty()) throw UsageError("--dtype: use u16 or u32");
  if (!(shard_tokens >= 1 && shard_tokens < 9e18)) throw UsageError("--shard-tokens must be at least 1");
  cfg.shard_tokens = static_cast<int64_t>(shard_tokens);
  if (cfg.ids_text) check_output_path(cfg.output, "-o");
  else check_output_dir(cfg.output, "-o");
  Stats stats;
  run_encode(inputs, cfg, stats);
  Comm& comm = Comm::world();
  stats.reduce(comm);
  if (comm.rank() == 0 && stats.get("tokens") > 0)
    stats.set_derived("bytes_per_token", static_cast<double>(stats.get("bytes_text")) /
                                             static_cast<double>(stats.get("tokens")));
  stats.write(op.common().stats_file, "llm-tok encode", comm);
  return 0;
}

// Checks that a shard was made with the model, when both say which.
void check_tokenizer(const ShardReader& shard, const Tokenizer& tok) {
  uint64_t h = shard.info().tokenizer_hash;
  if (h != 0 && h != tok.hash()) {
    char msg[160];
    snprintf(msg, sizeof msg, "made with another tokenizer (shard %016llx, %s %016llx)",
             static_cast<unsigned long long>(h), tok.path().c_str(), static_cast<unsigned long long>(tok.hash()));
    throw Error(shard.path(), msg);
  }
  if (shard.info().vocab_size > tok.vocab_size())
    throw Error(shard.path(), "vocabulary of " + std::to_string(shard.info().vocab_size) +
                                  " is larger than the model's " + std::to_string(tok.vocab_size()));
}

int decode_main(int argc, char** argv) {
  std::string model, output = "-";
  int64_t doc = -1;
  bool jsonl = false, no_verify = false;
  OptionParser op("llm-tok decode", "llm-tok decode --model MODEL [OPTIONS] SHARD...",
                  "Decodes shards back to text, one document per line (newlines inside a document\n"
                  "written as \\n, backslashes as \\\\), without the <s>/</s> separators.");
  op.string("model", 'm', "MODEL", &model, "the SentencePiece model (required)");
  op.string("output", 'o', "FILE", &output, "write here instead of stdout");
  op.integer("doc", 0, "N", &doc, "only document N (0-based) of each shard");
  op.flag("jsonl", 0, &jsonl, "write {\"text\": ...} lines instead");
  op.flag("no-verify", 0, &no_verify, "skip the payload checksum");
  op.epilog(kEpilog);
  std::vector<std::string> shards = op.parse(argc, argv);
  if (model.empty()) throw UsageError("decode: --model is required");
  if (shards.empty()) throw UsageError("decode: give a shard");
  check_output_file(output, "-o");
  Tokenizer tok(model);
  auto out = OutputStream::open(output, false);
  std::vector<uint32_t> ids;
  std::string line;
  for (const auto& path : shards) {
    ShardReader shard(path, !no_verify);
    check_tokenizer(shard, tok);
    // Documents: the index for llmkit shards; for llm.c files, runs between separators.
    std::vector<std::pair<uint64_t, uint64_t>> spans;
    if (shard.info().format == ShardInfo::Format::llmkit) {
      for (uint64_t d = 0; d < shard.info().documents; ++d) spans.emplace_back(shard.document_begin(d), shard.document_end(d));
    } else {
      uint64_t begin = 0;
      for (uint64_t i = 0; i < shard.size(); ++i)
        if (static_cast<int>(shard[i]) == tok.eos_id() || static_cast<int>(shard[i]) == tok.bos_id()) {
          if (i > begin) spans.emplace_back(begin, i);
          begin = i + 1;
        }
      if (begin < shard.size()) spans.emplace_back(begin, shard.size());
    }
    if (doc >= 0 && static_cast<uint64_t>(doc) >= spans.size())
      throw Error(path, "no document " + std::to_string(doc) + " (" + std::to_string(spans.size()) + " documents)");
    for (size_t d = 0; d < spans.size(); ++d) {
      if (doc >= 0 && static_cast<int64_t>(d) != doc) continue;
      throw_if_stopped();
      ids.resize(spans[d].second - spans[d].first);
      shard.read(spans[d].first, ids.size(), ids.data());
      std::erase_if(ids, [&](uint32_t t) { return static_cast<int>(t) == tok.bos_id() || static_cast<int>(t) == tok.eos_id(); });
      std::string text = tok.decode(ids.data(), ids.size());
      line.clear();
      if (jsonl) {
        line = "{\"text\":";
        append_json_string(line, text);
        line += "}";
      } else {
        for (char c : text) {
          if (c == '\n') line += "\\n";
          else if (c == '\\') line += "\\\\";
          else line += c;
        }
      }
      line += '\n';
      out->write(line);
    }
  }
  out->commit();
  return 0;
}

int inspect_main(int argc, char** argv) {
  std::string model;
  bool json = false, no_verify = false;
  OptionParser op("llm-tok inspect", "llm-tok inspect [OPTIONS] SHARD...",
                  "Checks token shards (llmkit .tok, llm.c .bin) and prints their headers. Exit 1 when\n"
                  "any is damaged, naming it and the damage; the others are still reported.");
  op.string("model", 'm', "MODEL", &model, "also check that the shards were made with this model");
  op.flag("json", 0, &json, "one JSON object per shard");
  op.flag("no-verify", 0, &no_verify, "skip the payload checksum");
  op.epilog(kEpilog);
  std::vector<std::string> shards = op.parse(argc, argv);
  if (shards.empty()) throw UsageError("inspect: give a shard");
  std::unique_ptr<Tokenizer> tok;
  if (!model.empty()) tok = std::make_unique<Tokenizer>(model);
  int bad = 0, other = 0;
  for (const auto& path : shards) {
    try {
      ShardReader shard(path, !no_verify);
      if (tok) {
        // An intact shard of another tokenizer: its header is printed, the mismatch named.
        try {
          check_tokenizer(shard, *tok);
        } catch (const Error& e) {
          ++other;
          LLMKIT_WARN("%s: %s", e.where().c_str(), e.what());
        }
      }
      const ShardInfo& i = shard.info();
      const bool llmc = i.format == ShardInfo::Format::llmc;
      const char* verdict = no_verify || llmc ? (llmc ? "none in format" : "not checked") : "ok";
      if (json) {
        std::string file;
        append_json_string(file, path);
        std::printf("{\"file\":%s,\"format\":\"%s\",\"version\":%u,\"dtype\":\"u%u\",\"vocab_size\":%llu,"
                    "\"tokens\":%llu,\"documents\":%llu,\"tokenizer_hash\":\"%016llx\",\"checksum\":\"%s\"}\n",
                    file.c_str(), llmc ? "llmc" : "llmkit", i.version, i.token_bytes * 8,
                    static_cast<unsigned long long>(i.vocab_size), static_cast<unsigned long long>(i.tokens),
                    static_cast<unsigned long long>(i.documents), static_cast<unsigned long long>(i.tokenizer_hash),
                    verdict);
      } else {
        std::printf("%s: %s version %u, u%u tokens, vocabulary %llu, %llu tokens, %llu documents, "
                    "tokenizer %016llx, checksum %s\n",
                    path.c_str(), llmc ? "llm.c" : "llmkit shard", i.version, i.token_bytes * 8,
                    static_cast<unsigned long long>(i.vocab_size), static_cast<unsigned long long>(i.tokens),
                    static_cast<unsigned long long>(i.documents), static_cast<unsigned long long>(i.tokenizer_hash),
                    verdict);
      }
    } catch (const Error& e) {
      ++bad;
      LLMKIT_WARN("%s: %s", e.where().c_str(), e.what());
    }
  }
  std::fflush(stdout);
  std::string what;
  if (bad) what = std::to_string(bad) + " of " + std::to_string(shards.size()) + " shards damaged or not shards";
  if (other)
    what += (what.empty() ? "" : "; ") + std::to_string(other) + " of " + std::to_string(shards.size()) +
            " shards made with another tokenizer than " + model + " (intact, but not to be read with it)";
  if (!what.empty()) throw Error("", what);
  return 0;
}

int stats_main(int argc, char** argv) {
  TokStatsConfig cfg;
  cfg.source.format = InputFormat::jsonl;
  cfg.source.jsonl_only = true;
  OptionParser op("llm-tok stats", "llm-tok stats --model MODEL [OPTIONS] [INPUT...]",
                  "Encodes JSONL documents and prints tokens per document, bytes per token, the\n"
                  "unknown-token rate and, for documents with a \"lang\" field, fertility per language\n"
                  "(tokens per word; per character for Chinese, Japanese, Korean).");
  op.string("model", 'm', "MODEL", &cfg.model, "the SentencePiece model (required)");
  add_input_options(op, cfg.source);
  op.flag("json", 0, &cfg.json, "print one JSON object");
  op.epilog(kEpilog);
  std::vector<std::string> inputs = op.parse(argc, argv);
  if (cfg.model.empty()) throw UsageError("stats: --model is required");
  Stats stats;
  run_tok_stats(inputs, cfg, stats);
  stats.write(op.common().stats_file, "llm-tok stats", Comm::world());
  return 0;
}

struct Sub {
  const char* name;
  int (*main)(int, char**);
};
const Sub kSubs[] = {{"train", train_main}, {"encode", encode_main}, {"decode", decode_main},
                     {"inspect", inspect_main}, {"stats", stats_main}};

int tok_main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    if (argc < 2) {
      std::fprintf(stderr, "Usage: llm-tok SUBCOMMAND [OPTIONS] [ARGS...]\n\n%s\n'llm-tok SUBCOMMAND --help' for its options.\n", kSubcommands);
      throw ExitRequest{kExitUsage};
    }
    // The whole manual in brief: every subcommand's options.
    std::printf("Usage: llm-tok SUBCOMMAND [OPTIONS] [ARGS...]\n\n%s\n", kSubcommands);
    for (const Sub& s : kSubs) {
      std::printf("\n======== llm-tok %s ========\n", s.name);
      std::fflush(stdout);
      char help[] = "--help";
      std::string prog = std::string("llm-tok ") + s.name;
      char* args[] = {prog.data(), help, nullptr};
      try {
        s.main(2, args);
      } catch (const ExitRequest&) {
      }
    }
    return 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::printf("llm-tok (llmkit) %s\n", LLMKIT_VERSION);
    return 0;
  }
  for (const Sub& s : kSubs)
    if (std::strcmp(argv[1], s.name) == 0) return s.main(argc - 1, argv + 1);
  throw UsageError(std::string("unknown subcommand '") + argv[1] + "' (train, encode, decode, inspect, stats)");
}

}  // namespace

int main(int argc, char** argv) { return run_tool("llm-tok", argc, argv, tok_main); }
