#include <catch2/catch.hpp>
#include <string>

#include "llmkit/jsonl.hpp"

using namespace llmkit;

namespace {
std::string roundtrip(const std::string& line, Document& doc, JsonlOptions opts = {}) {
  JsonlParser p(opts);
  std::string err = p.parse(line, doc);
  REQUIRE(err == "");
  std::string out;
  serialize_document(doc, opts, out);
  return out;
}
}  // namespace

TEST_CASE("unknown fields are kept byte for byte", "[jsonl]") {
  Document doc;
  std::string line = R"({"id": 7 , "text":"caf\u00e9 \"q\"","meta":{"a":[1, 2.50, 1e3]},"n":-0.0,"s":"\ud83d\ude00"})";
  std::string out = roundtrip(line, doc);
  CHECK(doc.text == "caf\xC3\xA9 \"q\"");
  CHECK(doc.id == "7");
  CHECK(out == R"({"id":7,"text":"café \"q\"","meta":{"a":[1, 2.50, 1e3]},"n":-0.0,"s":"\ud83d\ude00"})" "\n");
}

TEST_CASE("updated fields replace in place, new fields are appended", "[jsonl]") {
  Document doc;
  JsonlParser p;
  REQUIRE(p.parse(R"({"text":"a","lang":"xx","id":"d1"})", doc) == "");
  doc.text = "b\n";
  doc.set_string("lang", "en");
  doc.set_number("lang_score", 0.5);
  std::string out;
  serialize_document(doc, {}, out);
  CHECK(out == "{\"text\":\"b\\n\",\"lang\":\"en\",\"id\":\"d1\",\"lang_score\":0.5}\n");
}

TEST_CASE("malformed lines give a reason", "[jsonl]") {
  JsonlParser p;
  Document doc;
  CHECK(p.parse(R"({"text":"a")", doc) == "invalid_json");
  CHECK(p.parse(R"({"text":"a",})", doc) == "invalid_json");
  CHECK(p.parse(R"(["text"])", doc) == "not_object");
  CHECK(p.parse(R"("text")", doc) == "not_object");
  CHECK(p.parse(R"({"body":"a"})", doc) == "missing_text");
  CHECK(p.parse(R"({"text":5})", doc) == "text_not_string");
  CHECK(p.parse(R"({"text":null})", doc) == "text_not_string");
  CHECK(p.parse(std::string("\0\1\2garbage", 10), doc) == "invalid_json");
  CHECK(p.parse("", doc) == "invalid_json");
  std::string deep = R"({"text":"a","x":)" + std::string(100, '[') + std::string(100, ']') + "}";
  CHECK(p.parse(deep, doc) == "too_deep");
  std::string ok = R"({"text":"a","x":)" + std::string(30, '[') + std::string(30, ']') + "}";
  CHECK(p.parse(ok, doc) == "");
}

TEST_CASE("invalid UTF-8 inside a string is repaired and counted", "[jsonl]") {
  JsonlParser p;
  Document doc;
  std::string line = "{\"text\":\"ab\xFF\xFE" "c\",\"id\":\"x\"}";
  REQUIRE(p.parse(line, doc) == "");
  CHECK(doc.invalid_utf8 == 2);
  CHECK(doc.text == "ab\xEF\xBF\xBD\xEF\xBF\xBD" "c");
  std::string out;
  serialize_document(doc, {}, out);
  Document again;
  CHECK(p.parse(out.substr(0, out.size() - 1), again) == "");
}

TEST_CASE("a configurable text field", "[jsonl]") {
  JsonlOptions o;
  o.text_field = "content";
  Document doc;
  std::string out = roundtrip(R"({"content":"x","text":"not this"})", doc, o);
  CHECK(doc.text == "x");
  CHECK(out == "{\"content\":\"x\",\"text\":\"not this\"}\n");
}

TEST_CASE("JSON string escaping", "[jsonl]") {
  std::string out;
  CHECK(append_json_string(out, std::string("a\"\\\n\t\x01\x7f\xE4\xB8\xAD\xC3", 11)) == 1);
  CHECK(out == "\"a\\\"\\\\\\n\\t\\u0001\x7f\xE4\xB8\xAD\xEF\xBF\xBD\"");
}
