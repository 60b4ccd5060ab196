// llm-sft --task classify (lib/model/classify.cpp): sequence classification as an objective on
// the shared training loop. Rows {"text", "label"} or {"text_a", "text_b", "label"}; a BERT
// encoder reads [CLS] a [SEP] (b [SEP]) and classifies the pooled [CLS] state
// (BertForSequenceClassification), a decoder reads a (</s> b) </s> and classifies its last token
// (LlamaForSequenceClassification, GPT2ForSequenceClassification); the loss is the cross-entropy
// of K labels, the mean over the global batch's rows; accuracy and macro-F1 on --val.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/sft.hpp"

namespace llmkit {

// The labels of classification rows: their "label" values (strings, or integers written in
// decimal) in order, numerically when every one is an integer, else as strings.
struct LabelSet {
  std::vector<std::string> names;
  // A label's id; an Error naming `where` for one outside the set.
  int id(const std::string& label, const std::string& where) const;
  // Every row's label across the files (malformed rows left to the data reader); an Error when
  // fewer than two are found.
  static LabelSet read(const std::vector<std::string>& files, int64_t limit);
};

// A row's label as a string: a JSON string as it is, an integer in decimal; an Error otherwise.
std::string label_text(std::string_view line, const std::string& where);

// The tokens a row makes: BERT's [CLS] a [SEP] (b [SEP]), a decoder's a (eos b) eos, the longer
// text cut first until they fit `seq_len` (Hugging Face's longest_first truncation).
std::vector<int32_t> classify_tokens(const Tokenizer& tok, bool encoder, const std::vector<int32_t>& a,
                                     const std::vector<int32_t>* b, int seq_len);

// The cross-entropy of K logits z against label `gold`, log-sum-exp(z) - z[gold], computed in
// double; with dz, its gradient times `scale` written there: (softmax(z) - onehot(gold)) scale.
// `predicted` gets the most likely label (the first of equals). A classifier's and BERT's
// next-sentence head's loss.
double label_cross_entropy(const float* z, int K, int gold, int& predicted, float* dz = nullptr, double scale = 1.0);

// Accuracy and the macro-averaged F1 (scikit-learn's f1_score(average="macro")) from a confusion
// matrix of K labels: confusion[gold * K + predicted] rows.
struct ClassifyScores {
  double accuracy = 0, macro_f1 = 0;
};
ClassifyScores classify_scores(const std::vector<double>& confusion, int K);

// A classifier's forward over B rows of T tokens, row r's first used[r] an example and the rest
// padding: BERT's rows with their padding kept apart (packed rows' `starts`) and token types 0
// up to the first [SEP] (`sep`), 1 after; a decoder's as they are (causal attention keeps the
// padding after the last token out). The logits are then m.values() at classify_position().
void classify_forward(Model& m, const std::vector<int32_t>& tokens, const std::vector<int32_t>& used, int B, int T, int32_t sep);
// The position row r is classified at: [CLS] (0) for an encoder, the last token for a decoder.
inline size_t classify_position(bool encoder, int r, int T, int used) {
  return static_cast<size_t>(r) * static_cast<size_t>(T) + (encoder ? 0 : static_cast<size_t>(used - 1));
}
// The separator token classify_tokens() puts between and after texts: the tokenizer's eos
// (a WordPiece vocabulary's [SEP]).
int32_t classify_separator(const Tokenizer& tok);

// Runs training; 0 at the end, 1 when stopped by a signal after saving a checkpoint.
int run_classify(const SftConfig& cfg, Stats& stats);

}  // namespace llmkit
