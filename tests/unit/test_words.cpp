// The word and line splitters of the quality rules (lib/text/words.cpp), including their
// vectorized paths, against plain oracles with Python's semantics.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "llmkit/words.hpp"

using namespace llmkit::text;

namespace {
// Python str.split() and str.splitlines(), written plainly over code points, as oracles for the
// vectorized splitters.
std::vector<std::string> python_split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size();) {
    size_t at = i;
    char32_t c = next_code_point(s, i);
    if (py_isspace(c)) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += s.substr(at, i - at);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}
std::vector<std::string> python_splitlines(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size();) {
    size_t at = i;
    char32_t c = next_code_point(s, i);
    bool br = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
              c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!br) {
      cur += s.substr(at, i - at);
      continue;
    }
    out.push_back(cur);
    cur.clear();
    if (c == '\r' && i < s.size() && s[i] == '\n') ++i;
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}
// Random text from pieces that exercise the splitters' special cases: ASCII and Unicode
// spaces and line breaks, letters, CJK, invalid bytes, runs long enough to cross 64-byte blocks.
std::string random_text(uint32_t& state, size_t pieces) {
  static const char* kPieces[] = {" ", "  ", "\t", "\n", "\r\n", "\r", "\v", "\f", "\x1c", "\x1f", "a", "Word",
                                  "z9", "(x),", "\u00a0", "\u0085", "\u1680", "\u2000", "\u200a", "\u200b",
                                  "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u3001", "中文", "é",
                                  "\u2019", "\xe2\x80", "\xc2", "\xe3\x80", "\xff", "\x80",
                                  "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmn"};
  std::string t;
  for (size_t k = 0; k < pieces; ++k) {
    state = state * 1664525u + 1013904223u;
    t += kPieces[(state >> 16) % (sizeof kPieces / sizeof *kPieces)];
  }
  return t;
}
}  // namespace

TEST_CASE("split_gopher_words and py_splitlines agree with Python on any text", "[quality][words]") {
  uint32_t state = 7;
  for (int round = 0; round < 400; ++round) {
    std::string t = random_text(state, 1 + round % 97);
    std::vector<std::string> words;
    for (std::string_view w : split_gopher_words(t, "en")) words.emplace_back(w);
    CHECK(words == python_split(t));
    std::vector<std::string> lines;
    for (std::string_view l : py_splitlines(t)) lines.emplace_back(l);
    CHECK(lines == python_splitlines(t));
  }
}

