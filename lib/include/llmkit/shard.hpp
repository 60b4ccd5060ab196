// Token shards (man5/llmkit-shard.5): llmkit's memory-mappable files of token ids with a
// document index, written by llm-tok and read by llm-pretrain, llm-eval and the post-training
// commands. llm.c's .bin token files are read too.
//
// Layout, little-endian:
//   0   8  magic "LLMKTOK\0"
//   8   4  format version (1)
//   12  4  bytes per token: 2 (u16) or 4 (u32)
//   16  8  vocabulary size (every id is below it)
//   24  8  token count
//   32  8  document count
//   40  8  xxh3-64 of the payload: bytes [128, file size)
//   48  8  offset of the document index (128 + tokens, rounded up to a multiple of 8)
//   56  8  the tokenizer model's hash (xxh3-64 of the .model file; 0 when unknown)
//   64  8  xxh3-64 of header bytes [0, 64)
//   72 56  zero
//   128    the tokens, then zero padding to the index offset
//   index  document count u64: the token offset where each document ends (non-decreasing, the
//          last equal to the token count)
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llmkit {

class OutputStream;
class MappedFile;

constexpr uint32_t kShardVersion = 1;
constexpr size_t kShardHeaderBytes = 128;

struct ShardInfo {
  enum class Format { llmkit, llmc } format = Format::llmkit;
  uint32_t version = kShardVersion;
  uint32_t token_bytes = 2;  // 2 or 4
  uint64_t vocab_size = 0;   // 0 when the file does not say (llm.c)
  uint64_t tokens = 0;
  uint64_t documents = 0;  // 0 for llm.c files, which have no index
  uint64_t checksum = 0;
  uint64_t index_offset = 0;
  uint64_t tokenizer_hash = 0;
};

// The ids as little-endian u16 (token_bytes 2) or u32 (4) into `out` (resized): the token
// layout of llmkit shards, llm.c files and Megatron .bin files alike.
void pack_tokens(const uint32_t* ids, size_t n, uint32_t token_bytes, std::string& out);

// The dtype a vocabulary needs: 2 bytes up to 65536 ids, else 4.
uint32_t token_bytes_for(uint64_t vocab_size);

// Writes one shard atomically (temporary name, renamed by finish()). Documents are appended as
// they come; ids at or above vocab_size are an Error naming the shard.
class ShardWriter {
 public:
  ShardWriter(const std::string& path, uint64_t vocab_size, uint32_t token_bytes,
              uint64_t tokenizer_hash);
  ~ShardWriter();
  void add_document(const uint32_t* ids, size_t n);
  void add_document(const std::vector<uint32_t>& ids) { add_document(ids.data(), ids.size()); }
  uint64_t tokens() const { return info_.tokens; }
  uint64_t documents() const { return ends_.size(); }
  // Writes the index and the header, fsyncs and renames into place.
  void finish();

 private:
  void put(const void* data, size_t n);
  std::string path_;
  ShardInfo info_;
  std::unique_ptr<OutputStream> out_;
  struct Hasher;
  std::unique_ptr<Hasher> hash_;
  std::vector<uint64_t> ends_;
  std::string buf_;
};

// A shard or llm.c .bin file, memory-mapped. The constructor checks the header, the sizes and
// the index, and (verify) the payload checksum; a damaged file is an Error naming it and what
// is wrong.
class ShardReader {
 public:
  explicit ShardReader(const std::string& path, bool verify = true);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  const ShardInfo& info() const { return info_; }
  const std::string& path() const { return path_; }
  uint64_t size() const { return info_.tokens; }
  uint32_t operator[](uint64_t i) const {
    return info_.token_bytes == 2 ? reinterpret_cast<const uint16_t*>(tokens_)[i]
                                  : reinterpret_cast<const uint32_t*>(tokens_)[i];
  }
  // Copies tokens [begin, begin + n) as u32.
  void read(uint64_t begin, size_t n, uint32_t* out) const;
  // Token offset where document d ends (llmkit shards only).
  uint64_t document_end(uint64_t d) const;
  uint64_t document_begin(uint64_t d) const { return d == 0 ? 0 : document_end(d - 1); }
  // Recomputes the payload checksum; false when it differs from the header's.
  bool checksum_ok() const;

 private:
  void parse_llmkit();
  void parse_llmc();
  std::string path_;
  ShardInfo info_;
  std::unique_ptr<MappedFile> file_;
  const unsigned char* map_ = nullptr;  // file_'s bytes
  size_t map_size_ = 0;
  const unsigned char* tokens_ = nullptr;
  const uint64_t* index_ = nullptr;
};

}  // namespace llmkit
