// Main-content extraction from HTML pages (for llm-clean): charset detection and conversion to
// UTF-8, then a gumbo parse and a boilerplate filter in the spirit of jusText and trafilatura.
//
// The pipeline, in order:
//  1. to_utf8(): BOM, then the caller's charset hint (HTTP Content-Type), then <meta charset> in
//     the first 4 KB, else UTF-8 when the bytes are valid UTF-8, else windows-1252.
//  2. Input limits: a page longer than max_input_bytes is cut (Extracted::truncated), and start
//     tags nested deeper than max_depth are dropped before parsing (Extracted::flattened; libxml2
//     stops at 256 too): gumbo's cost grows with depth × tags (100,000 nested <div>s take 30 s;
//     at depth 256 an adversarial 8 MB page takes about 2 s, a real page ~40 ms per MB).
//  3. Dropped outright: script style noscript template nav footer aside iframe svg math object
//     embed canvas select button input textarea option label dialog menu audio video map head,
//     search forms, hidden elements (hidden, aria-hidden=true, style display:none or
//     visibility:hidden), and <header> outside <article>/<main>. Other <form>s are walked,
//     because ASP.NET pages wrap the whole body in one.
//  4. Marked boilerplate (bad blocks for the context rules of 6): elements whose id/class names
//     menu, nav, sidebar, footer, cookie, consent, banner, breadcrumb, share, social,
//     comment(s), related, advert/ads, popup, modal, newsletter, subscribe, widget, pagination...
//     or whose role is navigation, banner, contentinfo, complementary, search, menu. A marked
//     element that encloses the chosen main container is not boilerplate (e.g. a
//     <body class="has-sidebar">), nor, when there is no container, one that holds more than
//     60% of the page's text.
//  5. Main container (trafilatura-like): the largest <article> (or itemprop=articleBody) when
//     it holds at least half the text of the largest <main>/role=main, else that <main>; only
//     blocks inside it are kept. When the container yields under min_container_chars while the
//     whole body yields more than twice as much, the whole body is used instead.
//  6. Blocks (p div li dt dd h1-h6 pre blockquote td tr...; "<br><br>" also splits) are
//     classified as in jusText without stop lists: bad when link text / all text exceeds
//     max_link_density or when a short block carries a copyright notice; short below
//     short_block_chars; near-good below min_block_chars; good otherwise. A short block is kept
//     when its nearest non-short neighbours on both sides are good; a near-good block when
//     either is; headings when a good block follows within 200 characters. Lengths count
//     code points, a CJK or Hangul character as 3 (a Chinese word is ~1.5 characters, an
//     English one ~6).
// Output: kept blocks joined by "\n\n"; inline whitespace (and U+00A0) collapsed to one space;
// a single <br> is "\n"; <pre> keeps its line breaks; entities decoded; valid UTF-8.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace llmkit::text {

struct ExtractConfig {
  double max_link_density = 0.5;    // blocks with more link text than this are boilerplate
  size_t min_block_chars = 60;      // at least this long (weighted): good on its own
  size_t short_block_chars = 20;    // under this: short, kept only between good blocks
  size_t min_container_chars = 250; // container output under this may fall back to the body
  bool keep_headings = true, keep_lists = true, keep_tables = false, keep_code = true;
  size_t max_input_bytes = 8 << 20; // longer pages are cut here (Extracted::truncated)
  size_t max_depth = 256;           // start tags nested deeper are dropped before parsing
};

struct Extracted {
  std::string text;       // main content, UTF-8, blocks separated by "\n\n"
  std::string title;      // <title>, whitespace collapsed
  std::string lang_attr;  // <html lang="...">, as written
  bool truncated = false; // the page was longer than max_input_bytes and was cut
  bool flattened = false; // start tags deeper than max_depth were dropped
};

// Extracts the main text of a page. `html` should be UTF-8 (see to_utf8); invalid bytes become
// U+FFFD. Never throws on bad markup: every input yields a (possibly empty) result.
Extracted extract_main_text(std::string_view html, const ExtractConfig& cfg = {});

// Converts a page to UTF-8 (see 1. above). `charset_hint` is a charset name or a whole HTTP
// Content-Type value ("text/html; charset=ISO-8859-1"); "" for none. Labels follow WHATWG
// (iso-8859-1 and us-ascii mean windows-1252, gb2312 and gbk mean gb18030). Invalid sequences
// become U+FFFD, so the result is always valid UTF-8. `charset_used` gets the lower-case label.
std::string to_utf8(std::string_view bytes, std::string_view charset_hint,
                    std::string* charset_used = nullptr);

}  // namespace llmkit::text
