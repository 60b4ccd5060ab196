// Main-content extraction: gumbo parse, one iterative walk that cuts the page into text blocks
// and records the block ranges of candidate containers and boilerplate-marked elements, then a
// jusText-like classification of the blocks of the chosen container. See html.hpp for the rules.
#include "llmkit/html.hpp"

#include <gumbo.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "html_internal.hpp"

namespace llmkit::text {
namespace {

using detail::Block;
using detail::BlockKind;
using detail::Range;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

const char* attr(const GumboElement& e, const char* name) {
  const GumboAttribute* a = gumbo_get_attribute(&e.attributes, name);
  return a ? a->value : nullptr;
}

// Elements whose content is never main text.
bool is_dropped_tag(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_HEAD: case GUMBO_TAG_SCRIPT: case GUMBO_TAG_STYLE: case GUMBO_TAG_NOSCRIPT:
    case GUMBO_TAG_TEMPLATE: case GUMBO_TAG_NAV: case GUMBO_TAG_FOOTER: case GUMBO_TAG_ASIDE:
    case GUMBO_TAG_IFRAME: case GUMBO_TAG_SVG: case GUMBO_TAG_MATH: case GUMBO_TAG_OBJECT:
    case GUMBO_TAG_EMBED: case GUMBO_TAG_CANVAS: case GUMBO_TAG_SELECT: case GUMBO_TAG_BUTTON:
    case GUMBO_TAG_INPUT: case GUMBO_TAG_TEXTAREA: case GUMBO_TAG_OPTION: case GUMBO_TAG_OPTGROUP:
    case GUMBO_TAG_DATALIST: case GUMBO_TAG_LABEL: case GUMBO_TAG_MENU:
    case GUMBO_TAG_AUDIO: case GUMBO_TAG_VIDEO: case GUMBO_TAG_MAP: case GUMBO_TAG_APPLET:
    case GUMBO_TAG_FRAMESET: case GUMBO_TAG_NOFRAMES: case GUMBO_TAG_NOEMBED: case GUMBO_TAG_TITLE:
    case GUMBO_TAG_KEYGEN: case GUMBO_TAG_OUTPUT: case GUMBO_TAG_PROGRESS: case GUMBO_TAG_METER:
      return true;
    default:
      return false;
  }
}

// Elements that end the current block and start a new one.
bool is_block_tag(GumboTag t) {
  switch (t) {
    case GUMBO_TAG_ADDRESS: case GUMBO_TAG_ARTICLE: case GUMBO_TAG_BLOCKQUOTE: case GUMBO_TAG_BODY:
    case GUMBO_TAG_CENTER: case GUMBO_TAG_DD: case GUMBO_TAG_DETAILS: case GUMBO_TAG_DIR:
    case GUMBO_TAG_DIV: case GUMBO_TAG_DL: case GUMBO_TAG_DT: case GUMBO_TAG_FIELDSET:
    case GUMBO_TAG_FIGCAPTION: case GUMBO_TAG_FIGURE: case GUMBO_TAG_FORM: case GUMBO_TAG_H1:
    case GUMBO_TAG_H2: case GUMBO_TAG_H3: case GUMBO_TAG_H4: case GUMBO_TAG_H5: case GUMBO_TAG_H6:
    case GUMBO_TAG_HEADER: case GUMBO_TAG_HGROUP: case GUMBO_TAG_HR: case GUMBO_TAG_HTML:
    case GUMBO_TAG_LEGEND: case GUMBO_TAG_LI: case GUMBO_TAG_MAIN: case GUMBO_TAG_OL:
    case GUMBO_TAG_P: case GUMBO_TAG_PRE: case GUMBO_TAG_SECTION: case GUMBO_TAG_SUMMARY:
    case GUMBO_TAG_TABLE: case GUMBO_TAG_CAPTION: case GUMBO_TAG_TBODY: case GUMBO_TAG_THEAD:
    case GUMBO_TAG_TFOOT: case GUMBO_TAG_TR: case GUMBO_TAG_TD: case GUMBO_TAG_TH:
    case GUMBO_TAG_UL: case GUMBO_TAG_LISTING: case GUMBO_TAG_XMP: case GUMBO_TAG_PLAINTEXT:
    case GUMBO_TAG_FRAME:
      return true;
    default:
      return false;
  }
}

bool is_heading(GumboTag t) { return t >= GUMBO_TAG_H1 && t <= GUMBO_TAG_H6; }
bool is_pre(GumboTag t) {
  return t == GUMBO_TAG_PRE || t == GUMBO_TAG_LISTING || t == GUMBO_TAG_XMP ||
         t == GUMBO_TAG_PLAINTEXT;
}

bool is_hidden(const GumboElement& e) {
  if (attr(e, "hidden")) return true;
  const char* aria = attr(e, "aria-hidden");
  if (aria && lower(aria) == "true") return true;
  const char* style = attr(e, "style");
  if (!style) return false;
  std::string s;
  for (const char* p = style; *p; ++p)
    if (!is_space(*p)) s += char(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
  return s.find("display:none") != std::string::npos ||
         s.find("visibility:hidden") != std::string::npos;
}

bool role_is(const GumboElement& e, std::initializer_list<const char*> roles) {
  const char* r = attr(e, "role");
  if (!r) return false;
  std::string l = lower(r);
  for (const char* want : roles)
    if (l == want) return true;
  return false;
}

// Search boxes are forms we can drop whole; other forms may wrap the page (ASP.NET).
bool is_search_form(const GumboElement& e) {
  if (role_is(e, {"search"})) return true;
  const char* id = attr(e, "id");
  const char* cls = attr(e, "class");
  std::string s = lower(std::string(id ? id : "") + " " + (cls ? cls : ""));
  return s.find("search") != std::string::npos;
}

// id/class words that mark navigation, ads and other page furniture.
bool has_boilerplate_name(const GumboElement& e) {
  static const char* const kSubstrings[] = {
      "sidebar", "footer", "cookie", "consent", "breadcrumb", "newsletter", "popup",
      "advert", "navbar", "navigation", "menu", "masthead", "social", "share", "sharing",
      "related", "comment", "banner", "subscribe", "signup", "pagination", "sr-only",
      "visually-hidden", "screen-reader", "skip-link", "toolbar", "disqus", "gdpr"};
  static const char* const kWords[] = {"nav", "ad", "ads", "widget", "promo", "sponsored",
                                       "modal", "login", "pager", "tags", "meta-nav"};
  const char* id = attr(e, "id");
  const char* cls = attr(e, "class");
  if (!id && !cls) return false;
  std::string s = lower(std::string(id ? id : "") + " " + (cls ? cls : ""));
  for (const char* sub : kSubstrings)
    if (s.find(sub) != std::string::npos) return true;
  // Whole words only: "nav" and "ad" are too short to match inside other names.
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && !std::isalnum(static_cast<unsigned char>(s[i]))) ++i;
    size_t j = i;
    while (j < s.size() && std::isalnum(static_cast<unsigned char>(s[j]))) ++j;
    std::string_view word(s.data() + i, j - i);
    for (const char* w : kWords)
      if (word == w) return true;
    i = j;
  }
  return false;
}

bool is_boilerplate(const GumboElement& e) {
  return role_is(e, {"navigation", "banner", "contentinfo", "complementary", "search", "menu",
                     "menubar", "alertdialog", "dialog"}) ||
         has_boilerplate_name(e);
}

// Sphinx/Markdown permalink anchors ("¶", "#", "§") repeat on every heading.
bool is_permalink(const GumboElement& e) {
  const char* href = attr(e, "href");
  if (!href || href[0] != '#' || e.children.length != 1) return false;
  const GumboNode* c = static_cast<const GumboNode*>(e.children.data[0]);
  if (c->type != GUMBO_NODE_TEXT) return false;
  std::string_view t = c->v.text.text;
  return t == "\xC2\xB6" || t == "#" || t == "\xC2\xA7" || t == "\xF0\x9F\x94\x97";
}

// Collects blocks in document order. The walk is iterative (an explicit stack), so a deeply
// nested tree cannot overflow the C++ stack.
class Walker {
 public:
  Walker(const ExtractConfig& cfg, std::vector<Block>& blocks) : cfg_(cfg), blocks_(blocks) {}

  void walk(const GumboNode* root);

  std::vector<Range> articles, mains, boiler;

 private:
  struct Frame {
    const GumboNode* node;
    bool exiting;
    BlockKind saved_kind;
    uint8_t undo;  // which counters to restore on exit (kUndo* bits)
    int32_t range; // index into articles/mains/boiler, encoded by kUndo bits
  };
  enum : uint8_t { kUndoLink = 1, kUndoPre = 2, kUndoArticle = 4, kUndoMain = 8,
                   kUndoBoiler = 16, kUndoContent = 32, kUndoBlock = 64 };

  void enter(const GumboNode* n, std::vector<Frame>& stack);
  void leave(const Frame& f);
  bool enter_element(const GumboElement& e, Frame& f);
  void text(std::string_view t);
  void line_break();
  void flush();

  const ExtractConfig& cfg_;
  std::vector<Block>& blocks_;
  Block cur_;
  BlockKind kind_ = BlockKind::text;
  int link_ = 0, pre_ = 0, in_content_ = 0;
  bool pending_space_ = false, after_br_ = false, row_has_cell_ = false;
};

void Walker::walk(const GumboNode* root) {
  std::vector<Frame> stack;
  stack.push_back({root, false, kind_, 0, -1});
  while (!stack.empty()) {
    Frame f = stack.back();
    stack.pop_back();
    if (f.exiting) leave(f);
    else enter(f.node, stack);
  }
  flush();
}

void Walker::enter(const GumboNode* n, std::vector<Frame>& stack) {
  switch (n->type) {
    case GUMBO_NODE_TEXT: case GUMBO_NODE_CDATA: case GUMBO_NODE_WHITESPACE:
      text(n->v.text.text);
      return;
    case GUMBO_NODE_COMMENT: case GUMBO_NODE_TEMPLATE:
      return;
    case GUMBO_NODE_DOCUMENT: case GUMBO_NODE_ELEMENT:
      break;
  }
  const GumboVector* children = &n->v.document.children;
  if (n->type == GUMBO_NODE_ELEMENT) {
    Frame f{n, true, kind_, 0, -1};
    if (!enter_element(n->v.element, f)) return;
    stack.push_back(f);
    children = &n->v.element.children;
  }
  for (unsigned i = children->length; i-- > 0;)
    stack.push_back({static_cast<const GumboNode*>(children->data[i]), false, kind_, 0, -1});
}

// Applies an element's effect on entry; returns false to skip its subtree.
bool Walker::enter_element(const GumboElement& e, Frame& f) {
  GumboTag t = e.tag;
  if (t == GUMBO_TAG_BR) { line_break(); return false; }
  if (is_dropped_tag(t) || is_hidden(e)) return false;
  if (t == GUMBO_TAG_FORM && is_search_form(e)) return false;
  if (t == GUMBO_TAG_HEADER && in_content_ == 0) return false;
  if (t == GUMBO_TAG_A && is_permalink(e)) return false;
  if (t == GUMBO_TAG_IMG || t == GUMBO_TAG_WBR) return false;
  if (is_block_tag(t)) {
    f.undo |= kUndoBlock;
    if (t == GUMBO_TAG_TD || t == GUMBO_TAG_TH) {
      if (cfg_.keep_tables && kind_ == BlockKind::table_row) {
        // Cells of a kept table join their row, separated by " | ".
        if (row_has_cell_) text(" | ");
        row_has_cell_ = true;
        f.undo &= uint8_t(~kUndoBlock);
      } else {
        flush();
        kind_ = BlockKind::table_cell;
      }
    } else {
      flush();
      if (is_heading(t)) kind_ = BlockKind::heading;
      else if (is_pre(t)) kind_ = BlockKind::pre;
      else if (t == GUMBO_TAG_LI) kind_ = BlockKind::list_item;
      else if (t == GUMBO_TAG_TR && cfg_.keep_tables) { kind_ = BlockKind::table_row; row_has_cell_ = false; }
      else if (t == GUMBO_TAG_TABLE || t == GUMBO_TAG_TR) kind_ = BlockKind::text;
      // p/div inherit list-ness (a <p> in an <li>) but not cell-ness: a cell holding
      // paragraphs is a layout table, whose paragraphs are prose.
      else if (kind_ == BlockKind::table_cell || kind_ == BlockKind::table_row ||
               kind_ == BlockKind::heading) kind_ = BlockKind::text;
    }
  }
  if (is_pre(t)) { ++pre_; f.undo |= kUndoPre; }
  if (t == GUMBO_TAG_A && attr(e, "href")) { ++link_; f.undo |= kUndoLink; }
  bool article = t == GUMBO_TAG_ARTICLE || (attr(e, "itemprop") && lower(attr(e, "itemprop")) == "articlebody");
  bool main = t == GUMBO_TAG_MAIN || role_is(e, {"main"});
  if (article || main) { ++in_content_; f.undo |= kUndoContent; }
  // Ranges are block index intervals; the block list is in document order, so an element's
  // blocks are contiguous. Only one range per element (boilerplate wins).
  if (t != GUMBO_TAG_BODY && t != GUMBO_TAG_HTML && is_boilerplate(e)) {
    f.undo |= kUndoBoiler;
    f.range = int32_t(boiler.size());
    boiler.push_back({blocks_.size(), 0});
  } else if (article) {
    f.undo |= kUndoArticle;
    f.range = int32_t(articles.size());
    articles.push_back({blocks_.size(), 0});
  } else if (main) {
    f.undo |= kUndoMain;
    f.range = int32_t(mains.size());
    mains.push_back({blocks_.size(), 0});
  }
  return true;
}

void Walker::leave(const Frame& f) {
  if (f.undo & kUndoBlock) { flush(); kind_ = f.saved_kind; }
  if (f.undo & kUndoPre) --pre_;
  if (f.undo & kUndoLink) --link_;
  if (f.undo & kUndoContent) --in_content_;
  if (f.undo & kUndoBoiler) boiler[size_t(f.range)].end = blocks_.size();
  if (f.undo & kUndoArticle) articles[size_t(f.range)].end = blocks_.size();
  if (f.undo & kUndoMain) mains[size_t(f.range)].end = blocks_.size();
}

void Walker::text(std::string_view t) {
  size_t before = cur_.text.size();
  if (pre_ > 0) {
    cur_.text.append(t);
  } else {
    for (size_t i = 0; i < t.size(); ++i) {
      char c = t[i];
      // Unicode blanks (no-break, em, ideographic spaces, ...) collapse like ASCII ones: the
      // extracted text is whitespace-normalized here, outside <pre>, so that repair need not
      // do it and cannot touch <pre>.
      size_t blank = static_cast<unsigned char>(c) >= 0x80
                         ? detail::unicode_blank_len(reinterpret_cast<const unsigned char*>(t.data() + i), t.size() - i)
                         : 0;
      if (is_space(c) || c == '\v' || blank) {
        if (blank) i += blank - 1;
        pending_space_ = !cur_.text.empty() && cur_.text.back() != '\n';
        continue;
      }
      if (pending_space_) cur_.text += ' ';
      pending_space_ = false;
      after_br_ = false;
      cur_.text += c;
    }
  }
  size_t w = detail::weighted_length(std::string_view(cur_.text).substr(before));
  cur_.weight += w;
  if (link_ > 0) cur_.link_weight += w;
}

// One <br> is a line break inside the block; two in a row end the block.
void Walker::line_break() {
  if (pre_ > 0) { cur_.text += '\n'; return; }
  if (after_br_) { flush(); return; }
  pending_space_ = false;
  if (!cur_.text.empty()) { cur_.text += '\n'; after_br_ = true; }
}

void Walker::flush() {
  pending_space_ = false;
  after_br_ = false;
  std::string& s = cur_.text;
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  // <pre> keeps its whitespace exactly: only its leading blank lines and trailing whitespace
  // go, so the first line keeps its indentation ("    x = 0").
  if (kind_ == BlockKind::pre)
    while (b > 0 && s[b - 1] != '\n') --b;
  if (b < e) {
    s = s.substr(b, e - b);
    cur_.kind = kind_;
    blocks_.push_back(std::move(cur_));
  }
  cur_ = Block{};
}

// Finds <title> and <html lang> without a second full walk: both sit near the root.
void read_head(const GumboOutput* out, Extracted& res) {
  if (out->root->type != GUMBO_NODE_ELEMENT) return;
  const GumboElement& html = out->root->v.element;
  if (const char* lang = attr(html, "lang")) res.lang_attr = lang;
  for (unsigned i = 0; i < html.children.length; ++i) {
    const GumboNode* head = static_cast<const GumboNode*>(html.children.data[i]);
    if (head->type != GUMBO_NODE_ELEMENT || head->v.element.tag != GUMBO_TAG_HEAD) continue;
    for (unsigned j = 0; j < head->v.element.children.length; ++j) {
      const GumboNode* t = static_cast<const GumboNode*>(head->v.element.children.data[j]);
      if (t->type != GUMBO_NODE_ELEMENT || t->v.element.tag != GUMBO_TAG_TITLE) continue;
      for (unsigned k = 0; k < t->v.element.children.length; ++k) {
        const GumboNode* c = static_cast<const GumboNode*>(t->v.element.children.data[k]);
        if (c->type == GUMBO_NODE_TEXT || c->type == GUMBO_NODE_WHITESPACE)
          res.title += c->v.text.text;
      }
      res.title = detail::collapse_whitespace(res.title);
      return;
    }
  }
}

}  // namespace

Extracted extract_main_text(std::string_view html, const ExtractConfig& cfg) {
  Extracted res;
  if (html.size() > cfg.max_input_bytes) {
    size_t cut = cfg.max_input_bytes;
    while (cut > 0 && (static_cast<unsigned char>(html[cut]) & 0xC0) == 0x80) --cut;
    html = html.substr(0, cut);
    res.truncated = true;
  }
  std::string flat;
  if (detail::limit_depth(html, cfg.max_depth, flat)) {
    html = flat;
    res.flattened = true;
  }
  GumboOptions opts = kGumboDefaultOptions;
  opts.max_errors = 0;  // gumbo copies the open-element stack into every error: quadratic
  GumboOutput* out = gumbo_parse_with_options(&opts, html.data(), html.size());
  read_head(out, res);
  std::vector<Block> blocks;
  Walker w(cfg, blocks);
  w.walk(out->document);
  gumbo_destroy_output(&opts, out);
  res.text = detail::select_text(blocks, w.articles, w.mains, w.boiler, cfg);
  return res;
}

}  // namespace llmkit::text
