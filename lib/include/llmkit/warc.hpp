// A streaming WARC 1.0/1.1 reader (ISO 28500) for llm-clean: Common Crawl WARC, WET and
// Heritrix/wget archives. Records are framed by Content-Length; the HTTP response inside a
// response record is parsed so that the payload is the page body, de-chunked and un-gzipped.
//
// Damage is skipped, never fatal past the first record: a record whose header block cannot be
// parsed, whose Content-Length is missing or too large, whose body is cut short by the end of
// the stream, or whose HTTP body cannot be decoded is counted in skipped() with the reason in
// last_error(), and reading resumes at the next line that starts with "WARC/1.".
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llmkit/io.hpp"

namespace llmkit::text {

struct WarcRecord {
  std::string type;        // WARC-Type: response, resource, conversion (WET), request, ...
  std::string target_uri, record_id, date;
  std::string content_type;             // the WARC Content-Type header
  std::string identified_payload_type;  // WARC-Identified-Payload-Type (Common Crawl's sniff)
  std::string http_content_type;        // Content-Type of the HTTP response, "" if none
  int http_status = 0;                  // 0 if not an HTTP response
  std::string payload;  // response: the HTTP body, de-chunked and decoded; otherwise the block
  uint64_t offset = 0;  // byte offset of the record in the decompressed stream
};

class WarcReader {
 public:
  // `in` yields decompressed bytes (open_input() handles multi-member .gz and .zst); `name` is
  // used in errors. Records with a block or decoded payload over max_record_bytes are skipped.
  WarcReader(InputStream& in, std::string name, size_t max_record_bytes = 64 << 20);
  // Reads the next record; false at the end of the stream. Throws Error("NAME:OFFSET", ...)
  // only when the stream does not start with a WARC record (not a WARC file at all).
  bool next(WarcRecord& rec);
  int64_t skipped() const { return skipped_; }
  // The latest skip as "NAME:OFFSET: reason" (OFFSET: the record's byte offset).
  const std::string& last_error() const { return last_error_; }

 private:
  bool fill();
  bool read_line(std::string& line, size_t max);
  bool read_block(std::string& out, uint64_t n);
  bool skip_bytes(uint64_t n);
  bool find_version_line(std::string& line, uint64_t& line_at);
  void skip(uint64_t offset, const std::string& why);

  InputStream& in_;
  std::string name_;
  size_t max_record_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  uint64_t offset_ = 0;  // stream offset of buf_[pos_]
  bool eof_ = false, started_ = false;
  int64_t skipped_ = 0;
  std::string last_error_;
};

// Records llm-clean turns into documents by HTML extraction: 2xx HTTP responses whose
// Content-Type (or, without one, Common Crawl's identified type) is HTML, and resource records
// of type text/html.
bool is_html_document(const WarcRecord& rec);
// Records whose payload is already text: WET conversion records and text/plain resources.
bool is_text_document(const WarcRecord& rec);

// Decodes a body by Content-Encoding: gzip, x-gzip and deflate (zlib or raw); "identity" and ""
// copy. Returns false on a corrupt stream, an unknown coding, or output over max_bytes.
bool decode_content_encoding(const std::string& coding, const std::string& in, std::string& out,
                             size_t max_bytes);

}  // namespace llmkit::text
