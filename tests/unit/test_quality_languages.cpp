// What lets llm-clean run the quality rules before language identification (lib/text/clean.cpp,
// Cleaner::quality_then_langid): CLD2 gives no CJK language to a text may_detect_cjk clears, and
// check_quality_non_cjk's two verdicts are check_quality's for English and for any other
// language the verdicts cover.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "llmkit/langid.hpp"
#include "llmkit/quality.hpp"

using namespace llmkit::text;

namespace {

struct Rng {
  uint64_t state;
  uint64_t operator()(uint64_t bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (state >> 33) % bound;
  }
};

}  // namespace

TEST_CASE("may_detect_cjk: the bytes CLD2 reads, any Han, kana or Hangul character among them", "[langid]") {
  CHECK_FALSE(may_detect_cjk("plain English, \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x80\x94 and \xE2\x82\xAC" "5 \xE2\x80\xA6", 4096));
  CHECK_FALSE(may_detect_cjk("Ti\xE1\xBA\xBFng Vi\xE1\xBB\x87t, \xD0\xA0\xD1\x83\xD1\x81\xD1\x81\xD0\xBA\xD0\xB8\xD0\xB9, \xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A", 4096));
  CHECK(may_detect_cjk("mostly English with one \xE4\xB8\xAD character", 4096));        // U+4E2D
  CHECK(may_detect_cjk("kana \xE3\x81\x8B", 4096));                                     // U+304B
  CHECK(may_detect_cjk("hangul \xEA\xB0\x80", 4096));                                   // U+AC00
  CHECK(may_detect_cjk("fullwidth \xEF\xBC\xA1", 4096));                                // U+FF21
  CHECK(may_detect_cjk("an emoji \xF0\x9F\x98\x80", 4096));                             // past U+FFFF
  CHECK(may_detect_cjk("cut \xE4\xB8", 4096));                                          // invalid: maybe
  // Only what detect_language reads counts.
  std::string late = std::string(5000, 'a') + "\xE4\xB8\xAD";
  CHECK_FALSE(may_detect_cjk(late, 4096));
  CHECK(may_detect_cjk(late, 8192));
  CHECK(langid_input(late, 4096).size() == 4096);
  CHECK(langid_input("\xC3\xA9\xC3\xA9", 3) == "\xC3\xA9");  // cut at a character boundary
}

TEST_CASE("CLD2 gives no CJK language to text that may_detect_cjk clears", "[langid]") {
  // Words of many non-CJK scripts with the punctuation, symbols and digits of web text around
  // them: whatever CLD2 answers (English, Vietnamese, Russian, unknown...), it is a language
  // whose quality verdicts check_quality_non_cjk covers.
  const std::vector<std::string> pieces = {
      "the", "library", "opened", "Bibliothek", "wurde", "er\xC3\xB6" "ffnet", "biblioth\xC3\xA8que",
      "\xD0\xB1\xD0\xB8\xD0\xB1\xD0\xBB\xD0\xB8\xD0\xBE\xD1\x82\xD0\xB5\xD0\xBA\xD0\xB0",  // библиотека
      "\xCE\xB2\xCE\xB9\xCE\xB2\xCE\xBB\xCE\xAF\xCE\xBF",                                  // βιβλίο
      "\xD9\x85\xD9\x83\xD8\xAA\xD8\xA8\xD8\xA9",                                          // مكتبة
      "\xD7\xA1\xD7\xA4\xD7\xA8\xD7\x99\xD7\x94",                                          // ספריה
      "\xE0\xA4\xAA\xE0\xA5\x81\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA4\x95",          // पुस्तक
      "th\xC6\xB0 vi\xE1\xBB\x87n", "\xE1\x83\x91\xE1\x83\x98\xE1\x83\x91\xE1\x83\x9A",    // thư viện, ბიბლ
      "\xE2\x80\x9C", "\xE2\x80\x9D", "\xE2\x80\x94", "\xE2\x80\xA6", "\xE2\x82\xAC", "\xE2\x84\xA2",
      "\xE2\x86\x92", "\xE2\x94\x80", "\xE2\x98\x85", "1952", "3.14", "(x)", "{y}", "#", "@", "-", ",", ".",
      "\n", "\n\n", "  "};
  Rng rng{7};
  int answered = 0;
  for (int round = 0; round < 400; ++round) {
    std::string text;
    const size_t n = 1 + rng(round % 2 ? 40 : 900);
    for (size_t k = 0; k < n; ++k) text += pieces[rng(pieces.size())] + (rng(3) ? " " : "");
    REQUIRE_FALSE(may_detect_cjk(text, 4096));
    const LangResult lr = detect_language(text, 4096);
    INFO(text.substr(0, 200));
    CHECK(NonCjkVerdicts::covers(lr.code, QualityConfig{}));
    answered += lr.code != "un";
  }
  CHECK(answered > 100);  // CLD2 named a language for many of them, not only "un"
}

TEST_CASE("check_quality_non_cjk: check_quality's verdicts for English and for other languages in one pass", "[quality]") {
  // Random documents: lines of words made up for the document (never repeated, no stop word),
  // sometimes with English stop words among them, sometimes with lines that trip other rules
  // (braces, bullets, short lines, lorem ipsum, a citation mark, a repeated line).
  const std::vector<std::string> odd_lines = {"x = {1, 2}", "- item", "Click here", "lorem ipsum dolor sit amet",
                                              "See the [citation needed] note.", "Buy now!", "    return self.end"};
  QualityConfig cfg;
  Rng rng{11};
  int differ = 0, kept = 0;
  for (int round = 0; round < 500; ++round) {
    std::string text;
    size_t next_word = 0;
    auto word = [&] {  // a word no other in the document is: base-20 digits as letters
      std::string w;
      for (size_t i = next_word++ + 400; i; i /= 20) w += static_cast<char>('b' + i % 20);
      return w;
    };
    const size_t lines = 1 + rng(20);
    const bool stop_words = rng(2), odd = rng(3) == 0;
    for (size_t l = 0; l < lines; ++l) {
      const size_t words = 1 + rng(14);
      for (size_t k = 0; k < words; ++k) text += (k ? " " : "") + word();
      if (stop_words && l == 0) text += " the and of";
      text += rng(5) ? "." : "";
      if (odd && rng(4) == 0) text += "\n" + odd_lines[rng(odd_lines.size())];
      text += rng(4) ? "\n" : "\n\n";
    }
    std::string one = text, en = text, de = text;
    const NonCjkVerdicts v = check_quality_non_cjk(one, cfg);
    INFO(text);
    CHECK(v.english == check_quality(en, "en", cfg));
    CHECK(v.other == check_quality(de, "de", cfg));
    CHECK(v.for_language("en-GB") == v.english);
    CHECK(v.for_language("un") == v.other);
    CHECK(one == de);                         // the text as the other languages leave it
    if (v.english.empty()) CHECK(one == en);  // and as English does when it keeps it
    differ += v.english != v.other;
    kept += v.other.empty();
  }
  CHECK(differ > 30);  // the stop-word rule parts the verdicts often enough to be tested
  CHECK(kept > 30);
  CHECK(NonCjkVerdicts::covers("en", cfg));
  CHECK(NonCjkVerdicts::covers("vi", cfg));
  CHECK_FALSE(NonCjkVerdicts::covers("zh-Hant", cfg));
  CHECK_FALSE(NonCjkVerdicts::covers("ja", cfg));
  CHECK_FALSE(NonCjkVerdicts::covers("", cfg));
}
