// WARC reader (lib/text/warc.cpp) on the fixtures of tests/data/warc/make-fixtures.sh.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "llmkit/error.hpp"
#include "llmkit/html.hpp"
#include "llmkit/warc.hpp"

using llmkit::text::WarcReader;
using llmkit::text::WarcRecord;

namespace {

// In-memory stream; `step` limits each read to exercise buffer boundaries.
class MemoryInput : public llmkit::InputStream {
 public:
  explicit MemoryInput(std::string data, size_t step = SIZE_MAX) : data_(std::move(data)), step_(step) {}
  size_t read(char* buf, size_t n) override {
    n = std::min({n, step_, data_.size() - pos_});
    std::memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return n;
  }
  uint64_t raw_bytes_read() const override { return pos_; }

 private:
  std::string data_;
  size_t pos_ = 0, step_;
};

std::string slurp(const std::string& name) {
  std::ifstream f(std::string(LLMKIT_TEST_DATA) + "/warc/" + name, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  REQUIRE(!ss.str().empty());
  return ss.str();
}

// Multi-member gzip, decompressed here so the test does not depend on io.cpp.
std::string gunzip(const std::string& in) {
  std::string out;
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = uInt(in.size());
  char chunk[4096];
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof chunk;
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - zs.avail_out);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      REQUIRE(inflateReset(&zs) == Z_OK);
    } else {
      REQUIRE(rc == Z_OK);
    }
  }
  inflateEnd(&zs);
  return out;
}

std::vector<WarcRecord> read_all(const std::string& data, size_t step = SIZE_MAX,
                                 size_t max_record = 64 << 20, int64_t* skipped = nullptr,
                                 std::string* last_error = nullptr) {
  MemoryInput in(data, step);
  WarcReader r(in, "test.warc", max_record);
  std::vector<WarcRecord> out;
  WarcRecord rec;
  while (r.next(rec)) out.push_back(rec);
  if (skipped) *skipped = r.skipped();
  if (last_error) *last_error = r.last_error();
  return out;
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

}  // namespace

TEST_CASE("warc: sample records, types, HTTP layer", "[warc]") {
  int64_t skipped = -1;
  auto recs = read_all(slurp("sample.warc"), SIZE_MAX, 64 << 20, &skipped);
  CHECK(skipped == 0);
  REQUIRE(recs.size() == 11);
  std::vector<std::string> types;
  for (auto& r : recs) types.push_back(r.type);
  CHECK(types == std::vector<std::string>{"warcinfo", "request", "response", "metadata", "response",
                                          "response", "response", "response", "response",
                                          "resource", "revisit"});
  CHECK(recs[0].offset == 0);
  for (size_t i = 1; i < recs.size(); ++i) CHECK(recs[i].offset > recs[i - 1].offset);
  CHECK(recs[0].payload == "software: llmkit make-fixtures.sh\r\nformat: WARC File Format 1.0\r\n");

  const WarcRecord& page = recs[2];
  CHECK(page.target_uri == "http://example.com/tide-mills");
  CHECK(page.record_id == "<urn:uuid:6f1c5e2a-0000-4000-8000-000000000003>");
  CHECK(page.date == "2024-03-01T12:00:03Z");
  CHECK(page.content_type == "application/http; msgtype=response");
  CHECK(page.http_status == 200);
  CHECK(page.http_content_type == "text/html; charset=utf-8");
  std::ifstream f(std::string(LLMKIT_TEST_DATA) + "/html/article.html", std::ios::binary);
  std::stringstream article;
  article << f.rdbuf();
  CHECK(page.payload == article.str());  // exactly the body, no HTTP headers
  CHECK(contains(llmkit::text::extract_main_text(page.payload).text, "Long before steam engines"));

  CHECK(recs[4].http_status == 404);
  CHECK(recs[5].http_content_type == "image/png");
  // Chunked body reassembled; the charset comes from the HTTP header.
  const WarcRecord& chunked = recs[6];
  CHECK(chunked.http_content_type == "text/html; charset=windows-1252");
  std::string used;
  std::string utf8 = llmkit::text::to_utf8(chunked.payload, chunked.http_content_type, &used);
  CHECK(used == "windows-1252");
  CHECK(contains(utf8, "costs about €4 in a Paris café today"));
  CHECK(contains(utf8, "</html>"));
  CHECK_FALSE(contains(chunked.payload, "X-Trailer"));
  // gzip Content-Encoding decoded.
  CHECK(contains(recs[7].payload, "长城是中国古代的军事防御工程"));
  // No HTTP Content-Type: Common Crawl's identified type decides.
  CHECK(recs[8].http_content_type.empty());
  CHECK(recs[8].identified_payload_type == "text/html");
  // WARC/1.1 resource; angle brackets around the URI removed.
  CHECK(recs[9].target_uri == "http://example.net/resource");
  CHECK(recs[9].http_status == 0);
  CHECK(contains(recs[9].payload, "stored as a resource record"));
  CHECK(recs[10].payload.empty());
}

TEST_CASE("warc: which records become documents", "[warc]") {
  auto recs = read_all(slurp("sample.warc"));
  REQUIRE(recs.size() == 11);
  std::vector<bool> html;
  for (auto& r : recs) html.push_back(llmkit::text::is_html_document(r));
  // article, chunked, gzip, no-Content-Type and the resource; not the 404, PNG or request.
  CHECK(html == std::vector<bool>{false, false, true, false, false, false, true, true, true, true, false});
  for (auto& r : recs) CHECK_FALSE(llmkit::text::is_text_document(r));

  auto wet = read_all(slurp("wet.warc"));
  REQUIRE(wet.size() == 3);
  CHECK_FALSE(llmkit::text::is_text_document(wet[0]));
  CHECK(llmkit::text::is_text_document(wet[1]));
  CHECK(llmkit::text::is_text_document(wet[2]));
  CHECK_FALSE(llmkit::text::is_html_document(wet[1]));
  CHECK(wet[2].payload == "长城是中国古代的军事防御工程。\n");
}

TEST_CASE("warc: gzip members and tiny reads give the same records", "[warc]") {
  std::string plain = slurp("sample.warc");
  auto a = read_all(plain);
  auto b = read_all(gunzip(slurp("sample.warc.gz")));
  auto c = read_all(plain, 1);  // one byte per read()
  auto d = read_all(plain, 7);
  REQUIRE(a.size() == 11);
  REQUIRE(b.size() == a.size());
  REQUIRE(c.size() == a.size());
  REQUIRE(d.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(b[i].payload == a[i].payload);
    CHECK(c[i].payload == a[i].payload);
    CHECK(d[i].offset == a[i].offset);
    CHECK(c[i].record_id == a[i].record_id);
  }
}

TEST_CASE("warc: truncated last record is skipped and counted", "[warc]") {
  int64_t skipped = 0;
  std::string err;
  auto recs = read_all(slurp("truncated.warc"), SIZE_MAX, 64 << 20, &skipped, &err);
  REQUIRE(recs.size() == 2);
  CHECK(recs[1].type == "request");
  CHECK(skipped == 1);
  CHECK(contains(err, "test.warc:"));
  CHECK(contains(err, "truncated record"));
  // Cut inside the header block instead.
  std::string s = slurp("sample.warc");
  recs = read_all(s.substr(0, s.find("WARC-Date", 200)), SIZE_MAX, 64 << 20, &skipped, &err);
  CHECK(recs.size() == 1);
  CHECK(skipped == 1);
  CHECK(contains(err, "truncated record header"));
}

TEST_CASE("warc: damage is skipped up to the next record", "[warc]") {
  int64_t skipped = 0;
  std::string err;
  // With a 1000-byte limit the 2 KB record is skipped too.
  auto recs = read_all(slurp("damaged.warc"), SIZE_MAX, 1000, &skipped, &err);
  REQUIRE(recs.size() == 2);
  CHECK(recs[0].type == "warcinfo");
  CHECK(recs[1].http_status == 404);
  CHECK(skipped == 4);  // garbage, no Content-Length, bad Content-Length, over the limit
  CHECK(contains(err, "over the limit"));
  recs = read_all(slurp("damaged.warc"), 3, 64 << 20, &skipped, &err);
  REQUIRE(recs.size() == 3);
  CHECK(skipped == 3);
  CHECK(recs[1].target_uri == "http://example.com/big");
  CHECK(recs[1].payload.size() == 2010);
  CHECK(recs[2].http_status == 404);
}

TEST_CASE("warc: not a WARC file is an error; empty input is no records", "[warc]") {
  MemoryInput html("<html><body>not a warc</body></html>\n");
  WarcReader r(html, "page.html");
  WarcRecord rec;
  CHECK_THROWS_AS(r.next(rec), llmkit::Error);
  bool threw = false;
  try {
    MemoryInput again("\r\n<html>\n");
    WarcReader r2(again, "page.html");
    r2.next(rec);
  } catch (const llmkit::Error& e) {
    threw = true;
    CHECK(std::string(e.where()) == "page.html:2");
    CHECK(contains(e.what(), "not a WARC file"));
  }
  CHECK(threw);
  CHECK(read_all("").empty());
  CHECK(read_all("\r\n\r\n").empty());
}

TEST_CASE("warc: bad HTTP encodings skip the record, lenient cases keep it", "[warc]") {
  auto rec = [](const std::string& http) {
    return "WARC/1.0\r\nWARC-Type: response\r\nContent-Type: application/http\r\nContent-Length: " +
           std::to_string(http.size()) + "\r\n\r\n" + http + "\r\n\r\n";
  };
  std::string bad_gzip = rec("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08garbage");
  std::string brotli = rec("HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nxyz");
  std::string stored_plain = rec("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n<p>plain</p>");
  std::string not_chunked = rec("HTTP/1.0 200 OK\nTransfer-Encoding: chunked\n\n<p>no chunks</p>");
  int64_t skipped = 0;
  std::string err;
  auto recs = read_all(bad_gzip + brotli + stored_plain + not_chunked, SIZE_MAX, 64 << 20, &skipped, &err);
  CHECK(skipped == 2);
  CHECK(contains(err, "Content-Encoding: br"));
  REQUIRE(recs.size() == 2);
  CHECK(recs[0].payload == "<p>plain</p>");
  CHECK(recs[1].payload == "<p>no chunks</p>");
  CHECK(recs[1].http_status == 200);
}

TEST_CASE("warc: decode_content_encoding caps output (zip bombs)", "[warc]") {
  std::string zeros(1 << 20, '\0'), packed(compressBound(zeros.size()), '\0');
  uLongf n = packed.size();
  REQUIRE(compress(reinterpret_cast<Bytef*>(packed.data()), &n,
                   reinterpret_cast<const Bytef*>(zeros.data()), zeros.size()) == Z_OK);
  packed.resize(n);
  std::string out;
  CHECK(llmkit::text::decode_content_encoding("deflate", packed, out, 2 << 20));
  CHECK(out == zeros);
  CHECK_FALSE(llmkit::text::decode_content_encoding("deflate", packed, out, 1000));
  CHECK_FALSE(llmkit::text::decode_content_encoding("compress", packed, out, 2 << 20));
}
