// datatrove's FineWebQualityFilter (src/datatrove/pipeline/filters/fineweb_quality_filter.py),
// as in datatrove's current code: empty lines are ignored, TERMINAL_PUNCTUATION ends a line,
// and the comparisons are strict.
#include <algorithm>

#include "quality_rules.hpp"

namespace llmkit::text {

namespace {
// py_strip(line).empty() without stripping: every character is whitespace.
bool is_blank(std::string_view line) {
  for (size_t i = 0; i < line.size();) {
    unsigned char b = static_cast<unsigned char>(line[i]);
    if (b < 0x80) {
      if (!(ascii::kClass[b] & ascii::kSpace)) return false;
      ++i;
    } else if (!py_isspace(next_code_point_multibyte(line, i))) {
      return false;
    }
  }
  return true;
}
}  // namespace

std::string fineweb_quality(std::string_view text, const TextLines& text_lines, const std::vector<const char*>& soft,
                            const TokenizerWords& words, std::string_view lang, const QualityThresholds& cfg) {
  thread_local std::vector<std::string_view> lines;  // text.split("\n") without the blank ones
  lines = text_lines.newline;
  const size_t all_newlines = lines.size() - 1;  // count_substring(text, "\n")
  merge_soft_breaks(lines, soft);                // a wrapped paragraph is one line
  const size_t newlines = lines.size() - 1;      // those that end a line
  lines.erase(std::remove_if(lines.begin(), lines.end(), is_blank), lines.end());
  if (lines.empty()) return "empty";
  const double n_lines = static_cast<double>(lines.size());
  const bool cjk = is_cjk_language(lang);

  // The line itself, not its stripped form, must end in punctuation, as in datatrove.
  size_t punct_ends = 0, short_lines = 0;
  for (std::string_view line : lines) {
    punct_ends += ends_sentence(last_code_point(line), cjk);
    short_lines += double(count_code_points_fast(line)) <= cfg.short_line_length;
  }
  double ratio = double(punct_ends) / n_lines;
  if (ratio < cfg.line_punct_thr && !(ratio == 0 && cfg.line_punct_exclude_zero))
    return "line_punct_ratio";
  if (double(short_lines) / n_lines > cfg.short_line_thr) return "short_line_ratio";

  double chars_without_newlines = double(count_code_points_fast(text) - all_newlines);
  if (double(find_duplicates(lines).chars) / chars_without_newlines > cfg.char_duplicates_ratio)
    return "char_dup_ratio";

  // FineWeb's words are its word tokenizer's (datatrove split_into_words: punctuation marks are
  // words), as FineWeb and FineWeb-2 measured this ratio. A non-blank line always yields one.
  // The count is needed only when the lower bound leaves the ratio over the threshold.
  if (words.at_least > 0 && double(newlines) / double(words.at_least) > cfg.new_line_ratio) {
    size_t n = words.count();
    if (double(newlines) / double(n) > cfg.new_line_ratio) return "list_ratio";
  }
  return "";
}

}  // namespace llmkit::text
