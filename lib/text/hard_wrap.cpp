// Hard-wrapped text for the line rules: which line breaks a text filler made (see
// quality_rules.hpp).
//
// The line rules of Gopher, C4 and FineWeb were defined on text in which a line is a paragraph
// or a block of a page (what HTML extraction and Common Crawl's WET files give). Plain text
// that was filled to a fixed width (manuals, e-mail, README files, the text dumps of Debian's
// documentation) also breaks lines where the filler ran out of room, in mid-sentence; such a
// break carries no structure, and counting its pieces as lines makes the rules judge the
// wrapping instead of the text: the wrapped lines of a paragraph do not end in punctuation
// (FineWeb's line_punct_ratio), C4 cuts a paragraph's short last line out of it, and a lone
// "。" that a wrap pushed onto its own line repeats down a Chinese page (the duplicate-line
// rules). So the rules see a wrapped paragraph as one line.
#include <unicode/uchar.h>

#include <algorithm>
#include <cstring>

#include "quality_rules.hpp"

namespace llmkit::text {

namespace {

// Fillers wrap at 70 to 80 columns (fmt 75, RFC 5322's 78, e-mail and Debian's text dumps 72,
// Emacs 70, Vim 79); a paragraph whose longest line is outside these bounds was not filled.
constexpr size_t kMinWidth = 50, kMaxWidth = 100;

bool is_wide(char32_t c) {
  int w = u_getIntPropertyValue(static_cast<UChar32>(c), UCHAR_EAST_ASIAN_WIDTH);
  return w == U_EA_WIDE || w == U_EA_FULLWIDTH;
}

// Display columns of `s` (East Asian wide and fullwidth characters take two), stopping once
// past `limit`.
size_t columns(std::string_view s, size_t limit) {
  size_t cols = 0;
  for (size_t i = 0; i < s.size() && cols <= limit;) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      ++cols;
      continue;
    }
    cols += is_wide(next_code_point_multibyte(s, i)) ? 2 : 1;
  }
  return cols;
}

// Columns of what a filler would have had to fit at the end of the line before: the first
// word of `line` (a wide character alone, since CJK text may wrap between any two).
size_t first_unit_columns(std::string_view line) {
  line = py_lstrip(line);
  if (line.empty()) return 0;
  if (static_cast<unsigned char>(line[0]) >= 0x80) {
    size_t j = 0;
    if (is_wide(next_code_point_multibyte(line, j))) return 2;
  }
  size_t end = 0;
  while (end < line.size() && !(static_cast<unsigned char>(line[end]) < 0x80 &&
                                (ascii::kClass[static_cast<unsigned char>(line[end])] & ascii::kSpace)))
    ++end;
  return columns(line.substr(0, end), kMaxWidth);
}

bool is_blank_line(std::string_view line) {
  if (!line.empty()) {  // most lines start with a character that is not a blank
    unsigned char b = static_cast<unsigned char>(line[0]);
    if (b < 0x80 && !(ascii::kClass[b] & ascii::kSpace)) return false;
  }
  return py_strip(line).empty();
}

bool is_ascii(std::string_view s) {
  size_t i = 0;
  uint64_t any = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t v;
    std::memcpy(&v, s.data() + i, 8);
    any |= v;
  }
  for (; i < s.size(); ++i) any |= static_cast<unsigned char>(s[i]);
  return !(any & 0x8080808080808080ull);
}

// Columns of a line without its trailing blanks, or kMaxWidth + 1 if wider than kMaxWidth.
size_t line_columns(std::string_view line) {
  // A line of more than 4 * kMaxWidth bytes is wider than kMaxWidth however it is encoded.
  if (line.size() > 4 * kMaxWidth) return kMaxWidth + 1;
  if (is_ascii(line)) {
    size_t e = line.size();
    while (e > 0 && (ascii::kClass[static_cast<unsigned char>(line[e - 1])] & ascii::kSpace)) --e;
    return std::min(e, kMaxWidth + 1);
  }
  return std::min(columns(py_rstrip(line), kMaxWidth), kMaxWidth + 1);
}

// Appends the line breaks of the paragraph `lines` (two or more) to `soft` if it was filled.
void judge_paragraph(const std::vector<std::string_view>& lines, std::vector<const char*>& soft) {
  thread_local std::vector<size_t> cols;
  cols.clear();
  size_t width = 0;
  for (std::string_view line : lines) {
    size_t c = line_columns(line);
    if (c > kMaxWidth) return;  // no filler's paragraph
    cols.push_back(c);
    width = std::max(width, c);
  }
  if (width < kMinWidth) return;
  // A filler breaks a line only when the next word would not fit: the line, a space and
  // that word are wider than the paragraph's width. The paragraph was filled when that
  // holds at every break; then every break is the filler's. Lines of a list or a menu,
  // which end where their item ends, fail it somewhere.
  for (size_t k = 0; k + 1 < lines.size(); ++k)
    if (cols[k] + 1 + first_unit_columns(lines[k + 1]) <= width) return;
  for (size_t k = 0; k + 1 < lines.size(); ++k) soft.push_back(lines[k].data() + lines[k].size());  // its '\n'
}

}  // namespace

void find_soft_breaks(const TextLines& lines, std::vector<const char*>& soft) {
  soft.clear();
  thread_local std::vector<std::string_view> paragraph;  // non-blank lines between blank ones
  paragraph.clear();
  for (std::string_view line : lines.newline) {
    if (is_blank_line(line)) {
      if (paragraph.size() >= 2) judge_paragraph(paragraph, soft);
      paragraph.clear();
    } else {
      paragraph.push_back(line);
    }
  }
  if (paragraph.size() >= 2) judge_paragraph(paragraph, soft);
}

void merge_soft_breaks(std::vector<std::string_view>& lines, const std::vector<const char*>& soft) {
  if (soft.empty() || lines.empty()) return;
  size_t s = 0, out = 0;
  std::string_view cur = lines[0];
  for (size_t k = 1; k < lines.size(); ++k) {
    const char* sep = cur.data() + cur.size();
    while (s < soft.size() && soft[s] < sep) ++s;
    // Joined when exactly one soft '\n' separates the two.
    if (s < soft.size() && soft[s] == sep && lines[k].data() == sep + 1) {
      cur = std::string_view(cur.data(), static_cast<size_t>(lines[k].data() + lines[k].size() - cur.data()));
      continue;
    }
    lines[out++] = cur;
    cur = lines[k];
  }
  lines[out++] = cur;
  lines.resize(out);
}

void join_soft_breaks(std::string_view text, const std::vector<const char*>& soft, std::string& out) {
  out.clear();
  const char* at = text.data();
  for (const char* nl : soft) {
    if (nl < text.data() || nl >= text.data() + text.size()) continue;
    std::string_view before(at, static_cast<size_t>(nl - at));
    std::string_view after = py_lstrip(text.substr(static_cast<size_t>(nl + 1 - text.data())));
    out += before;
    // Wide (CJK) text runs on without a space; other text gets one for the line break.
    size_t j = 0;
    bool wide_after = !after.empty() && is_wide(next_code_point(after, j));
    bool wide_before = !before.empty() && is_wide(last_code_point(before));
    if (!(wide_before && wide_after)) out += ' ';
    at = after.data();
  }
  out.append(at, static_cast<size_t>(text.data() + text.size() - at));
}

}  // namespace llmkit::text
