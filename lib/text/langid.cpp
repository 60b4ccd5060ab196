#include "llmkit/langid.hpp"

#include <cld2/public/compact_lang_det.h>
#include <cld2/public/encodings.h>

namespace llmkit::text {

LangResult detect_language(std::string_view text, size_t max_bytes) {
  // Cut the prefix at a UTF-8 character boundary so CLD2 sees valid text.
  size_t n = std::min(text.size(), max_bytes);
  while (n > 0 && n < text.size() && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  CLD2::Language langs[3];
  int percents[3];
  double scores[3];
  int text_bytes = 0;
  bool reliable = false;
  CLD2::CLDHints hints = {nullptr, nullptr, CLD2::UNKNOWN_ENCODING, CLD2::UNKNOWN_LANGUAGE};
  CLD2::Language top = CLD2::ExtDetectLanguageSummary(
      text.data(), static_cast<int>(n), /*is_plain_text=*/true, &hints, /*flags=*/0, langs,
      percents, scores, /*resultchunkvector=*/nullptr, &text_bytes, &reliable);
  LangResult r;
  r.reliable = reliable;
  if (top == CLD2::UNKNOWN_LANGUAGE) {
    r.code = "un";
    return r;
  }
  r.code = CLD2::LanguageCode(top);
  // percents[] are shares of the text's letters per language (the top three sum to <= 100).
  int pct = langs[0] == top ? percents[0] : 0;
  r.score = reliable ? pct / 100.0 : 0.5 * pct / 100.0;
  return r;
}

bool language_matches(const std::string& code, const std::vector<std::string>& wanted) {
  std::string base = code.substr(0, code.find('-'));
  for (const auto& w : wanted)
    if (w == code || w == base) return true;
  return false;
}

}  // namespace llmkit::text
