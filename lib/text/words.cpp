// Word segmentation and text primitives for the quality rules; see llmkit/words.hpp.
#include "llmkit/words.hpp"

#include <unicode/brkiter.h>
#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/uscript.h>
#include <unicode/utext.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cstring>
#include <memory>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "quality_rules.hpp"

namespace llmkit::text {

// ---- UTF-8 -------------------------------------------------------------------------------

char32_t next_code_point_multibyte(std::string_view s, size_t& i) {
  UChar32 c;
  int32_t pos = 0;
  // U8_NEXT needs an int32 length; decode from a window so huge texts work too.
  size_t window = std::min<size_t>(s.size() - i, 4);
  U8_NEXT(reinterpret_cast<const uint8_t*>(s.data() + i), pos, static_cast<int32_t>(window), c);
  i += static_cast<size_t>(pos);
  return c < 0 ? U'\uFFFD' : static_cast<char32_t>(c);
}

char32_t last_code_point(std::string_view s) {
  if (s.empty()) return 0;
  if (static_cast<unsigned char>(s.back()) < 0x80) return static_cast<unsigned char>(s.back());
  size_t start = s.size() - 1;
  // Step back over at most 3 continuation bytes to the lead byte.
  while (start > 0 && s.size() - start < 4 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  char32_t c = next_code_point(s, i);
  return i == s.size() ? c : U'\uFFFD';
}

size_t count_code_points_fast(std::string_view s) {
  size_t n = 0, i = 0;
  const char* p = s.data();
  while (i < s.size()) {
    // Eight ASCII bytes at a time, then one code point.
    while (i + 8 <= s.size()) {
      uint64_t v;
      std::memcpy(&v, p + i, 8);
      if (v & 0x8080808080808080ull) break;
      i += 8;
      n += 8;
    }
    if (i >= s.size()) break;
    next_code_point(s, i);
    ++n;
  }
  return n;
}

size_t count_code_points(std::string_view s) { return count_code_points_fast(s); }

// ---- Python string semantics -----------------------------------------------------------

namespace {
bool py_isspace_any(char32_t c) {
  // Python's str.isspace(): bidi class WS, B or S, or category Zs.
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}
}  // namespace

bool py_isspace(char32_t c) { return py_isspace_any(c); }

std::string_view py_lstrip(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if (!(ascii::kClass[b] & ascii::kSpace)) break;
      ++i;
      continue;
    }
    size_t j = i;
    if (!py_isspace_any(next_code_point_multibyte(s, j))) break;
    i = j;
  }
  return s.substr(i);
}

std::string_view py_rstrip(std::string_view s) {
  while (!s.empty()) {
    unsigned char b = static_cast<unsigned char>(s.back());
    if (b < 0x80) {
      if (!(ascii::kClass[b] & ascii::kSpace)) break;
      s.remove_suffix(1);
      continue;
    }
    char32_t c = last_code_point(s);
    if (!py_isspace_any(c)) break;
    size_t start = s.size() - 1;
    while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    s = s.substr(0, start);
  }
  return s;
}

std::string_view py_strip(std::string_view s) { return py_rstrip(py_lstrip(s)); }

bool only_newline_breaks(std::string_view s) {
  // The line breaks of str.splitlines() other than '\n': \v \f \r \x1c \x1d \x1e (bytes
  // 0x0B-0x0D, 0x1C-0x1E), U+0085 (C2 85), U+2028 and U+2029 (E2 80 A8/A9). Bytes that may
  // start one are found 16 at a time, then checked.
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  auto breaks_at = [&](size_t i) {
    unsigned char b = p[i];
    if ((b >= 0x0B && b <= 0x0D) || (b >= 0x1C && b <= 0x1E)) return true;
    if (b == 0xC2) return i + 1 < n && p[i + 1] == 0x85;
    if (b == 0xE2) return i + 2 < n && p[i + 1] == 0x80 && (p[i + 2] == 0xA8 || p[i + 2] == 0xA9);
    return false;
  };
  size_t i = 0;
#ifdef __SSE2__
  const __m128i c0b = _mm_set1_epi8(0x0B), c1c = _mm_set1_epi8(0x1C), two = _mm_set1_epi8(2);
  const __m128i c2 = _mm_set1_epi8(static_cast<char>(0xC2)), e2 = _mm_set1_epi8(static_cast<char>(0xE2));
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i a = _mm_sub_epi8(v, c0b), b = _mm_sub_epi8(v, c1c);  // in range: 0..2 unsigned
    __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(a, two), a), _mm_cmpeq_epi8(_mm_min_epu8(b, two), b));
    hit = _mm_or_si128(hit, _mm_or_si128(_mm_cmpeq_epi8(v, c2), _mm_cmpeq_epi8(v, e2)));
    for (unsigned m = static_cast<unsigned>(_mm_movemask_epi8(hit)); m; m &= m - 1)
      if (breaks_at(i + static_cast<size_t>(__builtin_ctz(m)))) return false;
  }
#endif
  for (; i < n; ++i)
    if (breaks_at(i)) return false;
  return true;
}

void py_splitlines_into(std::string_view s, std::vector<std::string_view>& lines) {
  lines.clear();
  if (only_newline_breaks(s)) {  // the common case: split at each '\n' (memchr)
    size_t start = 0;
    while (start < s.size()) {
      const void* nl = std::memchr(s.data() + start, '\n', s.size() - start);
      if (!nl) break;
      size_t at = static_cast<size_t>(static_cast<const char*>(nl) - s.data());
      lines.push_back(s.substr(start, at - start));
      start = at + 1;
    }
    if (start < s.size()) lines.push_back(s.substr(start));
    return;
  }
  size_t start = 0, i = 0;
  const size_t n = s.size();
  while (i < n) {
    size_t at = i;
    unsigned char b = static_cast<unsigned char>(s[i]);
    char32_t c;
    if (b < 0x80) {
      ++i;
      if (!(ascii::kClass[b] & ascii::kLineBreak)) continue;
      c = b;
    } else {
      c = next_code_point_multibyte(s, i);
      if (c != 0x85 && c != 0x2028 && c != 0x2029) continue;
    }
    lines.push_back(s.substr(start, at - start));
    if (c == '\r' && i < n && s[i] == '\n') ++i;
    start = i;
  }
  if (start < n) lines.push_back(s.substr(start));
}

void split_text_lines(std::string_view text, TextLines& out) {
  split_on_newline_runs_into(text, 0, out.newline);
  out.only_newlines = only_newline_breaks(text);
}

void splitlines_from(std::string_view text, const TextLines& lines, std::vector<std::string_view>& out) {
  if (!lines.only_newlines) {
    py_splitlines_into(text, out);
    return;
  }
  // str.splitlines() gives no empty last line for a text that ends with a break (or is empty).
  out.assign(lines.newline.begin(), lines.newline.end());
  if (!out.empty() && out.back().empty()) out.pop_back();
}

void newline_runs_from(const TextLines& lines, std::vector<std::string_view>& out) {
  const auto& nl = lines.newline;
  out.clear();
  for (size_t k = 0; k < nl.size(); ++k)
    if (!nl[k].empty() || k == 0 || k + 1 == nl.size()) out.push_back(nl[k]);
}

std::vector<std::string_view> py_splitlines(std::string_view s) {
  std::vector<std::string_view> lines;
  py_splitlines_into(s, lines);
  return lines;
}

void split_on_newline_runs_into(std::string_view s, size_t min_run, std::vector<std::string_view>& parts) {
  parts.clear();
  size_t start = 0, i = 0;
  while (i < s.size()) {
    const void* nl = std::memchr(s.data() + i, '\n', s.size() - i);
    if (!nl) break;
    i = static_cast<size_t>(static_cast<const char*>(nl) - s.data());
    size_t run_end = i;
    while (run_end < s.size() && s[run_end] == '\n') ++run_end;
    if (run_end - i >= min_run || min_run == 0) {
      // min_run 0 means "every '\n' separates", like str.split("\n").
      size_t stop = min_run == 0 ? i + 1 : run_end;
      parts.push_back(s.substr(start, i - start));
      start = stop;
      i = stop;
    } else {
      i = run_end;
    }
  }
  parts.push_back(s.substr(start));
}

std::vector<std::string_view> split_on_newline_runs(std::string_view s, size_t min_run) {
  std::vector<std::string_view> parts;
  split_on_newline_runs_into(s, min_run, parts);
  return parts;
}

// ---- character classes ------------------------------------------------------------------

namespace {

bool is_terminal_punctuation_any(char32_t c) {
  return c == '"' || c == U'”' || u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_S_TERM);
}

bool is_datatrove_punctuation_any(char32_t c) {
  // datatrove PUNCTUATION: the literal string below plus chr(0..8), chr(11..12), chr(13..31),
  // chr(127..159). Note '１' (fullwidth one) really is in datatrove's string.
  static constexpr std::u32string_view kPunct =
      U"!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»";
  if (c <= 8 || c == 11 || c == 12 || (c >= 13 && c <= 31) || (c >= 127 && c <= 159)) return true;
  return kPunct.find(c) != std::u32string_view::npos || is_terminal_punctuation_any(c);
}

// Punctuation or symbol (Unicode P* or S*): split off either end of a whitespace chunk.
bool is_edge_punct_any(char32_t c) {
  return (U_MASK(u_charType(static_cast<UChar32>(c))) & (U_GC_P_MASK | U_GC_S_MASK)) != 0;
}

// Split off wherever it stands inside a chunk (NLTK splits these everywhere).
bool is_always_split_any(char32_t c) {
  if (c < 0x80) return c != 0 && std::string_view("?!\"()[]{}<>;@#$%&").find(static_cast<char>(c)) != std::string_view::npos;
  if (c == U'’') return false;  // the apostrophe of "don’t"
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_START_PUNCTUATION: case U_END_PUNCTUATION: case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION: case U_OTHER_PUNCTUATION:
      return true;
    default:
      return false;
  }
}

std::array<uint8_t, 128> make_ascii_classes() {
  std::array<uint8_t, 128> t{};
  for (char32_t c = 0; c < 128; ++c) {
    uint8_t k = 0;
    if (py_isspace_any(c)) k |= ascii::kSpace;
    if (is_datatrove_punctuation_any(c)) k |= ascii::kPunct;
    if (is_terminal_punctuation_any(c)) k |= ascii::kTerminal;
    if (u_isalpha(static_cast<UChar32>(c))) k |= ascii::kAlpha;
    if (is_edge_punct_any(c)) k |= ascii::kEdge;
    if (is_always_split_any(c)) k |= ascii::kSplit;
    if (u_isdigit(static_cast<UChar32>(c))) k |= ascii::kDigit;
    if (c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E)
      k |= ascii::kLineBreak;
    t[c] = k;
  }
  return t;
}

}  // namespace

const std::array<uint8_t, 128> ascii::kClass = make_ascii_classes();

bool is_datatrove_punctuation(char32_t c) {
  return c < 0x80 ? (ascii::kClass[c] & ascii::kPunct) != 0 : is_datatrove_punctuation_any(c);
}

bool is_terminal_punctuation(char32_t c) {
  return c < 0x80 ? (ascii::kClass[c] & ascii::kTerminal) != 0 : is_terminal_punctuation_any(c);
}

bool is_alpha(char32_t c) {
  return c < 0x80 ? (ascii::kClass[c] & ascii::kAlpha) != 0 : u_isalpha(static_cast<UChar32>(c)) != 0;
}

bool is_cjk_language(std::string_view lang) {
  auto base = lang.substr(0, lang.find_first_of("-_"));
  return base == "zh" || base == "ja" || base == "ko";
}

std::string effective_language(std::string_view text, std::string_view lang) {
  if (!lang.empty()) return std::string(lang);
  size_t han = 0, kana = 0, hangul = 0, other_letters = 0;
  std::string_view head = text.substr(0, 65536);
  for (size_t i = 0; i < head.size();) {
    if (unsigned char b = static_cast<unsigned char>(head[i]); b < 0x80) {  // ASCII letters are Latin
      ++i;
      other_letters += (ascii::kClass[b] & ascii::kAlpha) != 0;
      continue;
    }
    char32_t c = next_code_point(head, i);
    if (!u_isalpha(static_cast<UChar32>(c))) continue;
    UErrorCode status = U_ZERO_ERROR;
    UScriptCode script = uscript_getScript(static_cast<UChar32>(c), &status);
    if (script == USCRIPT_HAN) ++han;
    else if (script == USCRIPT_HIRAGANA || script == USCRIPT_KATAKANA) ++kana;
    else if (script == USCRIPT_HANGUL) ++hangul;
    else ++other_letters;
  }
  size_t cjk = han + kana + hangul;
  if (cjk <= other_letters) return "";
  if (hangul * 2 > cjk) return "ko";
  // Japanese prose is roughly 40% kana; Chinese has none. 10% keeps kanji-heavy headlines "ja".
  return kana * 10 > cjk ? "ja" : "zh";
}

// ---- ICU segmentation -------------------------------------------------------------------

namespace {

// One BreakIterator per thread: creating one loads rule and dictionary data (~100 µs), far
// more than segmenting a typical document, and ICU iterators are not safe to share.
icu::BreakIterator* thread_word_iterator() {
  thread_local std::unique_ptr<icu::BreakIterator> it;
  if (!it) {
    UErrorCode status = U_ZERO_ERROR;
    it.reset(icu::BreakIterator::createWordInstance(icu::Locale::getRoot(), status));
    if (U_FAILURE(status)) it.reset();
  }
  return it.get();
}

// ICU's segments of `text`, each trimmed of whitespace. Those left non-empty go to `segments`
// (and are counted in `n_segments`, which is not reset) when it is given (the tokenizer's words: punctuation marks are words of their own, as
// datatrove's jieba/spaCy tokenizers return them); those ICU tags as words (rule status
// letter, number, kana or ideograph, not UBRK_WORD_NONE: spaces, punctuation, symbols) go to
// `words` when it is given.
void split_icu(std::string_view text, std::vector<std::string_view>* segments, std::vector<std::string_view>* words,
               size_t* n_segments = nullptr) {
  icu::BreakIterator* it = thread_word_iterator();
  if (!it) return;
  UErrorCode status = U_ZERO_ERROR;
  // A UTF-8 UText lets ICU work on our bytes in place; its native indexes are byte offsets.
  UText* ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  if (U_FAILURE(status)) return;
  it->setText(ut, status);
  if (U_SUCCESS(status)) {
    int32_t start = it->first();
    for (int32_t end = it->next(); end != icu::BreakIterator::DONE; start = end, end = it->next()) {
      // Trimmed: ICU keeps a combining mark with the space before it (rule WB4), " \u0301".
      std::string_view seg = py_strip(text.substr(static_cast<size_t>(start), static_cast<size_t>(end - start)));
      if (seg.empty()) continue;
      if (segments) segments->push_back(seg);
      if (n_segments) ++*n_segments;
      if (words && it->getRuleStatus() >= UBRK_WORD_NONE_LIMIT) words->push_back(seg);
    }
  }
  // Detach the iterator from the text before the UText goes away.
  it->setText(icu::UnicodeString());
  utext_close(ut);
}

// Python str.split(): the runs of non-whitespace characters. `plain`, when given, gets one
// flag per word: true when the word is ASCII letters and digits only, so that the tokenizer
// (split_latin) would keep it whole.
void split_whitespace(std::string_view text, std::vector<std::string_view>& words, std::vector<uint8_t>* plain) {
  const size_t n = text.size();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  for (;;) {
    // Skip whitespace to the start of a chunk.
    for (;;) {
      if (i >= n) return;
      if (p[i] < 0x80) {
        if (!(ascii::kClass[p[i]] & ascii::kSpace)) break;
        ++i;
      } else {
        size_t j = i;
        if (!py_isspace_any(next_code_point_multibyte(text, j))) break;
        i = j;
      }
    }
    // The chunk runs to the next whitespace.
    size_t start = i;
    bool is_plain = true;
    while (i < n) {
      if (p[i] < 0x80) {
        uint8_t k = ascii::kClass[p[i]];
        if (k & ascii::kSpace) break;
        is_plain = is_plain && (k & (ascii::kAlpha | ascii::kDigit));
        ++i;
      } else {
        size_t j = i;
        if (py_isspace_any(next_code_point_multibyte(text, j))) break;
        is_plain = false;
        i = j;
      }
    }
    words.push_back(text.substr(start, i - start));
    if (plain) plain->push_back(is_plain);
  }
}

// ---- the non-CJK tokenizer (see the comment on split_words in words.hpp) -----------------

bool is_edge_punct(char32_t c) {
  return c < 0x80 ? (ascii::kClass[c] & ascii::kEdge) != 0 : is_edge_punct_any(c);
}

bool is_always_split(char32_t c) {
  return c < 0x80 ? (ascii::kClass[c] & ascii::kSplit) != 0 : is_always_split_any(c);
}

// Byte length of an English clitic ending `w` (n't 's 'm 'd 're 've 'll, with ' or ’), 0 if none
// or if nothing would be left before it.
size_t clitic_length(std::string_view w) {
  // Every clitic ends in one of these letters (matched case-insensitively): most words are
  // rejected here.
  if (w.size() < 3) return 0;
  char last = w.back();
  if (last >= 'A' && last <= 'Z') last = static_cast<char>(last - 'A' + 'a');
  if (last != 't' && last != 's' && last != 'm' && last != 'd' && last != 'e' && last != 'l') return 0;
  // In the order of the clitics, each with ' then ’.
  static constexpr std::string_view kSuffixes[] = {"n't", "n’t", "'s",  "’s",  "'m",  "’m",  "'d",
                                                   "’d",  "'re", "’re", "'ve", "’ve", "'ll", "’ll"};
  for (std::string_view suffix : kSuffixes) {
    if (w.size() <= suffix.size()) continue;
    std::string_view tail = w.substr(w.size() - suffix.size());
    bool same = true;
    for (size_t k = 0; k < suffix.size() && same; ++k) {
      char a = tail[k], b = suffix[k];
      same = a == b || (a >= 'A' && a <= 'Z' && a - 'A' + 'a' == b);
    }
    if (same) return suffix.size();
  }
  return 0;
}

void emit_word(std::string_view w, std::vector<std::string_view>& out) {
  if (w.empty()) return;
  size_t clitic = clitic_length(w);
  if (clitic == 0) {
    out.push_back(w);
    return;
  }
  out.push_back(w.substr(0, w.size() - clitic));
  out.push_back(w.substr(w.size() - clitic));
}

// End of a run of `c` starting at `at` when c is '.' or '-' ("..." and "--" are one word).
size_t run_end(std::string_view s, size_t at, size_t after_first, char32_t c) {
  if (c != '.' && c != '-') return after_first;
  size_t end = at;
  while (end < s.size() && static_cast<char32_t>(s[end]) == c) ++end;
  return end;
}

// The part of a chunk left once its leading and trailing punctuation is split off.
void split_core(std::string_view core, std::vector<std::string_view>& out) {
  size_t piece = 0;
  for (size_t i = 0; i < core.size();) {
    size_t at = i;
    char32_t c = next_code_point(core, i);
    bool split = is_always_split(c);
    size_t end = i;
    if (c == ',' || c == ':') {
      if (i >= core.size()) {
        split = true;
      } else {
        size_t j = i;
        char32_t d = next_code_point(core, j);
        split = d < 0x80 ? !(ascii::kClass[d] & ascii::kDigit) : !u_isdigit(static_cast<UChar32>(d));
      }
    } else if ((c == '.' || c == '-') && i < core.size() && static_cast<char32_t>(core[i]) == c) {
      split = true;
      end = run_end(core, at, i, c);
    }
    if (!split) continue;
    emit_word(core.substr(piece, at - piece), out);
    out.push_back(core.substr(at, end - at));
    piece = i = end;
  }
  emit_word(core.substr(piece), out);
}

// Start of the code point that ends at `end`.
size_t prev_boundary(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  return start;
}

void split_chunk(std::string_view chunk, std::vector<std::string_view>& out) {
  size_t b = 0, e = chunk.size();
  while (b < e) {  // leading punctuation
    size_t j = b;
    char32_t c = next_code_point(chunk.substr(0, e), j);
    if (!is_edge_punct(c)) break;
    j = std::min(run_end(chunk.substr(0, e), b, j, c), e);
    out.push_back(chunk.substr(b, j - b));
    b = j;
  }
  // Trailing punctuation is found right to left and emitted left to right, after the core:
  // its pieces are contiguous, so only their starts need keeping.
  thread_local std::vector<size_t> tail_starts;
  tail_starts.clear();
  const size_t chunk_end = e;
  while (e > b) {
    size_t start = std::max(prev_boundary(chunk, e), b);
    size_t j = start;
    char32_t c = next_code_point(chunk.substr(0, e), j);
    if (!is_edge_punct(c)) break;
    if (c == '.' || c == '-') {
      while (start > b && static_cast<char32_t>(chunk[start - 1]) == c) --start;
      // Keep the final '.' of "U.S." and "e.g.": NLTK splits only sentence-final periods.
      if (c == '.' && e - start == 1 && chunk.substr(b, start - b).find('.') != std::string_view::npos)
        break;
    }
    tail_starts.push_back(start);
    e = start;
  }
  split_core(chunk.substr(b, e - b), out);
  for (size_t k = tail_starts.size(); k-- > 0;) {
    size_t end = k == 0 ? chunk_end : tail_starts[k - 1];
    out.push_back(chunk.substr(tail_starts[k], end - tail_starts[k]));
  }
}

void split_latin(std::string_view text, std::vector<std::string_view>& words) {
  // A chunk of ASCII letters and digits only (most words) is a word as it stands: no
  // punctuation to split off, no apostrophe of a clitic.
  thread_local std::vector<std::string_view> chunks;
  thread_local std::vector<uint8_t> plain;
  chunks.clear();
  plain.clear();
  split_whitespace(text, chunks, &plain);
  for (size_t k = 0; k < chunks.size(); ++k) {
    if (plain[k])
      words.push_back(chunks[k]);
    else
      split_chunk(chunks[k], words);
  }
}

}  // namespace

std::string_view trim_punctuation(std::string_view w) {
  while (!w.empty()) {
    size_t j = 0;
    if (!is_edge_punct(next_code_point(w, j))) break;
    w.remove_prefix(j);
  }
  while (!w.empty()) {
    size_t start = prev_boundary(w, w.size()), j = start;
    if (!is_edge_punct(next_code_point(w, j)) || j != w.size()) break;
    w.remove_suffix(w.size() - start);
  }
  return w;
}

void split_words_into(std::string_view text, std::string_view lang, std::vector<std::string_view>& out) {
  out.clear();
  std::string eff = effective_language(text, lang);
  if (is_cjk_language(eff))
    split_icu(text, &out, nullptr);
  else
    split_latin(text, out);
}

std::vector<std::string_view> split_words(std::string_view text, std::string_view lang) {
  std::vector<std::string_view> words;
  split_words_into(text, lang, words);
  return words;
}

void split_gopher_words_into(std::string_view text, bool cjk, std::vector<std::string_view>& out,
                             size_t* icu_segments) {
  out.clear();
  if (cjk) {
    split_icu(text, nullptr, &out, icu_segments);
    return;
  }
  split_whitespace(text, out, nullptr);
}

namespace {

// The code points of a word with non-ASCII bytes, and whether it holds a letter.
__attribute__((noinline)) uint32_t decode_word(std::string_view w, bool& alpha) {
  for (size_t i = 0; i < w.size() && !alpha;) {
    if (static_cast<unsigned char>(w[i]) < 0x80) {
      ++i;
      continue;
    }
    alpha = is_alpha(next_code_point_multibyte(w, i));
  }
  return static_cast<uint32_t>(count_code_points_fast(w));
}

// A word's code points and whether it holds a letter, given whether some byte is an ASCII
// letter and whether some is not ASCII: only words with non-ASCII bytes are decoded.
inline void count_word(std::string_view w, bool ascii_letter, bool non_ascii, GopherWords& out) {
  bool alpha = ascii_letter;
  uint32_t chars = non_ascii ? decode_word(w, alpha) : static_cast<uint32_t>(w.size());
  out.words.push_back(w);
  out.chars.push_back(chars);
  out.total_chars += chars;
  out.alpha_words += alpha;
}

// The length of a Python whitespace character other than ASCII at p (U+0085, U+00A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000), else 0.
size_t unicode_space_len(const unsigned char* p, size_t left) {
  if (left >= 2 && p[0] == 0xC2) return p[1] == 0x85 || p[1] == 0xA0 ? 2 : 0;
  if (left < 3) return 0;
  if (p[0] == 0xE1) return p[1] == 0x9A && p[2] == 0x80 ? 3 : 0;
  if (p[0] == 0xE2 && p[1] == 0x80) return (p[2] >= 0x80 && p[2] <= 0x8A) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF ? 3 : 0;
  if (p[0] == 0xE2) return p[1] == 0x81 && p[2] == 0x9F ? 3 : 0;
  if (p[0] == 0xE3) return p[1] == 0x80 && p[2] == 0x80 ? 3 : 0;
  return 0;
}

#ifdef __SSE2__
// Bit i of each mask is byte i of the 64 at p: Python whitespace (ASCII only), ASCII letter,
// not ASCII, a byte that may start a non-ASCII space (C2, E1, E2, E3).
struct BlockMasks {
  uint64_t space = 0, letter = 0, high = 0, lead = 0;
};

BlockMasks block_masks(const unsigned char* p) {
  const __m128i sp = _mm_set1_epi8(0x20), c09 = _mm_set1_epi8(0x09), c1c = _mm_set1_epi8(0x1C);
  const __m128i four = _mm_set1_epi8(4), three = _mm_set1_epi8(3), lower = _mm_set1_epi8(0x20);
  const __m128i ca = _mm_set1_epi8('a'), c25 = _mm_set1_epi8(25);
  const __m128i c2 = _mm_set1_epi8(static_cast<char>(0xC2)), e1 = _mm_set1_epi8(static_cast<char>(0xE1));
  const __m128i e2 = _mm_set1_epi8(static_cast<char>(0xE2)), e3 = _mm_set1_epi8(static_cast<char>(0xE3));
  BlockMasks m;
  for (int k = 0; k < 4; ++k) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    auto at_most = [](__m128i x, __m128i limit) { return _mm_cmpeq_epi8(_mm_min_epu8(x, limit), x); };
    __m128i space = _mm_or_si128(_mm_cmpeq_epi8(v, sp),
                                 _mm_or_si128(at_most(_mm_sub_epi8(v, c09), four), at_most(_mm_sub_epi8(v, c1c), three)));
    __m128i letter = at_most(_mm_sub_epi8(_mm_or_si128(v, lower), ca), c25);  // bytes >= 0x80 fall outside
    __m128i lead = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, c2), _mm_cmpeq_epi8(v, e1)),
                                _mm_or_si128(_mm_cmpeq_epi8(v, e2), _mm_cmpeq_epi8(v, e3)));
    const int shift = 16 * k;
    m.space |= uint64_t(uint32_t(_mm_movemask_epi8(space))) << shift;
    m.letter |= uint64_t(uint32_t(_mm_movemask_epi8(letter))) << shift;
    m.high |= uint64_t(uint32_t(_mm_movemask_epi8(v))) << shift;
    m.lead |= uint64_t(uint32_t(_mm_movemask_epi8(lead))) << shift;
  }
  return m;
}
#endif

}  // namespace

void split_whitespace_counted(std::string_view text, GopherWords& out) {
  out.words.clear();
  out.chars.clear();
  out.total_chars = out.alpha_words = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
#ifdef __SSE2__
  // 64 bytes at a time: a mask of the whitespace bytes, whose 0-to-1 and 1-to-0 steps are the
  // words' ends and starts; whether a word has an ASCII letter or a non-ASCII byte is read off
  // the masks of those, so only words with non-ASCII bytes are looked at again.
  size_t start = 0;                  // of the open word
  bool in_word = false, letter = false, high = false;  // the open word's, so far
  uint64_t carried_space = 0;        // bytes of a multi-byte space that spill into the next block
  unsigned char tail[64];
  for (size_t base = 0; base < n; base += 64) {
    const size_t len = std::min<size_t>(64, n - base);
    const unsigned char* b = p + base;
    if (len < 64) {  // the last block, padded with bytes that are none of the classes
      std::memset(tail, 'x', sizeof tail);
      std::memcpy(tail, b, len);
      b = tail;
    }
    BlockMasks m = block_masks(b);
    const uint64_t valid = len == 64 ? ~uint64_t(0) : (uint64_t(1) << len) - 1;
    uint64_t space = (m.space | carried_space) & valid;
    carried_space = 0;
    for (uint64_t lead = m.lead & valid; lead; lead &= lead - 1) {
      size_t i = static_cast<size_t>(__builtin_ctzll(lead));
      size_t k = unicode_space_len(p + base + i, n - base - i);
      for (size_t j = i; j < i + k; ++j) {
        if (j < 64) space |= uint64_t(1) << j;
        else carried_space |= uint64_t(1) << (j - 64);
      }
    }
    // Bit i of `starts`: byte i begins a word (not space, after a space or the text's start);
    // of `ends`: byte i is the space after a word.
    const uint64_t before_space = (space << 1) | (in_word ? 0 : 1);
    const uint64_t starts = ~space & before_space & valid, ends = space & ~before_space & valid;
    uint64_t from = 0;  // the open word's bits in this block begin here (as a mask below them)
    for (uint64_t events = starts | ends; events; events &= events - 1) {
      const size_t i = static_cast<size_t>(__builtin_ctzll(events));
      const uint64_t below = (uint64_t(1) << i) - 1;
      if (starts >> i & 1) {
        start = base + i;
        in_word = true;
        letter = high = false;
        from = below;
      } else {
        const uint64_t range = below & ~from;
        letter = letter || (m.letter & range);
        high = high || (m.high & range);
        count_word(text.substr(start, base + i - start), letter, high, out);
        in_word = false;
      }
    }
    if (in_word) {  // the word goes on into the next block
      const uint64_t range = valid & ~from;
      letter = letter || (m.letter & range);
      high = high || (m.high & range);
    }
  }
  if (in_word) count_word(text.substr(start), letter, high, out);
#else
  thread_local std::vector<std::string_view> words;
  words.clear();
  split_whitespace(text, words, nullptr);
  for (std::string_view w : words) {
    bool letter = false, high = false;
    for (char c : w) {
      unsigned char u = static_cast<unsigned char>(c);
      high = high || u >= 0x80;
      letter = letter || (u < 0x80 && (ascii::kClass[u] & ascii::kAlpha));
    }
    count_word(w, letter, high, out);
  }
#endif
}

void split_gopher_words_counted(std::string_view text, bool cjk, GopherWords& out, size_t* icu_segments) {
  if (!cjk) {
    split_whitespace_counted(text, out);
    return;
  }
  split_gopher_words_into(text, true, out.words, icu_segments);
  out.chars.clear();
  out.total_chars = out.alpha_words = 0;
  for (std::string_view w : out.words) {
    uint32_t chars = static_cast<uint32_t>(count_code_points_fast(w));
    bool alpha = false;
    for (size_t i = 0; i < w.size() && !alpha;) alpha = is_alpha(next_code_point(w, i));
    out.chars.push_back(chars);
    out.total_chars += chars;
    out.alpha_words += alpha;
  }
}

size_t count_split_words(const std::vector<std::string_view>& whitespace_words) {
  // One word for a chunk of ASCII letters and digits (split_latin keeps it whole), else
  // split_chunk's pieces.
  thread_local std::vector<std::string_view> pieces;
  size_t count = 0;
  for (std::string_view w : whitespace_words) {
    bool plain = true;
    for (char c : w) {
      unsigned char b = static_cast<unsigned char>(c);
      if (b >= 0x80 || !(ascii::kClass[b] & (ascii::kAlpha | ascii::kDigit))) {
        plain = false;
        break;
      }
    }
    if (plain) {
      ++count;
      continue;
    }
    pieces.clear();
    split_chunk(w, pieces);
    count += pieces.size();
  }
  return count;
}

std::vector<std::string_view> split_gopher_words(std::string_view text, std::string_view lang) {
  GopherWords gw;  // the rules' own splitter (split_whitespace_counted for non-CJK text)
  split_gopher_words_counted(text, is_cjk_language(effective_language(text, lang)), gw, nullptr);
  return std::move(gw.words);
}

}  // namespace llmkit::text
