// Document quality rules of llm-clean: the heuristic filters of datatrove (HuggingFace) as its
// FineWeb pipeline runs them — GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter,
// FineWebQualityFilter — reproduced from datatrove's source (src/datatrove/pipeline/filters/).
// Where datatrove's current code and the 2024 FineWeb release differ, the current code is
// followed and the difference is noted at the field. Deviations from datatrove are marked
// "llmkit:" and listed in llm-clean(1).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/params.hpp"
#include "llmkit/words.hpp"

namespace llmkit::text {

struct QualityConfig {
  bool gopher_repetition = true, gopher_quality = true, c4 = true, fineweb = true;

  // GopherRepetitionFilter. A fraction of 0 disables the paragraph/line rules (datatrove's
  // "if self.dup_line_frac and ..."); the n-gram fractions are disabled by 1.
  double dup_line_frac = 0.3, dup_para_frac = 0.3;
  double dup_line_char_frac = 0.2, dup_para_char_frac = 0.2;
  double top_n_grams[3] = {0.20, 0.18, 0.16};                      // n = 2, 3, 4
  double dup_n_grams[6] = {0.15, 0.14, 0.13, 0.12, 0.11, 0.10};    // n = 5 .. 10

  // GopherQualityFilter. 0 disables a rule, as in datatrove.
  double min_doc_words = 50, max_doc_words = 100000;
  double min_avg_word_length = 3, max_avg_word_length = 10;
  // llmkit: ICU words of zh/ja prose average about 1.7 characters (ko about 3.2), so the
  // English 3–10 range would reject nearly all of them; these bounds apply to zh/ja/ko instead.
  // Random hanzi segment into single characters (mean 1.0) and fall under the lower bound.
  double cjk_min_avg_word_length = 1.2, cjk_max_avg_word_length = 5;
  double max_symbol_word_ratio = 0.1;
  double max_bullet_lines_ratio = 0.9, max_ellipsis_lines_ratio = 0.3;
  double max_non_alpha_words_ratio = 0.8;  // min fraction of words with a letter (datatrove's name)
  double min_stop_words = 2;

  // C4QualityFilter. Booleans are 0/1. filter_no_terminal_punct defaults to 0 because
  // datatrove's FineWeb pipeline runs C4QualityFilter(filter_no_terminal_punct=False); the
  // class default is True. -1 disables min_num_sentences, min_words_per_line, max_word_length.
  double filter_no_terminal_punct = 0;
  double remove_citations = 1;
  double min_num_sentences = 5, min_words_per_line = 3, max_word_length = 1000;
  double filter_lorem_ipsum = 1, filter_javascript = 1, filter_curly_bracket = 1, filter_policy = 1;

  // FineWebQualityFilter (datatrove's current code: empty lines are ignored and the
  // comparisons are strict; the 2024 FineWeb release kept empty lines and used <=, >=, >=).
  double line_punct_thr = 0.12, line_punct_exclude_zero = 0;
  double short_line_thr = 0.67, short_line_length = 30;
  double char_duplicates_ratio = 0.01, new_line_ratio = 0.3;
};

// Every threshold above as "stage.name" (datatrove's parameter name after the dot; the n-gram
// tuples become gopher_repetition.top_2_grams ... top_4_grams and dup_5_grams ... dup_10_grams).
// The Params point into `cfg`, which must outlive them.
std::vector<Param> quality_params(QualityConfig& cfg);

// Applies the enabled rules in datatrove's FineWeb order: gopher_repetition, gopher_quality,
// c4, fineweb. Returns "" to keep the document, otherwise "stage:rule", e.g.
// "gopher_quality:mean_word_length", "c4:lorem_ipsum", "fineweb:line_punct_ratio",
// "gopher_repetition:top_2_gram". The C4 stage removes lines from `text` (as datatrove's
// C4QualityFilter rewrites doc.text) when it keeps the document.
// `lang`: ISO 639-1 code from language id ("en", "zh", ...), "" if unknown.
// Thread-safe for distinct texts; ICU iterators are cached per thread.
std::string check_quality(std::string& text, std::string_view lang, const QualityConfig& cfg);

}  // namespace llmkit::text
