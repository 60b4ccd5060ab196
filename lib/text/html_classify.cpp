// Block classification for the HTML extractor: container choice, boilerplate masks and the
// jusText context rules (Pomikálek 2011, "Removing Boilerplate and Duplicate Content from Web
// Corpora", ch. 3), minus the stop-word densities so that it works for every language.
// Also the pre-parse depth limiter, which protects gumbo from its quadratic nesting cost.
#include <algorithm>
#include <cstring>

#include "html_internal.hpp"

namespace llmkit::text::detail {
namespace {

constexpr size_t kMaxHeadingDistance = 200;  // jusText's max_heading_distance
constexpr double kWholePageShare = 0.6;      // a marked element holding more is the page itself

enum class Cls : unsigned char { bad, short_, neargood, good, removed };

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }
char lower_ascii(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool encloses(const Range& outer, const Range& inner) {
  return inner.begin < inner.end && outer.begin <= inner.begin && inner.end <= outer.end;
}

// A copyright line is page furniture even when it is long enough to look like prose.
bool is_copyright(const Block& b, const ExtractConfig& cfg) {
  if (b.weight >= 2 * cfg.min_block_chars) return false;
  if (b.text.find("\xC2\xA9") != std::string::npos) return true;
  std::string l;
  for (char c : b.text) l += lower_ascii(c);
  return l.find("copyright") != std::string::npos ||
         l.find("all rights reserved") != std::string::npos;
}

bool link_dense(const Block& b, const ExtractConfig& cfg) {
  return b.weight > 0 && double(b.link_weight) > cfg.max_link_density * double(b.weight);
}

// mask[i] is true for blocks inside a range that `use` accepts (difference array: linear).
template <class Pred>
std::vector<unsigned char> mask_of(size_t n, const std::vector<Range>& ranges, Pred use) {
  std::vector<int> diff(n + 1, 0);
  for (const Range& r : ranges) {
    if (r.begin >= r.end || !use(r)) continue;
    ++diff[r.begin];
    --diff[std::min(r.end, n)];
  }
  std::vector<unsigned char> mask(n, 0);
  int run = 0;
  for (size_t i = 0; i < n; ++i) mask[i] = (run += diff[i]) > 0;
  return mask;
}

// Prefix sums of the text weight of non-boilerplate, non-link-dense blocks, so that the weight
// of any range (what a container has to offer) costs O(1) however many ranges there are.
class Weights {
 public:
  Weights(const std::vector<Block>& blocks, const std::vector<unsigned char>& mask,
          const ExtractConfig& cfg)
      : sum_(blocks.size() + 1, 0) {
    for (size_t i = 0; i < blocks.size(); ++i)
      sum_[i + 1] = sum_[i] + (mask[i] || link_dense(blocks[i], cfg) ? 0 : blocks[i].weight);
  }
  size_t of(const Range& r) const {
    size_t e = std::min(r.end, sum_.size() - 1), b = std::min(r.begin, e);
    return sum_[e] - sum_[b];
  }

 private:
  std::vector<size_t> sum_;
};

const Range* heaviest(const std::vector<Range>& rs, const Weights& w, size_t& weight) {
  const Range* best = nullptr;
  weight = 0;
  for (const Range& r : rs)
    if (w.of(r) > weight) { weight = w.of(r); best = &r; }
  return best;
}

// Answers "does r enclose a non-empty candidate?" in O(log n): candidates sorted by begin, with
// the minimum end over each suffix.
class Enclosure {
 public:
  explicit Enclosure(std::initializer_list<const std::vector<Range>*> sets) {
    for (const auto* s : sets)
      for (const Range& r : *s)
        if (r.begin < r.end) c_.push_back(r);
    std::sort(c_.begin(), c_.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    min_end_.resize(c_.size() + 1, SIZE_MAX);
    for (size_t i = c_.size(); i-- > 0;) min_end_[i] = std::min(min_end_[i + 1], c_[i].end);
  }
  bool any_inside(const Range& r) const {
    auto it = std::lower_bound(c_.begin(), c_.end(), r.begin,
                               [](const Range& a, size_t v) { return a.begin < v; });
    return min_end_[size_t(it - c_.begin())] <= r.end;
  }

 private:
  std::vector<Range> c_;
  std::vector<size_t> min_end_;
};

Cls initial_class(const Block& b, bool masked, const ExtractConfig& cfg) {
  switch (b.kind) {
    case BlockKind::heading: if (!cfg.keep_headings) return Cls::removed; break;
    case BlockKind::list_item: if (!cfg.keep_lists) return Cls::removed; break;
    case BlockKind::pre: if (!cfg.keep_code) return Cls::removed; break;
    case BlockKind::table_row: break;  // only produced with keep_tables
    case BlockKind::table_cell:
      // A lone cell with prose in it belongs to a layout table, not a data table.
      if (b.weight < 2 * cfg.min_block_chars) return Cls::removed;
      break;
    case BlockKind::text: break;
  }
  if (masked || link_dense(b, cfg) || is_copyright(b, cfg)) return Cls::bad;
  if (b.weight < cfg.short_block_chars) return Cls::short_;
  if (b.weight < cfg.min_block_chars) return Cls::neargood;
  return Cls::good;
}

// For each block, the class of the nearest block before (prev) and after (next) it that is not
// short or removed (and, with skip_neargood, not near-good); the page edges count as bad.
struct Neighbours {
  std::vector<Cls> prev, next;
  Neighbours(const std::vector<Cls>& c, bool skip_neargood) : prev(c.size()), next(c.size()) {
    auto counts = [&](Cls k) {
      return k != Cls::short_ && k != Cls::removed && !(skip_neargood && k == Cls::neargood);
    };
    Cls last = Cls::bad;
    for (size_t i = 0; i < c.size(); ++i) { prev[i] = last; if (counts(c[i])) last = c[i]; }
    last = Cls::bad;
    for (size_t i = c.size(); i-- > 0;) { next[i] = last; if (counts(c[i])) last = c[i]; }
  }
};

// A heading followed by a good block within kMaxHeadingDistance introduces it. The step bound
// keeps a page of thousands of headings linear.
bool good_follows(const std::vector<Cls>& c, const std::vector<const Block*>& b, size_t i) {
  size_t distance = 0;
  for (size_t j = i + 1; j < c.size() && j < i + 64 && distance <= kMaxHeadingDistance; ++j) {
    if (c[j] == Cls::good) return true;
    if (c[j] != Cls::removed) distance += b[j]->weight;
  }
  return false;
}

// jusText's context-sensitive pass over the initial classes. Unlike jusText, near-good blocks
// are revised from the classes before that loop, so the result does not depend on its order.
void revise(std::vector<Cls>& c, const std::vector<const Block*>& b) {
  const size_t n = c.size();
  for (size_t i = 0; i < n; ++i)
    if (b[i]->kind == BlockKind::heading && c[i] == Cls::short_ && good_follows(c, b, i))
      c[i] = Cls::neargood;
  Neighbours far(c, true), near(c, false);
  std::vector<Cls> next = c;
  for (size_t i = 0; i < n; ++i) {
    if (c[i] != Cls::short_) continue;
    Cls p = far.prev[i], q = far.next[i];
    if (p == Cls::good && q == Cls::good) next[i] = Cls::good;
    else if (p == Cls::bad && q == Cls::bad) next[i] = Cls::bad;
    else if ((p == Cls::bad && near.prev[i] == Cls::neargood) ||
             (q == Cls::bad && near.next[i] == Cls::neargood)) next[i] = Cls::good;
    else next[i] = Cls::bad;
  }
  c = std::move(next);
  Neighbours after(c, true);
  for (size_t i = 0; i < n; ++i)
    if (c[i] == Cls::neargood)
      c[i] = after.prev[i] == Cls::bad && after.next[i] == Cls::bad ? Cls::bad : Cls::good;
}

// Classifies blocks [r.begin, r.end) and joins the kept ones; `kept` gets their weight.
std::string classify(const std::vector<Block>& blocks, Range r,
                     const std::vector<unsigned char>& mask, const ExtractConfig& cfg,
                     size_t& kept) {
  std::vector<const Block*> b;
  std::vector<Cls> c;
  for (size_t i = r.begin; i < r.end && i < blocks.size(); ++i) {
    b.push_back(&blocks[i]);
    c.push_back(initial_class(blocks[i], mask[i], cfg));
  }
  std::vector<Cls> initial = c;
  revise(c, b);
  for (size_t i = 0; i < c.size(); ++i)
    if (b[i]->kind == BlockKind::heading && c[i] == Cls::bad && initial[i] != Cls::bad &&
        good_follows(c, b, i))
      c[i] = Cls::good;
  std::string out;
  kept = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c[i] != Cls::good) continue;
    if (!out.empty()) out += "\n\n";
    out += b[i]->text;
    kept += b[i]->weight;
  }
  return out;
}

}  // namespace

std::string select_text(const std::vector<Block>& blocks, const std::vector<Range>& articles,
                        const std::vector<Range>& mains, const std::vector<Range>& boiler,
                        const ExtractConfig& cfg) {
  const size_t n = blocks.size();
  const Range all{0, n};
  // Container weights count out boilerplate, except marked elements around a candidate
  // (<body class="has-sidebar">), which are most likely page wrappers.
  const Enclosure candidates{&articles, &mains};
  const Weights pre(blocks, mask_of(n, boiler, [&](const Range& r) { return !candidates.any_inside(r); }), cfg);
  size_t art_w = 0, main_w = 0;
  const Range* art = heaviest(articles, pre, art_w);
  const Range* mn = heaviest(mains, pre, main_w);
  const Range* container = art && 2 * art_w >= main_w ? art : mn ? mn : art;

  const Weights unmasked(blocks, std::vector<unsigned char>(n, 0), cfg);
  const double total = double(unmasked.of(all));
  auto body_mask = mask_of(n, boiler, [&](const Range& r) {
    return double(unmasked.of(r)) <= kWholePageShare * total;
  });
  size_t body_kept = 0;
  if (!container) return classify(blocks, all, body_mask, cfg, body_kept);

  const Range box = *container;
  auto box_mask = mask_of(n, boiler, [&](const Range& r) { return !encloses(r, box); });
  size_t box_kept = 0;
  std::string text = classify(blocks, box, box_mask, cfg, box_kept);
  if (box_kept >= cfg.min_container_chars) return text;
  std::string body = classify(blocks, all, body_mask, cfg, body_kept);
  return body_kept > 2 * box_kept ? body : text;
}

namespace {

bool name_in(std::string_view name, std::initializer_list<std::string_view> set) {
  for (std::string_view s : set)
    if (name == s) return true;
  return false;
}

// Elements that never stay open on gumbo's stack of open elements: void elements, those whose
// end tag a sibling implies, and raw-text elements (skipped whole by the scanner).
bool never_nests(std::string_view name) {
  return name_in(name, {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                        "meta", "param", "source", "track", "wbr", "keygen", "basefont",
                        "bgsound", "frame", "image", "isindex", "p", "li", "dt", "dd",
                        "option", "optgroup", "tr", "td", "th", "tbody", "thead", "tfoot",
                        "colgroup", "caption", "rb", "rt", "rp", "rtc", "html", "head", "body",
                        "a", "script", "style", "textarea", "title", "xmp", "iframe",
                        "noembed", "noframes"});
}

bool is_raw_text(std::string_view name) {
  return name_in(name, {"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                        "noframes"});
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Position just after the '>' closing the tag that starts at `p`, skipping quoted attribute
// values; npos when the input ends first.
size_t tag_end(std::string_view h, size_t p) {
  char quote = 0;
  for (; p < h.size(); ++p) {
    char c = h[p];
    if (quote) { if (c == quote) quote = 0; }
    else if (c == '"' || c == '\'') { if (p > 0 && h[p - 1] == '=') quote = c; }
    else if (c == '>') return p + 1;
  }
  return std::string_view::npos;
}

// Position of the "</name" that ends a raw-text element, case-insensitively; npos if none.
size_t raw_text_end(std::string_view h, size_t p, std::string_view name) {
  while ((p = h.find("</", p)) != std::string_view::npos) {
    size_t i = 0;
    while (i < name.size() && p + 2 + i < h.size() && lower_ascii(h[p + 2 + i]) == name[i]) ++i;
    if (i == name.size()) return p;
    p += 2;
  }
  return p;
}

}  // namespace

// A tag-level scan (no tree building) that tracks how deep gumbo's stack of open elements can
// get. It over-counts on misnested markup, which only makes the limit bite a little early.
bool limit_depth(std::string_view h, size_t max_depth, std::string& out) {
  size_t depth = 0, dropped_open = 0, copied = 0, p = 0;
  bool changed = false;
  while ((p = h.find('<', p)) != std::string_view::npos && p + 1 < h.size()) {
    const size_t start = p;
    if (h.compare(p, 4, "<!--") == 0) {
      size_t e = h.find("-->", p + 4);
      if (e == std::string_view::npos) break;
      p = e + 3;
      continue;
    }
    const bool closing = h[p + 1] == '/';
    size_t q = p + 1 + closing;
    if (q >= h.size() || !is_alpha(h[q])) { p = q; continue; }
    std::string name;
    while (q < h.size() && !is_space(h[q]) && h[q] != '/' && h[q] != '>' && name.size() < 32)
      name += lower_ascii(h[q++]);
    const size_t end = tag_end(h, q);
    if (end == std::string_view::npos) break;
    p = end;
    bool drop = false;
    if (closing) {
      if (dropped_open > 0 && !never_nests(name)) { --dropped_open; drop = true; }
      else if (depth > 0 && !never_nests(name)) --depth;
    } else if (is_raw_text(name)) {
      p = raw_text_end(h, p, name);
      if (p == std::string_view::npos) break;
    } else if (name == "plaintext") {
      break;
    } else if (!never_nests(name) && h[end - 2] != '/') {
      if (depth >= max_depth) { ++dropped_open; drop = true; }
      else ++depth;
    }
    if (drop) {
      if (!changed) out.reserve(h.size());
      changed = true;
      out.append(h.substr(copied, start - copied));
      copied = end;
    }
  }
  if (changed) out.append(h.substr(copied));
  return changed;
}

size_t weighted_length(std::string_view s) {
  size_t w = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const unsigned char* end = p + s.size();
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) { ++w; ++p; continue; }
    if (c < 0xC0) { ++p; continue; }  // stray continuation byte: not a character
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (size_t(end - p) < len) break;
    unsigned cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i < len; ++i) cp = (cp << 6) | (p[i] & 0x3F);
    bool cjk = (cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0x2E80 && cp <= 0x9FFF) ||
               (cp >= 0xAC00 && cp <= 0xD7AF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
               (cp >= 0x20000 && cp <= 0x3FFFF);
    w += cjk ? 3 : 1;
    p += len;
  }
  return w;
}

std::string collapse_whitespace(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (is_space(c)) { space = !out.empty(); continue; }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace llmkit::text::detail
