#include "llmkit/langid.hpp"

#include <cld2/public/compact_lang_det.h>
#include <cld2/public/encodings.h>

#include <map>

#include "llmkit/error.hpp"

namespace llmkit::text {

std::string_view langid_input(std::string_view text, size_t max_bytes) {
  // Cut the prefix at a UTF-8 character boundary so CLD2 sees valid text.
  size_t n = std::min(text.size(), max_bytes);
  while (n > 0 && n < text.size() && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return text.substr(0, n);
}

namespace {

// Code points of the scripts CLD2 finds Chinese, Japanese and Korean in (Han, Hiragana,
// Katakana, Hangul, Bopomofo), with their radicals, compatibility and half- and fullwidth
// forms; generously: all of U+2E80..U+A4CF (Yi too) and everything past U+FFFF.
bool cjk_range(char32_t c) {
  return (c >= 0x1100 && c <= 0x11FF) || (c >= 0x2E80 && c <= 0xA4CF) || (c >= 0xA960 && c <= 0xA97F) ||
         (c >= 0xAC00 && c <= 0xD7FF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFE30 && c <= 0xFE4F) ||
         (c >= 0xFF00 && c <= 0xFFEF) || c >= 0x10000;
}

}  // namespace

bool may_detect_cjk(std::string_view text, size_t max_bytes) {
  std::string_view in = langid_input(text, max_bytes);
  // Below U+1100 a character is at most two bytes: only lead bytes E1 and up start one that
  // can be in a CJK range (invalid UTF-8 counts as possibly CJK).
  for (size_t i = 0; i < in.size(); ++i) {
    const unsigned char b = static_cast<unsigned char>(in[i]);
    if (b < 0xE1) continue;
    if (b >= 0xF0) return true;  // four bytes: past U+FFFF
    if (i + 2 >= in.size()) return true;
    const unsigned char b1 = static_cast<unsigned char>(in[i + 1]), b2 = static_cast<unsigned char>(in[i + 2]);
    if ((b1 & 0xC0) != 0x80 || (b2 & 0xC0) != 0x80) return true;
    if (cjk_range(char32_t(b & 0x0F) << 12 | char32_t(b1 & 0x3F) << 6 | char32_t(b2 & 0x3F))) return true;
    i += 2;
  }
  return false;
}

LangResult detect_language(std::string_view text, size_t max_bytes) {
  const size_t n = langid_input(text, max_bytes).size();
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

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Every code CLD2 writes, and every language name it knows, by lower case.
struct KnownLanguages {
  std::map<std::string, std::string> code;  // "zh-hant" -> "zh-Hant"
  std::map<std::string, std::string> name;  // "english" -> "en"
  KnownLanguages() {
    for (int i = 0; i < CLD2::NUM_LANGUAGES; ++i) {
      const auto lang = static_cast<CLD2::Language>(i);
      const char* c = CLD2::LanguageCode(lang);
      if (!c || !*c || std::string(c) == "xxx") continue;  // unnamed slots, CLD2's "Ignore"
      code.emplace(lower(c), c);
      const char* n = CLD2::LanguageName(lang);
      if (n && *n) name.emplace(lower(n), c);
    }
    code.emplace("he", "iw");  // ISO 639-1's Hebrew; CLD2 keeps the withdrawn "iw"
  }
};

}  // namespace

std::vector<std::string> parse_language_list(const std::string& list, const std::string& flag) {
  static const KnownLanguages known;
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= list.size()) {
    size_t e = list.find(',', b);
    if (e == std::string::npos) e = list.size();
    std::string item = list.substr(b, e - b);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    b = e + 1;
    if (item.empty()) continue;
    const std::string key = lower(item);
    if (auto it = known.code.find(key); it != known.code.end()) {
      out.push_back(it->second);
      continue;
    }
    const std::string how =
        " (codes as CLD2 writes them in \"lang\": ISO 639-1 such as en, zh, de, fr, ja, ru;"
        " zh-Hant for traditional Chinese, un for text of no known language)";
    if (auto it = known.name.find(key); it != known.name.end())
      throw UsageError(flag + ": '" + item + "' is a language name, not a code: give '" + it->second + "'" + how);
    throw UsageError(flag + ": '" + item + "' is not a language code CLD2 knows" + how);
  }
  if (out.empty()) throw UsageError(flag + ": give at least one language code, e.g. en,zh");
  return out;
}

bool language_matches(const std::string& code, const std::vector<std::string>& wanted) {
  std::string base = code.substr(0, code.find('-'));
  for (const auto& w : wanted)
    if (w == code || w == base) return true;
  return false;
}

}  // namespace llmkit::text
