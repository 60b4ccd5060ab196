// libFuzzer target: a JSONL line that parses must serialise to a line that parses again, with
// the same text. Catches escaping bugs in serialize_document / append_json_string.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "llmkit/jsonl.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static llmkit::JsonlParser parser;
  static const llmkit::JsonlOptions opts;
  std::string_view line(reinterpret_cast<const char*>(data), size);
  if (line.find('\n') != std::string_view::npos) return 0;  // one line per document
  llmkit::Document doc;
  if (!parser.parse(line, doc).empty()) return 0;
  std::string out;
  serialize_document(doc, opts, out);
  if (out.empty() || out.back() != '\n') __builtin_trap();
  out.pop_back();
  llmkit::Document again;
  if (!parser.parse(out, again).empty()) __builtin_trap();
  if (again.text != doc.text || again.id != doc.id) __builtin_trap();
  return 0;
}
