// The per-language thresholds of the quality rules: FineWeb-2's, for the languages whose words
// llm-clean finds with ICU segmentation (Chinese, Japanese, Korean).
//
// Source: FineWeb 2 (Penedo et al. 2025, "FineWeb2: One Pipeline to Scale Them All"), the
// repository huggingface/fineweb-2 (Apache-2.0): configs/cmn_Hani.yml, jpn_Jpan.yml,
// kor_Hang.yml for the tuned values, and fineweb-2-pipeline.py for what its pipeline sets the
// same way for every language other than English: GopherRepetitionFilter(dup_para_frac=0,
// dup_line_char_frac=0, dup_para_char_frac=0), FineWebQualityFilter(short_line_thr=999,
// char_duplicates_ratio=0.1), GopherQualityFilter(min_stop_words=2) and no C4QualityFilter.
// Its README: "we individually tuned each filter, defining different thresholds and stopwords
// for each language"; short_line_thr removed and char_dup_ratio 0.01 -> 0.1 for every
// language, the paragraph repetition rules disabled (its extractor keeps no paragraphs; it
// disabled dup_line_char_frac too, "we use a different threshold for dup_line_char_frac in
// fineweb quality"), and no C4 filters "as they seemed to degrade performance in this
// multilingual setting". English values do not fit these languages: Chinese words average
// under two characters, and hard-wrapped or dense text breaks the line rules' assumptions.
#include "llmkit/quality.hpp"

namespace llmkit::text {

namespace {

struct Tuned {  // the values a FineWeb-2 config file sets
  const char* lang;
  double dup_line_frac;
  double top_n_grams[3];
  double dup_n_grams[6];
  double line_punct_thr, new_line_ratio;
  double min_avg_word_length, max_avg_word_length, max_non_alpha_words_ratio;
  std::vector<std::string> stop_words;
};

const Tuned kTuned[] = {
    // configs/cmn_Hani.yml (Mandarin in Han script, simplified and traditional). Its stop words
    // include "·", which is punctuation and so never a word here.
    {"zh", 0.287, {0.256, 0.201, 0.171}, {0.198, 0.182, 0.167, 0.154, 0.14, 0.127}, 0.106, 0.178, 1, 5, 0.735,
     {"的", "年", "在", "月", "是", "和", "日", "了", "於", "·", "為", "有", "被", "人", "中", "为", "他", "與", "後",
      "也", "而", "由"}},
    // configs/jpn_Jpan.yml. "・" is punctuation, as above.
    {"ja", 0.328, {0.239, 0.196, 0.172}, {0.243, 0.225, 0.207, 0.19, 0.175, 0.159}, 0.096, 0.13, 1, 6, 0.759,
     {"の", "に", "を", "は", "た", "て", "が", "と", "で", "年", "し", "・", "月", "れ", "さ"}},
    // configs/kor_Hang.yml. Its stop words are morphemes (의 는 에서 ...) of a Korean
    // morphological analyser; Korean writes them inside the word (학교에서), where ICU's
    // whole-word segments cannot show them, so llmkit gives Korean no stop-word rule.
    {"ko", 0.374, {0.282, 0.228, 0.185}, {0.201, 0.184, 0.168, 0.154, 0.14, 0.127}, 0.062, 0.196, 1, 6, 0.791, {}},
};

}  // namespace

std::vector<LanguageThresholds> fineweb2_language_thresholds() {
  std::vector<LanguageThresholds> out;
  for (const Tuned& t : kTuned) {
    QualityThresholds q;  // datatrove's defaults, then what FineWeb-2 changes
    q.dup_line_frac = t.dup_line_frac;
    q.dup_para_frac = q.dup_line_char_frac = q.dup_para_char_frac = 0;
    for (int k = 0; k < 3; ++k) q.top_n_grams[k] = t.top_n_grams[k];
    for (int k = 0; k < 6; ++k) q.dup_n_grams[k] = t.dup_n_grams[k];
    q.min_avg_word_length = t.min_avg_word_length;
    q.max_avg_word_length = t.max_avg_word_length;
    q.max_non_alpha_words_ratio = t.max_non_alpha_words_ratio;
    q.min_stop_words = t.stop_words.empty() ? 0 : 2;
    q.stop_words = t.stop_words;
    // No C4 stage: every C4 rule off.
    q.filter_no_terminal_punct = q.remove_citations = 0;
    q.min_num_sentences = q.min_words_per_line = q.max_word_length = -1;
    q.filter_lorem_ipsum = q.filter_javascript = q.filter_curly_bracket = q.filter_policy = 0;
    q.line_punct_thr = t.line_punct_thr;
    q.new_line_ratio = t.new_line_ratio;
    q.short_line_thr = 1;  // off (FineWeb-2: 999)
    q.char_duplicates_ratio = 0.1;
    out.push_back({t.lang, q});
  }
  return out;
}

const QualityThresholds* QualityConfig::thresholds_for(std::string_view lang) const {
  std::string_view base = lang.substr(0, lang.find_first_of("-_"));
  for (const auto& l : languages)
    if (l.lang == base) return &l.thresholds;
  return nullptr;
}

}  // namespace llmkit::text
