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

void py_splitlines_into(std::string_view s, std::vector<std::string_view>& lines) {
  lines.clear();
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
// when it is given (the tokenizer's words: punctuation marks are words of their own, as
// datatrove's jieba/spaCy tokenizers return them); those ICU tags as words (rule status
// letter, number, kana or ideograph, not UBRK_WORD_NONE: spaces, punctuation, symbols) go to
// `words` when it is given.
void split_icu(std::string_view text, std::vector<std::string_view>* segments, std::vector<std::string_view>* words) {
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
                             size_t* tokenizer_words) {
  out.clear();
  if (cjk) {
    thread_local std::vector<std::string_view> segments;
    segments.clear();
    split_icu(text, tokenizer_words ? &segments : nullptr, &out);
    if (tokenizer_words) *tokenizer_words = segments.size();
    return;
  }
  if (!tokenizer_words) {
    split_whitespace(text, out, nullptr);
    return;
  }
  // The tokenizer's words of each whitespace word: one for a plain word, else split_chunk's.
  thread_local std::vector<uint8_t> plain;
  thread_local std::vector<std::string_view> pieces;
  plain.clear();
  split_whitespace(text, out, &plain);
  size_t count = 0;
  for (size_t k = 0; k < out.size(); ++k) {
    if (plain[k]) {
      ++count;
      continue;
    }
    pieces.clear();
    split_chunk(out[k], pieces);
    count += pieces.size();
  }
  *tokenizer_words = count;
}

std::vector<std::string_view> split_gopher_words(std::string_view text, std::string_view lang) {
  std::vector<std::string_view> words;
  split_gopher_words_into(text, is_cjk_language(effective_language(text, lang)), words, nullptr);
  return words;
}

}  // namespace llmkit::text
