#include "llmkit/mpi.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"

namespace llmkit {
namespace {
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}
// The MPI communicator a Comm stands for: the world's, or a split's (held by its native_).
MPI_Comm comm_of(const std::shared_ptr<void>& native) {
  return native ? *static_cast<MPI_Comm*>(native.get()) : MPI_COMM_WORLD;
}
}  // namespace

Comm& Comm::world() {
  static Comm comm;
  return comm;
}

Comm::Comm() {
  if (!launched_by_mpi()) return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  mpi_ = true;
}

std::unique_ptr<Comm> Comm::split(int color, int key) {
  std::unique_ptr<Comm> c(new Comm(Private{}));
  if (!mpi_) return c;
  auto* handle = new MPI_Comm(MPI_COMM_NULL);
  MPI_Comm_split(comm_of(native_), color, key, handle);
  c->native_ = std::shared_ptr<void>(handle, [](void* p) {
    auto* h = static_cast<MPI_Comm*>(p);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && *h != MPI_COMM_NULL) MPI_Comm_free(h);
    delete h;
  });
  MPI_Comm_rank(*handle, &c->rank_);
  MPI_Comm_size(*handle, &c->size_);
  c->mpi_ = true;
  return c;
}

void Comm::broadcast(void* data, size_t bytes, int root) {
  if (!mpi_ || size_ == 1) return;
  if (bytes > static_cast<size_t>(INT32_MAX)) throw Error("", "MPI broadcast of " + std::to_string(bytes) + " bytes is too large");
  MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_of(native_));
}

int Comm::local_rank() {
  if (!mpi_) return 0;
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  int r = 0;
  MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  return r;
}

void Comm::barrier() {
  if (mpi_) MPI_Barrier(comm_of(native_));
}

int64_t Comm::allreduce_sum(int64_t v) {
  if (!mpi_) return v;
  int64_t out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_SUM, comm_of(native_));
  return out;
}

int64_t Comm::allreduce_max(int64_t v) {
  if (!mpi_) return v;
  int64_t out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_MAX, comm_of(native_));
  return out;
}

std::vector<std::string> Comm::gather(const std::string& mine) {
  if (!mpi_) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(rank_ == 0 ? size_ : 0), displs;
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, comm_of(native_));
  std::string all;
  if (rank_ == 0) {
    displs.resize(size_);
    int total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[r] = total;
      total += lens[r];
    }
    all.resize(total);
  }
  MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0,
              comm_of(native_));
  std::vector<std::string> out;
  if (rank_ == 0)
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(displs[r], lens[r]));
  return out;
}

double Comm::allreduce_sum_double(double v) {
  if (!mpi_) return v;
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, comm_of(native_));
  return out;
}

void Comm::allreduce_sum(float* data, size_t n, size_t bucket) {
  if (!mpi_) return;
  floats_ += n;
  bucket = std::clamp<size_t>(bucket, 1, INT32_MAX);
  for (size_t at = 0; at < n; at += bucket) {
    int count = static_cast<int>(std::min(bucket, n - at));
    MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, comm_of(native_));
  }
}

double Comm::allreduce_max_double(double v) {
  if (!mpi_) return v;
  double out = v;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, comm_of(native_));
  return out;
}

void Comm::allreduce_sum(double* data, size_t n, size_t bucket) {
  if (!mpi_) return;
  bucket = std::clamp<size_t>(bucket, 1, INT32_MAX);
  for (size_t at = 0; at < n; at += bucket) {
    int count = static_cast<int>(std::min(bucket, n - at));
    MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_DOUBLE, MPI_SUM, comm_of(native_));
  }
}

void Comm::reduce_sum(float* data, size_t n, int root, size_t bucket) {
  if (!mpi_) return;
  floats_ += n;
  bucket = std::clamp<size_t>(bucket, 1, INT32_MAX);
  for (size_t at = 0; at < n; at += bucket) {
    int count = static_cast<int>(std::min(bucket, n - at));
    if (rank_ == root) MPI_Reduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, root, comm_of(native_));
    else MPI_Reduce(data + at, nullptr, count, MPI_FLOAT, MPI_SUM, root, comm_of(native_));
  }
}

namespace {

// The collectives on a buffer of per-rank segments go in rounds: round k moves the k-th piece
// (up to bucket / ranks floats) of every rank's segment. So a round holds at most `bucket`
// floats, its counts and displacements fit an int, and every rank takes part in every round
// (windows over the buffer would leave most ranks idle while one segment is reduced). A round's
// pieces are packed end to end in a staging buffer, except when there is one round: the pieces
// are then the segments themselves, already end to end in the caller's buffer.
class Rounds {
 public:
  Rounds(const std::vector<size_t>& counts, int ranks, size_t bucket) : counts_(counts) {
    if (counts.size() != static_cast<size_t>(ranks))
      throw Error("", "a collective over " + std::to_string(counts.size()) + " segments on " +
                          std::to_string(ranks) + " ranks");
    size_t longest = 0;
    for (size_t c : counts) {
      offsets_.push_back(total_);
      total_ += c;
      longest = std::max(longest, c);
    }
    piece_ = std::max<size_t>(1, std::clamp<size_t>(bucket, 1, INT32_MAX) / counts.size());
    rounds_ = (longest + piece_ - 1) / piece_;
  }
  size_t rounds() const { return rounds_; }
  bool staged() const { return rounds_ > 1; }
  size_t stage_size() const { return staged() ? std::min(total_, piece_ * counts_.size()) : 0; }
  // Where the pieces of round k start within their segments, and rank r's in the buffer.
  size_t within(size_t k) const { return k * piece_; }
  size_t source(int r, size_t k) const { return offsets_[static_cast<size_t>(r)] + within(k); }
  // Round k's piece lengths and their places in the packed buffer.
  void round(size_t k, std::vector<int>& counts, std::vector<int>& displs) const {
    counts.resize(counts_.size());
    displs.resize(counts_.size());
    int at = 0;
    const size_t done = within(k);
    for (size_t r = 0; r < counts_.size(); ++r) {
      counts[r] = static_cast<int>(counts_[r] > done ? std::min(piece_, counts_[r] - done) : 0);
      displs[r] = at;
      at += counts[r];
    }
  }

 private:
  std::vector<size_t> counts_, offsets_;
  size_t total_ = 0, piece_ = 1, rounds_ = 0;
};

// A piece of a round (its length an MPI count); the two may overlap or be the same.
void copy_piece(float* dst, const float* src, int n) {
  if (n > 0 && dst != src) std::memmove(dst, src, static_cast<size_t>(n) * sizeof(float));
}

}  // namespace

void Comm::reduce_scatter_sum(float* data, const std::vector<size_t>& counts, size_t bucket) {
  const Rounds plan(counts, size_, bucket);
  if (!mpi_) return;
  for (size_t c : counts) floats_ += c;
  std::vector<float> stage(plan.stage_size());
  std::vector<int> n, displs;
  for (size_t k = 0; k < plan.rounds(); ++k) {
    plan.round(k, n, displs);
    float* packed = plan.staged() ? stage.data() : data;
    if (plan.staged())
      for (int r = 0; r < size_; ++r) copy_piece(packed + displs[r], data + plan.source(r, k), n[r]);
    // In place, MPI leaves this rank's sum at the start of the buffer: move it to its piece.
    MPI_Reduce_scatter(MPI_IN_PLACE, packed, n.data(), MPI_FLOAT, MPI_SUM, comm_of(native_));
    copy_piece(data + plan.source(rank_, k), packed, n[rank_]);
  }
}

void Comm::allgatherv(float* data, const std::vector<size_t>& counts, size_t bucket) {
  const Rounds plan(counts, size_, bucket);
  if (!mpi_) return;
  for (size_t c : counts) floats_ += c;
  std::vector<float> stage(plan.stage_size());
  std::vector<int> n, displs;
  for (size_t k = 0; k < plan.rounds(); ++k) {
    plan.round(k, n, displs);
    float* packed = plan.staged() ? stage.data() : data;
    if (plan.staged()) copy_piece(packed + displs[rank_], data + plan.source(rank_, k), n[rank_]);
    // In place, each rank's contribution is already where it goes in the buffer.
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, packed, n.data(), displs.data(), MPI_FLOAT,
                   comm_of(native_));
    if (plan.staged())
      for (int r = 0; r < size_; ++r)
        if (r != rank_) copy_piece(data + plan.source(r, k), packed + displs[r], n[r]);
  }
}

void Comm::gatherv(const float* mine, float* all, const std::vector<size_t>& counts, size_t bucket) {
  const Rounds plan(counts, size_, bucket);
  if (!mpi_) {
    if (counts[0] > 0 && all != mine) std::memcpy(all, mine, counts[0] * sizeof(float));
    return;
  }
  std::vector<float> stage(rank_ == 0 ? plan.stage_size() : 0);
  std::vector<int> n, displs;
  for (size_t k = 0; k < plan.rounds(); ++k) {
    plan.round(k, n, displs);
    float* packed = rank_ != 0 ? nullptr : plan.staged() ? stage.data() : all;
    MPI_Gatherv(mine + plan.within(k), n[rank_], MPI_FLOAT, packed, n.data(), displs.data(), MPI_FLOAT, 0, comm_of(native_));
    if (rank_ == 0 && plan.staged())
      for (int r = 0; r < size_; ++r) copy_piece(all + plan.source(r, k), packed + displs[r], n[r]);
  }
}

std::vector<int64_t> Comm::allgather(int64_t v) {
  if (!mpi_) return {v};
  std::vector<int64_t> all(size_);
  MPI_Allgather(&v, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, comm_of(native_));
  return all;
}

std::vector<std::string> Comm::alltoallv(const std::vector<std::string>& send) {
  if (!mpi_) return {send.at(0)};
  std::vector<int> send_counts(size_), recv_counts(size_), send_displs(size_), recv_displs(size_);
  std::string send_buf;
  for (int r = 0; r < size_; ++r) {
    if (send[r].size() > static_cast<size_t>(INT32_MAX))
      throw Error("", "MPI message of " + std::to_string(send[r].size()) + " bytes is too large");
    send_displs[r] = static_cast<int>(send_buf.size());
    send_counts[r] = static_cast<int>(send[r].size());
    send_buf += send[r];
  }
  MPI_Alltoall(send_counts.data(), 1, MPI_INT, recv_counts.data(), 1, MPI_INT, comm_of(native_));
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    recv_displs[r] = static_cast<int>(total);
    total += recv_counts[r];
  }
  if (total > INT32_MAX) throw Error("", "MPI exchange of " + std::to_string(total) + " bytes is too large");
  std::string recv_buf(static_cast<size_t>(total), '\0');
  MPI_Alltoallv(send_buf.data(), send_counts.data(), send_displs.data(), MPI_CHAR, recv_buf.data(),
                recv_counts.data(), recv_displs.data(), MPI_CHAR, comm_of(native_));
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = recv_buf.substr(recv_displs[r], recv_counts[r]);
  return out;
}

void Comm::abort(int code) {
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, code);
}

void Comm::finalize() {
  if (!mpi_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
  mpi_ = false;
}

std::vector<InputPart> split_inputs(const std::vector<std::string>& paths, int rank, int size,
                                    const std::function<bool(const std::string&)>& splittable) {
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const auto& p : paths) {
    sizes.push_back(file_size(p));
    total += sizes.back();
  }
  // Rank r owns the global byte range [lo, hi). A file that cannot be cut (compressed, HTML,
  // WARC) goes whole to the owner of its middle byte, so that its bytes count where most of
  // them lie: two compressed files on two ranks go one to each (by their first bytes, both
  // would go to rank 0 whenever the first is the smaller), and a rank's share stays within
  // half a file of its byte range. A zero-length file has its middle at its offset.
  auto bound = [&](int r) { return static_cast<uint64_t>((__uint128_t)total * r / size); };
  uint64_t lo = bound(rank), hi = bound(rank + 1);
  bool last = rank == size - 1;
  std::vector<InputPart> parts;
  uint64_t offset = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    uint64_t start = offset, end = offset + sizes[i];
    offset = end;
    if (size == 1 || !splittable(paths[i]) || sizes[i] == 0) {
      const uint64_t middle = start + sizes[i] / 2;
      if ((middle >= lo && middle < hi) || (last && middle >= hi)) parts.push_back({paths[i], 0, UINT64_MAX, true, ""});
      continue;
    }
    uint64_t b = std::max(start, lo), e = last ? end : std::min(end, hi);
    if (b >= e) continue;
    InputPart part{paths[i], b - start, e - start, false, ""};
    if (part.begin == 0 && e == end) part = {paths[i], 0, UINT64_MAX, true, ""};
    parts.push_back(part);
  }
  return parts;
}

std::string rank_output_path(const std::string& out, const std::string& ext, int rank, int size) {
  char num[16];
  snprintf(num, sizeof num, "%05d", rank);
  if (is_directory(out) || (!out.empty() && out.back() == '/')) {
    std::string dir = out.back() == '/' ? out : out + "/";
    return dir + "part-" + num + ext;
  }
  if (size == 1) return out;
  // Insert the rank before the first extension of the file name: NAME.jsonl.zst -> NAME-RRRRR.jsonl.zst
  size_t slash = out.rfind('/');
  size_t dot = out.find('.', slash == std::string::npos ? 0 : slash + 1);
  if (dot == std::string::npos || dot == (slash == std::string::npos ? 0 : slash + 1))
    return out + "-" + num;
  return out.substr(0, dot) + "-" + num + out.substr(dot);
}

}  // namespace llmkit
