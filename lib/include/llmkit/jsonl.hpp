// JSONL documents: one JSON object per line with a text field ("text" by default) and "id".
// Every other field is kept byte-for-byte as it came; changed or added fields are re-serialised.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmkit {

struct Document {
  std::string text;  // the text field, unescaped
  std::string id;    // "id" as a string (numbers keep their JSON spelling); "" if absent
  bool has_id = false;
  size_t invalid_utf8 = 0;  // bytes of invalid UTF-8 in the line, replaced by U+FFFD
  std::string raw;   // the original line
  // Top-level fields of `raw`: raw key (with quotes) and raw value, in order.
  std::vector<std::pair<std::string_view, std::string_view>> fields;
  // Fields set by the program: key (unquoted) and its raw JSON value. Replace or append.
  std::vector<std::pair<std::string, std::string>> updates;

  void set_raw(const std::string& key, std::string raw_json);
  void set_string(const std::string& key, std::string_view value);
  void set_number(const std::string& key, double value);
};

struct JsonlOptions {
  std::string text_field = "text";
  size_t max_depth = 64;
};

// Parses one line (which may be doc.raw itself: it is then not copied). On success fills `doc` and returns "". On failure returns the reason, one of
// "invalid_json", "not_object", "missing_text", "text_not_string", "too_deep".
class JsonlParser {
 public:
  explicit JsonlParser(JsonlOptions opts = {});
  ~JsonlParser();
  std::string parse(std::string_view line, Document& doc);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  JsonlOptions opts_;
};

// Serialises `doc` as one line (with '\n'): the original fields in order with the text field
// replaced by doc.text (when `write_text`), updated fields in place, new fields appended.
void serialize_document(const Document& doc, const JsonlOptions& opts, std::string& out);

// Appends s as a JSON string literal. Invalid UTF-8 bytes become U+FFFD so the output is always
// valid JSON; returns the number of bytes so replaced.
size_t append_json_string(std::string& out, std::string_view s);

// True if s is valid UTF-8 (vectorised check).
bool valid_utf8(std::string_view s);

// Appends s to out with every invalid UTF-8 byte replaced by U+FFFD; returns how many.
size_t repair_utf8(std::string_view s, std::string& out);

}  // namespace llmkit
