// The llm-clean pipeline on single documents: stage order, reasons, fields.
#include <catch2/catch.hpp>

#include "llmkit/clean.hpp"
#include "llmkit/io.hpp"
#include "llmkit/error.hpp"
#include "llmkit/langid.hpp"

using namespace llmkit;

namespace {
const char* kParagraphs =
    "The village library opened its doors in 1952, when a retired schoolteacher donated her "
    "collection of four hundred books to the town council. For the first decade it occupied a "
    "single room above the post office, and volunteers kept it open on two afternoons.\n\n"
    "Over the years the collection grew through gifts and modest purchases. By the late 1970s "
    "the council agreed to move it into the old grain store by the river, which had thick stone "
    "walls that kept the books cool in summer. The move took three weekends.\n\n"
    "Today the library lends more than twelve thousand items a year. It runs a reading group for "
    "older residents and a homework club for children. Write to desk@library.example.org to "
    "join the reading group, which meets on the first Monday of the month.";

SourceDoc text_doc(const std::string& text) {
  SourceDoc sd;
  sd.doc.text = text;
  return sd;
}
}  // namespace

TEST_CASE("clean: a good document is kept with lang fields and redacted PII", "[clean]") {
  CleanConfig cfg;
  Cleaner cleaner(cfg);
  Stats stats;
  SourceDoc sd = text_doc(kParagraphs);
  CHECK(cleaner.clean(sd, stats) == "");
  CHECK(sd.doc.text.find("<EMAIL>") != std::string::npos);
  CHECK(sd.doc.text.find("desk@") == std::string::npos);
  // Paragraph breaks survive repair and the C4 line rules.
  CHECK(sd.doc.text.find("two afternoons.\n\nOver the years") != std::string::npos);
  std::string out;
  serialize_document(sd.doc, cfg.source.jsonl, out);
  CHECK(out.find("\"lang\":\"en\"") != std::string::npos);
  CHECK(stats.get("pii_email") == 1);
}

TEST_CASE("clean: stages can be switched off and reasons name stage and rule", "[clean]") {
  CleanConfig cfg;
  Stats stats;
  {
    Cleaner cleaner(cfg);
    // datatrove's repetition rules come first and count even a single 2-gram: in a two-word
    // text it covers most of the characters.
    SourceDoc sd = text_doc("Too short.");
    CHECK(cleaner.clean(sd, stats) == "gopher_repetition:top_2_gram");
    SourceDoc sd2 = text_doc(
        "The village library opened its doors in 1952, when a retired schoolteacher donated "
        "her collection of four hundred books to the town council. For the first decade it "
        "occupied a single room above the post office.");  // 37 words: under Gopher's 50
    CHECK(cleaner.clean(sd2, stats) == "gopher_quality:short_doc");
  }
  cfg.quality = false;
  cfg.pii = false;
  {
    Cleaner cleaner(cfg);
    SourceDoc sd = text_doc("Too short. Mail a@example.com");
    CHECK(cleaner.clean(sd, stats) == "");
    CHECK(sd.doc.text == "Too short. Mail a@example.com");
  }
  cfg.keep_langs = {"zh"};
  {
    Cleaner cleaner(cfg);
    SourceDoc sd = text_doc(kParagraphs);
    CHECK(cleaner.clean(sd, stats) == "langid:other_language");
  }
  {
    Cleaner cleaner(cfg);
    SourceDoc sd = text_doc(" \n\x01\x02 \n");
    CHECK(cleaner.clean(sd, stats) == "repair:empty");
  }
}

TEST_CASE("clean: HTML is extracted, titled and then filtered", "[clean]") {
  CleanConfig cfg;
  Cleaner cleaner(cfg);
  Stats stats;
  SourceDoc sd;
  sd.html = true;
  sd.doc.text = read_file(std::string(LLMKIT_TEST_DATA) + "/html/article.html");
  CHECK(cleaner.clean(sd, stats) == "");
  CHECK(sd.doc.text.rfind("Tide Mills of the Atlantic Coast\n\n", 0) == 0);
  CHECK(sd.doc.text.find("newsletter") == std::string::npos);
  SourceDoc empty;
  empty.html = true;
  empty.doc.text = "<html><body><nav><a href=x>Home</a></nav><script>x()</script></body></html>";
  CHECK(cleaner.clean(empty, stats) == "extract:empty");
}

TEST_CASE("clean: parameters cover extraction, language id and every quality rule", "[clean]") {
  CleanConfig cfg;
  auto params = clean_params(cfg);
  set_param(params, "gopher_quality.min_doc_words=5");
  set_param(params, "langid.min_score=0.9");
  CHECK(cfg.quality_cfg.min_doc_words == 5);
  CHECK(cfg.min_lang_score == 0.9);
  CHECK_THROWS(set_param(params, "gopher_quality.nope=1"));
  CHECK_THROWS(set_param(params, "langid.min_score=abc"));
  CHECK(params.size() > 40);
}

TEST_CASE("clean: --lang codes are CLD2's, in any case; names and unknown codes are refused", "[clean]") {
  using text::parse_language_list;
  CHECK(parse_language_list("en,zh", "--lang") == std::vector<std::string>{"en", "zh"});
  CHECK(parse_language_list(" EN , zh-hant,HE,un", "--lang") == std::vector<std::string>{"en", "zh-Hant", "iw", "un"});
  CHECK_THROWS_WITH(parse_language_list("english", "--lang"), Catch::Contains("'english' is a language name, not a code: give 'en'"));
  CHECK_THROWS_WITH(parse_language_list("en,xq", "--lang"), Catch::Contains("'xq' is not a language code CLD2 knows"));
  CHECK_THROWS_AS(parse_language_list(",", "--lang"), UsageError);
  // What detect_language writes is accepted back as it is.
  CHECK(parse_language_list(text::detect_language(kParagraphs).code, "--lang") ==
        std::vector<std::string>{text::detect_language(kParagraphs).code});
}
