// llm-eval's scoring rules (lib/model/eval.cpp): acc vs acc_norm, GSM8K extraction and
// normalisation on tricky strings, few-shot prompt assembly, seeded shot choice.
#include <catch2/catch.hpp>

#include <set>

#include "llmkit/error.hpp"
#include "llmkit/eval.hpp"

using namespace llmkit;

TEST_CASE("acc takes the summed log-likelihood, acc_norm the one per character", "[eval]") {
  // A long choice with a lower total but a much higher per-character score.
  auto [acc, norm] = mc_predict({-10.0, -12.0}, {"a", "a much longer choice"});
  CHECK(acc == 0);
  CHECK(norm == 1);
  // They agree when the lengths are equal; ties go to the first choice.
  auto [a2, n2] = mc_predict({-3.0, -1.0, -1.0}, {"xx", "yy", "zz"});
  CHECK(a2 == 1);
  CHECK(n2 == 1);
  CHECK_THROWS_AS(mc_predict({-1.0}, {"a", "b"}), Error);
  // Length in characters, not bytes: "ééé" is 3 long (6 bytes), "abcd" 4.
  auto [a3, n3] = mc_predict({-3.3, -4.0}, {"\xC3\xA9\xC3\xA9\xC3\xA9", "abcd"});
  CHECK(a3 == 0);
  CHECK(n3 == 1);  // -1.1 per character against -1.0
}

TEST_CASE("GSM8K strict and flexible extraction, as lm-evaluation-harness", "[eval]") {
  CHECK(extract_strict("so the total is 18.\n#### 18") == "18");
  CHECK(extract_strict("#### -3,200.50 dollars") == "-3,200.50");
  CHECK(extract_strict("The answer is 18") == "[invalid]");
  CHECK(extract_strict("#### 5 and later #### 7") == "5");  // the first match
  CHECK(extract_flexible("I had 3 apples, then 12, so $1,234.") == "$1,234.");
  CHECK(extract_flexible("first 7 then -2") == "-2");
  CHECK(extract_flexible("no numbers here") == "[invalid]");
  CHECK(extract_flexible("x = 5") == "5");  // single digits come from the second alternative
  CHECK(normalize_answer("$1,234.") == "1234");
  CHECK(normalize_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == "72");
  CHECK(normalize_answer("ABC") == "abc");
  CHECK(normalize_answer(extract_flexible("so $1,234.")) == normalize_answer("#### 1234"));
  CHECK(extract_regex("The answer is (B).", R"(\(([A-D])\))") == "B");
  CHECK(extract_regex("nothing", R"(\(([A-D])\))") == "[invalid]");
  CHECK(extract_regex("value 42", R"([0-9]+)") == "42");  // no group: the whole match
  CHECK_THROWS_AS(extract_regex("x", "("), UsageError);
}

TEST_CASE("Few-shot prompts are assembled exactly as documented", "[eval]") {
  McExample a{"a", "2 + 2 =", "", {"3", "4"}, 1, {}}, b{"b", "3 + 3 =", "", {"6", "9"}, 0, {}};
  McExample q{"q", "1 + 1 =", "Arithmetic.\n\n", {"2", "5"}, 0, {}};
  CHECK(mc_context(q, {}) == "Arithmetic.\n\n1 + 1 =");
  CHECK(mc_context(q, {&a, &b}) == "Arithmetic.\n\n2 + 2 = 4\n\n3 + 3 = 6\n\n1 + 1 =");
  GenExample g1{"", "Question: 1+1?\nAnswer:", "2\n#### 2", "", {}}, g2{"", "Question: 2+2?\nAnswer:", "", "", {}};
  CHECK(gen_context(g2, {&g1}) == "Question: 1+1?\nAnswer: 2\n#### 2\n\nQuestion: 2+2?\nAnswer:");
}

TEST_CASE("Shots are k other examples, the same for a seed", "[eval]") {
  auto s = choose_shots(3, 10, 4, 7);
  CHECK(s.size() == 4);
  CHECK(std::set<size_t>(s.begin(), s.end()).size() == 4);
  for (size_t x : s) CHECK((x != 3 && x < 10));
  CHECK(choose_shots(3, 10, 4, 7) == s);
  CHECK(choose_shots(3, 10, 4, 8) != s);
  CHECK(choose_shots(0, 3, 5, 1).size() == 2);  // at most the others
  CHECK(choose_shots(0, 1, 5, 1).empty());
}
