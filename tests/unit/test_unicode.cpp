#include <catch2/catch.hpp>

#include "llmkit/langid.hpp"
#include "llmkit/unicode.hpp"

using namespace llmkit::text;

TEST_CASE("terminal escape codes are removed and counted", "[unicode]") {
  std::string s = "\x1b[1;31mred\x1b[0m plain \x1b]0;title\x07" "end \x1b(B.";
  CHECK(strip_ansi_escapes(s) == 4);
  CHECK(s == "red plain end .");
}

TEST_CASE("control characters are removed, line ends unified", "[unicode]") {
  std::string s = "a\x01" "b\r\nc\rd\x7f" "e\xC2\x85" "f\xEF\xBB\xBFg\th";
  CHECK(strip_control_chars(s) == 4);
  CHECK(s == "ab\nc\nde" "fg\th");
}

TEST_CASE("NFC and NFKC", "[unicode]") {
  std::string s = "Cafe\xCC\x81";  // e + combining acute
  CHECK(normalize_unicode(s, Normalization::nfc));
  CHECK(s == "Caf\xC3\xA9");
  std::string k = "\xEF\xBC\xA1\xEF\xBC\x91 \xEF\xAC\x81";  // fullwidth A1, ligature fi
  CHECK_FALSE(normalize_unicode(k, Normalization::nfc));
  CHECK(normalize_unicode(k, Normalization::nfkc));
  CHECK(k == "A1 fi");
  std::string ascii = "plain";
  CHECK_FALSE(normalize_unicode(ascii, Normalization::nfkc));
}

TEST_CASE("whitespace is normalised: blanks, trimmed lines, one blank line", "[unicode]") {
  std::string s = "  \n\n a  \t b \xC2\xA0 c  \n  d\n\n\n\n e \xE3\x80\x80 f\n\n";
  normalize_whitespace(s);
  CHECK(s == "a b c\nd\n\ne f");
  // Single spaces next to other blanks, at line ends and before non-ASCII letters.
  std::string t = "one two \tthree \xC2\xA0" "four five \nsix \xC3\xA9t\xC3\xA9 x";
  normalize_whitespace(t);
  CHECK(t == "one two three four five\nsix \xC3\xA9t\xC3\xA9 x");
}

TEST_CASE("repair_text fixes invalid UTF-8 and counts every change", "[unicode]") {
  std::string s = "ok\xFF\x1b[0m\x02 fine";
  RepairCounts c;
  repair_text(s, RepairConfig{}, c);
  CHECK(s == "ok\xEF\xBF\xBD fine");
  CHECK(c.invalid_utf8 == 1);
  CHECK(c.ansi_escapes == 1);
  CHECK(c.control_chars == 1);
}

TEST_CASE("language identification", "[langid]") {
  auto en = detect_language(
      "The quick brown fox jumps over the lazy dog. This sentence is written in plain English "
      "and should be recognised as such by any reasonable language detector.");
  CHECK(en.code == "en");
  CHECK(en.score > 0.9);
  CHECK(en.reliable);
  auto zh = detect_language("我们今天去北京大学参观了图书馆，那里有很多珍贵的古籍和现代的研究资料，同学们都非常感兴趣。");
  CHECK(zh.code == "zh");
  auto de = detect_language("Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist Verpflichtung aller staatlichen Gewalt.");
  CHECK(de.code == "de");
  CHECK(language_matches("zh-Hant", {"en", "zh"}));
  CHECK_FALSE(language_matches("de", {"en", "zh"}));
}
