// Temporary files, spools and the rank-to-rank exchange; see llmkit/spill.hpp.
#include "llmkit/spill.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>

#include "llmkit/error.hpp"
#include "llmkit/log.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {

namespace {
std::atomic<uint64_t> g_spilled{0};
}

uint64_t spilled_bytes_total() { return g_spilled.load(); }

std::string temp_dir(const std::string& dir) {
  if (!dir.empty()) return dir;
  const char* env = std::getenv("TMPDIR");
  return env && *env ? env : "/tmp";
}

TempFile::TempFile(const std::string& dir, std::string what, bool spill)
    : dir_(dir), what_(std::move(what)), spill_(spill) {
#ifdef O_TMPFILE
  fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
  if (fd_ < 0) {  // file systems without O_TMPFILE: create, then unlink at once
    std::string tmpl = dir + "/llmkit-spill-XXXXXX";
    fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd_ >= 0) ::unlink(tmpl.c_str());
  }
  if (fd_ < 0) throw Error(dir, errno_message("cannot create a temporary file for " + what_, errno));
}

TempFile::~TempFile() {
  if (fd_ >= 0) ::close(fd_);
}

void TempFile::append(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  size_t left = n;
  while (left > 0) {
    ssize_t w = ::pwrite(fd_, p, left, static_cast<off_t>(size_));
    if (w < 0 && errno == EINTR) {
      throw_if_stopped();
      continue;
    }
    if (w <= 0) {
      int err = w < 0 ? errno : ENOSPC;
      throw Error(dir_, errno_message("writing " + human_bytes(static_cast<double>(n)) + " of " +
                                          what_ + " to a temporary file (" +
                                          human_bytes(static_cast<double>(size_)) +
                                          " written there already; --tmp picks another directory)",
                                      err));
    }
    p += w;
    left -= static_cast<size_t>(w);
    size_ += static_cast<uint64_t>(w);
  }
  if (spill_) g_spilled += n;
}

void TempFile::read_at(uint64_t offset, void* out, size_t n) const {
  char* p = static_cast<char*>(out);
  while (n > 0) {
    ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) {
      throw_if_stopped();
      continue;
    }
    if (r <= 0) throw Error(dir_, errno_message("reading back " + what_ + " from a temporary file",
                                                r < 0 ? errno : EIO));
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// ---- Spool ---------------------------------------------------------------------------------

Spool::Spool(std::string dir, size_t budget, size_t record_size, std::string what)
    : dir_(std::move(dir)), what_(std::move(what)), budget_(std::max<size_t>(budget, 4096)),
      record_size_(record_size) {}

void Spool::append(const void* data, size_t n) {
  if (reading_) throw Error("", "Spool: append after read (" + what_ + ")");
  if (record_size_ == 0) {
    uint32_t len = static_cast<uint32_t>(n);
    mem_.append(reinterpret_cast<const char*>(&len), 4);
    bytes_ += 4;
  }
  mem_.append(static_cast<const char*>(data), n);
  bytes_ += n;
  if (mem_.size() >= budget_) spill();
}

void Spool::spill() {
  if (!file_) file_ = std::make_unique<TempFile>(dir_, what_);
  file_->append(mem_.data(), mem_.size());
  mem_.clear();
}

void Spool::read_bytes(uint64_t from, char* dst, size_t n) const {
  const uint64_t on_disk = file_ ? file_->size() : 0;
  if (from < on_disk) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, on_disk - from));
    file_->read_at(from, dst, k);
    dst += k;
    n -= k;
    from += k;
  }
  if (n > 0) std::memcpy(dst, mem_.data() + (from - on_disk), n);
}

bool Spool::read(std::string& out, size_t max_bytes) {
  reading_ = true;
  out.clear();
  // The logical stream is the file, then the memory tail.
  while (remaining() > 0 && (out.empty() || out.size() < max_bytes)) {
    size_t n;
    if (record_size_ > 0) {
      uint64_t records = std::max<uint64_t>((max_bytes - std::min(max_bytes, out.size())) / record_size_, 1);
      n = static_cast<size_t>(std::min<uint64_t>(records * record_size_, remaining()));
    } else {
      uint32_t len;
      read_bytes(consumed_, reinterpret_cast<char*>(&len), 4);
      n = 4 + static_cast<size_t>(len);
      if (!out.empty() && out.size() + n > max_bytes) break;
    }
    size_t at = out.size();
    out.resize(at + n);
    read_bytes(consumed_, out.data() + at, n);
    consumed_ += n;
  }
  return !out.empty();
}

// ---- exchange --------------------------------------------------------------------------------

void exchange(Comm& comm, std::vector<Spool>& out, size_t round_bytes,
              const std::function<void(int, const std::string&)>& receive) {
  const int size = comm.size();
  if (static_cast<int>(out.size()) != size)
    throw Error("", "exchange: " + std::to_string(out.size()) + " spools for " +
                        std::to_string(size) + " ranks");
  std::vector<std::string> send(size);
  while (true) {
    throw_if_stopped();
    bool more = false;
    for (int r = 0; r < size; ++r) {
      out[r].read(send[r], round_bytes);
      more |= out[r].remaining() > 0;
    }
    if (size == 1) {
      if (!send[0].empty()) receive(0, send[0]);
      if (!more) break;
      continue;
    }
    std::vector<std::string> got = comm.alltoallv(send);
    for (int r = 0; r < size; ++r)
      if (!got[r].empty()) receive(r, got[r]);
    // Another round while any rank still has something to send.
    if (comm.allreduce_max(more ? 1 : 0) == 0) break;
  }
}

}  // namespace llmkit
