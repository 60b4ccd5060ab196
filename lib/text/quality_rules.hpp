// Private to lib/text/quality*.cpp and words.cpp: the stages of check_quality and the helpers
// they share, including allocation-free variants of the words.hpp splitters and the ASCII
// character-class table that gives the hot loops their fast path.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/quality.hpp"

namespace llmkit::text {

// ---- ASCII fast path (words.cpp) ------------------------------------------------------------
// Classes of the 128 ASCII code points, computed at start-up from the same (slow) functions
// that classify every other code point, so the fast path cannot disagree with them.
namespace ascii {
enum : uint8_t {
  kSpace = 1,      // py_isspace
  kPunct = 2,      // is_datatrove_punctuation
  kTerminal = 4,   // is_terminal_punctuation
  kAlpha = 8,      // is_alpha
  kEdge = 16,      // P* or S*: split off either end of a chunk (split_words)
  kSplit = 32,     // split off anywhere inside a chunk (split_words)
  kDigit = 64,     // u_isdigit
  kLineBreak = 128 // a py_splitlines break
};
extern const std::array<uint8_t, 128> kClass;
inline bool is(unsigned char b, uint8_t cls) { return b < 0x80 && (kClass[b] & cls); }
}  // namespace ascii

// Code points in s (count_code_points), fast over ASCII runs.
size_t count_code_points_fast(std::string_view s);

// The words.hpp splitters writing into `out` (cleared first), so callers can reuse its capacity.
void split_words_into(std::string_view text, std::string_view lang, std::vector<std::string_view>& out);
// split_gopher_words into `out` (cleared first); cjk chooses ICU. For CJK text,
// `icu_segments` (when given) gets the number of split_words' words, ICU's non-space
// segments, from the same pass.
void split_gopher_words_into(std::string_view text, bool cjk, std::vector<std::string_view>& out,
                             size_t* icu_segments);
// Gopher's words with what gopher_quality and the repetition index need of them, found in
// the same pass: each word's code points, their total, and how many words hold a letter.
struct GopherWords {
  std::vector<std::string_view> words;
  std::vector<uint32_t> chars;
  size_t total_chars = 0, alpha_words = 0;
};
// split_gopher_words_into (same words, same `icu_segments`), counted.
void split_gopher_words_counted(std::string_view text, bool cjk, GopherWords& out, size_t* icu_segments);
// Python str.split() words, counted (16 bytes of text at a time where SSE2 is available).
void split_whitespace_counted(std::string_view text, GopherWords& out);
// The number of split_words' words of a non-CJK text, from its whitespace words (never fewer
// than them: every whitespace word gives one or more).
size_t count_split_words(const std::vector<std::string_view>& whitespace_words);
// `w` without the punctuation and symbols (Unicode P*, S*) at its ends.
std::string_view trim_punctuation(std::string_view w);
void py_splitlines_into(std::string_view s, std::vector<std::string_view>& out);
void split_on_newline_runs_into(std::string_view s, size_t min_run, std::vector<std::string_view>& out);

// ---- the lines of a text, split once for every rule (words.cpp) -------------------------------

struct TextLines {
  std::vector<std::string_view> newline;  // text.split("\n")
  bool only_newlines = true;              // '\n' is the text's only str.splitlines() break
};
void split_text_lines(std::string_view text, TextLines& out);
// py_splitlines_into(text, out), from `lines` when only '\n' breaks lines.
void splitlines_from(std::string_view text, const TextLines& lines, std::vector<std::string_view>& out);
// re.split("\n+", text): text.split("\n") without the empty elements between two newlines.
void newline_runs_from(const TextLines& lines, std::vector<std::string_view>& out);

// ---- hard-wrapped text (hard_wrap.cpp) --------------------------------------------------------
// The line rules treat a paragraph that was filled to a fixed width as one line.

// The '\n' characters of `text` that a text filler made: the line breaks of a paragraph (a
// run of two or more non-blank lines) whose longest line is 50 to 100 columns wide and in
// which, at every break, the next line's first word (or first CJK character) would not have
// fit on the line before. Ascending.
void find_soft_breaks(const TextLines& lines, std::vector<const char*>& soft);
// Joins the lines (consecutive views of one text, in order) that only a soft break separates.
void merge_soft_breaks(std::vector<std::string_view>& lines, const std::vector<const char*>& soft);
// `text` with its soft breaks and the indentation after them removed, a space put in their
// place unless wide (CJK) characters meet there: the text as its paragraphs were written.
void join_soft_breaks(std::string_view text, const std::vector<const char*>& soft, std::string& out);

// ---- shared by the stages (quality.cpp) -------------------------------------------------------

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
// `text_lines`: split_text_lines(text); `soft`: find_soft_breaks of them.
// c4_quality rewrites `text` and sets `changed` when it keeps the document with lines removed.
// `gw`: split_whitespace_counted(text) when the text is not CJK, else null.
std::string c4_quality(std::string& text, const TextLines& text_lines, const std::vector<const char*>& soft,
                       const GopherWords* gw,
                       std::string_view lang, const QualityThresholds& cfg, bool& changed);
// The number of split_words' words of a text, counted only when needed: `at_least` is a lower
// bound known without counting (the number of whitespace words), count() the number.
struct TokenizerWords {
  size_t at_least = 0;
  const std::vector<std::string_view>* whitespace_words = nullptr;  // null: at_least is exact
  size_t count() const { return whitespace_words ? count_split_words(*whitespace_words) : at_least; }
};
std::string fineweb_quality(std::string_view text, const TextLines& text_lines, const std::vector<const char*>& soft,
                            const TokenizerWords& words, std::string_view lang, const QualityThresholds& cfg);

}  // namespace llmkit::text
