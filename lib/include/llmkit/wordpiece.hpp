// WordPiece (lib/tok/wordpiece.cpp): BERT's tokenizer, as Hugging Face's BertTokenizer runs it
// on a vocab.txt, and its training as Hugging Face tokenizers' WordPieceTrainer does it.
//
// Pre-tokenisation (Hugging Face's BasicTokenizer): NUL, U+FFFD and every character of a "C"
// category dropped, whitespace to spaces, a space either side of every CJK ideograph, NFC, split
// on whitespace; then, when lower-casing, each word lower-cased and its accents stripped (NFD,
// nonspacing marks dropped); then every punctuation character a word of its own (ASCII's symbols count as
// punctuation, as BERT's _is_punctuation says). WordPiece: each word of more than 100 code points
// is [UNK]; otherwise greedy longest match from the left, the pieces after the first spelled
// "##...", and a word with a part no piece matches is [UNK] whole.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace llmkit {

struct BertNormalizer {
  bool lowercase = true;      // and strip accents, as BertTokenizer's do_lower_case
  bool chinese_chars = true;  // a word per CJK ideograph (tokenize_chinese_chars)
};

// The words of a text and each one's byte range [begin, end) in it (of the characters it came
// from: a lower-cased or accent-stripped word spans the original bytes).
void bert_pre_tokenize(std::string_view text, const BertNormalizer& n, std::vector<std::string>& words,
                       std::vector<std::pair<uint32_t, uint32_t>>* spans = nullptr);

class WordPiece {
 public:
  // A vocabulary in id order; it must hold unk.
  WordPiece(std::vector<std::string> vocab, BertNormalizer n = {}, std::string unk = "[UNK]");
  // vocab.txt: one token a line, ids in line order (Hugging Face's and Google's BERT files).
  static WordPiece load(const std::string& path, BertNormalizer n = {});
  // The same from the file's bytes (path: for the error's name).
  static WordPiece from_bytes(std::string_view bytes, const std::string& path, BertNormalizer n = {});
  // Whether a file's bytes read as a vocab.txt (text lines, one of them [UNK]).
  static bool looks_like_vocab(std::string_view bytes);
  const BertNormalizer& normalizer() const { return norm_; }

  // [PAD] [UNK] [CLS] [SEP] [MASK] spelled in the text are those tokens, as BertTokenizer's
  // special tokens are.
  void encode(std::string_view text, std::vector<uint32_t>& ids, std::vector<std::pair<uint32_t, uint32_t>>* spans = nullptr) const;
  // Pieces joined: "##" pieces onto the one before, the others with a space, and the spaces
  // before punctuation taken out as BertTokenizer's clean_up_tokenization does.
  std::string decode(const uint32_t* ids, size_t n) const;
  int id(const std::string& token) const;  // -1 when the vocabulary lacks it
  const std::string& token(uint32_t id) const;
  size_t size() const { return vocab_.size(); }
  int unk_id() const { return unk_; }

 private:
  void encode_words(std::string_view text, uint32_t offset, std::vector<uint32_t>& ids,
                    std::vector<std::pair<uint32_t, uint32_t>>* spans) const;
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int> ids_;
  std::vector<std::pair<std::string, int>> specials_;
  BertNormalizer norm_;
  int unk_ = 0;
  size_t longest_ = 0;  // bytes of the longest piece
};

// Hugging Face tokenizers' WordPieceTrainer: BPE on the pre-tokenized words (counts given),
// each word's characters after the first spelled "##c", merges of the most frequent adjacent
// pair (ties: the smaller pair in byte order) while a pair occurs min_frequency times and the
// vocabulary is below vocab_size; the result in id order: the specials, the alphabet (in byte
// order), then the merged pieces in the order they were made.
std::vector<std::string> train_wordpiece(const std::unordered_map<std::string, int64_t>& word_counts, size_t vocab_size,
                                         const std::vector<std::string>& specials, int64_t min_frequency = 2);

}  // namespace llmkit
