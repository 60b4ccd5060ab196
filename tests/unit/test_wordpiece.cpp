// WordPiece (llmkit/wordpiece.hpp) on the cases of Google BERT's tokenization_test.py, whose
// results Hugging Face's BertTokenizer gives too, and its training.
#include <catch2/catch.hpp>

#include <string>
#include <unordered_map>
#include <vector>

#include "llmkit/wordpiece.hpp"

using namespace llmkit;

namespace {
std::vector<std::string> words(const std::string& text, bool lower = true) {
  std::vector<std::string> w;
  BertNormalizer n;
  n.lowercase = lower;
  bert_pre_tokenize(text, n, w);
  return w;
}
std::vector<std::string> pieces(const WordPiece& wp, const std::string& text) {
  std::vector<uint32_t> ids;
  wp.encode(text, ids);
  std::vector<std::string> out;
  for (uint32_t i : ids) out.push_back(wp.token(i));
  return out;
}
}  // namespace

TEST_CASE("WordPiece: BERT's basic tokenizer (whitespace, control characters, punctuation, accents, CJK)", "[wordpiece]") {
  using V = std::vector<std::string>;
  CHECK(words(" \tHeLLo!how  \n Are yoU?  ") == V{"hello", "!", "how", "are", "you", "?"});
  CHECK(words("H\u00E9llo") == V{"hello"});
  CHECK(words(" \tHeLLo!how  \n Are yoU?  ", false) == V{"HeLLo", "!", "how", "Are", "yoU", "?"});
  CHECK(words("ah\u535A\u63A8zz") == V{"ah", "\u535A", "\u63A8", "zz"});
  // whitespace: space, tab, CR, LF, no-break space; control characters dropped; symbols split
  CHECK(words("a\u00A0b\rc\u0005d") == V{"a", "b", "cd"});
  CHECK(words("x-y$z`w.v") == V{"x", "-", "y", "$", "z", "`", "w", ".", "v"});
  CHECK(words("\U0001F4A9") == V{"\U0001F4A9"});  // a symbol, not control or punctuation
  CHECK(words(std::string("a\0b", 3)) == V{"ab"});
  CHECK(words("\xff" "ok") == V{"ok"});  // invalid UTF-8 dropped as U+FFFD is
  CHECK(words("\u00C5ngstr\u00F6m \u00D1and\u00FA") == V{"angstrom", "nandu"});
  CHECK(words("").empty());
  // every C category is dropped: private use, unassigned (as BERT's _is_control)
  CHECK(words("a\uE000b\u0378c") == V{"abc"});
  // cased: NFC first, so a decomposed accent spells the same word as the composed one
  CHECK(words("Cafe\u0301 caf\u00E9", false) == V{"Caf\u00E9", "caf\u00E9"});
  // spans: the original bytes of each word
  std::vector<std::string> w;
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  bert_pre_tokenize("H\u00E9llo, w\u535A", BertNormalizer{}, w, &spans);
  REQUIRE(w == V{"hello", ",", "w", "\u535A"});
  CHECK(spans == std::vector<std::pair<uint32_t, uint32_t>>{{0, 6}, {6, 7}, {8, 9}, {9, 12}});
}

TEST_CASE("WordPiece: greedy longest match, ## continuations, [UNK] words, ids and spans", "[wordpiece]") {
  using V = std::vector<std::string>;
  const WordPiece wp({"[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ",", "[MASK]"});
  CHECK(pieces(wp, "").empty());
  CHECK(pieces(wp, "unwanted running") == V{"un", "##want", "##ed", "runn", "##ing"});
  CHECK(pieces(wp, "unwantedX running") == V{"[UNK]", "runn", "##ing"});
  std::vector<uint32_t> ids;
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  wp.encode("UNwant\u00E9d,running", ids, &spans);
  CHECK(ids == std::vector<uint32_t>{7, 4, 5, 10, 8, 9});
  // a normalized word's pieces span the whole word; the others their own bytes
  CHECK(spans == std::vector<std::pair<uint32_t, uint32_t>>{{0, 9}, {0, 9}, {0, 9}, {9, 10}, {10, 14}, {14, 17}});
  CHECK(wp.decode(ids.data(), ids.size()) == "unwanted, running");
  CHECK(pieces(wp, std::string(101, 'a')) == V{"[UNK]"});  // over 100 characters
  // special tokens spelled in the text stand for themselves, not lower-cased or split
  CHECK(pieces(wp, "[CLS] unwanted [MASK]running[SEP]") == V{"[CLS]", "un", "##want", "##ed", "[MASK]", "runn", "##ing", "[SEP]"});
  CHECK(pieces(wp, "[mask]") == V{"[UNK]", "[UNK]", "[UNK]"});  // lower-case: a word between brackets
  wp.encode("a[SEP]", ids, &spans);
  CHECK(spans.back() == std::pair<uint32_t, uint32_t>{1, 6});
  CHECK(wp.id("##ing") == 9);
  CHECK(wp.id("nope") == -1);
  CHECK_THROWS(WordPiece({"a", "b"}));  // no [UNK]
  CHECK(WordPiece::looks_like_vocab("[PAD]\n[UNK]\nthe\n"));
  CHECK(!WordPiece::looks_like_vocab(std::string("\x0a\x05[UNK]\0", 8)));
}

TEST_CASE("WordPiece: training merges the most frequent pairs and covers its corpus", "[wordpiece]") {
  std::unordered_map<std::string, int64_t> counts = {{"hug", 10}, {"pug", 5}, {"pun", 12}, {"bun", 4}, {"hugs", 5}};
  const std::vector<std::string> specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  const std::vector<std::string> v = train_wordpiece(counts, 14, specials, 2);
  REQUIRE(v.size() == 14);
  CHECK(std::vector<std::string>(v.begin(), v.begin() + 5) == specials);
  // the alphabet, byte order: ##g ##n ##s ##u b h p
  CHECK(std::vector<std::string>(v.begin() + 5, v.begin() + 12) == std::vector<std::string>{"##g", "##n", "##s", "##u", "b", "h", "p"});
  // ##u + ##g: 10 + 5 + 5 = 20 times, ##u + ##n: 12 + 4 = 16; then ##ug after h (15) vs p (5) ...
  CHECK(v[12] == "##ug");
  CHECK(v[13] == "##un");
  const WordPiece wp(v);
  for (const auto& [word, n] : counts) {
    std::vector<uint32_t> ids;
    wp.encode(word, ids);
    for (uint32_t id : ids) CHECK(id != static_cast<uint32_t>(wp.unk_id()));
  }
  // the same result every time, and a larger budget extends it
  CHECK(train_wordpiece(counts, 14, specials, 2) == v);
  const std::vector<std::string> more = train_wordpiece(counts, 100, specials, 2);
  CHECK(std::vector<std::string>(more.begin(), more.begin() + 14) == v);
  CHECK(more.size() < 100);  // stops when no pair occurs twice
}
