#include "llmkit/io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "llmkit/error.hpp"
#include "llmkit/tool.hpp"

namespace llmkit {
namespace {

constexpr size_t kChunk = 1 << 20;

std::string display_name(const std::string& path) {
  return path.empty() || path == "-" ? "<stdin>" : path;
}

// Reads raw bytes from a descriptor, with a few bytes pushed back after sniffing the magic.
class FdSource {
 public:
  FdSource(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  ~FdSource() {
    if (fd_ > 0) ::close(fd_);
  }
  size_t read(char* buf, size_t n) {
    if (!pushback_.empty()) {
      size_t k = std::min(n, pushback_.size());
      std::memcpy(buf, pushback_.data(), k);
      pushback_.erase(0, k);
      return k;
    }
    return read_raw(buf, n);
  }
  std::string peek(size_t n) {
    while (pushback_.size() < n) {
      char tmp[16];
      size_t r = read_raw(tmp, n - pushback_.size());
      if (r == 0) break;
      pushback_.append(tmp, r);
    }
    return pushback_;
  }
  uint64_t consumed() const { return consumed_; }
  void seek(uint64_t offset) {
    pushback_.clear();
    consumed_ = 0;
    if (::lseek(fd_, static_cast<off_t>(offset), SEEK_SET) < 0)
      throw Error(name_, errno_message("seek failed", errno));
  }

 private:
  size_t read_raw(char* buf, size_t n) {
    for (;;) {
      ssize_t r = ::read(fd_, buf, n);
      if (r >= 0) {
        consumed_ += r;
        return static_cast<size_t>(r);
      }
      if (errno != EINTR) throw Error(name_, errno_message("read failed", errno));
      throw_if_stopped();  // a stop signal interrupted a blocking read (a pipe, a FIFO)
    }
  }
  int fd_;
  std::string name_;
  std::string pushback_;
  uint64_t consumed_ = 0;
};

Compression classify(const std::string& magic) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(magic[i]); };
  if (magic.size() >= 4 && b(0) == 0x28 && b(1) == 0xB5 && b(2) == 0x2F && b(3) == 0xFD)
    return Compression::zstd;
  if (magic.size() >= 2 && b(0) == 0x1F && b(1) == 0x8B) return Compression::gzip;
  return Compression::none;
}

class PlainInput : public InputStream {
 public:
  explicit PlainInput(std::unique_ptr<FdSource> src) : src_(std::move(src)) {}
  size_t read(char* buf, size_t n) override {
    size_t r = src_->read(buf, n);
    bytes_read_ += r;
    return r;
  }
  uint64_t raw_bytes_read() const override { return src_->consumed(); }

 private:
  std::unique_ptr<FdSource> src_;
};

class ZstdInput : public InputStream {
 public:
  explicit ZstdInput(std::unique_ptr<FdSource> src) : src_(std::move(src)), in_(kChunk) {
    ds_ = ZSTD_createDStream();
    ZSTD_initDStream(ds_);
  }
  ~ZstdInput() override { ZSTD_freeDStream(ds_); }
  size_t read(char* buf, size_t n) override {
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (ib_.pos == ib_.size) {
        size_t r = src_->read(in_.data(), in_.size());
        if (r == 0) {
          if (!frame_done_) throw Error(name_, "truncated zstd stream (file cut short?)");
          return 0;
        }
        ib_ = {in_.data(), r, 0};
      }
      size_t ret = ZSTD_decompressStream(ds_, &out, &ib_);
      if (ZSTD_isError(ret))
        throw Error(name_, std::string("corrupt zstd data: ") + ZSTD_getErrorName(ret));
      frame_done_ = ret == 0;  // 0: a frame ended; concatenated frames just continue
    }
    bytes_read_ += out.pos;
    return out.pos;
  }
  uint64_t raw_bytes_read() const override { return src_->consumed(); }

 private:
  std::unique_ptr<FdSource> src_;
  std::vector<char> in_;
  ZSTD_inBuffer ib_{nullptr, 0, 0};
  ZSTD_DStream* ds_;
  bool frame_done_ = true;
};

// gzip, including files made of many members (as .warc.gz is: one member per record).
class GzipInput : public InputStream {
 public:
  explicit GzipInput(std::unique_ptr<FdSource> src) : src_(std::move(src)), in_(kChunk) {
    std::memset(&zs_, 0, sizeof zs_);
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) throw Error(name_, "zlib init failed");
  }
  ~GzipInput() override { inflateEnd(&zs_); }
  size_t read(char* buf, size_t n) override {
    zs_.next_out = reinterpret_cast<Bytef*>(buf);
    zs_.avail_out = static_cast<uInt>(std::min<size_t>(n, UINT32_MAX));
    while (zs_.avail_out == n) {
      if (zs_.avail_in == 0) {
        size_t r = src_->read(in_.data(), in_.size());
        if (r == 0) {
          if (in_member_) throw Error(name_, "truncated gzip stream (file cut short?)");
          return 0;
        }
        zs_.next_in = reinterpret_cast<Bytef*>(in_.data());
        zs_.avail_in = static_cast<uInt>(r);
      }
      in_member_ = true;
      int ret = inflate(&zs_, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        in_member_ = false;
        inflateReset(&zs_);
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        throw Error(name_, std::string("corrupt gzip data: ") + (zs_.msg ? zs_.msg : "?"));
      }
    }
    bytes_read_ += n - zs_.avail_out;
    return n - zs_.avail_out;
  }
  uint64_t raw_bytes_read() const override { return src_->consumed(); }

 private:
  std::unique_ptr<FdSource> src_;
  std::vector<char> in_;
  z_stream zs_;
  bool in_member_ = false;
};

template <class T>
std::unique_ptr<InputStream> make_input(std::unique_ptr<FdSource> src, const std::string& name,
                                        Compression c) {
  auto in = std::make_unique<T>(std::move(src));
  struct Access : InputStream {
    static void set(InputStream& s, const std::string& n, Compression c) {
      static_cast<Access&>(s).name_ = n;
      static_cast<Access&>(s).compression_ = c;
    }
  };
  Access::set(*in, name, c);
  return in;
}

}  // namespace

bool has_suffix(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  if (path.empty() || path == "-" || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return 0;
  return static_cast<uint64_t>(st.st_size);
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Compression sniff_compression(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Compression::none;
  char magic[4];
  ssize_t r = ::read(fd, magic, 4);
  ::close(fd);
  return classify(std::string(magic, r > 0 ? r : 0));
}

std::unique_ptr<InputStream> open_input(const std::string& path, uint64_t begin, uint64_t end) {
  std::string name = display_name(path);
  bool is_stdin = path.empty() || path == "-";
  int fd = is_stdin ? 0 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(name, errno_message("cannot open", errno));
  if (!is_stdin && is_directory(path)) {
    ::close(fd);
    throw Error(name, "is a directory");
  }
  auto src = std::make_unique<FdSource>(fd, name);
  Compression c = classify(src->peek(4));
  bool ranged = begin > 0 || end != UINT64_MAX;
  if (ranged && (c != Compression::none || is_stdin))
    throw Error(name, "a byte range needs an uncompressed regular file");
  if (begin > 0) src->seek(begin);
  switch (c) {
    case Compression::zstd: return make_input<ZstdInput>(std::move(src), name, c);
    case Compression::gzip: return make_input<GzipInput>(std::move(src), name, c);
    default: return make_input<PlainInput>(std::move(src), name, c);
  }
}

// ---- LineReader ----------------------------------------------------------------------------

LineReader::LineReader(std::unique_ptr<InputStream> in, size_t max_line_bytes, uint64_t begin,
                       uint64_t end)
    : in_(std::move(in)), buf_(kChunk), max_line_(max_line_bytes), begin_(begin), end_(end),
      offset_(begin > 0 ? begin - 1 : 0), range_start_(offset_), skip_partial_(begin > 0) {}

bool LineReader::fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
    len_ -= pos_;
    pos_ = 0;
  }
  if (len_ == buf_.size()) buf_.resize(buf_.size() * 2);
  size_t r = in_->read(buf_.data() + len_, buf_.size() - len_);
  if (r == 0) {
    eof_ = true;
    return false;
  }
  len_ += r;
  return true;
}

bool LineReader::next(std::string_view& line, bool& too_long) {
  too_long = false;
  if (skip_partial_) {
    // The stream was opened at begin-1: skip through the first newline, so we start at the
    // first line that begins inside our range (it may be byte begin itself).
    skip_partial_ = false;
    std::string_view partial;
    bool ignored;
    uint64_t saved_end = end_;
    end_ = UINT64_MAX;
    bool got = next(partial, ignored);
    end_ = saved_end;
    --line_in_range_;
    range_start_ = offset_;
    if (!got) return false;
  }
  for (;;) {
    if (offset_ >= end_) return false;
    // Find the newline, growing the buffer up to the line limit.
    size_t scan_from = pos_;
    for (;;) {
      const char* nl = static_cast<const char*>(
          std::memchr(buf_.data() + scan_from, '\n', len_ - scan_from));
      if (nl) {
        size_t n = nl - (buf_.data() + pos_);
        offset_ += n + 1;
        ++line_in_range_;
        if (n > max_line_) too_long = true;
        if (too_long) {
          pos_ += n + 1;
          line = {};
          return true;
        }
        line = std::string_view(buf_.data() + pos_, n);
        pos_ += n + 1;
        return true;
      }
      if (len_ - pos_ > max_line_) {
        // Too long: discard what we have and keep skipping to the newline.
        offset_ += len_ - pos_;
        pos_ = len_;
        too_long = true;
      }
      scan_from = len_ - pos_;
      if (!fill()) {
        if (len_ == pos_) {
          if (too_long) {  // the over-long line was the last one, without a newline
            ++line_in_range_;
            line = {};
            return true;
          }
          return false;
        }
        // Last line without a trailing newline.
        size_t n = len_ - pos_;
        offset_ += n;
        ++line_in_range_;
        too_long = n > max_line_;
        line = too_long ? std::string_view() : std::string_view(buf_.data() + pos_, n);
        pos_ = len_;
        return true;
      }
      scan_from += pos_;  // fill() moved the data to the front; pos_ is now 0
    }
  }
}

uint64_t LineReader::line_number() {
  if (lines_before_ < 0) {
    lines_before_ = 0;
    if (begin_ > 0) {
      // Count the newlines before our range once, only when a message needs the number.
      auto in = open_input(in_->name() == "<stdin>" ? "-" : in_->name());
      std::vector<char> tmp(kChunk);
      // Lines before ours: the newlines before byte begin-1, plus the one that ended the
      // partial line skipped at the start (see skip_partial_).
      uint64_t left = begin_ - 1;
      lines_before_ = 1;
      while (left > 0) {
        size_t r = in->read(tmp.data(), std::min<uint64_t>(left, tmp.size()));
        if (r == 0) break;
        for (size_t i = 0; i < r; ++i) lines_before_ += tmp[i] == '\n';
        left -= r;
      }
    }
  }
  return static_cast<uint64_t>(lines_before_) + line_in_range_;
}

std::unique_ptr<LineReader> open_lines(const std::string& path, uint64_t begin, uint64_t end,
                                       size_t max_line_bytes) {
  auto in = open_input(path, begin > 0 ? begin - 1 : 0, end);
  return std::make_unique<LineReader>(std::move(in), max_line_bytes, begin, end);
}

// ---- OutputStream ----------------------------------------------------------------------------

namespace {

void write_all(int fd, const char* p, size_t n, const std::string& name) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) {
        throw_if_stopped();
        continue;
      }
      // The reader of a pipe went away (`| head`): stop quietly with the status a process
      // killed by SIGPIPE has (128 + 13), as other Unix tools do; outputs not committed are
      // removed on the way out.
      if (errno == EPIPE && fd == 1) throw ExitRequest{141};
      throw Error(name, errno_message("write failed", errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

class FdOutput : public OutputStream {
 public:
  FdOutput(const std::string& path, bool zstd, bool binary, int level) {
    bool is_stdout = path.empty() || path == "-";
    name_ = is_stdout ? "<stdout>" : path;
    if (is_stdout) {
      if ((binary || zstd) && isatty(1))
        throw Error("<stdout>", "refusing to write binary data to a terminal (use -o FILE or a pipe)");
      fd_ = 1;
    } else {
      // Temporary name in the same directory, so the final rename is atomic.
      size_t slash = path.rfind('/');
      std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
      std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
      tmp_ = dir + "/." + base + ".tmp.XXXXXX";
      fd_ = ::mkstemp(tmp_.data());
      if (fd_ < 0) throw Error(path, errno_message("cannot create output file", errno));
      ::fchmod(fd_, 0644 & ~current_umask());
      final_ = path;
    }
    if (zstd) {
      cs_ = ZSTD_createCStream();
      ZSTD_CCtx_setParameter(cs_, ZSTD_c_compressionLevel, level);
      // Compression on a thread of zstd's own: write() hands the data over and returns, so the
      // caller (the one thread that writes a command's ordered output) does not stop its
      // workers for it. The bytes do not depend on the number of workers once it is 1 or more.
      ZSTD_CCtx_setParameter(cs_, ZSTD_c_nbWorkers, 1);
      zbuf_.resize(ZSTD_CStreamOutSize());
    }
    buf_.reserve(kChunk);
  }
  ~FdOutput() override {
    if (cs_) ZSTD_freeCStream(cs_);
    if (!tmp_.empty() && !committed_) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
  }
  void write(std::string_view data) override {
    if (buf_.size() + data.size() > kChunk) flush_buffer(false);
    if (data.size() > kChunk) {
      emit(data.data(), data.size(), false);
      return;
    }
    buf_.append(data);
  }
  void write_at(uint64_t offset, std::string_view data) override {
    if (cs_ || tmp_.empty()) throw Error(name_, "cannot rewrite a compressed or streamed output");
    flush_buffer(false);
    if (offset + data.size() > written_) throw Error(name_, "write_at past the end of the output");
    size_t done = 0;
    while (done < data.size()) {
      ssize_t w = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw Error(name_, errno_message("write failed", w < 0 ? errno : EIO));
      done += static_cast<size_t>(w);
    }
  }
  void commit() override {
    flush_buffer(true);
    if (tmp_.empty()) return;
    if (::fsync(fd_) != 0) throw Error(final_, errno_message("fsync failed", errno));
    if (::close(fd_) != 0) throw Error(final_, errno_message("close failed", errno));
    if (::rename(tmp_.c_str(), final_.c_str()) != 0)
      throw Error(final_, errno_message("rename failed", errno));
    committed_ = true;
  }
  uint64_t bytes_written() const override { return written_; }

 private:
  static mode_t current_umask() {
    mode_t m = ::umask(0);
    ::umask(m);
    return m;
  }
  void flush_buffer(bool end) {
    emit(buf_.data(), buf_.size(), end);
    buf_.clear();
  }
  void emit(const char* p, size_t n, bool end) {
    if (!cs_) {
      write_all(fd_, p, n, name_);
      written_ += n;
      return;
    }
    ZSTD_inBuffer in{p, n, 0};
    for (;;) {
      ZSTD_outBuffer out{zbuf_.data(), zbuf_.size(), 0};
      size_t ret = ZSTD_compressStream2(cs_, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
      if (ZSTD_isError(ret)) throw Error(name_, std::string("zstd: ") + ZSTD_getErrorName(ret));
      write_all(fd_, zbuf_.data(), out.pos, name_);
      written_ += out.pos;
      if (end ? ret == 0 : in.pos == in.size) break;
    }
  }
  int fd_ = -1;
  std::string tmp_, final_, buf_;
  std::vector<char> zbuf_;
  ZSTD_CStream* cs_ = nullptr;
  bool committed_ = false;
  uint64_t written_ = 0;
};

}  // namespace

std::unique_ptr<OutputStream> OutputStream::open(const std::string& path, bool zstd, bool binary,
                                                 int zstd_level) {
  return std::make_unique<FdOutput>(path, zstd || has_suffix(path, ".zst"), binary, zstd_level);
}

std::string read_file(const std::string& path) {
  auto in = open_input(path);
  std::string out;
  char buf[65536];
  for (size_t r; (r = in->read(buf, sizeof buf)) > 0;) out.append(buf, r);
  return out;
}

namespace {

std::string parent_dir(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : p.substr(0, slash);
}

// The directory that will hold new entries: it must exist, be a directory and be writable.
void check_writable_dir(const std::string& dir, const std::string& what, const std::string& option) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0)
    throw Error(dir, errno_message(option + ": cannot write " + what + " here", errno));
  if (!S_ISDIR(st.st_mode)) throw Error(dir, option + ": not a directory, so " + what + " cannot be written in it");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw Error(dir, errno_message(option + ": cannot write " + what + " here", errno));
}

}  // namespace

void check_output_file(const std::string& path, const std::string& option) {
  if (path.empty() || path == "-") return;
  if (is_directory(path) || path.back() == '/')
    throw Error(path, option + ": is a directory; give the name of the file to write");
  check_writable_dir(parent_dir(path), path, option);
}

void check_output_dir(const std::string& path, const std::string& option) {
  if (path.empty()) return;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error(path, option + ": exists and is not a directory");
    check_writable_dir(path, "into it", option);
    return;
  }
  // Created with its parents: the nearest existing ancestor must take new entries.
  std::string up = parent_dir(path);
  while (up != "/" && up != "." && ::stat(up.c_str(), &st) != 0) up = parent_dir(up);
  check_writable_dir(up, path, option);
}

void check_output_path(const std::string& path, const std::string& option) {
  if (path.empty() || path == "-") return;
  if (path.back() == '/' || is_directory(path)) check_output_dir(path, option);
  else check_output_file(path, option);
}

void write_file_atomic(const std::string& path, std::string_view data) {
  auto out = OutputStream::open(path, false);
  out->write(data);
  out->commit();
}

MappedFile::MappedFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path, errno_message("cannot open", errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path, "not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* m = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(path, errno_message("cannot map", err));
    }
    data_ = static_cast<const unsigned char*>(m);
  }
  ::close(fd);
}

void release_mapped_pages(const void* p, size_t n) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page, e = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // advice: a failure changes nothing
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
}

std::string data_file(const std::string& relative) {
  for (const std::string& dir : {std::string(LLMKIT_DATADIR), std::string(LLMKIT_SRCDIR) + "/share/llmkit"}) {
    std::string path = dir + "/" + relative;
    if (file_size(path) > 0) return path;
  }
  throw Error(relative, "not found in " + std::string(LLMKIT_DATADIR) + " (is llmkit installed?)");
}

}  // namespace llmkit
