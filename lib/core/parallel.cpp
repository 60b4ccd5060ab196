// MPI collectives behind the Collectives interface, and ZeRO-1's segments; see parallel.hpp.
#include "llmkit/parallel.hpp"

#include "llmkit/error.hpp"
#include "llmkit/mpi.hpp"

namespace llmkit {
namespace {

// Comm holds the MPI calls (bucketed, in place); this only adapts the interface.
class MpiCollectives final : public Collectives {
 public:
  explicit MpiCollectives(Comm& comm) : comm_(comm) {}
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }
  void allreduce_sum(float* buf, size_t n) override { comm_.allreduce_sum(buf, n); }
  void reduce_scatter_sum(float* buf, const std::vector<size_t>& counts) override {
    comm_.reduce_scatter_sum(buf, counts);
  }
  void all_gather(float* buf, const std::vector<size_t>& counts) override {
    comm_.allgatherv(buf, counts);
  }
  void reduce_range_start(float* range, const std::vector<size_t>& counts, size_t begin, size_t n) override {
    for_each_owner(counts, begin, n, [&](size_t at, size_t len, int owner) { comm_.reduce_sum(range + (at - begin), len, owner); });
  }

 private:
  Comm& comm_;
};

}  // namespace

std::unique_ptr<Collectives> make_mpi_collectives(Comm& comm) {
  return std::make_unique<MpiCollectives>(comm);
}

std::vector<size_t> segment_counts(size_t n, int ranks) {
  if (ranks < 1) throw Error("", "segments over " + std::to_string(ranks) + " ranks");
  constexpr size_t kAlign = 64;
  std::vector<size_t> counts;
  size_t begin = 0;
  for (int r = 1; r <= ranks; ++r) {
    const size_t end = r == ranks ? n : static_cast<size_t>(static_cast<__uint128_t>(n) * r / ranks) / kAlign * kAlign;
    counts.push_back(end - begin);
    begin = end;
  }
  return counts;
}

}  // namespace llmkit
