// Spill files, spools, external sorting and the one-rank exchange (llmkit/spill.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <tuple>

#include "llmkit/error.hpp"
#include "llmkit/spill.hpp"

using namespace llmkit;

namespace {
struct Rec {
  uint64_t key, doc;
  bool operator<(const Rec& o) const { return std::tie(key, doc) < std::tie(o.key, o.doc); }
  bool operator==(const Rec& o) const { return key == o.key && doc == o.doc; }
};
}  // namespace

TEST_CASE("ExternalSorter sorts in memory and across spilled runs", "[spill]") {
  for (size_t budget : {size_t{1} << 30, size_t{16} << 10}) {  // no spill; many runs
    std::mt19937_64 rng(7);
    std::vector<Rec> all;
    ExternalSorter<Rec> sorter(temp_dir(""), budget, "test records");
    for (int i = 0; i < 100000; ++i) {
      Rec r{rng() % 5000, static_cast<uint64_t>(i)};
      all.push_back(r);
      sorter.add(r);
    }
    sorter.finish();
    if (budget < (1 << 20)) CHECK(sorter.runs() > 10);
    else CHECK(sorter.runs() == 0);
    std::sort(all.begin(), all.end());
    std::vector<Rec> got;
    for (Rec r; sorter.next(r);) got.push_back(r);
    REQUIRE(got.size() == all.size());
    CHECK(got == all);
  }
}

TEST_CASE("ExternalSorter with nothing added yields nothing", "[spill]") {
  ExternalSorter<Rec> sorter(temp_dir(""), 1 << 20, "nothing");
  sorter.finish();
  Rec r;
  CHECK_FALSE(sorter.next(r));
}

TEST_CASE("Spool returns fixed records in order, in whole records, from memory and disk", "[spill]") {
  Spool spool(temp_dir(""), 4096, sizeof(uint64_t), "numbers");
  for (uint64_t i = 0; i < 10000; ++i) spool.append(&i, sizeof i);
  CHECK(spool.bytes() == 80000);
  std::string chunk;
  uint64_t expect = 0;
  while (spool.read(chunk, 1000)) {
    REQUIRE(chunk.size() % 8 == 0);
    CHECK(chunk.size() <= 1000);
    for (size_t i = 0; i < chunk.size(); i += 8) {
      uint64_t v;
      std::memcpy(&v, chunk.data() + i, 8);
      REQUIRE(v == expect++);
    }
  }
  CHECK(expect == 10000);
  CHECK(spool.remaining() == 0);
  CHECK_THROWS_AS(spool.append(&expect, 8), Error);
}

TEST_CASE("Spool frames variable records; a record larger than a round still passes", "[spill]") {
  Spool spool(temp_dir(""), 4096, 0, "messages");
  std::vector<std::string> sent;
  for (int i = 0; i < 500; ++i) {
    sent.push_back(std::string(static_cast<size_t>(i * 7 % 300), static_cast<char>('a' + i % 26)));
    spool.append(sent.back().data(), sent.back().size());
  }
  std::string big(10000, 'z');
  spool.append(big.data(), big.size());
  sent.push_back(big);
  std::vector<std::string> got;
  std::string chunk;
  while (spool.read(chunk, 2000))
    for_each_record(chunk, [&](const char* p, size_t n) { got.emplace_back(p, n); });
  CHECK(got == sent);
}

TEST_CASE("Shuffle on one rank sorts what was added", "[spill]") {
  Comm& comm = Comm::world();
  if (comm.size() != 1) return;
  Shuffle<Rec> shuffle(comm, temp_dir(""), 8 << 10, "shuffled");
  for (uint64_t i = 0; i < 5000; ++i) shuffle.add(0, Rec{(i * 7919) % 1000, i});
  auto& sorted = shuffle.finish();
  Rec prev{0, 0}, r;
  uint64_t n = 0;
  while (sorted.next(r)) {
    if (n++) CHECK(prev < r);
    prev = r;
  }
  CHECK(n == 5000);
}

TEST_CASE("A temporary file in a missing directory is a clear error", "[spill]") {
  try {
    TempFile f("/nonexistent-llmkit-dir", "test data");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.where() == "/nonexistent-llmkit-dir");
    CHECK(std::string(e.what()).find("test data") != std::string::npos);
  }
}
