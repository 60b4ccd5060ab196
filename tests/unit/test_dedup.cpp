// llm-dedup's keys (lib/text/dedup.cpp): exact-dedup normalisation and hash, line keys, the
// S-curve table.
#include <catch2/catch.hpp>

#include <string>

#include "llmkit/dedup.hpp"

using namespace llmkit;

namespace {
std::string norm(std::string_view s) {
  std::string out;
  normalize_for_exact(s, out);
  return out;
}
bool same_hash(std::string_view a, std::string_view b, bool normalize = true) {
  Hash128 x = exact_hash(a, normalize), y = exact_hash(b, normalize);
  return x.hi == y.hi && x.lo == y.lo;
}
}  // namespace

TEST_CASE("Exact normalisation folds case and compatibility forms, collapses blanks", "[dedup]") {
  CHECK(norm("  Hello \t\n World  ") == "hello world");
  CHECK(norm("ＡＢＣ　ｄｅｆ") == "abc def");            // fullwidth letters, ideographic space
  CHECK(norm("Stra\xC3\x9F" "e") == "strasse");              // ß case-folds to ss
  CHECK(norm("ﬁne\xC2\xA0line") == "fine line");             // ligature, no-break space
  CHECK(norm("a\xE2\x80\xA8" "b\xC2\x85" "c") == "a b c");   // U+2028, U+0085
  CHECK(norm("中文，测试") == "中文,测试");                 // fullwidth comma is NFKC-equal to ','
  CHECK(norm("") == "");
  CHECK(norm(" \n\t ") == "");
}

TEST_CASE("Exact hashes: equal after normalisation, or raw with normalisation off", "[dedup]") {
  CHECK(same_hash("The  Cat\n", "the cat"));
  CHECK_FALSE(same_hash("The  Cat\n", "the cat", false));
  CHECK(same_hash("the cat", "the cat", false));
  CHECK_FALSE(same_hash("the cat", "the dog"));
  CHECK_FALSE(same_hash("the cat", "thecat"));
}

TEST_CASE("Line keys ignore case, digits and surrounding blanks; blank lines have none", "[dedup]") {
  CHECK(line_key("") == 0);
  CHECK(line_key(" \t\r") == 0);
  CHECK(line_key("Copyright 2019 ACME") == line_key("  copyright 2023 acme\r"));
  CHECK(line_key("Home | About") != line_key("Home | Contact"));
  CHECK(line_key("a b") != line_key("a  b"));  // inner blanks count
  CHECK(line_key("x") != 0);
}

TEST_CASE("The S-curve table matches 1 - (1 - s^r)^b", "[dedup]") {
  std::string t = explain_lsh(14, 8, 0.8);
  CHECK(t.find("14 bands x 8 rows = 112 hash functions") != std::string::npos);
  CHECK(t.find("      0.80        0.9235") != std::string::npos);
  CHECK(t.find("      0.50        0.0533") != std::string::npos);
  CHECK(t.find("(1/14)^(1/8) = 0.719") != std::string::npos);
  std::string t2 = explain_lsh(20, 5, 0.7);
  CHECK(t2.find("(1/20)^(1/5) = 0.549") != std::string::npos);
}
