// Private to lib/text/quality*.cpp: the stages of check_quality and the helpers they share.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/quality.hpp"

namespace llmkit::text {

struct DupCount {
  size_t elements = 0, chars = 0;
};
// datatrove find_duplicates(): repeats of an element already seen, and their characters.
DupCount find_duplicates(const std::vector<std::string_view>& items);
// Python str.count(needle): non-overlapping occurrences.
size_t count_substring(std::string_view text, std::string_view needle);
// datatrove TERMINAL_PUNCTUATION, plus 」 』 … for zh/ja/ko (cjk = true).
bool ends_sentence(char32_t c, bool cjk);

// Each returns "" to keep the document, else the rule's name (without the "stage:" prefix).
// c4_quality rewrites `text` and sets `changed` when it keeps the document with lines removed.
std::string c4_quality(std::string& text, std::string_view lang, const QualityConfig& cfg, bool& changed);
std::string fineweb_quality(std::string_view text, const std::vector<std::string_view>& words,
                            std::string_view lang, const QualityConfig& cfg);

}  // namespace llmkit::text
