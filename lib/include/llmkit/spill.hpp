// Bounded-memory record handling for commands whose data outgrows memory (llm-dedup's band
// keys, hashes and pairs): temporary files that vanish with the process, byte spools, external
// sorting of fixed-size records, and the rank-to-rank shuffle built on them.
//
// Every structure takes a memory budget in bytes. What does not fit goes to unlinked temporary
// files in a directory (--tmp), so a killed run leaves nothing behind, and a full disk is an
// Error naming the directory and the amount that was being written.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <type_traits>
#include <vector>

#include "llmkit/mpi.hpp"

namespace llmkit {

// The directory for temporary files: `dir` if set, else $TMPDIR, else /tmp.
std::string temp_dir(const std::string& dir);

// A temporary file unlinked at creation (O_TMPFILE where the file system has it). Its bytes
// count in spilled_bytes_total() unless `spill` is false (a working file, not an overflow).
class TempFile {
 public:
  TempFile(const std::string& dir, std::string what, bool spill = true);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  void append(const void* data, size_t n);  // throws Error ("no space left...") on failure
  void read_at(uint64_t offset, void* out, size_t n) const;
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string dir_, what_;
  bool spill_;
};

// Bytes that did not fit in memory and went to temporary files, in this process (for --stats).
uint64_t spilled_bytes_total();

// Records appended in memory, the excess written to a TempFile, then read back once, in
// order. record_size > 0: fixed-size records; 0: variable-size records, framed by a length.
class Spool {
 public:
  Spool(std::string dir, size_t budget, size_t record_size, std::string what);
  void append(const void* data, size_t n);
  // Appends whole records to `out` (cleared first), at least one and about max_bytes in all;
  // for variable records each one keeps its 4-byte length prefix. False when nothing is left.
  bool read(std::string& out, size_t max_bytes);
  uint64_t bytes() const { return bytes_; }  // appended so far, framing included
  uint64_t remaining() const { return bytes_ - consumed_; }
  size_t record_size() const { return record_size_; }

 private:
  void spill();
  void read_bytes(uint64_t from, char* dst, size_t n) const;
  std::string dir_, what_;
  size_t budget_, record_size_;
  std::string mem_;
  std::unique_ptr<TempFile> file_;
  uint64_t bytes_ = 0, consumed_ = 0;
  bool reading_ = false;
};

// Walks the variable-size records of a Spool::read() chunk.
template <class F>
void for_each_record(const std::string& chunk, F&& f) {
  for (size_t pos = 0; pos + 4 <= chunk.size();) {
    uint32_t n;
    std::memcpy(&n, chunk.data() + pos, 4);
    f(chunk.data() + pos + 4, static_cast<size_t>(n));
    pos += 4 + n;
  }
}

// Sorts trivially copyable records with at most `budget` bytes of them in memory: a full
// buffer is sorted and written as a run; reading merges the runs (k-way, one read buffer per
// run). Add everything, call finish(), then next() until it returns false. The order of records
// that compare equal is unspecified: give a total order where the result must be reproducible.
template <class T, class Less = std::less<T>>
class ExternalSorter {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  ExternalSorter(std::string dir, size_t budget, std::string what, Less less = Less())
      : dir_(std::move(dir)), what_(std::move(what)), less_(less),
        capacity_(std::max<size_t>(budget / sizeof(T), 1024)) {}
  ExternalSorter(const ExternalSorter&) = delete;  // the heap points back at this object
  ExternalSorter& operator=(const ExternalSorter&) = delete;

  void add(const T& v) {
    if (buf_.size() >= capacity_) spill();
    buf_.push_back(v);
    ++count_;
  }
  template <class It>
  void add(It first, It last) {
    for (; first != last; ++first) add(*first);
  }

  void finish() {
    sort_buffer();
    if (runs_.empty()) return;
    if (!buf_.empty()) spill();
    buf_.clear();
    buf_.shrink_to_fit();
    // One read buffer per run from the budget, at least 64 KiB each.
    size_t per_run = std::max<size_t>(capacity_ / runs_.size(), (64 << 10) / sizeof(T));
    for (auto& r : runs_) r.buf.reserve(per_run);
    for (size_t i = 0; i < runs_.size(); ++i)
      if (refill(runs_[i])) heap_.push(i);
  }

  bool next(T& out) {
    if (runs_.empty()) {
      if (pos_ >= buf_.size()) return false;
      out = buf_[pos_++];
      return true;
    }
    if (heap_.empty()) return false;
    size_t i = heap_.top();
    heap_.pop();
    Run& r = runs_[i];
    out = r.buf[r.pos++];
    if (r.pos < r.buf.size() || refill(r)) heap_.push(i);
    return true;
  }

  uint64_t count() const { return count_; }
  size_t runs() const { return runs_.size(); }

 private:
  struct Run {
    uint64_t offset, count, read = 0;
    std::vector<T> buf;
    size_t pos = 0;
  };
  struct HeapLess {
    const ExternalSorter* s;
    bool operator()(size_t a, size_t b) const {  // min-heap on the head records; run order breaks ties
      const T& x = s->runs_[a].buf[s->runs_[a].pos];
      const T& y = s->runs_[b].buf[s->runs_[b].pos];
      if (s->less_(y, x)) return true;
      if (s->less_(x, y)) return false;
      return a > b;
    }
  };

  void sort_buffer() { std::sort(buf_.begin(), buf_.end(), less_); }

  void spill() {
    if (!file_) file_ = std::make_unique<TempFile>(dir_, what_);
    sort_buffer();
    runs_.push_back(Run{file_->size(), buf_.size(), 0, {}, 0});
    file_->append(buf_.data(), buf_.size() * sizeof(T));
    buf_.clear();
  }

  bool refill(Run& r) {
    uint64_t n = std::min<uint64_t>(r.buf.capacity(), r.count - r.read);
    if (n == 0) return false;
    r.buf.resize(n);
    file_->read_at(r.offset + r.read * sizeof(T), r.buf.data(), n * sizeof(T));
    r.read += n;
    r.pos = 0;
    return true;
  }

  std::string dir_, what_;
  Less less_;
  size_t capacity_;
  std::vector<T> buf_;
  size_t pos_ = 0;
  uint64_t count_ = 0;
  std::unique_ptr<TempFile> file_;
  std::vector<Run> runs_;
  std::priority_queue<size_t, std::vector<size_t>, HeapLess> heap_{HeapLess{this}};
};

// Sends each rank's spool to that rank in rounds of at most round_bytes per destination, so
// that memory stays bounded, calling receive(source_rank, chunk) with whole records as they
// arrive (chunks from lower ranks first within a round). Collective: all ranks call it with
// comm.size() spools. With one rank, spool 0 is simply read back.
void exchange(Comm& comm, std::vector<Spool>& out, size_t round_bytes,
              const std::function<void(int, const std::string&)>& receive);

// Fixed-size records routed to owner ranks and received there into an ExternalSorter:
// add(dest, record) on every rank, then finish() (collective), then read sorted() locally.
template <class T, class Less = std::less<T>>
class Shuffle {
 public:
  Shuffle(Comm& comm, const std::string& dir, size_t budget, const std::string& what,
          Less less = Less())
      : comm_(comm), sorted_(dir, comm.size() == 1 ? budget : budget / 2, what, less) {
    if (comm.size() > 1) {
      size_t share = std::max<size_t>(budget / 2 / comm.size(), 64 * sizeof(T));
      for (int r = 0; r < comm.size(); ++r) out_.emplace_back(dir, share, sizeof(T), what);
    }
  }
  void add(int dest, const T& v) {
    if (out_.empty()) sorted_.add(v);
    else out_[dest].append(&v, sizeof(T));
  }
  // Collective. round_bytes: per destination and round.
  ExternalSorter<T, Less>& finish(size_t round_bytes = 16 << 20) {
    if (!out_.empty()) {
      round_bytes = std::max(round_bytes - round_bytes % sizeof(T), sizeof(T));
      exchange(comm_, out_, round_bytes, [&](int, const std::string& chunk) {
        const size_t n = chunk.size() / sizeof(T);
        for (size_t i = 0; i < n; ++i) {
          T v;
          std::memcpy(&v, chunk.data() + i * sizeof(T), sizeof(T));
          sorted_.add(v);
        }
      });
      out_.clear();
    }
    sorted_.finish();
    return sorted_;
  }
  ExternalSorter<T, Less>& sorted() { return sorted_; }

 private:
  Comm& comm_;
  std::vector<Spool> out_;
  ExternalSorter<T, Less> sorted_;
};

}  // namespace llmkit
