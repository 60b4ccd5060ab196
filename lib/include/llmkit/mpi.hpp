// MPI when launched by mpirun/srun, one process otherwise (MPI_Init is not even called then, so a
// plain run costs nothing and needs no MPI runtime). Work splitting across ranks lives here too.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace llmkit {

class Comm {
 public:
  // The world communicator. Initialises MPI on first use when the environment says we run
  // under a launcher (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE).
  static Comm& world();
  // A sub-communicator of this one (MPI_Comm_split): the ranks that give the same color, in the
  // order of their keys. Collective over this Comm. Without MPI: a one-rank Comm.
  std::unique_ptr<Comm> split(int color, int key);
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool mpi() const { return mpi_; }
  // This rank's number among the ranks on its node (MPI_COMM_TYPE_SHARED): which GPU it takes.
  int local_rank();
  void barrier();
  int64_t allreduce_sum(int64_t v);
  int64_t allreduce_max(int64_t v);
  double allreduce_sum_double(double v);
  double allreduce_max_double(double v);
  // Floats per MPI call in the collectives on float buffers: 16M (2^24), so each call's counts
  // and displacements fit an int and MPI's own scratch space stays bounded.
  static constexpr size_t kBucket = size_t{1} << 24;
  // In place, in buckets of at most `bucket` floats.
  void allreduce_sum(float* data, size_t n, size_t bucket = kBucket);
  void allreduce_sum(double* data, size_t n, size_t bucket = kBucket);
  // In place on `root` (its data receives the sums; the others' data is left as it was).
  void reduce_sum(float* data, size_t n, int root, size_t bucket = kBucket);
  // Collectives on a buffer of segments, one per rank in rank order, counts[r] floats for rank r
  // (a count may be 0). In place: afterwards rank r's segment holds the sum over all ranks of
  // that segment, and the rest of `data` is unspecified.
  void reduce_scatter_sum(float* data, const std::vector<size_t>& counts, size_t bucket = kBucket);
  // In place: every rank's segment copied to all ranks.
  void allgatherv(float* data, const std::vector<size_t>& counts, size_t bucket = kBucket);
  // Rank r sends its counts[r] floats from `mine`; rank 0 receives every segment into `all`
  // (sum(counts) floats), which other ranks may pass as null.
  void gatherv(const float* mine, float* all, const std::vector<size_t>& counts,
               size_t bucket = kBucket);
  // Rank 0 receives every rank's string, in rank order; other ranks get an empty vector.
  std::vector<std::string> gather(const std::string& mine);
  // Every rank's value, in rank order, on every rank.
  std::vector<int64_t> allgather(int64_t v);
  // send[r] goes to rank r; returns what each rank sent here, indexed by source rank.
  // Each message must be under 2 GiB.
  std::vector<std::string> alltoallv(const std::vector<std::string>& send);
  // Floats that went through this Comm's float collectives (all-reduce, reduce, reduce-scatter,
  // all-gather: each counted once at its buffer's size, whatever the algorithm moves), for the
  // trainers' communication figures.
  uint64_t floats() const { return floats_; }
  // `bytes` bytes from `root` to every rank.
  void broadcast(void* data, size_t bytes, int root);
  void abort(int code);  // MPI_Abort of the world under MPI, otherwise nothing
  void finalize();  // the world's

 private:
  struct Private {};
  Comm();
  explicit Comm(Private) {}
  int rank_ = 0, size_ = 1;
  bool mpi_ = false;
  std::shared_ptr<void> native_;  // a split's MPI_Comm; null: the world's
  uint64_t floats_ = 0;
};

// A piece of work: a whole file, or the byte range [begin, end) of an uncompressed file.
struct InputPart {
  std::string path;
  uint64_t begin = 0, end = UINT64_MAX;
  bool whole = true;
  std::string label;  // name in messages when not the path (a copy of stdin, say)
};

// Splits inputs across ranks by bytes: the files are laid end to end and cut into `size` equal
// ranges; a splittable file (plain JSONL) is cut inside at line boundaries (by LineReader), any
// other file (compressed, HTML, WARC) goes whole to the rank whose range holds its middle byte,
// which balances whole files by size. Order is preserved, so concatenating the ranks' outputs
// in rank order gives the 1-rank output.
std::vector<InputPart> split_inputs(const std::vector<std::string>& paths, int rank, int size,
                                    const std::function<bool(const std::string&)>& splittable);

// Output name of a rank's part: with one rank, `out` itself; otherwise for a directory
// DIR/part-RRRRR<ext>, for a file "NAME.jsonl.zst" -> "NAME-RRRRR.jsonl.zst".
std::string rank_output_path(const std::string& out, const std::string& ext, int rank, int size);

}  // namespace llmkit
