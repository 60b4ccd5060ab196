// Streaming WARC reader: header block, Content-Length framing, resynchronisation on damage,
// and the HTTP layer of response records (status, Content-Type, chunked, gzip/deflate).
#include "llmkit/warc.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "llmkit/error.hpp"

namespace llmkit::text {
namespace {

constexpr size_t kBufferBytes = 1 << 20;
constexpr size_t kMaxHeaderLine = 64 << 10;    // longer header lines mean we are lost
constexpr size_t kMaxHeaderBlock = 1 << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool is_version_line(std::string_view line) { return line.rfind("WARC/1.", 0) == 0; }

// The media type of a Content-Type value: lower-case, without parameters.
std::string mime(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';'))));
}

bool is_html_mime(std::string_view ct) {
  std::string m = mime(ct);
  return m == "text/html" || m == "application/xhtml+xml";
}

// "Name: value" lines (with folded continuation lines) into lower-case name / value pairs.
// Returns false on a line that is neither.
bool parse_headers(std::string_view block, std::vector<std::pair<std::string, std::string>>& out) {
  size_t p = 0;
  while (p < block.size()) {
    size_t e = block.find('\n', p);
    std::string_view line = block.substr(p, e == std::string_view::npos ? e : e - p);
    p = e == std::string_view::npos ? block.size() : e + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().second += ' ';
      out.back().second += trim(line);
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    out.emplace_back(lower(trim(line.substr(0, colon))), std::string(trim(line.substr(colon + 1))));
  }
  return true;
}

const std::string* header(const std::vector<std::pair<std::string, std::string>>& h,
                          std::string_view name) {
  for (const auto& [k, v] : h)
    if (k == name) return &v;
  return nullptr;
}

// Transfer-Encoding: chunked. False when the body is not well-formed chunks.
bool dechunk(const std::string& in, std::string& out) {
  out.clear();
  size_t p = 0;
  for (;;) {
    size_t e = in.find('\n', p);
    if (e == std::string::npos) return false;
    std::string_view size_line = trim(std::string_view(in).substr(p, e - p));
    size_line = size_line.substr(0, size_line.find(';'));
    if (size_line.empty() || size_line.size() > 15) return false;
    uint64_t n = 0;
    for (char c : size_line) {
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return false;
      n = n * 16 + uint64_t(d);
    }
    p = e + 1;
    if (n == 0) return true;  // trailers, if any, are not needed
    if (n > in.size() - p) return false;
    out.append(in, p, n);
    p += n;
    if (in.compare(p, 2, "\r\n") == 0) p += 2;
    else if (p < in.size() && in[p] == '\n') p += 1;
    else if (p < in.size()) return false;
  }
}

// One inflate pass with the given window bits; gzip may have several members.
bool inflate_all(const std::string& in, std::string& out, size_t max_bytes, int window_bits) {
  z_stream zs{};
  if (inflateInit2(&zs, window_bits) != Z_OK) return false;
  out.clear();
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = uInt(in.size());
  char chunk[64 << 10];
  int rc = Z_OK;
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof chunk;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - zs.avail_out);
    if (out.size() > max_bytes) { rc = Z_MEM_ERROR; break; }
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0 || window_bits < 16) break;
      if (inflateReset(&zs) != Z_OK) break;  // next gzip member
      continue;
    }
    if (rc != Z_OK) break;
    if (zs.avail_in == 0 && zs.avail_out != 0) { rc = Z_DATA_ERROR; break; }  // cut short
  }
  inflateEnd(&zs);
  return rc == Z_STREAM_END;
}

// Fills the HTTP fields of `rec` from the block of a response record. Returns "" or the reason
// the record cannot be used.
std::string parse_http_response(const std::string& block, WarcRecord& rec, size_t max_bytes) {
  if (block.rfind("HTTP/", 0) != 0) {
    rec.payload = block;  // not HTTP after all: keep the block, http_status stays 0
    return "";
  }
  size_t crlf = block.find("\r\n\r\n"), lf = block.find("\n\n");
  size_t head_end = std::min(crlf, lf), body_at = block.size();
  if (head_end == std::string::npos) head_end = block.size();
  else body_at = head_end + (head_end == crlf ? 4 : 2);
  std::string_view head(block.data(), head_end);
  size_t eol = head.find('\n');
  std::string_view status_line = trim(head.substr(0, eol));
  size_t sp = status_line.find(' ');
  int status = 0;
  for (size_t i = sp == std::string_view::npos ? status_line.size() : sp + 1;
       i < status_line.size() && status_line[i] >= '0' && status_line[i] <= '9' && status < 1000; ++i)
    status = status * 10 + (status_line[i] - '0');
  rec.http_status = status;
  std::vector<std::pair<std::string, std::string>> h;
  if (eol != std::string_view::npos) parse_headers(head.substr(eol + 1), h);  // lenient
  if (const std::string* ct = header(h, "content-type")) rec.http_content_type = *ct;
  std::string body = block.substr(body_at);
  const std::string* te = header(h, "transfer-encoding");
  if (te && lower(*te).find("chunked") != std::string::npos) {
    // Crawlers often store the body already de-chunked but keep the header: try, else keep.
    std::string plain;
    if (dechunk(body, plain)) body.swap(plain);
  }
  const std::string* ce = header(h, "content-encoding");
  if (ce && !decode_content_encoding(lower(trim(*ce)), body, rec.payload, max_bytes))
    return "cannot decode HTTP body with Content-Encoding: " + *ce;
  if (!ce) rec.payload.swap(body);
  return "";
}

}  // namespace

bool decode_content_encoding(const std::string& coding, const std::string& in, std::string& out,
                             size_t max_bytes) {
  if (coding.empty() || coding == "identity") {
    out = in;
    return in.size() <= max_bytes;
  }
  if (coding == "gzip" || coding == "x-gzip") {
    // Stored already decoded despite the header (as Common Crawl does): no gzip magic.
    if (in.size() < 2 || in[0] != '\x1f' || in[1] != '\x8b') {
      out = in;
      return in.size() <= max_bytes;
    }
    return inflate_all(in, out, max_bytes, 16 + MAX_WBITS);
  }
  if (coding == "deflate")  // servers send zlib-wrapped or raw deflate under this name
    return inflate_all(in, out, max_bytes, MAX_WBITS) || inflate_all(in, out, max_bytes, -MAX_WBITS);
  return false;
}

WarcReader::WarcReader(InputStream& in, std::string name, size_t max_record_bytes)
    : in_(in), name_(std::move(name)), max_record_(max_record_bytes), buf_(kBufferBytes) {}

bool WarcReader::fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
    len_ -= pos_;
    pos_ = 0;
  }
  size_t n = in_.read(buf_.data() + len_, buf_.size() - len_);
  if (n == 0) eof_ = true;
  len_ += n;
  return n > 0;
}

// Reads one line without its "\r\n" or "\n". A line over `max` is consumed whole but only its
// first `max` bytes are kept. False at the end of the stream with nothing read.
bool WarcReader::read_line(std::string& line, size_t max) {
  line.clear();
  bool any = false;
  for (;;) {
    if (pos_ == len_ && !fill()) break;
    any = true;
    const char* start = buf_.data() + pos_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', len_ - pos_));
    size_t take = nl ? size_t(nl - start) : len_ - pos_;
    if (line.size() < max) line.append(start, std::min(take, max - line.size()));
    pos_ += take + (nl ? 1 : 0);
    offset_ += take + (nl ? 1 : 0);
    if (nl) break;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return any;
}

bool WarcReader::read_block(std::string& out, uint64_t n) {
  out.clear();
  out.reserve(size_t(n));
  while (out.size() < n) {
    if (pos_ == len_ && !fill()) return false;
    size_t take = size_t(std::min<uint64_t>(n - out.size(), len_ - pos_));
    out.append(buf_.data() + pos_, take);
    pos_ += take;
    offset_ += take;
  }
  return true;
}

bool WarcReader::skip_bytes(uint64_t n) {
  while (n > 0) {
    if (pos_ == len_ && !fill()) return false;
    size_t take = size_t(std::min<uint64_t>(n, len_ - pos_));
    pos_ += take;
    offset_ += take;
    n -= take;
  }
  return true;
}

// Scans to the next line starting "WARC/1."; false at the end of the stream.
bool WarcReader::find_version_line(std::string& line, uint64_t& line_at) {
  for (;;) {
    line_at = offset_;
    if (!read_line(line, 16)) return false;
    if (is_version_line(line)) return true;
  }
}

void WarcReader::skip(uint64_t offset, const std::string& why) {
  ++skipped_;
  last_error_ = name_ + ":" + std::to_string(offset) + ": " + why;
}

bool WarcReader::next(WarcRecord& rec) {
  std::string line;
  uint64_t at = offset_;
  bool have_version = false;
  for (;;) {
    if (!have_version) {
      do {  // blank lines separate records
        at = offset_;
        if (!read_line(line, kMaxHeaderLine)) return false;
      } while (line.empty());
      if (!is_version_line(line)) {
        if (!started_)
          throw Error(name_ + ":" + std::to_string(at),
                      "not a WARC file: it does not start with a WARC/1.0 or WARC/1.1 record");
        skip(at, "expected a WARC/1.x record, found other bytes; skipped to the next record");
        if (!find_version_line(line, at)) return false;
      }
    }
    have_version = false;
    started_ = true;
    // Header block, up to the blank line.
    std::string head;
    bool complete = false;
    uint64_t next_at = 0;
    while (head.size() < kMaxHeaderBlock) {
      next_at = offset_;
      if (!read_line(line, kMaxHeaderLine)) break;
      if (line.empty()) { complete = true; break; }
      if (is_version_line(line)) { have_version = true; break; }  // header block cut short
      head += line;
      head += '\n';
    }
    std::vector<std::pair<std::string, std::string>> h;
    if (!complete) {
      if (have_version) {
        skip(at, "record header block ends without a blank line");
        at = next_at;
        continue;
      }
      skip(at, head.size() >= kMaxHeaderBlock ? "record header block over 1 MiB"
                                              : "truncated record header at end of input");
      if (eof_ && pos_ == len_) return false;
      if (!find_version_line(line, at)) return false;
      have_version = true;
      continue;
    }
    const std::string* len_str = nullptr;
    if (!parse_headers(head, h) || !(len_str = header(h, "content-length"))) {
      skip(at, "malformed record header or no Content-Length");
      if (!find_version_line(line, at)) return false;
      have_version = true;
      continue;
    }
    uint64_t len = 0;
    bool len_ok = !len_str->empty() && len_str->size() <= 15;
    for (char c : *len_str) {
      if (c < '0' || c > '9') { len_ok = false; break; }
      len = len * 10 + uint64_t(c - '0');
    }
    if (!len_ok) {
      skip(at, "bad Content-Length: " + *len_str);
      if (!find_version_line(line, at)) return false;
      have_version = true;
      continue;
    }
    if (len > max_record_) {
      skip(at, "record of " + std::to_string(len) + " bytes is over the limit of " +
                   std::to_string(max_record_));
      if (!skip_bytes(len)) return false;
      continue;
    }
    rec = WarcRecord{};
    rec.offset = at;
    if (!read_block(rec.payload, len)) {
      skip(at, "truncated record: " + std::to_string(rec.payload.size()) + " of " +
                   std::to_string(len) + " bytes before the end of input");
      return false;
    }
    auto get = [&](std::string_view n) { const std::string* v = header(h, n); return v ? *v : ""; };
    rec.type = lower(get("warc-type"));
    rec.target_uri = get("warc-target-uri");
    // WARC/1.0 wrote the URI in angle brackets in its examples; some writers still do.
    if (rec.target_uri.size() >= 2 && rec.target_uri.front() == '<' && rec.target_uri.back() == '>')
      rec.target_uri = rec.target_uri.substr(1, rec.target_uri.size() - 2);
    rec.record_id = get("warc-record-id");
    rec.date = get("warc-date");
    rec.content_type = get("content-type");
    rec.identified_payload_type = get("warc-identified-payload-type");
    if (rec.type == "response" && mime(rec.content_type) == "application/http") {
      std::string block;
      block.swap(rec.payload);
      std::string why = parse_http_response(block, rec, max_record_);
      if (!why.empty()) { skip(at, why); continue; }
    }
    return true;
  }
}

bool is_html_document(const WarcRecord& rec) {
  if (rec.type == "resource") return is_html_mime(rec.content_type);
  if (rec.type != "response" || rec.http_status < 200 || rec.http_status > 299) return false;
  if (!rec.http_content_type.empty()) return is_html_mime(rec.http_content_type);
  return is_html_mime(rec.identified_payload_type);
}

bool is_text_document(const WarcRecord& rec) {
  return rec.type == "conversion" || (rec.type == "resource" && mime(rec.content_type) == "text/plain");
}

}  // namespace llmkit::text
