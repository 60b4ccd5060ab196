// BERT's dynamic masking: see llmkit/mlm.hpp.
#include "llmkit/mlm.hpp"

#include "llmkit/tok.hpp"

#include <string>

#include "../backend/dropout.hpp"
#include "llmkit/error.hpp"

namespace llmkit {

namespace {

// A uniform draw in [0, 1) that is a function of its arguments only (the backends' dropout hash).
double draw(uint64_t seed, uint64_t step, uint64_t row, uint64_t pos, uint64_t which) {
  const uint64_t key = counter_hash(counter_hash(seed, step), row);
  return static_cast<double>(counter_hash(key, 4 * pos + which) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace

MlmVocab MlmVocab::from_pieces(const std::vector<std::string>& pieces) {
  MlmVocab v;
  v.special.assign(pieces.size(), 0);
  v.continuation.assign(pieces.size(), 0);
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string& p = pieces[i];
    const bool bracketed = p.size() > 2 && ((p.front() == '[' && p.back() == ']') || (p.front() == '<' && p.back() == '>'));
    v.special[i] = bracketed;
    v.continuation[i] = p.size() > 2 && p.compare(0, 2, "##") == 0;
    if (p == "[MASK]" || (p == "<mask>" && v.mask_id < 0)) v.mask_id = static_cast<int32_t>(i);
    if (!bracketed) v.ordinary.push_back(static_cast<int32_t>(i));
  }
  if (v.mask_id < 0) throw Error("", "a vocabulary without a [MASK] piece: masked-language-model training needs one");
  if (v.ordinary.empty()) throw Error("", "a vocabulary of special pieces only");
  return v;
}

MlmVocab MlmVocab::from_tokenizer(const Tokenizer& tok) {
  std::vector<std::string> pieces(tok.vocab_size());
  for (size_t i = 0; i < pieces.size(); ++i) pieces[i] = tok.piece(static_cast<uint32_t>(i));
  MlmVocab v;
  try {
    v = from_pieces(pieces);
  } catch (const Error& e) {
    throw Error(tok.path(), e.what());
  }
  v.cls_id = tok.bos_id();
  v.sep_id = tok.eos_id();
  if (v.cls_id < 0 || v.sep_id < 0) throw Error(tok.path(), "has no [CLS] or [SEP] piece to make an encoder's rows with");
  return v;
}

void mlm_mask(int32_t* tokens, int32_t* targets, int T, const MlmVocab& v, const MlmConfig& c, uint64_t seed, uint64_t step,
              uint64_t row) {
  const double random_share = c.mask < 1 ? c.random / (1 - c.mask) : 0;
  auto special = [&](int32_t t) { return t < 0 || static_cast<size_t>(t) >= v.special.size() || v.special[static_cast<size_t>(t)]; };
  bool word_chosen = false;
  for (int i = 0; i < T; ++i) {
    const int32_t t = tokens[i];
    targets[i] = -1;
    if (special(t)) {
      word_chosen = false;
      continue;
    }
    const bool continues = c.whole_word && i > 0 && v.continuation[static_cast<size_t>(t)];
    const bool chosen = continues ? word_chosen : draw(seed, step, row, static_cast<uint64_t>(i), 0) < c.probability;
    word_chosen = chosen;
    if (!chosen) continue;
    targets[i] = t;
    if (draw(seed, step, row, static_cast<uint64_t>(i), 1) < c.mask) {
      tokens[i] = v.mask_id;
    } else if (draw(seed, step, row, static_cast<uint64_t>(i), 2) < random_share) {
      const double u = draw(seed, step, row, static_cast<uint64_t>(i), 3);
      tokens[i] = v.ordinary[static_cast<size_t>(u * static_cast<double>(v.ordinary.size()))];
    }
  }
}

}  // namespace llmkit
