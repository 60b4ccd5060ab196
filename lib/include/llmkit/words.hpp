// Word segmentation and the small text primitives the quality rules are built from
// (lib/text/words.cpp). Lengths are counted in Unicode code points, as Python's len() on a str
// counts them, because the rules being reproduced (datatrove) are written in Python.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace llmkit::text {

// Splits `text` into words. All returned views point into `text`.
//
// zh/ja/ko (and, when `lang` is "", text in which CJK characters dominate): ICU word
// segmentation (icu::BreakIterator::createWordInstance); each segment is trimmed of whitespace
// and kept unless nothing is left, so punctuation marks come back as words of their own, as
// datatrove's spaCy/jieba tokenizers return them.
//
// Other languages: an approximation of the English word tokenizer datatrove uses (NLTK's
// Treebank word_tokenize in the FineWeb release, spaCy's English tokenizer now); both split
// punctuation off words. What is matched:
//   - split on whitespace (Python str.split()'s definition of whitespace);
//   - punctuation and symbols (Unicode P* and S*) at the start or end of a chunk become words
//     of their own, one code point each, except that runs of 2+ '.' ("...") and 2+ '-' ("--")
//     stay one word;
//   - inside a chunk, ? ! " ( ) [ ] { } < > ; @ # $ % & and non-ASCII opening/closing/quote/
//     other punctuation (e.g. 、 « ») are split off; ',' and ':' are split off unless a digit
//     follows ("1,000" and "10:30" stay whole, "a,b" does not);
//   - English clitics are split from the end: n't 's 'm 'd 're 've 'll (' or ’), so "don't"
//     gives "do" "n't" and "that's" gives "that" "'s", as both NLTK and spaCy do.
// What is approximated: a final '.' is split off unless the word already holds a '.' ("U.S.",
// "e.g." stay whole); NLTK keeps known abbreviations such as "Mr." whole and we do not.
// Hyphens and slashes inside words are kept ("well-known", "and/or"), as NLTK does (spaCy
// splits hyphens). NLTK's rewriting of quotes to `` and '' and its splitting of "cannot",
// "gonna" are not reproduced (we never change the text, only cut it).
std::vector<std::string_view> split_words(std::string_view text, std::string_view lang);

// The words of the Gopher rules (Rae et al. 2021, MassiveText's quality filters), which are
// defined over whitespace-delimited words: for languages other than zh/ja/ko (decided as in
// split_words), the runs of non-whitespace characters (Python str.split()), punctuation left
// attached ("terse)" is one word). For zh/ja/ko, which do not put spaces between words, ICU
// word segmentation, keeping only the segments ICU tags as words (letters, numbers, kana,
// ideographs): punctuation, symbols and spaces are not words.
std::vector<std::string_view> split_gopher_words(std::string_view text, std::string_view lang);

// True for "zh", "ja", "ko" and their regional variants ("zh-TW", "zh_Hant").
bool is_cjk_language(std::string_view lang);

// The language the rules should assume: `lang` when given; otherwise "zh", "ja" or "ko" when
// CJK characters outnumber other letters in the first 64 KiB (kana → "ja", hangul → "ko"),
// else "" (unknown, treated as English by the rules, as datatrove's default is English).
std::string effective_language(std::string_view text, std::string_view lang);

// UTF-8 helpers. Invalid bytes decode to U+FFFD and count as one code point each.
char32_t next_code_point_multibyte(std::string_view s, size_t& i);  // next_code_point's slow path
inline char32_t next_code_point(std::string_view s, size_t& i) {    // decodes at i, advances i
  unsigned char b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) {
    ++i;
    return b;
  }
  return next_code_point_multibyte(s, i);
}
char32_t last_code_point(std::string_view s);            // 0 when s is empty
size_t count_code_points(std::string_view s);

// Python str.isspace() for one code point, and str.strip()/lstrip()/rstrip() with no argument.
bool py_isspace(char32_t c);
std::string_view py_strip(std::string_view s);
std::string_view py_lstrip(std::string_view s);
std::string_view py_rstrip(std::string_view s);

// Python str.splitlines(): breaks at \n \r \r\n \v \f \x1c \x1d \x1e \x85 U+2028 U+2029;
// no empty last line when the text ends with a break.
std::vector<std::string_view> py_splitlines(std::string_view s);

// Splits on every occurrence of `sep` (Python str.split(sep)), or on runs of 1+ (min_run=1)
// or 2+ (min_run=2) '\n' as re.split("\n+") / re.split(r"\n{2,}") do.
std::vector<std::string_view> split_on_newline_runs(std::string_view s, size_t min_run);

// Character classes of datatrove/utils/text.py. PUNCTUATION_SET is the PUNCTUATION string
// (ASCII and CJK punctuation, C0/C1 controls other than \t \n) plus TERMINAL_PUNCTUATION.
// TERMINAL_PUNCTUATION is the Unicode Sentence_Terminal property (ICU UCHAR_S_TERM: . ! ?
// 。 ！ ？ ｡ । ...) plus '"' and '”'.
bool is_datatrove_punctuation(char32_t c);
bool is_terminal_punctuation(char32_t c);
// Python str.isalpha() for one code point (general category L*).
bool is_alpha(char32_t c);

}  // namespace llmkit::text
