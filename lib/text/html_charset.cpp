// Charset detection and conversion of web pages to UTF-8 (see html.hpp for the order of
// precedence). Conversion is ICU's ucnv; detection is the cheap part of the WHATWG
// "encoding sniffing" algorithm: BOM, transport hint, <meta> prescan, then a UTF-8 validity
// check instead of a statistical detector, with windows-1252 as the web's historical default.
#include "llmkit/html.hpp"

#include <unicode/ucnv.h>

#include <algorithm>
#include <cstring>

namespace llmkit::text {
namespace {

constexpr size_t kMetaScanBytes = 4096;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_space(s.front()) || s.front() == '"' || s.front() == '\'')) s.remove_prefix(1);
  while (!s.empty() && (is_space(s.back()) || s.back() == '"' || s.back() == '\'')) s.remove_suffix(1);
  return s;
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char* end = p + s.size();
  while (p < end) {
    // ASCII fast path, eight bytes at a time.
    if (end - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080ULL) == 0) { p += 8; continue; }
    }
    unsigned c = *p;
    if (c < 0x80) { ++p; continue; }
    int n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
    else return false;
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    p += n + 1;
  }
  return true;
}

// Maps a charset label to the name we convert with, following the WHATWG Encoding Standard
// where browsers deliberately read a label as a superset.
std::string normalize_label(std::string_view label) {
  std::string l = lower(trim(label));
  if (l == "utf8" || l == "unicode-1-1-utf-8") return "utf-8";
  if (l == "iso-8859-1" || l == "iso8859-1" || l == "latin1" || l == "l1" || l == "ascii" ||
      l == "us-ascii" || l == "iso_8859-1" || l == "cp1252" || l == "x-cp1252" ||
      l == "iso-ir-100" || l == "cp819" || l == "ansi_x3.4-1968")
    return "windows-1252";
  if (l == "gb2312" || l == "gbk" || l == "x-gbk" || l == "gb_2312-80" || l == "chinese" ||
      l == "csgb2312" || l == "gb_2312" || l == "cp936" || l == "windows-936")
    return "gb18030";
  if (l == "iso-8859-9" || l == "latin5") return "windows-1254";
  if (l == "tis-620" || l == "iso-8859-11") return "windows-874";
  if (l == "euc-kr" || l == "ks_c_5601-1987" || l == "korean") return "windows-949";
  if (l == "shift_jis" || l == "sjis" || l == "x-sjis" || l == "ms_kanji" || l == "csshiftjis")
    return "windows-31j";
  return l;
}

// Charset from a Content-Type value or a bare label; "" when there is none.
std::string label_from_hint(std::string_view hint) {
  std::string l = lower(hint);
  size_t at = l.find("charset");
  if (at == std::string::npos) return l.find('/') == std::string::npos ? std::string(trim(l)) : "";
  at = l.find('=', at);
  if (at == std::string::npos) return "";
  std::string_view rest = std::string_view(l).substr(at + 1);
  rest = rest.substr(0, rest.find(';'));
  return std::string(trim(rest));
}

// Value of attribute `name` in the tag text `tag` (between "<meta" and ">"), lower-cased.
std::string attr_value(std::string_view tag, std::string_view name) {
  size_t pos = 0;
  while ((pos = tag.find(name, pos)) != std::string_view::npos) {
    bool word_start = pos == 0 || is_space(tag[pos - 1]) || tag[pos - 1] == '/' ||
                      tag[pos - 1] == '"' || tag[pos - 1] == '\'';
    size_t p = pos + name.size();
    while (p < tag.size() && is_space(tag[p])) ++p;
    if (!word_start || p >= tag.size() || tag[p] != '=') { pos += name.size(); continue; }
    ++p;
    while (p < tag.size() && is_space(tag[p])) ++p;
    if (p >= tag.size()) return "";
    char q = tag[p];
    if (q == '"' || q == '\'') {
      size_t e = tag.find(q, p + 1);
      return std::string(tag.substr(p + 1, e == std::string_view::npos ? e : e - p - 1));
    }
    size_t e = p;
    while (e < tag.size() && !is_space(tag[e])) ++e;
    return std::string(tag.substr(p, e - p));
  }
  return "";
}

// The <meta> prescan: <meta charset=X> or <meta http-equiv=content-type content="...charset=X">.
std::string label_from_meta(std::string_view bytes) {
  std::string head = lower(bytes.substr(0, kMetaScanBytes));
  size_t pos = 0;
  while ((pos = head.find("<meta", pos)) != std::string::npos) {
    size_t end = head.find('>', pos);
    if (end == std::string::npos) break;
    std::string_view tag = std::string_view(head).substr(pos + 5, end - pos - 5);
    pos = end;
    std::string cs = attr_value(tag, "charset");
    if (!cs.empty()) return std::string(trim(cs));
    if (attr_value(tag, "http-equiv") == "content-type") {
      std::string l = label_from_hint(attr_value(tag, "content"));
      if (!l.empty()) return l;
    }
  }
  return "";
}

// Converts with ICU; false when ICU does not know the charset.
bool convert(std::string_view bytes, const std::string& charset, std::string& out) {
  UErrorCode err = U_ZERO_ERROR;
  UConverter* cnv = ucnv_open(charset.c_str(), &err);
  if (U_FAILURE(err)) return false;
  // Each input byte yields at most 3 UTF-8 bytes (a 1-byte char above U+07FF, or U+FFFD for a
  // bad byte); 4-byte UTF-8 comes only from 4-byte (GB18030) or 2+2 (UTF-16) input.
  out.resize(bytes.size() * 3 + 16);
  int32_t n = ucnv_toAlgorithmic(UCNV_UTF8, cnv, out.data(), int32_t(out.size()), bytes.data(),
                                 int32_t(bytes.size()), &err);
  ucnv_close(cnv);
  if (U_FAILURE(err)) return false;
  out.resize(size_t(n));
  return true;
}

bool try_charset(std::string_view bytes, const std::string& label, std::string& out,
                 std::string* used) {
  if (label.empty()) return false;
  std::string cs = normalize_label(label);
  if (cs == "utf-8" && valid_utf8(bytes)) {
    out.assign(bytes);
  } else if (!convert(bytes, cs, out)) {
    return false;
  }
  if (used) *used = cs;
  return true;
}

}  // namespace

std::string to_utf8(std::string_view bytes, std::string_view charset_hint, std::string* used) {
  std::string out;
  if (bytes.size() > size_t(INT32_MAX / 3 - 16)) bytes = bytes.substr(0, INT32_MAX / 3 - 16);
  // 1. A byte order mark wins over everything, as in browsers.
  if (bytes.size() >= 3 && std::memcmp(bytes.data(), "\xEF\xBB\xBF", 3) == 0) {
    try_charset(bytes.substr(3), "utf-8", out, used);
    return out;
  }
  if (bytes.size() >= 2 && (std::memcmp(bytes.data(), "\xFE\xFF", 2) == 0 ||
                            std::memcmp(bytes.data(), "\xFF\xFE", 2) == 0)) {
    bool be = bytes[0] == '\xFE';
    if (try_charset(bytes.substr(2), be ? "utf-16be" : "utf-16le", out, used)) return out;
  }
  // 2. The transport's word.
  if (try_charset(bytes, label_from_hint(charset_hint), out, used)) return out;
  // 3. <meta>. A page cannot declare itself UTF-16 in ASCII-compatible bytes: WHATWG reads that
  // declaration as UTF-8.
  std::string meta = label_from_meta(bytes);
  if (meta.rfind("utf-16", 0) == 0) meta = "utf-8";
  if (try_charset(bytes, meta, out, used)) return out;
  // 4. UTF-8 if it is valid, else the web's legacy default.
  if (valid_utf8(bytes)) {
    out.assign(bytes);
    if (used) *used = "utf-8";
    return out;
  }
  try_charset(bytes, "windows-1252", out, used);
  return out;
}

}  // namespace llmkit::text
