// llm-tok's engine (lib/tok/): the SentencePiece tokenizer, training it from JSONL documents,
// encoding documents into token shards (llmkit, llm.c or Megatron layouts), and statistics.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmkit/docsource.hpp"
#include "llmkit/stats.hpp"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace llmkit {

class WordPiece;

// A SentencePiece model loaded from its .model file, or a WordPiece vocab.txt (BERT's,
// llmkit/wordpiece.hpp: lower-cased unless a tokenizer_config.json beside it says
// "do_lower_case": false; [CLS] as bos, [SEP] as eos). Encoding is thread-safe.
class Tokenizer {
 public:
  // A file that is neither is an Error naming it.
  explicit Tokenizer(const std::string& model_path);
  ~Tokenizer();
  // The ids of the text, no special tokens added (as spm_encode --output_format=id prints).
  void encode(std::string_view text, std::vector<uint32_t>& ids) const;
  // The same ids, with each token's byte range [begin, end) in the text.
  void encode_spans(std::string_view text, std::vector<uint32_t>& ids,
                    std::vector<std::pair<uint32_t, uint32_t>>& spans) const;
  // The id of a piece when the vocabulary holds it, else -1.
  int piece_id(const std::string& piece) const;
  std::string decode(const uint32_t* ids, size_t n) const;
  uint64_t vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;
  int pad_id() const;
  std::string piece(uint32_t id) const;
  // A piece's score (the unigram log-probability, or BPE's merge rank as a negative number) and
  // type, numbered as SentencePiece's ModelProto and GGUF's tokenizer.ggml.token_type do.
  float score(uint32_t id) const;
  enum class PieceType { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };
  PieceType piece_type(uint32_t id) const;
  // xxh3-64 of the model file's bytes: what shards record as their tokenizer.
  uint64_t hash() const { return hash_; }
  const std::string& path() const { return path_; }
  bool is_wordpiece() const { return wp_ != nullptr; }
  // A WordPiece vocabulary's files as a Hugging Face checkpoint holds them: vocab.txt and the
  // tokenizer_config.json of BertTokenizer (do_lower_case as this one reads; max_length) in dir.
  void write_wordpiece_files(const std::string& dir, int max_length) const;

 private:
  std::string path_;
  uint64_t hash_ = 0;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::unique_ptr<WordPiece> wp_;
  int bos_ = -1, eos_ = -1, pad_ = -1;  // WordPiece's [CLS], [SEP], [PAD]
};

// ---- llm-tok train -----------------------------------------------------------------------------

struct TrainConfig {
  std::string output;  // the .model file
  SourceConfig source;
  BatchLimits batch;
  int64_t vocab_size = 32000;
  std::string model_type = "bpe";  // bpe, unigram, or wordpiece (a BERT vocab.txt)
  bool lowercase = true;           // wordpiece: lower-case and strip accents (BERT uncased)
  double character_coverage = 0.9995;
  bool byte_fallback = true;
  std::vector<std::string> specials;  // reserved with fixed ids right after <pad>
  int64_t sample = 10000000;          // sentences trained on, sampled at random; 0: all
  int64_t max_sentence_bytes = 16384;
  std::string normalization = "identity";  // or nmt_nfkc, nfkc, nmt_nfkc_cf, nfkc_cf
  bool split_digits = true;
  uint64_t seed = 0;
  int threads = 1;
};
// The ids every llmkit model has: <unk> 0, <s> 1, </s> 2, <pad> 3, then --special tokens.
constexpr int kUnkId = 0, kBosId = 1, kEosId = 2, kPadId = 3;

void train_tokenizer(const std::vector<std::string>& inputs, const TrainConfig& cfg, Stats& stats);

// ---- llm-tok encode ------------------------------------------------------------------------------

enum class ShardFormat { llmkit, llmc, megatron };

struct EncodeConfig {
  std::string model;
  std::string output;  // directory for shards, or file/stdout for --output-format ids
  SourceConfig source;
  BatchLimits batch;
  ShardFormat format = ShardFormat::llmkit;
  bool ids_text = false;  // --output-format ids
  bool bos = false;       // precede documents with <s> instead of following them with </s>
  int64_t shard_tokens = 100000000;
  double val_fraction = 0.0;
  uint32_t token_bytes = 0;  // 0: the least that holds the vocabulary
};

void run_encode(const std::vector<std::string>& inputs, const EncodeConfig& cfg, Stats& stats);

// Whether a document goes to the validation split: xxh3 of its id (of its text when it has
// none), as a fraction of 2^64, below `fraction`.
bool is_validation(const Document& doc, double fraction);

// ---- llm-tok stats ---------------------------------------------------------------------------------

struct TokStatsConfig {
  std::string model;
  SourceConfig source;
  BatchLimits batch;
  bool json = false;
};
// Prints tokens per document, bytes per token, the unknown-token rate and, per "lang", fertility
// (tokens per word; per character for CJK) to stdout.
void run_tok_stats(const std::vector<std::string>& inputs, const TokStatsConfig& cfg, Stats& stats);

}  // namespace llmkit
