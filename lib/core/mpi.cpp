#include "llmkit/mpi.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"

namespace llmkit {
namespace {
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
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

void Comm::barrier() {
  if (mpi_) MPI_Barrier(MPI_COMM_WORLD);
}

int64_t Comm::allreduce_sum(int64_t v) {
  if (!mpi_) return v;
  int64_t out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  return out;
}

int64_t Comm::allreduce_max(int64_t v) {
  if (!mpi_) return v;
  int64_t out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

std::vector<std::string> Comm::gather(const std::string& mine) {
  if (!mpi_) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(rank_ == 0 ? size_ : 0), displs;
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
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
              MPI_COMM_WORLD);
  std::vector<std::string> out;
  if (rank_ == 0)
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(displs[r], lens[r]));
  return out;
}

double Comm::allreduce_sum_double(double v) {
  if (!mpi_) return v;
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return out;
}

void Comm::allreduce_sum(float* data, size_t n) {
  if (!mpi_) return;
  constexpr size_t kBucket = size_t{1} << 24;
  for (size_t at = 0; at < n; at += kBucket) {
    int count = static_cast<int>(std::min(kBucket, n - at));
    MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
}

std::vector<int64_t> Comm::allgather(int64_t v) {
  if (!mpi_) return {v};
  std::vector<int64_t> all(size_);
  MPI_Allgather(&v, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, MPI_COMM_WORLD);
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
  MPI_Alltoall(send_counts.data(), 1, MPI_INT, recv_counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    recv_displs[r] = static_cast<int>(total);
    total += recv_counts[r];
  }
  if (total > INT32_MAX) throw Error("", "MPI exchange of " + std::to_string(total) + " bytes is too large");
  std::string recv_buf(static_cast<size_t>(total), '\0');
  MPI_Alltoallv(send_buf.data(), send_counts.data(), send_displs.data(), MPI_CHAR, recv_buf.data(),
                recv_counts.data(), recv_displs.data(), MPI_CHAR, MPI_COMM_WORLD);
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
  // Rank r owns the global byte range [lo, hi). Whole files go to the owner of their first
  // byte; a zero-length file counts as starting at its offset, so it still has one owner.
  auto bound = [&](int r) { return static_cast<uint64_t>((__uint128_t)total * r / size); };
  uint64_t lo = bound(rank), hi = bound(rank + 1);
  bool last = rank == size - 1;
  std::vector<InputPart> parts;
  uint64_t offset = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    uint64_t start = offset, end = offset + sizes[i];
    offset = end;
    bool owns_start = (start >= lo && start < hi) || (last && start >= hi);
    if (size == 1 || !splittable(paths[i]) || sizes[i] == 0) {
      if (owns_start) parts.push_back({paths[i], 0, UINT64_MAX, true, ""});
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
