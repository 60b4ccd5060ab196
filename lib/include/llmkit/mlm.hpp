// Masked-language-model inputs (issue 21's MLM pretraining; lib/model/mlm.cpp): BERT's dynamic
// masking of one row of tokens, as Hugging Face's DataCollatorForLanguageModeling draws it.
//
// Each token that is not special is chosen with probability `probability` (BERT's 15%); a
// chosen token becomes [MASK] with probability `mask` (80%), else a token drawn uniformly from
// the vocabulary's non-special ones with probability random / (1 - mask) (10% of all chosen),
// else stays as it is; its target is the original token, -1 (no loss) everywhere else. With
// whole_word, a word (a token and the "##" continuations after it) is chosen or not as one,
// with the same probability, and each of its tokens then replaced as above. Every draw is a
// function of (seed, step, row, position): the same masks on any thread or rank count and
// after a resume, new ones each step.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace llmkit {

struct MlmConfig {
  double probability = 0.15, mask = 0.8, random = 0.1;
  bool whole_word = false;
};

class Tokenizer;

struct MlmVocab {
  int32_t mask_id = -1;
  int32_t cls_id = -1, sep_id = -1;  // from_tokenizer: a row's first token and the separator
  std::vector<uint8_t> special;       // per id: never chosen, never drawn as a random token
  std::vector<uint8_t> continuation;  // per id: a "##" piece (whole_word)
  std::vector<int32_t> ordinary;      // the ids a random replacement is drawn from
  // From the pieces of a vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK] and other bracketed or
  // <...> pieces special, "##..." continuations. An Error without a [MASK] (or <mask>) piece.
  static MlmVocab from_pieces(const std::vector<std::string>& pieces);
  // The same from a tokenizer's pieces, with its [CLS] and [SEP] (a WordPiece Tokenizer's bos and
  // eos); an Error naming it without them.
  static MlmVocab from_tokenizer(const Tokenizer& tok);
};

// Masks tokens[0..T) in place and writes targets[0..T).
void mlm_mask(int32_t* tokens, int32_t* targets, int T, const MlmVocab& v, const MlmConfig& c, uint64_t seed, uint64_t step,
              uint64_t row);

}  // namespace llmkit
