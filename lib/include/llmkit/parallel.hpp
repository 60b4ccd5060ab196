// Collectives over the data-parallel ranks, behind one interface so that the training loop is
// the same on the CPU (MPI on host memory) and on GPUs (NCCL on device memory), and the ZeRO-1
// split of the flat parameter buffer into per-rank segments.
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace llmkit {

class Comm;

// Collectives over the data-parallel ranks, on the memory of the backend that trains (host
// memory for the CPU backend and MPI; device memory for CUDA and NCCL).
class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void allreduce_sum(float* buf, size_t n) = 0;
  // buf holds sum(counts) values on every rank; afterwards rank r's segment (its offset is the
  // sum of the counts before r) holds the sum over all ranks of that segment. The rest of buf is unspecified.
  virtual void reduce_scatter_sum(float* buf, const std::vector<size_t>& counts) = 0;
  // Each rank's segment of buf, as above, copied to every rank (in place).
  virtual void all_gather(float* buf, const std::vector<size_t>& counts) = 0;
  // allreduce_sum that may run while the caller goes on (NCCL: on a stream of its own, after
  // what the backend has queued so far): buf must not be touched until wait(), after which the
  // backend's next operations see every sum started. By default it is done at once.
  virtual void allreduce_sum_start(float* buf, size_t n) { allreduce_sum(buf, n); }
  // The reduce-scatter (segments `counts`, as reduce_scatter_sum) of the values [begin, begin +
  // n) of a buffer only, held at `range` (range[0] is value `begin`), which may likewise run on
  // until wait(): each value's sum lands on the rank whose segment holds it. Over ranges that
  // tile a buffer, the same as reduce_scatter_sum.
  virtual void reduce_range_start(float* range, const std::vector<size_t>& counts, size_t begin, size_t n) = 0;
  virtual void wait() {}
};

// Calls f(offset, length, owner) for the parts of [begin, begin + n) in each rank's segment.
template <class F>
void for_each_owner(const std::vector<size_t>& counts, size_t begin, size_t n, F f) {
  size_t lo = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    const size_t hi = lo + counts[r], b = std::max(lo, begin), e = std::min(hi, begin + n);
    if (b < e) f(b, e - b, static_cast<int>(r));
    lo = hi;
  }
}

// MPI collectives on host memory through `comm` (one rank: no MPI call, buffers left as they are).
std::unique_ptr<Collectives> make_mpi_collectives(Comm& comm);
// NCCL collectives on the device memory of the GPU this process uses, over the ranks of `comm`
// (MPI bootstraps NCCL: rank 0's ncclUniqueId is broadcast). Error in a build without CUDA.
std::unique_ptr<Collectives> make_nccl_collectives(Comm& comm);

// ZeRO-1's segments of a flat buffer of n floats over `ranks` ranks: contiguous, in rank order,
// the boundaries rounded down to multiples of 64 floats (aligned vector loads on every segment),
// the last rank taking the rest. A segment may be empty when n < 64 x ranks.
std::vector<size_t> segment_counts(size_t n, int ranks);

}  // namespace llmkit
