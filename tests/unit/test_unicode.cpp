#include <catch2/catch.hpp>
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>

#include <algorithm>
#include <string>
#include <vector>

#include "llmkit/langid.hpp"
#include "llmkit/unicode.hpp"
#include "llmkit/words.hpp"

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
  // A line keeps its indentation (leading spaces and tabs), the first line too; a Unicode
  // blank ends it; the blanks after it collapse with the rest of the run.
  std::string s = "  \n\n a  \t b \xC2\xA0 c  \n  d\n\n\n\n e \xE3\x80\x80 f\n\n\xE3\x80\x80 g \n \xC2\xA0\th\n";
  normalize_whitespace(s);
  CHECK(s == " a b c\n  d\n\n e f\n\ng\n h");
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

TEST_CASE("control characters: the vectorized scan agrees with a byte-by-byte one", "[unicode]") {
  auto reference = [](std::string t) {  // the rules of strip_control_chars, one byte at a time
    std::string out;
    for (size_t i = 0; i < t.size();) {
      unsigned char c = static_cast<unsigned char>(t[i]);
      if (c == '\r') {
        out += '\n';
        i += (i + 1 < t.size() && t[i + 1] == '\n') ? 2 : 1;
      } else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) {
        ++i;
      } else if (c == 0xC2 && i + 1 < t.size() && static_cast<unsigned char>(t[i + 1]) < 0xA0) {
        i += 2;
      } else if (t.compare(i, 3, "\xEF\xBB\xBF") == 0) {
        i += 3;
      } else {
        out += t[i++];
      }
    }
    return out;
  };
  static const char* kPieces[] = {"text ", "\n", "\t", "\r\n", "\r", "\x01", "\x1b", "\x7f", "\u0085", "\u00a0",
                                  "\u00e9", "\ufeff", "\uff01", "0123456789abcdefghij"};
  uint32_t state = 3;
  for (int round = 0; round < 300; ++round) {
    std::string t;
    for (int k = 0; k < 1 + round % 60; ++k) {
      state = state * 1664525u + 1013904223u;
      t += kPieces[(state >> 16) % (sizeof kPieces / sizeof *kPieces)];
    }
    std::string s = t;
    strip_control_chars(s);
    CHECK(s == reference(t));
  }
}

TEST_CASE("NFC and NFKC: text already in the form is left alone, other text is normalized", "[unicode]") {
  // Characters the quick check passes (ASCII, Latin, CJK, punctuation) and ones it must not:
  // combining marks (reordered, composed), compatibility characters, Hangul jamo.
  static const char* kPieces[] = {"a", "e", "\u0301", "\u0323", "\u00e9", "\u4e2d", "\u2019", "\u2000", "\ufb01",
                                  "\u1100", "\u1161", "\u11a8", "\uac00", "\U0001d400", " "};
  uint32_t state = 5;
  for (int round = 0; round < 300; ++round) {
    std::string t;
    for (int k = 0; k < 1 + round % 12; ++k) {
      state = state * 1664525u + 1013904223u;
      t += kPieces[(state >> 16) % (sizeof kPieces / sizeof *kPieces)];
    }
    for (Normalization form : {Normalization::nfc, Normalization::nfkc}) {
      UErrorCode status = U_ZERO_ERROR;
      const icu::Normalizer2* icu = form == Normalization::nfc ? icu::Normalizer2::getNFCInstance(status)
                                                               : icu::Normalizer2::getNFKCInstance(status);
      REQUIRE(U_SUCCESS(status));
      std::string expected;
      icu::StringByteSink<std::string> sink(&expected);
      icu->normalizeUTF8(0, icu::StringPiece(t.data(), static_cast<int32_t>(t.size())), sink, nullptr, status);
      std::string s = t;
      bool changed = normalize_unicode(s, form);
      CHECK(s == expected);
      CHECK(changed == (expected != t));
    }
  }
}

TEST_CASE("whitespace: the vectorized run copy agrees with a line-by-line reference", "[unicode]") {
  // Line by line: a line is its indentation (leading spaces and tabs) and its words (split at
  // every blank) joined by one space, or empty when it has no word; runs of empty lines become
  // one, leading and trailing ones go.
  auto reference = [](const std::string& t) {
    auto blank = [](char32_t c) {
      return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == 0xA0 || c == 0x1680 ||
             (c >= 0x2000 && c <= 0x200A) || c == 0x202F || c == 0x205F || c == 0x3000;
    };
    std::vector<std::string> lines;
    for (size_t b = 0; b <= t.size();) {
      size_t e = std::min(t.find('\n', b), t.size());
      std::string line = t.substr(b, e - b);
      b = e + 1;
      size_t k = 0;
      while (k < line.size() && (line[k] == ' ' || line[k] == '\t')) ++k;
      std::string out, word;
      std::vector<std::string> words;
      for (size_t i = k; i < line.size();) {
        size_t at = i;
        char32_t c = llmkit::text::next_code_point(line, i);
        if (!blank(c)) {
          word += line.substr(at, i - at);
        } else if (!word.empty()) {
          words.push_back(word);
          word.clear();
        }
      }
      if (!word.empty()) words.push_back(word);
      if (!words.empty()) out = line.substr(0, k);
      for (size_t w = 0; w < words.size(); ++w) out += (w ? " " : "") + words[w];
      lines.push_back(out);
    }
    std::string out;
    bool empty_before = false;
    for (const std::string& line : lines) {
      if (line.empty()) {
        empty_before = !out.empty();
        continue;
      }
      if (!out.empty()) out += empty_before ? "\n\n" : "\n";
      out += line;
      empty_before = false;
    }
    return out;
  };
  static const char* kPieces[] = {" ", "  ", "\t", "\n", "\n\n\n", "\n    ", "\n\t ", "\r", "\v", "\f", "a", "word", "x.",
                                  "\u00a0", "\u2003", "\u3000", "\u2019", "\u00e9", "\u4e2d", "\u2028",
                                  "abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyz"};
  uint32_t state = 11;
  for (int round = 0; round < 400; ++round) {
    std::string t;
    for (int k = 0; k < 1 + round % 80; ++k) {
      state = state * 1664525u + 1013904223u;
      t += kPieces[(state >> 16) % (sizeof kPieces / sizeof *kPieces)];
    }
    std::string s = t;
    normalize_whitespace(s);
    CHECK(s == reference(t));
  }
}
