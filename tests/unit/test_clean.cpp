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

namespace {

std::string field(const Document& doc, const std::string& key) {
  for (const auto& [k, v] : doc.updates)
    if (k == key) return v;
  return "";
}

// Documents of several languages and fates: kept, dropped by a rule whatever the language,
// dropped by English's stop-word rule only, CJK.
std::vector<std::string> mixed_documents() {
  const std::string de =
      "Die Bibliothek des Dorfes wurde im Jahr 1952 eröffnet, als eine pensionierte Lehrerin ihre "
      "Sammlung von vierhundert Büchern dem Gemeinderat schenkte. Im ersten Jahrzehnt lag sie in "
      "einem einzigen Raum über der Post, und Freiwillige öffneten sie an zwei Nachmittagen.\n\n"
      "Im Laufe der Jahre wuchs die Sammlung durch Geschenke und bescheidene Käufe. Ende der "
      "siebziger Jahre beschloss der Rat, sie in den alten Getreidespeicher am Fluss zu verlegen, "
      "dessen dicke Mauern die Bücher im Sommer kühl hielten. Der Umzug dauerte drei Wochenenden.";
  const std::string ru =
      "Библиотека деревни открылась в 1952 году, когда учительница на пенсии подарила совету "
      "четыреста книг. Первые десять лет она занимала одну комнату над почтой, и добровольцы "
      "открывали её два раза в неделю.\n\nС годами собрание росло благодаря подаркам и скромным "
      "покупкам. В конце семидесятых совет решил перенести её в старый амбар у реки, толстые "
      "стены которого сохраняли книги прохладными летом. Переезд занял три выходных дня.";
  const std::string zh =
      "北京大学是中国近代第一所国立综合性大学，创办于1898年，初名京师大学堂。它是中国近代最早以“大学”身份和名称建立的学校。\n"
      "学校的校园位于北京西北郊的海淀区，占地面积很大，环境优美。未名湖和博雅塔是校园里最有名的景点，每年都有许多游客前来参观。";
  // English words without stop words, none repeated: English's stop-word rule drops it.
  std::string keywords =
      "Cheap flights. Hotel deals. Booking discounts. Travel insurance. Rental cars. Beach resorts. "
      "Mountain cabins. City breaks. Cruise packages. Airport parking. Luggage storage. Currency "
      "exchange. Museum passes. Concert tickets. Theme parks. Ski holidays. Camping gear. Hiking "
      "boots. Sunscreen lotion. Passport photos. Visa applications. Language courses. Cooking "
      "classes. Wine tasting. Boat tours. Bike rentals. Spa treatments. Golf courses. Fishing "
      "trips. Safari adventures. Desert camps. Island hopping. Train passes. Bus timetables. "
      "Ferry schedules. Guided walks. Food markets. Street festivals. Night clubs. Rooftop bars.";
  std::string repeated;
  for (int i = 0; i < 8; ++i) repeated += "Buy now and save big on every order today.\n";
  std::string code = "def span(self):\n    return self.end - self.start\n\ndef size(self):\n    return {len(self)}\n";
  return {kParagraphs, de, ru, zh, keywords, repeated, code, de + "\n\n" + keywords, "Too short.",
          std::string(kParagraphs) + "\n\n" + zh, keywords + "\n\n" + de};
}

}  // namespace

TEST_CASE("clean: without --lang and --rejected, CLD2 runs only for what its answer changes", "[clean]") {
  CleanConfig lazy_cfg, full_cfg;
  full_cfg.lang_of_dropped = true;
  Cleaner lazy(lazy_cfg), full(full_cfg);
  int dropped_without_lang = 0, stop_words_only = 0;
  for (const std::string& text : mixed_documents()) {
    Stats s1, s2;
    SourceDoc a = text_doc(text), b = text_doc(text);
    const std::string ra = lazy.clean(a, s1), rb = full.clean(b, s2);
    INFO(text.substr(0, 80));
    CHECK(ra == rb);  // the same decisions
    if (ra.empty()) {  // kept: the same text and the same language fields
      CHECK(a.doc.text == b.doc.text);
      CHECK(field(a.doc, "lang") == field(b.doc, "lang"));
      CHECK(field(a.doc, "lang_score") == field(b.doc, "lang_score"));
    } else {
      CHECK(field(b.doc, "lang") != "");  // lang_of_dropped: every document has its language
      dropped_without_lang += field(a.doc, "lang").empty();
      // English's stop-word rule drops only an English text: CLD2 is asked.
      if (ra == "gopher_quality:too_few_stop_words") CHECK(field(a.doc, "lang") == "\"en\"");
    }
    // German words without English stop words: the rule would drop them as English.
    if (text.rfind("Die Bibliothek", 0) == 0 && ra.empty()) ++stop_words_only;
  }
  CHECK(dropped_without_lang >= 3);  // CLD2 was skipped for documents dropped whatever their language
  CHECK(stop_words_only >= 1);
  // --lang needs every document's language first, and so does --rejected, which writes it.
  CleanConfig with_lang = lazy_cfg;
  with_lang.keep_langs = {"en"};
  Cleaner cl(with_lang);
  Stats s;
  std::string repeated;
  for (int i = 0; i < 8; ++i) repeated += "Buy now and save big on every order today.\n";
  SourceDoc sd = text_doc(repeated);
  CHECK(cl.clean(sd, s) == "gopher_repetition:dup_line_frac");
  CHECK(field(sd.doc, "lang") == "\"en\"");
  with_lang.keep_langs.clear();
  with_lang.rejected = "rejected.jsonl";
  Cleaner cr(with_lang);
  SourceDoc sr = text_doc(repeated);
  CHECK(cr.clean(sr, s) == "gopher_repetition:dup_line_frac");
  CHECK(field(sr.doc, "lang") == "\"en\"");
}
