// Token shards (lib/tok/shard.cpp): round trips in both token sizes, the document index,
// damaged files (truncated, bit flips in header and payload), llm.c .bin files.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/shard.hpp"

using namespace llmkit;

namespace {

std::string temp_path(const std::string& name) {
  return "/tmp/llmkit-test-" + std::to_string(::getpid()) + "-" + name;
}

std::vector<std::vector<uint32_t>> random_docs(uint64_t vocab, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint32_t>> docs(n);
  for (auto& d : docs) {
    d.resize(rng() % 50);  // empty documents too
    for (auto& t : d) t = static_cast<uint32_t>(rng() % vocab);
  }
  return docs;
}

void write_shard(const std::string& path, const std::vector<std::vector<uint32_t>>& docs,
                 uint64_t vocab, uint32_t bytes) {
  ShardWriter w(path, vocab, bytes, 0xABCDEF);
  for (const auto& d : docs) w.add_document(d);
  w.finish();
}

std::string error_of(const std::string& path, bool verify = true) {
  try {
    ShardReader r(path, verify);
  } catch (const Error& e) {
    CHECK(e.where() == path);
    return e.what();
  }
  return "";
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::string data = read_file(path);
  data[offset] = static_cast<char>(data[offset] ^ 0x10);
  write_file_atomic(path, data);
}

}  // namespace

TEST_CASE("Shards round-trip tokens and document boundaries in u16 and u32", "[shard]") {
  for (auto [vocab, bytes] : {std::pair<uint64_t, uint32_t>{32000, 2}, {65536, 2}, {128256, 4}}) {
    auto docs = random_docs(vocab, 200, vocab);
    std::string path = temp_path("rt.tok");
    write_shard(path, docs, vocab, bytes);
    ShardReader r(path);
    CHECK(r.info().token_bytes == bytes);
    CHECK(r.info().vocab_size == vocab);
    CHECK(r.info().documents == docs.size());
    CHECK(r.info().tokenizer_hash == 0xABCDEF);
    CHECK(file_size(path) % 8 == 0);
    uint64_t at = 0;
    for (size_t d = 0; d < docs.size(); ++d) {
      REQUIRE(r.document_begin(d) == at);
      REQUIRE(r.document_end(d) == at + docs[d].size());
      std::vector<uint32_t> got(docs[d].size());
      r.read(at, got.size(), got.data());
      REQUIRE(got == docs[d]);
      for (size_t i = 0; i < docs[d].size(); ++i) REQUIRE(r[at + i] == docs[d][i]);
      at += docs[d].size();
    }
    CHECK(r.size() == at);
    std::remove(path.c_str());
  }
}

TEST_CASE("The shard writer refuses ids outside the vocabulary and vocabularies too big for u16", "[shard]") {
  std::string path = temp_path("bad.tok");
  CHECK_THROWS_WITH(ShardWriter(path, 70000, 2, 0), Catch::Contains("does not fit 16-bit"));
  {
    ShardWriter w(path, 100, 2, 0);
    CHECK_THROWS_WITH(w.add_document(std::vector<uint32_t>{5, 100}), Catch::Contains("outside the vocabulary"));
  }
  CHECK_FALSE(file_size(path) > 0);  // not finished: nothing under the final name
}

TEST_CASE("Damaged shards are errors that name the file and the damage", "[shard]") {
  auto docs = random_docs(1000, 100, 3);
  std::string path = temp_path("damaged.tok");
  write_shard(path, docs, 1000, 2);
  const uint64_t size = file_size(path);
  std::string good = read_file(path);

  flip_byte(path, kShardHeaderBytes + 10);  // a token
  CHECK_THAT(error_of(path), Catch::Contains("payload checksum"));
  CHECK(error_of(path, false).empty());  // --no-verify: structure only
  {
    ShardReader lazy(path, false);
    CHECK_FALSE(lazy.checksum_ok());
  }
  write_file_atomic(path, good);
  flip_byte(path, 24);  // token count in the header
  CHECK_THAT(error_of(path), Catch::Contains("header checksum"));

  write_file_atomic(path, good.substr(0, size - 13));
  CHECK_THAT(error_of(path), Catch::Contains("damaged shard"));
  write_file_atomic(path, good.substr(0, 100));
  CHECK_THAT(error_of(path), Catch::Contains("truncated header"));
  write_file_atomic(path, "hello, not a shard at all");
  CHECK_THAT(error_of(path), Catch::Contains("not a token shard"));
  write_file_atomic(path, good);
  CHECK(error_of(path).empty());
  std::remove(path.c_str());
  CHECK_THAT(error_of(path), Catch::Contains("cannot open"));
}

TEST_CASE("llm.c .bin token files are read as published (256 x int32 header)", "[shard]") {
  for (auto [magic, version, bytes] : {std::tuple<int32_t, int32_t, int>{20240520, 1, 2}, {20240801, 7, 4}}) {
    std::vector<int32_t> header(256, 0);
    header[0] = magic;
    header[1] = version;
    header[2] = 5;
    std::string data(reinterpret_cast<const char*>(header.data()), 1024);
    std::vector<uint32_t> toks = {50256, 15496, 11, 995, 0};
    for (uint32_t t : toks) data.append(reinterpret_cast<const char*>(&t), bytes);  // little-endian
    std::string path = temp_path("llmc.bin");
    write_file_atomic(path, data);
    ShardReader r(path);
    CHECK(r.info().format == ShardInfo::Format::llmc);
    CHECK(r.info().token_bytes == static_cast<uint32_t>(bytes));
    REQUIRE(r.size() == 5);
    for (size_t i = 0; i < toks.size(); ++i) CHECK(r[i] == toks[i]);
    write_file_atomic(path, data.substr(0, data.size() - 1));
    CHECK_THAT(error_of(path), Catch::Contains("damaged llm.c file"));
    std::remove(path.c_str());
  }
}
