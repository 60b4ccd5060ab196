// Main-content extraction and charset conversion (lib/text/html_*.cpp).
#include <catch2/catch.hpp>

#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "llmkit/html.hpp"

using llmkit::text::ExtractConfig;
using llmkit::text::extract_main_text;
using llmkit::text::to_utf8;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string fixture(const std::string& name) {
  std::string s = slurp(std::string(LLMKIT_TEST_DATA) + "/html/" + name);
  REQUIRE(!s.empty());
  return s;
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// Strict UTF-8 check, written independently of the library's.
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
    if (n == 9 || i + n >= s.size()) return false;
    uint32_t cp = n == 0 ? c : c & (0x3F >> n);
    for (size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

std::string text_of(const std::string& html, const ExtractConfig& cfg = {}) {
  return extract_main_text(html, cfg).text;
}

}  // namespace

TEST_CASE("html: article page keeps the body and drops page furniture", "[html]") {
  auto r = extract_main_text(fixture("article.html"));
  const std::string& t = r.text;
  CHECK(r.title == "Tide Mills of the Atlantic Coast | The Coastal Review");
  CHECK(r.lang_attr == "en-GB");
  CHECK(!r.truncated);
  CHECK(contains(t, "Tide Mills of the Atlantic Coast\n\nLong before steam engines"));
  CHECK(contains(t, "at high tide & releases it"));            // &amp;
  CHECK(contains(t, "dated to the year 619 — more than"));      // &mdash;, newlines collapsed
  CHECK(contains(t, "The miller’s day followed the moon"));     // &#8217;
  CHECK(contains(t, "in the café next to the mill pond."));     // &eacute;
  CHECK(contains(t, "How the mills worked"));                   // heading before good text
  CHECK(contains(t, "\n\nAt high water the gates closed under the pressure of the pond.\n\n"));
  // <pre> keeps its line breaks and indentation.
  CHECK(contains(t, "for high_tide in tide_table:\n    start = high_tide + hours(2)\n"));
  for (const char* junk :
       {"Skip to content", "cookies", "Accept all", "Stories from the edge", "About us",
        "Travel", "Home", "Share on", "Posted in", "Great article", "grandfather",
        "You may also like", "windmills", "About the author", "newsletter", "Subscribe",
        "All rights reserved", "Privacy", "gtag", "font-family", "TODO", "hidden paragraph",
        "Nendrum</td>", "First recorded"})
    CHECK_FALSE(contains(t, junk));
  CHECK_FALSE(contains(t, "\n\n\n"));
  CHECK(contains(t, "harness the tides. A tide mill traps sea water"));  // whitespace collapsed
  CHECK(t.front() != '\n');
  CHECK(t.back() != '\n');
}

TEST_CASE("html: <pre> keeps its whitespace exactly, first line's indentation too", "[html]") {
  // A Sphinx-style documentation page: syntax-highlighted <pre> inside <div class="highlight">.
  auto r = extract_main_text(fixture("code.html"));
  const std::string& t = r.text;
  CHECK(contains(t, "the loop ends:\n\ncount = 0\nfor reading in table:\n    if reading.height > limit:\n"
                    "        count += 1\n\nprint(count, \"readings over the limit\")\n\nA method"));
  // The page shows "    x = 0": the block's first line is indented, a tab is a tab.
  CHECK(contains(t, "belongs:\n\n    x = 0\n    while x < self.size:\n\t# a tab, as some editors still write it\n"
                    "        x += self.step\n    return x\n\nWhen a reading"));
  CHECK(contains(t, "station     height   time\nKingsbridge   4.25   06:12\nSalcombe     12.50   06:31"));
  // Outside <pre> whitespace still collapses.
  CHECK(contains(t, "keep a few running totals as they go."));
  for (const char* junk : {"Navigation", "Previous topic", "Show Source", "Copyright", "¶"})
    CHECK_FALSE(contains(t, junk));
}

TEST_CASE("html: Unicode blanks outside <pre> collapse like spaces", "[html]") {
  std::string page = "<html><body><main><p>One\u3000two\u00a0\u00a0three\u2003 four\u205f</p>"
                     "<pre>\u3000kept\u00a0 as is</pre></main></body></html>";
  ExtractConfig cfg;
  cfg.min_block_chars = 0;
  cfg.short_block_chars = 0;
  auto r = extract_main_text(page, cfg);
  CHECK(r.text == "One two three four\n\n\u3000kept\u00a0 as is");
}

TEST_CASE("html: options drop or keep headings, lists, tables, code", "[html]") {
  std::string page = fixture("article.html");
  ExtractConfig cfg;
  cfg.keep_tables = true;
  std::string t = text_of(page, cfg);
  CHECK(contains(t, "Mill | Country | First recorded"));
  CHECK(contains(t, "Eling | England | 1086"));
  cfg = {};
  cfg.keep_lists = false;
  t = text_of(page, cfg);
  CHECK_FALSE(contains(t, "At high water the gates closed"));
  CHECK(contains(t, "Long before steam engines"));
  cfg = {};
  cfg.keep_headings = false;
  t = text_of(page, cfg);
  CHECK_FALSE(contains(t, "How the mills worked"));
  CHECK(contains(t, "Every tide mill needs three things"));
  cfg = {};
  cfg.keep_code = false;
  t = text_of(page, cfg);
  CHECK_FALSE(contains(t, "tide_table"));
  CHECK(contains(t, "Today only a handful"));
}

TEST_CASE("html: link density threshold", "[html]") {
  const std::string page =
      "<body><p>This paragraph is ordinary prose of reasonable length, written to be kept.</p>"
      "<p><a href='/a'>Almost all of this paragraph is one long link</a> to elsewhere.</p>"
      "<p>This paragraph is ordinary prose of reasonable length, written to be kept too.</p></body>";
  ExtractConfig cfg;
  CHECK_FALSE(contains(text_of(page, cfg), "Almost all"));
  cfg.max_link_density = 0.9;
  CHECK(contains(text_of(page, cfg), "Almost all of this paragraph is one long link to elsewhere."));
}

TEST_CASE("html: page without main or article falls back to block rules", "[html]") {
  std::string t = text_of(fixture("no-main.html"));
  CHECK(contains(t, "Notes from the apiary, spring\n\nThe colonies came through the winter"));
  CHECK(contains(t, "Total honey: 212 kg."));  // short, but between good paragraphs
  // One <br> is a line break; two end the paragraph.
  CHECK(contains(t, "Swarm control\ntook most of May. I used the Pagden method\n\non four colonies"));
  for (const char* junk : {"Home", "Guestbook", "2019", "2022", "Copyright"})
    CHECK_FALSE(contains(t, junk));
}

TEST_CASE("html: Chinese page, CJK characters weigh more than Latin ones", "[html]") {
  auto r = extract_main_text(fixture("zh.html"));
  CHECK(r.lang_attr == "zh-CN");
  CHECK(r.title == "长城的历史 - 旅游百科");
  CHECK(contains(r.text, "长城的历史\n\n长城是中国古代的军事防御工程"));
  CHECK(contains(r.text, "每年吸引数以千万计的中外游客前来参观。"));
  for (const char* junk : {"首页", "登录", "热门文章", "故宫", "版权所有"})
    CHECK_FALSE(contains(r.text, junk));
}

TEST_CASE("html: windows-1252 page declared by meta http-equiv", "[html][charset]") {
  std::string used;
  std::string u = to_utf8(fixture("cp1252.html"), "", &used);
  CHECK(used == "windows-1252");
  auto r = extract_main_text(u);
  CHECK(r.title == "Crème brûlée – a history");
  CHECK(contains(r.text, "The French call it “crème brûlée”"));
  CHECK(contains(r.text, "costs about €4 in a Paris café"));
  CHECK(contains(r.text, "François Massialot"));
  CHECK_FALSE(contains(r.text, "Accueil"));
}

TEST_CASE("html: GBK page declared as gb2312 decodes with gb18030", "[html][charset]") {
  std::string used;
  auto r = extract_main_text(to_utf8(fixture("gbk.html"), "", &used));
  CHECK(used == "gb18030");
  CHECK(r.title == "黄山旅游指南");
  CHECK(contains(r.text, "黄山位于安徽省南部，以奇松、怪石、云海、温泉四绝闻名于世"));
  CHECK_FALSE(contains(r.text, "地图"));
}

TEST_CASE("html: charset precedence BOM > hint > meta > UTF-8 > windows-1252", "[html][charset]") {
  std::string used;
  const std::string latin = "<meta charset=\"utf-8\"><p>caf\xE9</p>";  // lies about itself
  CHECK(to_utf8(latin, "text/html; charset=ISO-8859-1", &used) == "<meta charset=\"utf-8\"><p>café</p>");
  CHECK(used == "windows-1252");
  CHECK(to_utf8(latin, "latin1", &used) == "<meta charset=\"utf-8\"><p>café</p>");
  // The meta says UTF-8 and wins over the fallback: the bad byte becomes U+FFFD.
  CHECK(to_utf8(latin, "", &used) == "<meta charset=\"utf-8\"><p>caf\xEF\xBF\xBD</p>");
  CHECK(used == "utf-8");
  // A hint without a charset, or one ICU does not know, is ignored.
  CHECK(to_utf8("<p>caf\xE9</p>", "text/html", &used) == "<p>café</p>");
  CHECK(used == "windows-1252");
  CHECK(to_utf8("<p>café</p>", "x-no-such-charset", &used) == "<p>café</p>");
  CHECK(used == "utf-8");
  // A BOM beats a contrary hint, and is removed.
  CHECK(to_utf8("\xEF\xBB\xBF<p>café</p>", "windows-1252", &used) == "<p>café</p>");
  CHECK(to_utf8(std::string("\xFF\xFE<\0p\0>\0", 8), "", &used) == "<p>");
  CHECK(used == "utf-16le");
  // In-document UTF-16 declarations are read as UTF-8 (WHATWG).
  CHECK(to_utf8("<meta charset=utf-16><p>ok</p>", "", &used) == "<meta charset=utf-16><p>ok</p>");
  CHECK(used == "utf-8");
}

TEST_CASE("html: arbitrary bytes give valid UTF-8 everywhere", "[html][charset]") {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::string bytes(size_t(rng() % 400), '\0');
    for (char& c : bytes) c = char(rng() % 4 == 0 ? "<>/p &;"[rng() % 7] : rng());
    std::string hint = round % 3 == 0 ? "" : round % 3 == 1 ? "gbk" : "shift_jis";
    std::string u = to_utf8(bytes, hint);
    REQUIRE(valid_utf8(u));
    auto r = extract_main_text(bytes);  // not converted: gumbo must still yield UTF-8
    REQUIRE(valid_utf8(r.text));
    REQUIRE(valid_utf8(r.title));
  }
  CHECK(extract_main_text("").text.empty());
  CHECK(extract_main_text("<html>").text.empty());
}

TEST_CASE("html: deep nesting is flattened, not recursed or quadratic", "[html]") {
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "<div>";
  deep += "<p>The text at the bottom of a very deep tree of div elements, long enough to keep.</p>";
  for (int i = 0; i < 100000; ++i) deep += "</div>";
  auto r = extract_main_text(deep);
  CHECK(r.flattened);
  CHECK(r.text == "The text at the bottom of a very deep tree of div elements, long enough to keep.");
  std::string shallow = "<div><div><p>Not deep at all, but long enough to be a good paragraph here.</p></div></div>";
  CHECK_FALSE(extract_main_text(shallow).flattened);
}

TEST_CASE("html: oversized input is cut at a character boundary and flagged", "[html]") {
  ExtractConfig cfg;
  cfg.max_input_bytes = 100;
  std::string page = "<p>";
  while (page.size() < 300) page += "é long paragraph text ";
  auto r = extract_main_text(page, cfg);
  CHECK(r.truncated);
  CHECK(valid_utf8(r.text));
  CHECK(r.text.size() < 100);
  CHECK(r.text.size() > 50);
}

TEST_CASE("html: article preferred over long prose outside it", "[html]") {
  const std::string page =
      "<body class='has-sidebar'><div class='promo-box'><p>Outside the article there is a long paragraph "
      "of prose that a purely length-based filter would keep, but it is not the article.</p></div>"
      "<div><p>Another long unrelated paragraph of text that sits in a plain div next to the article "
      "and should not be taken either because an article element exists.</p></div>"
      "<article><p>The article itself has two paragraphs of text, long enough that the container is "
      "used without falling back to the whole body of the page.</p><p>Second paragraph of the article, "
      "also of a decent length so that together they pass the container minimum easily enough here.</p>"
      "<p>Third paragraph, which finishes the article with a few more words about nothing at all.</p>"
      "</article></body>";
  std::string t = text_of(page);
  CHECK(contains(t, "The article itself has two paragraphs"));
  CHECK(contains(t, "Third paragraph"));
  CHECK_FALSE(contains(t, "Outside the article"));
  CHECK_FALSE(contains(t, "Another long unrelated"));
}

TEST_CASE("html: real Python documentation page", "[html]") {
  std::string page = slurp("/usr/share/doc/python3.11/html/library/json.html");
  if (page.empty()) {
    WARN("python3.11-doc not installed; skipping");
    return;
  }
  auto r = extract_main_text(to_utf8(page, ""));
  CHECK(contains(r.text, "JSON (JavaScript Object Notation), specified by RFC 7159"));
  CHECK(contains(r.text, "json.dumps(obj"));
  for (const char* junk : {"Navigation", "Previous topic", "Next topic", "Table of Contents",
                           "Report a Bug", "Show Source", "Copyright", "Quick search", "¶"})
    CHECK_FALSE(contains(r.text, junk));
}
