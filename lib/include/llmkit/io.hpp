// Byte streams in and out of files or stdin/stdout, with transparent compression:
// zstd and gzip are detected by magic on read; zstd is written with a .zst name or on request.
// Output files are atomic: written under a temporary name in the same directory, fsynced and
// renamed by commit(); a file that is not committed is removed, so a partial file never
// appears under the final name.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace llmkit {

enum class Compression { none, zstd, gzip };

class InputStream {
 public:
  virtual ~InputStream() = default;
  // Reads up to n decompressed bytes; returns 0 only at end of stream. Throws Error on I/O
  // or decompression failure (naming the file).
  virtual size_t read(char* buf, size_t n) = 0;
  // Compressed bytes consumed so far (what the progress line counts against the file size).
  virtual uint64_t raw_bytes_read() const = 0;
  // Decompressed bytes returned so far by read().
  virtual uint64_t bytes_read() const { return bytes_read_; }
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }  // for messages
  Compression compression() const { return compression_; }

 protected:
  std::string name_;
  Compression compression_ = Compression::none;
  uint64_t bytes_read_ = 0;
};

// Opens `path` ("-" or "" is stdin). Compression is detected from the first bytes.
// [begin, end) restricts reading to a byte range of an uncompressed file (see LineReader for
// line alignment); a range on a compressed file or on stdin is an Error.
std::unique_ptr<InputStream> open_input(const std::string& path, uint64_t begin = 0,
                                        uint64_t end = UINT64_MAX);

// Size of a regular file, 0 for stdin or when unknown.
uint64_t file_size(const std::string& path);
bool is_directory(const std::string& path);
// Detects compression from a path's magic bytes (reads 4 bytes).
Compression sniff_compression(const std::string& path);

// Reads lines (without the trailing '\n'; a trailing '\r' is kept) from a stream.
// With a byte range [begin, end) on an uncompressed file, a line belongs to the range holding
// its first byte, so ranges that tile a file yield every line exactly once. For begin > 0 the
// stream must be opened at begin-1 (open_lines() does this).
class LineReader {
 public:
  explicit LineReader(std::unique_ptr<InputStream> in, size_t max_line_bytes = 64 << 20,
                      uint64_t begin = 0, uint64_t end = UINT64_MAX);
  // Returns false at end. A line longer than max_line_bytes is skipped up to its newline and
  // reported by `too_long` (line is then empty).
  bool next(std::string_view& line, bool& too_long);
  // 1-based number of the line last returned. With begin > 0 the count of earlier lines is
  // computed on first call (a scan of [0, begin)), so errors can name the true line.
  uint64_t line_number();
  const std::string& name() const { return in_->name(); }
  uint64_t raw_bytes_read() const { return in_->raw_bytes_read(); }
  // Decompressed bytes of the lines returned so far, newlines included (with a byte range:
  // of the lines that start in it, so the ranges of a file add up to its size).
  uint64_t bytes() const { return offset_ - range_start_; }

 private:
  bool fill();
  std::unique_ptr<InputStream> in_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  size_t max_line_;
  uint64_t begin_, end_, offset_;  // offset_: file offset of buf_[pos_]
  uint64_t range_start_;           // offset of the first line of the range
  uint64_t line_in_range_ = 0;
  int64_t lines_before_ = -1;
  bool skip_partial_;
  bool eof_ = false;
};

// Opens `path` and returns a reader over the lines that start in [begin, end).
std::unique_ptr<LineReader> open_lines(const std::string& path, uint64_t begin = 0,
                                       uint64_t end = UINT64_MAX,
                                       size_t max_line_bytes = 64 << 20);

class OutputStream {
 public:
  // path "-" or "": stdout (refused with an Error if zstd is off and stdout is a terminal and
  // binary is true). Otherwise an atomic file. zstd: compress; defaults to a .zst suffix check.
  static std::unique_ptr<OutputStream> open(const std::string& path, bool zstd, bool binary = false,
                                            int zstd_level = 3);
  virtual ~OutputStream() = default;
  virtual void write(std::string_view data) = 0;
  // Overwrites bytes already written (a header filled in at the end). Uncompressed files only;
  // an Error otherwise.
  virtual void write_at(uint64_t offset, std::string_view data) = 0;
  // Flushes, fsyncs and renames into place. Without commit() the temporary file is removed.
  virtual void commit() = 0;
  virtual uint64_t bytes_written() const = 0;  // bytes on disk (compressed)
  const std::string& name() const { return name_; }

 protected:
  std::string name_;
};

bool has_suffix(std::string_view s, std::string_view suffix);

// A whole file mapped read-only (mmap), unmapped by the destructor; errors name the file.
// Readers of binary formats (shards, safetensors) parse and check it in place.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

// Done with [p, p + n) of a read-only file mapping for now: its whole pages leave the process's
// resident set (they stay in the page cache, and come back if read again). Reading a large
// mapped file once, piece by piece, then costs one piece of memory at a time, not the file.
void release_mapped_pages(const void* p, size_t n);

// A file shipped in share/llmkit (model presets, gnuplot scripts): the installed copy, else the
// source tree's (a build run in place). Error when neither exists.
std::string data_file(const std::string& relative);

// Checks, before the work, that an output can be written where it is asked for, so that a run
// does not do its work and then fail at the rename. `option` names the flag in messages.
// A file: "" and "-" (stdout) pass; an existing directory, a missing or unwritable directory
// to hold it are Errors naming the path.
void check_output_file(const std::string& path, const std::string& option);
// A directory to be written into (created when missing): an existing file of that name, or a
// nearest existing ancestor that is not a writable directory, is an Error.
void check_output_dir(const std::string& path, const std::string& option);
// An output that is a directory when it exists as one or ends in '/', a file otherwise (the -o
// of the document commands).
void check_output_path(const std::string& path, const std::string& option);

// Whole-file helpers for small files (configs, fixtures).
std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, std::string_view data);

}  // namespace llmkit
