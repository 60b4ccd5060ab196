#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/mpi.hpp"

using namespace llmkit;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/llmkit-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<std::string> read_lines(const std::string& path, uint64_t b = 0, uint64_t e = UINT64_MAX) {
  auto r = open_lines(path, b, e);
  std::vector<std::string> out;
  std::string_view line;
  bool too_long;
  while (r->next(line, too_long)) out.emplace_back(line);
  return out;
}
}  // namespace

TEST_CASE("byte ranges that tile a file yield every line exactly once", "[io]") {
  TempDir d;
  std::string content;
  std::vector<std::string> expected;
  for (int i = 0; i < 200; ++i) {
    std::string line = "line " + std::to_string(i) + std::string(i % 17, 'x');
    expected.push_back(line);
    content += line + "\n";
  }
  content.pop_back();  // last line without a newline
  write_file_atomic(d.file("a.jsonl"), content);
  for (uint64_t parts : {1u, 2u, 3u, 7u, 64u, 1000u}) {
    std::vector<std::string> got;
    for (uint64_t p = 0; p < parts; ++p) {
      uint64_t b = content.size() * p / parts, e = content.size() * (p + 1) / parts;
      auto lines = read_lines(d.file("a.jsonl"), b, e);
      got.insert(got.end(), lines.begin(), lines.end());
    }
    INFO("parts = " << parts);
    REQUIRE(got == expected);
    // The ranges' bytes() add up to the file's size: each counts the lines that start in it.
    uint64_t bytes = 0;
    for (uint64_t p = 0; p < parts; ++p) {
      auto r = open_lines(d.file("a.jsonl"), content.size() * p / parts, content.size() * (p + 1) / parts);
      std::string_view line;
      bool too_long;
      while (r->next(line, too_long)) {
      }
      bytes += r->bytes();
    }
    CHECK(bytes == content.size());
  }
}

TEST_CASE("line numbers count lines before the range", "[io]") {
  TempDir d;
  write_file_atomic(d.file("a.txt"), "a\nb\nc\nd\n");
  auto r = open_lines(d.file("a.txt"), 3, UINT64_MAX);  // starts inside "b"
  std::string_view line;
  bool too_long;
  REQUIRE(r->next(line, too_long));
  CHECK(line == "c");
  CHECK(r->line_number() == 3);
}

TEST_CASE("over-long lines are reported and skipped and the next line survives", "[io]") {
  TempDir d;
  std::string big(5000, 'y');
  write_file_atomic(d.file("a.txt"), "short\n" + big + "\nafter\n" + big);
  auto r = open_lines(d.file("a.txt"), 0, UINT64_MAX, 1000);
  std::string_view line;
  bool too_long;
  REQUIRE(r->next(line, too_long));
  CHECK((line == "short" && !too_long));
  REQUIRE(r->next(line, too_long));
  CHECK(too_long);
  REQUIRE(r->next(line, too_long));
  CHECK((line == "after" && !too_long));
  CHECK(r->line_number() == 3);
  REQUIRE(r->next(line, too_long));
  CHECK(too_long);
  CHECK_FALSE(r->next(line, too_long));
}

TEST_CASE("zstd output reads back through magic detection", "[io]") {
  TempDir d;
  std::string text;
  for (int i = 0; i < 100000; ++i) text += "document " + std::to_string(i) + "\n";
  {
    auto out = OutputStream::open(d.file("x.jsonl.zst"), false);
    out->write(text);
    out->commit();
    CHECK(out->bytes_written() < text.size() / 4);
  }
  CHECK(sniff_compression(d.file("x.jsonl.zst")) == Compression::zstd);
  CHECK(read_file(d.file("x.jsonl.zst")) == text);
}

TEST_CASE("a truncated zstd file is an error naming the file", "[io]") {
  TempDir d;
  std::string text(200000, 'a');
  for (size_t i = 0; i < text.size(); i += 7) text[i] = char('a' + i % 26);
  write_file_atomic(d.file("t.zst"), text);
  std::string z = read_file(d.file("t.zst"));
  REQUIRE(z == text);
  // Recompress, then cut the file in half.
  auto out = OutputStream::open(d.file("c.zst"), true);
  out->write(text);
  out->commit();
  fs::resize_file(d.file("c.zst"), fs::file_size(d.file("c.zst")) / 2);
  try {
    read_file(d.file("c.zst"));
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.where() == d.file("c.zst"));
    CHECK(std::string(e.what()).find("truncated") != std::string::npos);
  }
}

TEST_CASE("multi-member gzip reads as one stream", "[io]") {
  TempDir d;
  std::string cmd = "cd " + d.path.string() +
                    " && printf 'one\\n' | gzip > m.gz && printf 'two\\n' | gzip >> m.gz";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(read_file(d.file("m.gz")) == "one\ntwo\n");
}

TEST_CASE("an output that is not committed leaves no file", "[io]") {
  TempDir d;
  {
    auto out = OutputStream::open(d.file("out.jsonl"), false);
    out->write("partial");
  }
  CHECK_FALSE(fs::exists(d.file("out.jsonl")));
  CHECK(fs::is_empty(d.path));
  {
    auto out = OutputStream::open(d.file("out.jsonl"), false);
    out->write("whole\n");
    out->commit();
  }
  CHECK(read_file(d.file("out.jsonl")) == "whole\n");
}

TEST_CASE("split_inputs gives every file and byte to exactly one rank, in order", "[io][mpi]") {
  TempDir d;
  std::vector<std::string> paths;
  std::string all;
  for (int f = 0; f < 5; ++f) {
    std::string content;
    for (int i = 0; i < 50 * (f + 1); ++i) content += "f" + std::to_string(f) + " l" + std::to_string(i) + "\n";
    paths.push_back(d.file("in" + std::to_string(f) + (f == 2 ? ".html" : ".jsonl")));
    write_file_atomic(paths.back(), content);
    all += content;
  }
  paths.push_back(d.file("empty.jsonl"));
  write_file_atomic(paths.back(), "");
  auto splittable = [](const std::string& p) { return has_suffix(p, ".jsonl"); };
  for (int size : {1, 2, 3, 4, 9}) {
    std::string joined;
    int whole_html = 0;
    for (int rank = 0; rank < size; ++rank)
      for (const auto& part : split_inputs(paths, rank, size, splittable)) {
        if (has_suffix(part.path, ".html")) {
          CHECK(part.whole);
          ++whole_html;
        }
        auto r = open_lines(part.path, part.whole ? 0 : part.begin, part.whole ? UINT64_MAX : part.end);
        std::string_view line;
        bool tl;
        while (r->next(line, tl)) joined += std::string(line) + "\n";
      }
    INFO("size = " << size);
    CHECK(whole_html == 1);
    CHECK(joined == all);
  }
}

TEST_CASE("split_inputs balances files that cannot be cut by their size", "[io][mpi]") {
  TempDir d;
  auto make = [&](const std::string& name, size_t bytes) {
    write_file_atomic(d.file(name), std::string(bytes, 'x'));
    return d.file(name);
  };
  auto none = [](const std::string&) { return false; };
  auto owner = [&](const std::vector<std::string>& paths, int size) {
    std::vector<int> rank_of;
    for (const auto& p : paths)
      for (int r = 0; r < size; ++r)
        for (const auto& part : split_inputs(paths, r, size, none))
          if (part.path == p) rank_of.push_back(r);
    return rank_of;
  };
  // Two files, the first the smaller: by their first bytes both went to rank 0.
  const auto a = make("a.jsonl.zst", 1000), b = make("b.jsonl.zst", 1100);
  CHECK(owner({a, b}, 2) == std::vector<int>{0, 1});
  CHECK(owner({b, a}, 2) == std::vector<int>{0, 1});
  // Many small files and a large one; four equal files on four ranks; more ranks than files.
  std::vector<std::string> many;
  for (int i = 0; i < 4; ++i) many.push_back(make("s" + std::to_string(i) + ".gz", 100));
  many.push_back(make("big.gz", 900));
  CHECK(owner(many, 2) == std::vector<int>{0, 0, 0, 0, 1});
  std::vector<std::string> four(many.begin(), many.begin() + 4);
  CHECK(owner(four, 4) == std::vector<int>{0, 1, 2, 3});
  CHECK(owner({a, b}, 5) == std::vector<int>{1, 3});
}

TEST_CASE("rank output names", "[io][mpi]") {
  CHECK(rank_output_path("out.jsonl.zst", ".jsonl.zst", 0, 1) == "out.jsonl.zst");
  CHECK(rank_output_path("d/out.jsonl.zst", ".jsonl.zst", 3, 4) == "d/out-00003.jsonl.zst");
  CHECK(rank_output_path("dir/", ".jsonl", 1, 2) == "dir/part-00001.jsonl");
}
