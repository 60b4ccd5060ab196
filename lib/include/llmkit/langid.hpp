// Language identification with CLD2 (Compact Language Detector 2).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace llmkit::text {

struct LangResult {
  std::string code;    // ISO 639-1 ("en", "zh", "ja"; "zh-Hant" for traditional Chinese), "un" if unknown
  double score = 0;    // share of the text's letters in that language, 0..1 (0 when unreliable)
  bool reliable = false;
};

// Thread-safe. Looks at most `max_bytes` of the text (CLD2 is linear; a prefix is plenty).
LangResult detect_language(std::string_view text, size_t max_bytes = 1 << 16);

// The part of `text` detect_language reads: at most max_bytes, cut at a character boundary.
std::string_view langid_input(std::string_view text, size_t max_bytes);

// False when detect_language(text, max_bytes) cannot be Chinese, Japanese or Korean: the bytes
// it reads hold no character of the Han, kana, Hangul or Bopomofo blocks (nor anything past
// U+FFFF, nor invalid UTF-8), and CLD2 finds those languages only in those scripts.
bool may_detect_cjk(std::string_view text, size_t max_bytes);

// The languages of a list such as "en,zh" (a --lang option, named by `flag` in messages) as
// CLD2 writes them in "lang": each item is a code CLD2 knows, matched without regard to case
// ("EN" is "en", "zh-hant" is "zh-Hant"), or "he" for Hebrew, which CLD2 calls "iw". A language
// name ("english") or a code CLD2 does not know is a UsageError that says how to spell codes.
std::vector<std::string> parse_language_list(const std::string& list, const std::string& flag);

// True if `code` is in `wanted` (a list like {"en","zh"}); "zh" also matches "zh-Hant".
bool language_matches(const std::string& code, const std::vector<std::string>& wanted);

}  // namespace llmkit::text
