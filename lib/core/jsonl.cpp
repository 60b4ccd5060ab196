#include "llmkit/jsonl.hpp"

#include <simdjson.h>

#include <cmath>
#include <cstdio>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace llmkit {

namespace {
// The first byte at or after i that is '"' or '\\', or with kEscapable any byte a JSON string
// cannot hold as it is (also a control character, or not ASCII); s.size() if none. 16 at a time.
template <bool kEscapable>
size_t find_special(std::string_view s, size_t i) {
  const size_t n = s.size();
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
  const __m128i space = _mm_set1_epi8(0x20), zero = _mm_setzero_si128();
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
    __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
    int m = _mm_movemask_epi8(hit);
    if (kEscapable) {  // also bytes < 0x20 (v - 0x20 saturates to 0 and v != 0x20) and >= 0x80
      __m128i low = _mm_andnot_si128(_mm_cmpeq_epi8(v, space), _mm_cmpeq_epi8(_mm_subs_epu8(v, space), zero));
      m |= _mm_movemask_epi8(low) | _mm_movemask_epi8(v);
    }
    if (m) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(m)));
  }
#endif
  for (; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\' || (kEscapable && (c < 0x20 || c >= 0x80))) return i;
  }
  return n;
}
}  // namespace

void Document::set_raw(const std::string& key, std::string raw_json) {
  for (auto& [k, v] : updates)
    if (k == key) {
      v = std::move(raw_json);
      return;
    }
  updates.emplace_back(key, std::move(raw_json));
}

void Document::set_string(const std::string& key, std::string_view value) {
  std::string raw;
  append_json_string(raw, value);
  set_raw(key, std::move(raw));
}

void Document::set_number(const std::string& key, double value) {
  char buf[32];
  if (!std::isfinite(value)) value = 0;
  snprintf(buf, sizeof buf, "%.6g", value);
  set_raw(key, buf);
}

namespace {
// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is invalid.
size_t utf8_seq_len(std::string_view s, size_t i) {
  auto u = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = u(i);
  size_t n = s.size() - i;
  auto cont = [&](size_t k) { return k < s.size() && (u(k) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return n >= 2 && cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3 || !cont(i + 1) || !cont(i + 2)) return 0;
    if (c == 0xE0 && u(i + 1) < 0xA0) return 0;   // overlong
    if (c == 0xED && u(i + 1) >= 0xA0) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4 || !cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (c == 0xF0 && u(i + 1) < 0x90) return 0;
    if (c == 0xF4 && u(i + 1) >= 0x90) return 0;
    return 4;
  }
  return 0;
}
}  // namespace

struct JsonlParser::Impl {
  simdjson::dom::parser parser;
};

JsonlParser::JsonlParser(JsonlOptions opts) : impl_(std::make_unique<Impl>()), opts_(std::move(opts)) {
  if (impl_->parser.allocate(1 << 16, opts_.max_depth)) throw std::bad_alloc();
}

JsonlParser::~JsonlParser() = default;

namespace {

// Splits a validated JSON object into its top-level (raw key, raw value) spans. The input is
// known to be valid JSON here (simdjson checked it), so tracking strings and nesting suffices.
void split_fields(std::string_view s, std::vector<std::pair<std::string_view, std::string_view>>& out) {
  out.clear();
  size_t i = s.find('{') + 1;
  auto skip_ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  };
  auto skip_string = [&] {  // at the opening quote; leaves i after the closing quote
    for (i = find_special<false>(s, i + 1); i < s.size() && s[i] != '"'; i = find_special<false>(s, i + 2)) {
    }
    ++i;
  };
  for (;;) {
    skip_ws();
    if (i >= s.size() || s[i] == '}') return;
    size_t key_start = i;
    skip_string();
    std::string_view key = s.substr(key_start, i - key_start);
    skip_ws();
    ++i;  // ':'
    skip_ws();
    size_t value_start = i;
    int depth = 0;
    for (; i < s.size(); ++i) {
      char c = s[i];
      if (c == '"') {
        skip_string();
        --i;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (depth == 0) break;
        --depth;
      } else if (c == ',' && depth == 0) {
        break;
      }
    }
    size_t value_end = i;
    while (value_end > value_start && (s[value_end - 1] == ' ' || s[value_end - 1] == '\t' ||
                                       s[value_end - 1] == '\r' || s[value_end - 1] == '\n'))
      --value_end;
    out.emplace_back(key, s.substr(value_start, value_end - value_start));
    if (i < s.size() && s[i] == ',') ++i;
  }
}

}  // namespace

std::string JsonlParser::parse(std::string_view line, Document& doc) {
  doc.fields.clear();
  doc.updates.clear();
  doc.text.clear();
  doc.id.clear();
  doc.has_id = false;
  doc.invalid_utf8 = 0;
  if (line.data() != doc.raw.data()) doc.raw.assign(line.data(), line.size());
  // Padding for simdjson's vectorised reads.
  doc.raw.reserve(line.size() + simdjson::SIMDJSON_PADDING);
  line = doc.raw;  // the reserve may have moved the bytes that `line` pointed at
  simdjson::dom::element root;
  auto err = impl_->parser.parse(doc.raw.data(), doc.raw.size(), false).get(root);
  if (err == simdjson::UTF8_ERROR) {
    // Invalid UTF-8 inside a string: repair the bytes (U+FFFD each), count, and parse again,
    // rather than lose the document.
    std::string fixed;
    fixed.reserve(line.size() + simdjson::SIMDJSON_PADDING);
    doc.invalid_utf8 = repair_utf8(line, fixed);
    doc.raw = std::move(fixed);
    doc.raw.reserve(doc.raw.size() + simdjson::SIMDJSON_PADDING);
    err = impl_->parser.parse(doc.raw.data(), doc.raw.size(), false).get(root);
  }
  if (err == simdjson::DEPTH_ERROR) return "too_deep";
  if (err) return "invalid_json";
  simdjson::dom::object obj;
  if (root.get_object().get(obj)) return "not_object";
  simdjson::dom::element text;
  if (obj.at_key(opts_.text_field).get(text)) return "missing_text";
  std::string_view sv;
  if (text.get_string().get(sv)) return "text_not_string";
  doc.text.assign(sv.data(), sv.size());
  simdjson::dom::element id;
  if (!obj.at_key("id").get(id)) {
    doc.has_id = true;
    if (id.is_string()) {
      std::string_view idv = id.get_string().value_unsafe();
      doc.id.assign(idv.data(), idv.size());
    } else {
      doc.id = simdjson::minify(id);
    }
  }
  split_fields(doc.raw, doc.fields);
  return "";
}

void serialize_document(const Document& doc, const JsonlOptions& opts, std::string& out) {
  out.push_back('{');
  bool first = true;
  auto key_is = [](std::string_view raw_key, std::string_view name) {
    return raw_key.size() == name.size() + 2 && raw_key.substr(1, name.size()) == name;
  };
  std::vector<bool> used(doc.updates.size(), false);
  if (doc.fields.empty()) {
    // A document made here (from HTML or WARC) rather than parsed: the text comes first.
    append_json_string(out, opts.text_field);
    out.push_back(':');
    append_json_string(out, doc.text);
    first = false;
  }
  for (const auto& [key, value] : doc.fields) {
    if (!first) out.push_back(',');
    first = false;
    out.append(key);
    out.push_back(':');
    bool replaced = false;
    for (size_t u = 0; u < doc.updates.size(); ++u)
      if (key_is(key, doc.updates[u].first)) {
        out.append(doc.updates[u].second);
        used[u] = replaced = true;
        break;
      }
    if (replaced) continue;
    if (key_is(key, opts.text_field))
      append_json_string(out, doc.text);
    else
      out.append(value);
  }
  for (size_t u = 0; u < doc.updates.size(); ++u) {
    if (used[u]) continue;
    if (!first) out.push_back(',');
    first = false;
    append_json_string(out, doc.updates[u].first);
    out.push_back(':');
    out.append(doc.updates[u].second);
  }
  out.append("}\n");
}


bool valid_utf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

namespace {
// Appends the UTF-8 sequence at s[i] (or U+FFFD for an invalid byte) and advances i; returns 1
// when a byte was replaced.
size_t append_utf8_sequence(std::string& out, std::string_view s, size_t& i) {
  size_t n = utf8_seq_len(s, i);
  if (n == 0) {
    out.append("\xEF\xBF\xBD");
    ++i;
    return 1;
  }
  out.append(s.data() + i, n);
  i += n;
  return 0;
}
}  // namespace

size_t repair_utf8(std::string_view s, std::string& out) {
  size_t replaced = 0;
  for (size_t i = 0; i < s.size();) replaced += append_utf8_sequence(out, s, i);
  return replaced;
}

size_t append_json_string(std::string& out, std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  size_t replaced = 0;
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    // Fast path: copy a run of plain ASCII that needs no escaping.
    size_t j = find_special<true>(s, i);
    out.append(s.data() + i, j - i);
    i = j;
    if (i >= s.size()) break;
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      replaced += append_utf8_sequence(out, s, i);
      continue;
    }
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\t': out.append("\\t"); break;
      case '\r': out.append("\\r"); break;
      default:
        out.append("\\u00");
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
    ++i;
  }
  out.push_back('"');
  return replaced;
}

}  // namespace llmkit
