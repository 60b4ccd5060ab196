// Collectives over GPUs with NCCL, one MPI rank per GPU: the communicator is bootstrapped by
// broadcasting rank 0's ncclUniqueId over MPI. The blocking operations run on the default
// stream, ordered with the kernels around them; allreduce_sum_start runs on a stream of its own
// so that gradient all-reduces overlap the rest of the backward pass. NCCL picks the transport
// (NVLink, InfiniBand through its IB plugin, sockets); see NCCL_DEBUG=INFO for what it chose.
#if defined(__CUDACC__)
#include <nccl.h>

#include <vector>

#include "common.cuh"
#include "llmkit/mpi.hpp"
#include "llmkit/parallel.hpp"

namespace llmkit {

namespace {

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error("nccl", std::string(what) + ": " + ncclGetErrorString(r));
}

class NcclCollectives final : public Collectives {
 public:
  explicit NcclCollectives(Comm& comm) : rank_(comm.rank()), size_(comm.size()) {
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    comm.broadcast(&id, sizeof id, 0);  // over this communicator (a data- or tensor-parallel group)
    check_nccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    // Not blocking: the legacy default stream, where the kernels run, would otherwise wait
    // for it and the other way round; events order the two explicitly.
    cuda::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda::check(cudaEventCreateWithFlags(&queued_, cudaEventDisableTiming), "cudaEventCreate");
    cuda::check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~NcclCollectives() override {
    ncclCommDestroy(comm_);
    cudaEventDestroy(queued_);
    cudaEventDestroy(done_);
    cudaStreamDestroy(stream_);
  }

  // On the communication stream, after what the default stream has queued so far (the
  // backward of the layer whose gradients these are).
  void allreduce_sum_start(float* buf, size_t n) override {
    if (size_ <= 1 || !n) return;
    cuda::check(cudaEventRecord(queued_, 0), "cudaEventRecord");
    cuda::check(cudaStreamWaitEvent(stream_, queued_, 0), "cudaStreamWaitEvent");
    check_nccl(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, comm_, stream_), "ncclAllReduce");
    pending_ = true;
  }
  void reduce_range_start(float* range, const std::vector<size_t>& counts, size_t begin, size_t n) override {
    if (size_ <= 1 || !n) return;
    cuda::check(cudaEventRecord(queued_, 0), "cudaEventRecord");
    cuda::check(cudaStreamWaitEvent(stream_, queued_, 0), "cudaStreamWaitEvent");
    per_owner(counts, begin, n, [&](size_t at, size_t len, int owner) {
      float* p = range + (at - begin);
      check_nccl(ncclReduce(p, p, len, ncclFloat, ncclSum, owner, comm_, stream_), "ncclReduce");
    });
    pending_ = true;
  }
  void wait() override {
    if (!pending_) return;
    cuda::check(cudaEventRecord(done_, stream_), "cudaEventRecord");
    cuda::check(cudaStreamWaitEvent(0, done_, 0), "cudaStreamWaitEvent");
    pending_ = false;
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* buf, size_t n) override {
    if (size_ > 1 && n) check_nccl(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, comm_, 0), "ncclAllReduce");
  }

  // Segments of unequal length: one ncclReduce per owner, grouped so that NCCL runs them
  // together (ncclReduceScatter wants equal segments).
  void reduce_scatter_sum(float* buf, const std::vector<size_t>& counts) override {
    per_owner(counts, 0, total(counts), [&](size_t at, size_t len, int owner) {
      check_nccl(ncclReduce(buf + at, buf + at, len, ncclFloat, ncclSum, owner, comm_, 0), "ncclReduce");
    });
  }

  void all_gather(float* buf, const std::vector<size_t>& counts) override {
    per_owner(counts, 0, total(counts), [&](size_t at, size_t len, int owner) {
      check_nccl(ncclBroadcast(buf + at, buf + at, len, ncclFloat, owner, comm_, 0), "ncclBroadcast");
    });
  }

 private:
  static size_t total(const std::vector<size_t>& counts) {
    size_t n = 0;
    for (size_t c : counts) n += c;
    return n;
  }
  // op(offset, length, owner) for the parts of [begin, begin + n) in each rank's segment, in
  // one NCCL group.
  template <class Op>
  void per_owner(const std::vector<size_t>& counts, size_t begin, size_t n, Op op) {
    if (size_ <= 1) return;
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for_each_owner(counts, begin, n, op);
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  }

  int rank_, size_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t queued_ = nullptr, done_ = nullptr;
  bool pending_ = false;
};

}  // namespace

std::unique_ptr<Collectives> make_nccl_collectives(Comm& comm) { return std::make_unique<NcclCollectives>(comm); }

}  // namespace llmkit
#endif
