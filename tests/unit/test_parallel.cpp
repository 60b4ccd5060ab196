// Collectives over the ranks (lib/core/parallel.cpp over Comm's MPI calls, lib/core/mpi.cpp) and
// ZeRO-1's segments. The collectives run on Comm::world(): one rank, without MPI, under plain
// ctest; tests/mpi/collectives.sh runs the [collectives] cases on 3 ranks, where the uneven segments
// (one of them empty) and buckets of a few floats make the calls go in many rounds.
#define CATCH_CONFIG_EXTERNAL_INTERFACES  // for the listener that finalizes MPI
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <vector>

#include "llmkit/error.hpp"
#include "llmkit/mpi.hpp"
#include "llmkit/parallel.hpp"

using namespace llmkit;

namespace {

// Under mpirun every rank must finalize MPI before it exits.
struct FinalizeMpi : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats& stats) override {
    Comm::world().finalize();
    TestEventListenerBase::testRunEnded(stats);
  }
};

// Uneven segments, rank 1's empty: 5 values on one rank; 5, 0, 7 on three.
std::vector<size_t> uneven_counts(int ranks) {
  std::vector<size_t> counts;
  for (int r = 0; r < ranks; ++r) counts.push_back(static_cast<size_t>((5 + 7 * r) % 12));
  return counts;
}

size_t offset_of(const std::vector<size_t>& counts, int rank) {
  return std::accumulate(counts.begin(), counts.begin() + rank, size_t{0});
}

// Rank r's contribution to value i: sums over ranks stay exact in float.
float contribution(int rank, size_t i) { return static_cast<float>(1000 * (rank + 1) + static_cast<int>(i)); }
float rank_sum(int ranks, size_t i) {
  float s = 0;
  for (int r = 0; r < ranks; ++r) s += contribution(r, i);
  return s;
}
// The value of position i when it belongs to `owner`'s segment.
float owned(int owner, size_t i) { return static_cast<float>(100000 * owner + static_cast<int>(i)); }

const size_t kBuckets[] = {1, 2, 5, Comm::kBucket};

}  // namespace

CATCH_REGISTER_LISTENER(FinalizeMpi)

TEST_CASE("segment_counts: boundaries at multiples of 64 floats, the last rank takes the rest") {
  using V = std::vector<size_t>;
  CHECK(segment_counts(1000, 1) == V{1000});
  CHECK(segment_counts(1000, 3) == V{320, 320, 360});  // 333.3 -> 320, 666.7 -> 640
  CHECK(segment_counts(100, 4) == V{0, 0, 64, 36});
  CHECK(segment_counts(0, 2) == V{0, 0});
  for (size_t n : {size_t{1}, size_t{63}, size_t{64}, size_t{4097}, size_t{1} << 33})
    for (int ranks : {1, 2, 3, 7, 64}) {
      V c = segment_counts(n, ranks);
      REQUIRE(c.size() == static_cast<size_t>(ranks));
      CHECK(std::accumulate(c.begin(), c.end(), size_t{0}) == n);
      for (int r = 1; r < ranks; ++r) CHECK(offset_of(c, r) % 64 == 0);
      // Balanced: each segment within 64 floats of an equal share.
      for (size_t x : c) CHECK(std::abs(static_cast<double>(x) - static_cast<double>(n) / ranks) < 64);
    }
  CHECK_THROWS_AS(segment_counts(10, 0), Error);
}

TEST_CASE("reduce_scatter_sum leaves each rank's segment summed over the ranks", "[mpi][collectives]") {
  Comm& comm = Comm::world();
  const auto counts = uneven_counts(comm.size());
  const size_t total = offset_of(counts, comm.size()), lo = offset_of(counts, comm.rank());
  auto fill = [&](std::vector<float>& buf) {
    buf.resize(total);
    for (size_t i = 0; i < total; ++i) buf[i] = contribution(comm.rank(), i);
  };
  auto check = [&](const std::vector<float>& buf) {
    for (size_t i = lo; i < lo + counts[static_cast<size_t>(comm.rank())]; ++i) CHECK(buf[i] == rank_sum(comm.size(), i));
  };
  std::vector<float> buf;
  for (size_t bucket : kBuckets) {
    INFO("bucket " << bucket);
    fill(buf);
    comm.reduce_scatter_sum(buf.data(), counts, bucket);
    check(buf);
  }
  fill(buf);
  make_mpi_collectives(comm)->reduce_scatter_sum(buf.data(), counts);
  check(buf);
}

TEST_CASE("reduce_range_start over ranges that tile the buffer is a reduce-scatter", "[mpi][collectives]") {
  Comm& comm = Comm::world();
  const auto counts = uneven_counts(comm.size());
  const size_t total = offset_of(counts, comm.size()), lo = offset_of(counts, comm.rank());
  std::vector<float> buf(total);
  for (size_t i = 0; i < total; ++i) buf[i] = contribution(comm.rank(), i);
  auto coll = make_mpi_collectives(comm);
  // Ranges as a backward pass reports them (last first), cutting across the segments.
  const size_t cut1 = total / 3 + 1, cut2 = 2 * total / 3 + 5 < total ? 2 * total / 3 + 5 : total;
  coll->reduce_range_start(buf.data() + cut2, counts, cut2, total - cut2);
  coll->reduce_range_start(buf.data() + cut1, counts, cut1, cut2 - cut1);
  coll->reduce_range_start(buf.data(), counts, 0, cut1);
  coll->wait();
  for (size_t i = lo; i < lo + counts[static_cast<size_t>(comm.rank())]; ++i) CHECK(buf[i] == rank_sum(comm.size(), i));
}

TEST_CASE("all_gather copies every rank's segment to every rank", "[mpi][collectives]") {
  Comm& comm = Comm::world();
  const auto counts = uneven_counts(comm.size());
  const size_t total = offset_of(counts, comm.size()), lo = offset_of(counts, comm.rank());
  std::vector<float> expected(total);
  for (int r = 0; r < comm.size(); ++r)
    for (size_t i = offset_of(counts, r); i < offset_of(counts, r + 1); ++i) expected[i] = owned(r, i);
  // Only the own segment is right before; the rest must be overwritten.
  auto fill = [&](std::vector<float>& buf) {
    buf.assign(total, -1.0f);
    for (size_t i = lo; i < offset_of(counts, comm.rank() + 1); ++i) buf[i] = expected[i];
  };
  std::vector<float> buf;
  for (size_t bucket : kBuckets) {
    INFO("bucket " << bucket);
    fill(buf);
    comm.allgatherv(buf.data(), counts, bucket);
    CHECK(buf == expected);
  }
  fill(buf);
  make_mpi_collectives(comm)->all_gather(buf.data(), counts);
  CHECK(buf == expected);
}

TEST_CASE("gatherv puts every rank's segment on rank 0, in rank order", "[mpi][collectives]") {
  Comm& comm = Comm::world();
  const auto counts = uneven_counts(comm.size());
  const size_t total = offset_of(counts, comm.size()), lo = offset_of(counts, comm.rank());
  std::vector<float> mine, expected(total);
  for (int r = 0; r < comm.size(); ++r)
    for (size_t i = offset_of(counts, r); i < offset_of(counts, r + 1); ++i) expected[i] = owned(r, i);
  mine.assign(expected.begin() + static_cast<ptrdiff_t>(lo),
              expected.begin() + static_cast<ptrdiff_t>(lo + counts[static_cast<size_t>(comm.rank())]));
  for (size_t bucket : kBuckets) {
    INFO("bucket " << bucket);
    std::vector<float> all(comm.rank() == 0 ? total : 0, -1.0f);
    comm.gatherv(mine.data(), comm.rank() == 0 ? all.data() : nullptr, counts, bucket);
    if (comm.rank() == 0) CHECK(all == expected);
  }
}

TEST_CASE("one-rank collectives: no MPI, the buffer is its own sum and gather", "[mpi][collectives]") {
  Comm& comm = Comm::world();
  if (comm.size() != 1) return;  // the cases above cover several ranks
  auto coll = make_mpi_collectives(comm);
  CHECK(coll->rank() == 0);
  CHECK(coll->size() == 1);
  std::vector<float> buf(300), before;
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = 0.5f * static_cast<float>(i) - 7.0f;
  before = buf;
  coll->allreduce_sum(buf.data(), buf.size());
  CHECK(buf == before);
  coll->reduce_scatter_sum(buf.data(), {buf.size()});
  CHECK(buf == before);
  coll->all_gather(buf.data(), {buf.size()});
  CHECK(buf == before);
  // Counts must name one segment per rank.
  CHECK_THROWS_AS(coll->reduce_scatter_sum(buf.data(), {100, 200}), Error);
  CHECK_THROWS_AS(coll->all_gather(buf.data(), {}), Error);
}
