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

// True if `code` is in `wanted` (a list like {"en","zh"}); "zh" also matches "zh-Hant".
bool language_matches(const std::string& code, const std::vector<std::string>& wanted);

}  // namespace llmkit::text
