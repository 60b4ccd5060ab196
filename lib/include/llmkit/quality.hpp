// Document quality rules of llm-clean: the heuristic filters of datatrove (HuggingFace) as its
// FineWeb pipeline runs them — GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter,
// FineWebQualityFilter — reproduced from datatrove's source (src/datatrove/pipeline/filters/).
// Where datatrove's current code and the 2024 FineWeb release differ, the current code is
// followed and the difference is noted at the field. Deviations from datatrove are marked
// "llmkit:" and listed in llm-clean(1); the largest is what a word is: each rule counts the
// words its authors defined it over (the Gopher rules whitespace-delimited words, C4 too,
// FineWeb its word tokenizer's; ICU's for zh/ja/ko), see words.hpp. Chinese, Japanese and
// Korean get FineWeb-2's thresholds for them (QualityConfig::languages).
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/params.hpp"
#include "llmkit/words.hpp"

namespace llmkit::text {

// The thresholds of every rule, for one language.
struct QualityThresholds {
  // GopherRepetitionFilter. A fraction of 0 disables the paragraph/line rules (datatrove's
  // "if self.dup_line_frac and ..."); the n-gram fractions are disabled by 1.
  double dup_line_frac = 0.3, dup_para_frac = 0.3;
  double dup_line_char_frac = 0.2, dup_para_char_frac = 0.2;
  double top_n_grams[3] = {0.20, 0.18, 0.16};                      // n = 2, 3, 4
  double dup_n_grams[6] = {0.15, 0.14, 0.13, 0.12, 0.11, 0.10};    // n = 5 .. 10

  // GopherQualityFilter. 0 disables a rule, as in datatrove.
  double min_doc_words = 50, max_doc_words = 100000;
  double min_avg_word_length = 3, max_avg_word_length = 10;
  double max_symbol_word_ratio = 0.1;
  double max_bullet_lines_ratio = 0.9, max_ellipsis_lines_ratio = 0.3;
  double max_non_alpha_words_ratio = 0.8;  // min fraction of words with a letter (datatrove's name)
  double min_stop_words = 2;               // distinct stop words, as in the Gopher paper
  // Gopher's English stop words. In the default thresholds they apply to English and to
  // text of unknown language only; a language with its own thresholds brings its own list.
  std::vector<std::string> stop_words = {"the", "be", "to", "of", "and", "that", "have", "with"};

  // C4QualityFilter. Booleans are 0/1. filter_no_terminal_punct defaults to 0 because
  // datatrove's FineWeb pipeline runs C4QualityFilter(filter_no_terminal_punct=False); the
  // class default is True. -1 disables min_num_sentences, min_words_per_line, max_word_length.
  // With every C4 rule off the stage is skipped (it leaves the text as it is).
  double filter_no_terminal_punct = 0;
  double remove_citations = 1;
  double min_num_sentences = 5, min_words_per_line = 3, max_word_length = 1000;
  double filter_lorem_ipsum = 1, filter_javascript = 1, filter_curly_bracket = 1, filter_policy = 1;

  // FineWebQualityFilter (datatrove's current code: empty lines are ignored and the
  // comparisons are strict; the 2024 FineWeb release kept empty lines and used <=, >=, >=).
  // A short_line_thr of 1 turns that rule off.
  double line_punct_thr = 0.12, line_punct_exclude_zero = 0;
  double short_line_thr = 0.67, short_line_length = 30;
  double char_duplicates_ratio = 0.01, new_line_ratio = 0.3;
};

// The thresholds of one language that has its own (see QualityConfig::languages).
struct LanguageThresholds {
  std::string lang;  // ISO 639-1 base code: "zh" also covers "zh-Hant", "zh_TW"
  QualityThresholds thresholds;
};

// FineWeb-2's thresholds for Chinese, Japanese and Korean (lib/text/quality_lang.cpp).
std::vector<LanguageThresholds> fineweb2_language_thresholds();

// The quality rules to run and their thresholds. The inherited thresholds are the defaults of
// datatrove's English FineWeb pipeline; they apply to every language without an entry in
// `languages`.
struct QualityConfig : QualityThresholds {
  bool gopher_repetition = true, gopher_quality = true, c4 = true, fineweb = true;
  std::vector<LanguageThresholds> languages = fineweb2_language_thresholds();

  // The entry of `languages` for `lang` (its base code), or nullptr.
  const QualityThresholds* thresholds_for(std::string_view lang) const;
};

// Every threshold above as "stage.name" (datatrove's parameter name after the dot; the n-gram
// tuples become gopher_repetition.top_2_grams ... top_4_grams and dup_5_grams ... dup_10_grams),
// then those of each language in cfg.languages as "LANG.stage.name" (zh.fineweb.line_punct_thr).
// The Params point into `cfg`, which must outlive them and keep its languages.
std::vector<Param> quality_params(QualityConfig& cfg);

// Applies the enabled rules in datatrove's FineWeb order: gopher_repetition, gopher_quality,
// c4, fineweb. Returns "" to keep the document, otherwise "stage:rule", e.g.
// "gopher_quality:mean_word_length", "c4:lorem_ipsum", "fineweb:line_punct_ratio",
// "gopher_repetition:top_2_gram". The C4 stage removes lines from `text` (as datatrove's
// C4QualityFilter rewrites doc.text) when it keeps the document.
// `lang`: ISO 639-1 code from language id ("en", "zh", ...), "" if unknown. The thresholds
// are those of cfg.languages for the language (or, when `lang` is "", for the one
// effective_language finds), else cfg's own.
// Thread-safe for distinct texts; ICU iterators are cached per thread.
std::string check_quality(std::string& text, std::string_view lang, const QualityConfig& cfg);

// check_quality's verdicts for every language that is not CJK and has no thresholds of its own
// in cfg.languages, before knowing which: they are those of English and of any other such
// language, and differ only where English's stop-word rule drops the document.
struct NonCjkVerdicts {
  std::string english, other;
  // Whether check_quality(text, lang, cfg) is one of these.
  static bool covers(std::string_view lang, const QualityConfig& cfg);
  const std::string& for_language(std::string_view lang) const;  // a covered language's
};
// One pass of the rules. Afterwards `text` is what check_quality leaves for a covered language
// other than English, and for English too when english keeps it.
NonCjkVerdicts check_quality_non_cjk(std::string& text, const QualityConfig& cfg);

}  // namespace llmkit::text
