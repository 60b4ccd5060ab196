// Document quality rules of llm-clean, reproducing datatrove's filters; see llmkit/quality.hpp.
// The C4 stage is in quality_c4.cpp, FineWeb's in quality_fineweb.cpp.
#include "llmkit/quality.hpp"

#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <unordered_set>

#include "quality_rules.hpp"

namespace llmkit::text {

// ---- shared helpers (quality_rules.hpp) ---------------------------------------------------

DupCount find_duplicates(const std::vector<std::string_view>& items) {
  // datatrove gopher_repetition_filter.find_duplicates: every repeat of an element already
  // seen counts once, with its length in characters.
  DupCount dup;
  std::unordered_set<std::string_view> seen;
  seen.reserve(items.size());
  for (std::string_view item : items)
    if (!seen.insert(item).second) {
      ++dup.elements;
      dup.chars += count_code_points(item);
    }
  return dup;
}

size_t count_substring(std::string_view text, std::string_view needle) {
  // Python str.count: non-overlapping occurrences, so "...." holds one "...".
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

bool ends_sentence(char32_t c, bool cjk) {
  if (is_terminal_punctuation(c)) return true;
  // llmkit: in zh/ja/ko text a sentence may also end inside closing corner brackets or with
  // an ellipsis (……); datatrove's set has only the Unicode Sentence_Terminal marks, " and ”.
  return cjk && (c == U'」' || c == U'』' || c == U'…');
}

// ---- GopherRepetitionFilter -----------------------------------------------------------------

namespace {

// Words as ids, so an n-gram is a run of uint32 that hashes without building a string.
struct NgramIndex {
  std::vector<uint32_t> ids;
  std::vector<size_t> chars_before;  // chars_before[i] = code points in words[0..i)

  explicit NgramIndex(const std::vector<std::string_view>& words) {
    std::unordered_map<std::string_view, uint32_t> vocab;
    vocab.reserve(words.size());
    ids.reserve(words.size());
    chars_before.assign(1, 0);
    for (std::string_view w : words) {
      ids.push_back(vocab.try_emplace(w, static_cast<uint32_t>(vocab.size())).first->second);
      chars_before.push_back(chars_before.back() + count_code_points(w));
    }
  }
  size_t size() const { return ids.size(); }
  uint64_t hash(size_t i, size_t n) const { return XXH3_64bits(&ids[i], n * sizeof(uint32_t)); }
  size_t chars(size_t i, size_t n) const { return chars_before[i + n] - chars_before[i]; }
};

// datatrove find_top_duplicate(get_n_grams(words, n)): characters of the most frequent n-gram
// (" ".join of its words, so n-1 spaces) times its count. Counter.most_common(1) breaks ties
// by first occurrence; so do we.
size_t top_ngram_chars(const NgramIndex& ix, size_t n) {
  struct Seen {
    uint32_t count;
    size_t first;
  };
  std::unordered_map<uint64_t, Seen> seen;
  seen.reserve(ix.size());
  size_t best_count = 0, best_first = 0;
  for (size_t i = 0; i + n <= ix.size(); ++i) {
    Seen& s = seen.try_emplace(ix.hash(i, n), Seen{0, i}).first->second;
    ++s.count;
    if (s.count > best_count || (s.count == best_count && s.first < best_first)) {
      best_count = s.count;
      best_first = s.first;
    }
  }
  return (ix.chars(best_first, n) + n - 1) * best_count;
}

// datatrove find_all_duplicate(words, n): walk the words; an n-gram seen before adds its
// characters ("".join, no spaces) and the walk jumps past it, so overlapping repeats of a
// repeated span are not counted twice; a new n-gram is remembered and the walk steps by one.
// llmkit: n-grams are compared as word sequences; datatrove compares the joined strings,
// so it also takes ["ab", "c"] for a repeat of ["a", "bc"].
size_t all_duplicate_chars(const NgramIndex& ix, size_t n) {
  std::unordered_set<uint64_t> unique;
  unique.reserve(ix.size());
  size_t repeated = 0;
  for (size_t idx = 0; idx + n <= ix.size();) {
    if (!unique.insert(ix.hash(idx, n)).second) {
      repeated += ix.chars(idx, n);
      idx += n;
    } else {
      ++idx;
    }
  }
  return repeated;
}

std::string gopher_repetition(std::string_view text, const std::vector<std::string_view>& words,
                              const QualityConfig& cfg) {
  double text_chars = static_cast<double>(count_code_points(text));
  if (text_chars == 0) return "";  // datatrove divides by len(text); the quality rules drop it

  auto paragraphs = split_on_newline_runs(py_strip(text), 2);  // re.split(r"\n{2,}", text.strip())
  DupCount para = find_duplicates(paragraphs);
  if (cfg.dup_para_frac && double(para.elements) / double(paragraphs.size()) > cfg.dup_para_frac)
    return "dup_para_frac";
  if (cfg.dup_para_char_frac && double(para.chars) / text_chars > cfg.dup_para_char_frac)
    return "dup_para_char_frac";

  auto lines = split_on_newline_runs(text, 1);  // re.split("\n+", text)
  DupCount line = find_duplicates(lines);
  if (cfg.dup_line_frac && double(line.elements) / double(lines.size()) > cfg.dup_line_frac)
    return "dup_line_frac";
  if (cfg.dup_line_char_frac && double(line.chars) / text_chars > cfg.dup_line_char_frac)
    return "dup_line_char_frac";

  NgramIndex ix(words);
  for (size_t k = 0; k < 3; ++k) {
    size_t n = k + 2;
    if (ix.size() < n) continue;  // no n-grams
    if (double(top_ngram_chars(ix, n)) / text_chars > cfg.top_n_grams[k])
      return "top_" + std::to_string(n) + "_gram";
  }
  for (size_t k = 0; k < 6; ++k) {
    size_t n = k + 5;
    if (double(all_duplicate_chars(ix, n)) / text_chars > cfg.dup_n_grams[k])
      return "duplicated_" + std::to_string(n) + "_n_grams";
  }
  return "";
}

// ---- GopherQualityFilter ----------------------------------------------------------------------

bool is_english(std::string_view lang) {
  return lang.empty() || lang.substr(0, lang.find_first_of("-_")) == "en";
}

// Stop words of the Gopher rule (>= min_stop_words occurrences, case-sensitive as in
// datatrove). llmkit: Gopher's English list cannot match Chinese or Japanese, so those get the
// most frequent function words of the language, which any running prose repeats many times
// while menus, lists and titles do not. Korean particles are written inside the word
// (학교에서), so whole-word matching cannot find them; Korean and every other language that
// is neither English nor unknown skip the rule, as a rule on English words would drop them all.
const std::vector<std::string_view>* stop_words_for(std::string_view lang) {
  static const std::vector<std::string_view> en = {"the", "be", "to", "of", "and", "that", "have", "with"};
  static const std::vector<std::string_view> zh = {"的", "了", "是", "在", "和", "也", "不", "有", "就", "都"};
  static const std::vector<std::string_view> ja = {"の", "に", "は", "を", "が", "で", "と", "た", "て", "も"};
  std::string_view base = lang.substr(0, lang.find_first_of("-_"));
  if (is_english(lang)) return &en;
  if (base == "zh") return &zh;
  if (base == "ja") return &ja;
  return nullptr;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

bool has_non_punctuation(std::string_view w) {
  for (size_t i = 0; i < w.size();)
    if (!is_datatrove_punctuation(next_code_point(w, i))) return true;
  return false;
}

bool has_alpha(std::string_view w) {
  for (size_t i = 0; i < w.size();)
    if (is_alpha(next_code_point(w, i))) return true;
  return false;
}

// The line rules: bullets (lines starting with • or -) and lines ending with an ellipsis.
std::string gopher_line_rules(std::string_view text, const QualityConfig& cfg) {
  auto lines = py_splitlines(text);
  if (lines.empty()) return "";  // datatrove divides by len(lines)
  size_t bullets = 0, ellipsis_ends = 0;
  for (std::string_view line : lines) {
    std::string_view head = py_lstrip(line), tail = py_rstrip(line);
    bullets += starts_with(head, "•") || starts_with(head, "-");
    ellipsis_ends += ends_with(tail, "...") || ends_with(tail, "…");
  }
  double n = static_cast<double>(lines.size());
  if (cfg.max_bullet_lines_ratio && double(bullets) / n > cfg.max_bullet_lines_ratio)
    return "too_many_bullets";
  if (cfg.max_ellipsis_lines_ratio && double(ellipsis_ends) / n > cfg.max_ellipsis_lines_ratio)
    return "too_many_end_ellipsis";
  return "";
}

std::string gopher_quality(std::string_view text, const std::vector<std::string_view>& words,
                           std::string_view lang, const QualityConfig& cfg) {
  // Word counts and the mean length use the words that are not all punctuation.
  size_t n_real = 0, real_chars = 0;
  for (std::string_view w : words)
    if (has_non_punctuation(w)) {
      ++n_real;
      real_chars += count_code_points(w);
    }
  if (cfg.min_doc_words && double(n_real) < cfg.min_doc_words) return "short_doc";
  if (cfg.max_doc_words && double(n_real) > cfg.max_doc_words) return "long_doc";

  if (n_real > 0) {  // np.mean of nothing is NaN, which fails no comparison
    bool cjk = is_cjk_language(lang);
    double lo = cjk ? cfg.cjk_min_avg_word_length : cfg.min_avg_word_length;
    double hi = cjk ? cfg.cjk_max_avg_word_length : cfg.max_avg_word_length;
    double mean = double(real_chars) / double(n_real);
    // llmkit: one reason for both bounds (datatrove: below_/above_avg_threshold).
    if ((lo && mean < lo) || (hi && mean > hi)) return "mean_word_length";
  }
  if (words.empty()) return "";  // the ratios below divide by the word count

  // The symbol, alpha and stop-word ratios divide by all words, punctuation included.
  double n_words = static_cast<double>(words.size());
  if (cfg.max_symbol_word_ratio && double(count_substring(text, "#")) / n_words > cfg.max_symbol_word_ratio)
    return "too_many_hashes";
  double ellipses = double(count_substring(text, "...") + count_substring(text, "…"));
  if (cfg.max_symbol_word_ratio && ellipses / n_words > cfg.max_symbol_word_ratio)
    return "too_many_ellipsis";

  if (std::string r = gopher_line_rules(text, cfg); !r.empty()) return r;

  size_t alpha_words = std::count_if(words.begin(), words.end(), has_alpha);
  if (cfg.max_non_alpha_words_ratio && double(alpha_words) / n_words < cfg.max_non_alpha_words_ratio)
    return "below_alpha_threshold";

  const auto* stop_words = stop_words_for(lang);
  if (cfg.min_stop_words && stop_words) {
    size_t hits = std::count_if(words.begin(), words.end(), [&](std::string_view w) {
      return std::find(stop_words->begin(), stop_words->end(), w) != stop_words->end();
    });
    // llmkit: "too_few_stop_words"; datatrove calls this reason gopher_enough_stop_words.
    if (double(hits) < cfg.min_stop_words) return "too_few_stop_words";
  }
  return "";
}

}  // namespace

// ---- the pipeline -------------------------------------------------------------------------------

std::string check_quality(std::string& text, std::string_view lang, const QualityConfig& cfg) {
  // Decide the language once; "und" (undetermined, non-CJK) stops split_words from scanning
  // the text for CJK again on every call.
  std::string eff = effective_language(text, lang);
  std::string seg_lang = eff.empty() ? "und" : eff;
  std::vector<std::string_view> words;
  bool have_words = false;
  auto get_words = [&]() -> const std::vector<std::string_view>& {
    if (!have_words) words = split_words(text, seg_lang);
    have_words = true;
    return words;
  };

  if (cfg.gopher_repetition)
    if (std::string r = gopher_repetition(text, get_words(), cfg); !r.empty()) return "gopher_repetition:" + r;
  if (cfg.gopher_quality)
    if (std::string r = gopher_quality(text, get_words(), eff, cfg); !r.empty()) return "gopher_quality:" + r;
  if (cfg.c4) {
    bool changed = false;
    if (std::string r = c4_quality(text, eff, cfg, changed); !r.empty()) return "c4:" + r;
    if (changed) have_words = false;  // the views pointed into the old text
  }
  if (cfg.fineweb)
    if (std::string r = fineweb_quality(text, get_words(), eff, cfg); !r.empty()) return "fineweb:" + r;
  return "";
}

std::vector<Param> quality_params(QualityConfig& c) {
  std::vector<Param> p = {
      {"gopher_repetition.dup_line_frac", &c.dup_line_frac, "max fraction of duplicate lines (0: off)"},
      {"gopher_repetition.dup_para_frac", &c.dup_para_frac, "max fraction of duplicate paragraphs (0: off)"},
      {"gopher_repetition.dup_line_char_frac", &c.dup_line_char_frac, "max share of characters in duplicate lines (0: off)"},
      {"gopher_repetition.dup_para_char_frac", &c.dup_para_char_frac, "max share of characters in duplicate paragraphs (0: off)"},
  };
  for (int n = 2; n <= 4; ++n)
    p.push_back({"gopher_repetition.top_" + std::to_string(n) + "_grams", &c.top_n_grams[n - 2],
                 "max share of characters in the most frequent " + std::to_string(n) + "-gram"});
  for (int n = 5; n <= 10; ++n)
    p.push_back({"gopher_repetition.dup_" + std::to_string(n) + "_grams", &c.dup_n_grams[n - 5],
                 "max share of characters in repeated " + std::to_string(n) + "-grams"});
  std::vector<Param> rest = {
      {"gopher_quality.min_doc_words", &c.min_doc_words, "min words that are not punctuation (0: off)"},
      {"gopher_quality.max_doc_words", &c.max_doc_words, "max words that are not punctuation (0: off)"},
      {"gopher_quality.min_avg_word_length", &c.min_avg_word_length, "min mean word length, characters (0: off)"},
      {"gopher_quality.max_avg_word_length", &c.max_avg_word_length, "max mean word length, characters (0: off)"},
      {"gopher_quality.cjk_min_avg_word_length", &c.cjk_min_avg_word_length, "min mean word length for zh/ja/ko (0: off)"},
      {"gopher_quality.cjk_max_avg_word_length", &c.cjk_max_avg_word_length, "max mean word length for zh/ja/ko (0: off)"},
      {"gopher_quality.max_symbol_word_ratio", &c.max_symbol_word_ratio, "max '#' or ellipses per word (0: off)"},
      {"gopher_quality.max_bullet_lines_ratio", &c.max_bullet_lines_ratio, "max fraction of lines starting with a bullet (0: off)"},
      {"gopher_quality.max_ellipsis_lines_ratio", &c.max_ellipsis_lines_ratio, "max fraction of lines ending with an ellipsis (0: off)"},
      {"gopher_quality.max_non_alpha_words_ratio", &c.max_non_alpha_words_ratio, "min fraction of words with a letter (0: off)"},
      {"gopher_quality.min_stop_words", &c.min_stop_words, "min stop words (0: off)"},
      {"c4.filter_no_terminal_punct", &c.filter_no_terminal_punct, "1: drop lines without terminal punctuation"},
      {"c4.remove_citations", &c.remove_citations, "1: remove [1], [edit], [citation needed]"},
      {"c4.min_num_sentences", &c.min_num_sentences, "min sentences after line removal (-1: off)"},
      {"c4.min_words_per_line", &c.min_words_per_line, "drop lines with fewer words (-1: off)"},
      {"c4.max_word_length", &c.max_word_length, "drop lines with a longer word, characters (-1: off)"},
      {"c4.filter_lorem_ipsum", &c.filter_lorem_ipsum, "1: drop documents with \"lorem ipsum\""},
      {"c4.filter_javascript", &c.filter_javascript, "1: drop lines with \"javascript\""},
      {"c4.filter_curly_bracket", &c.filter_curly_bracket, "1: drop documents with '{'"},
      {"c4.filter_policy", &c.filter_policy, "1: drop lines about cookies, terms of use, privacy policy"},
      {"fineweb.line_punct_thr", &c.line_punct_thr, "min fraction of lines ending in terminal punctuation"},
      {"fineweb.line_punct_exclude_zero", &c.line_punct_exclude_zero, "1: keep documents where no line ends so"},
      {"fineweb.short_line_thr", &c.short_line_thr, "max fraction of short lines"},
      {"fineweb.short_line_length", &c.short_line_length, "a short line has at most this many characters"},
      {"fineweb.char_duplicates_ratio", &c.char_duplicates_ratio, "max share of characters in duplicate lines"},
      {"fineweb.new_line_ratio", &c.new_line_ratio, "max newlines per word"},
  };
  p.insert(p.end(), rest.begin(), rest.end());
  return p;
}

}  // namespace llmkit::text
