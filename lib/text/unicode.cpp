#include "llmkit/unicode.hpp"

#include <array>
#include <cstring>
#include <vector>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>

#include "llmkit/jsonl.hpp"
#include "llmkit/words.hpp"
#include "html_internal.hpp"

namespace llmkit::text {

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

size_t strip_ansi_escapes(std::string& text) {
  if (text.find('\x1b') == std::string::npos) return 0;
  size_t removed = 0, w = 0;
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '\x1b') {
      text[w++] = text[i++];
      continue;
    }
    ++removed;
    ++i;
    if (i >= text.size()) break;
    char kind = text[i++];
    if (kind == '[') {  // CSI: parameters and intermediates, then a final byte 0x40..0x7E
      while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7E)) ++i;
      if (i < text.size()) ++i;
    } else if (kind == ']' || kind == 'P' || kind == '_' || kind == '^') {
      // OSC/DCS/APC/PM: up to BEL or ST (ESC \).
      while (i < text.size() && text[i] != '\a' && !(text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '\\')) ++i;
      if (i < text.size()) i += text[i] == '\a' ? 1 : 2;
    } else if (kind >= 0x20 && kind <= 0x2F) {  // nF: intermediates then a final byte
      while (i < text.size() && text[i] >= 0x20 && text[i] <= 0x2F) ++i;
      if (i < text.size()) ++i;
    }
    // Any other kind is a two-byte sequence, already consumed.
  }
  text.resize(w);
  return removed;
}

namespace {
// Bytes that may start something strip_control_chars() removes or rewrites.
bool control_lead(unsigned char c) {
  return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7F || c == 0xC2 || c == 0xEF;
}

// The first byte at or after `i` for which control_lead() holds, or n; 16 bytes at a time.
size_t next_control_lead(const unsigned char* p, size_t i, size_t n) {
#ifdef __SSE2__
  const __m128i space = _mm_set1_epi8(0x20), nl = _mm_set1_epi8('\n'), tab = _mm_set1_epi8('\t');
  const __m128i del = _mm_set1_epi8(0x7F), c2 = _mm_set1_epi8(static_cast<char>(0xC2));
  const __m128i ef = _mm_set1_epi8(static_cast<char>(0xEF)), zero = _mm_setzero_si128();
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    // bytes < 0x20 (unsigned): max(v, 0x20) != v, i.e. v - 0x20 saturates to 0 and v != 0x20
    __m128i low = _mm_andnot_si128(_mm_cmpeq_epi8(v, space), _mm_cmpeq_epi8(_mm_subs_epu8(v, space), zero));
    low = _mm_andnot_si128(_mm_or_si128(_mm_cmpeq_epi8(v, nl), _mm_cmpeq_epi8(v, tab)), low);
    __m128i hit = _mm_or_si128(low, _mm_or_si128(_mm_cmpeq_epi8(v, del),
                                                 _mm_or_si128(_mm_cmpeq_epi8(v, c2), _mm_cmpeq_epi8(v, ef))));
    if (int m = _mm_movemask_epi8(hit)) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(m)));
  }
#endif
  while (i < n && !control_lead(p[i])) ++i;
  return i;
}
}  // namespace

size_t strip_control_chars(std::string& text) {
  // Most documents have nothing to remove: runs between candidate bytes are found 16 bytes at
  // a time and moved as a whole.
  const size_t n = text.size();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = next_control_lead(p, 0, n);
  size_t removed = 0, w = i;
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (!control_lead(c)) {
      size_t j = next_control_lead(p, i + 1, n);
      if (w != i) std::memmove(text.data() + w, text.data() + i, j - i);
      w += j - i;
      i = j;
      continue;
    }
    if (c == '\r') {  // \r\n -> \n, lone \r -> \n
      text[w++] = '\n';
      i += (i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
      continue;
    }
    if (c < 0x20 || c == 0x7F) {
      ++removed;
      ++i;
      continue;
    }
    // C1 controls U+0080..U+009F are C2 80..C2 9F; BOM/ZWNBSP U+FEFF is EF BB BF.
    if (c == 0xC2 && i + 1 < n && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
      ++removed;
      i += 2;
      continue;
    }
    if (c == 0xEF && i + 2 < n && static_cast<unsigned char>(text[i + 1]) == 0xBB &&
        static_cast<unsigned char>(text[i + 2]) == 0xBF) {
      ++removed;
      i += 3;
      continue;
    }
    text[w++] = text[i++];
  }
  text.resize(w);
  return removed;
}

namespace {
// Characters of the BMP that no normalization to `form` changes or moves, whatever surrounds
// them: quick check Yes (so none composes with the character before it) and combining class
// 0 (so none is reordered). Text made of them alone is in the form (UAX #15's quick check).
// Taken from ICU's own properties once, so it cannot disagree with ICU.
std::vector<bool> make_inert(UProperty quick_check) {
  std::vector<bool> inert(0x10000);
  for (UChar32 c = 0; c < 0x10000; ++c)
    inert[size_t(c)] = u_getIntPropertyValue(c, quick_check) == UNORM_YES && u_getCombiningClass(c) == 0;
  return inert;
}

bool all_inert(std::string_view text, Normalization form) {
  auto table = [](Normalization f) -> const std::vector<bool>& {  // built on first use
    if (f == Normalization::nfc) {
      static const std::vector<bool> nfc = make_inert(UCHAR_NFC_QUICK_CHECK);
      return nfc;
    }
    static const std::vector<bool> nfkc = make_inert(UCHAR_NFKC_QUICK_CHECK);
    return nfkc;
  };
  const std::vector<bool>& inert = table(form);
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    while (i + 8 <= n) {  // ASCII is inert: eight bytes at a time
      uint64_t v;
      std::memcpy(&v, text.data() + i, 8);
      if (v & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    char32_t c = next_code_point_multibyte(text, i);
    if (c >= 0x10000 || !inert[c]) return false;
  }
  return true;
}
}  // namespace

bool normalize_unicode(std::string& text, Normalization form) {
  if (form == Normalization::none) return false;
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = form == Normalization::nfc ? icu::Normalizer2::getNFCInstance(status)
                                                            : icu::Normalizer2::getNFKCInstance(status);
  if (U_FAILURE(status)) return false;
  // Text whose characters are all inert (below) is already in the form: skip ICU entirely
  // (the common case: ASCII, and most Latin, CJK and punctuation).
  if (all_inert(text, form)) return false;
  icu::StringPiece sp(text.data(), static_cast<int32_t>(text.size()));
  if (norm->isNormalizedUTF8(sp, status) && U_SUCCESS(status)) return false;
  status = U_ZERO_ERROR;
  std::string out;
  out.reserve(text.size());
  icu::StringByteSink<std::string> sink(&out);
  norm->normalizeUTF8(0, sp, sink, nullptr, status);
  if (U_FAILURE(status)) return false;
  bool changed = out != text;
  text.swap(out);
  return changed;
}

size_t detail::unicode_blank_len(const unsigned char* p, size_t left) {
  if (left >= 2 && p[0] == 0xC2 && p[1] == 0xA0) return 2;
  if (left < 3) return 0;
  if (p[0] == 0xE1 && p[1] == 0x9A && p[2] == 0x80) return 3;
  if (p[0] == 0xE2 && p[1] == 0x80 && ((p[2] >= 0x80 && p[2] <= 0x8A) || p[2] == 0xAF)) return 3;
  if (p[0] == 0xE2 && p[1] == 0x81 && p[2] == 0x9F) return 3;
  if (p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80) return 3;
  return 0;
}

#ifdef __SSE2__
namespace {
// normalize_whitespace's special bytes among 16: ' ', '\t' .. '\r', and the bytes that may
// start a Unicode blank (C2, E1, E2, E3), as a 16-bit mask.
uint32_t whitespace_special(__m128i v) {
  const __m128i c09 = _mm_set1_epi8(0x09), four = _mm_set1_epi8(4);
  __m128i d = _mm_sub_epi8(v, c09);
  __m128i m = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')), _mm_cmpeq_epi8(_mm_min_epu8(d, four), d));
  m = _mm_or_si128(m, _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(0xC2))),
                                   _mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(0xE1)))));
  m = _mm_or_si128(m, _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(0xE2))),
                                   _mm_cmpeq_epi8(v, _mm_set1_epi8(static_cast<char>(0xE3)))));
  return uint32_t(_mm_movemask_epi8(m));
}
}  // namespace
#endif

void normalize_whitespace(std::string& text) {
  // One pass, in place (the output is never longer): a line's indentation, the spaces and tabs
  // it starts with, is kept as it is (code and nested lists in JSONL text keep their shape);
  // other blanks collapse to one space between words, lines lose their trailing blanks, runs
  // of empty lines become one empty line (the paragraph separator), and the document loses
  // its leading empty lines and trailing whitespace. Plain bytes between blanks are copied as
  // runs.
  static const auto special = [] {
    std::array<bool, 256> t{};
    for (unsigned char c : {' ', '\n', '\t', '\v', '\f', '\r'}) t[c] = true;
    for (unsigned char c : {0xC2, 0xE1, 0xE2, 0xE3}) t[c] = true;  // may start a Unicode blank
    return t;
  }();
  auto* p = reinterpret_cast<unsigned char*>(text.data());
  const size_t n = text.size();
  size_t w = 0;
  bool pending_space = false;
  int pending_newlines = 0;
  // The line under way: no word on it yet (line_start), still in its leading spaces and tabs
  // (in_indent), which are p[indent_at, indent_at + indent_len). When its first word comes,
  // the newlines before it and the indentation are written; since they come from at least as
  // many input bytes, they land at or before indent_at.
  bool line_start = true, in_indent = true;
  size_t indent_at = 0, indent_len = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c == '\n') {
      pending_space = false;
      ++pending_newlines;
      ++i;
      line_start = in_indent = true;
      indent_at = i;
      indent_len = 0;
      continue;
    }
    size_t blank = (c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r')
                       ? 1
                       : (special[c] ? detail::unicode_blank_len(p + i, n - i) : 0);
    if (blank) {
      if (in_indent && (c == ' ' || c == '\t'))
        ++indent_len;
      else
        in_indent = false;  // another blank ends the indentation; the rest of the run goes
      pending_space = true;
      i += blank;
      continue;
    }
    if (line_start) {
      if (w > 0) {
        p[w++] = '\n';
        if (pending_newlines >= 2) p[w++] = '\n';
      }
      if (indent_len > 0) {
        std::memmove(p + w, p + indent_at, indent_len);
        w += indent_len;
      }
    } else if (pending_space) {
      p[w++] = ' ';
    }
    line_start = in_indent = false;
    pending_space = false;
    pending_newlines = 0;
    // Copy the run up to the next byte that may be whitespace; a single space between two
    // plain bytes (the common case) stays inside the run.
    size_t j = i + 1;
    for (;;) {
#ifdef __SSE2__
      // 16 bytes at a time: the run ends at a special byte other than a space before a
      // plain byte.
      for (; j + 17 <= n; j += 16) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j));
        __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j + 1));
        uint32_t space = uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(' '))));
        uint32_t end = whitespace_special(v) & ~(space & ~whitespace_special(next));
        if (end) {
          j += static_cast<size_t>(__builtin_ctz(end));
          break;
        }
      }
#endif
      while (j < n && !special[p[j]]) ++j;
      if (j + 1 < n && p[j] == ' ' && !special[p[j + 1]]) {
        j += 2;
        continue;
      }
      break;
    }
    if (w != i) std::memmove(p + w, p + i, j - i);
    w += j - i;
    i = j;
  }
  text.resize(w);
}

void repair_text(std::string& text, const RepairConfig& cfg, RepairCounts& counts) {
  if (!valid_utf8(text)) {
    std::string fixed;
    fixed.reserve(text.size() + 16);
    counts.invalid_utf8 += static_cast<int64_t>(repair_utf8(text, fixed));
    text.swap(fixed);
  }
  if (cfg.strip_ansi) counts.ansi_escapes += static_cast<int64_t>(strip_ansi_escapes(text));
  if (cfg.strip_control) counts.control_chars += static_cast<int64_t>(strip_control_chars(text));
  if (normalize_unicode(text, cfg.normalization)) ++counts.normalized;
  if (cfg.normalize_whitespace) normalize_whitespace(text);
}

}  // namespace llmkit::text
