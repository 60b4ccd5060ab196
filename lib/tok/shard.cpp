// Token shards: writer and memory-mapped reader; see llmkit/shard.hpp for the layout.
#include "llmkit/shard.hpp"

#include <xxhash.h>

#include <cerrno>
#include <cstring>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"

namespace llmkit {

namespace {

constexpr char kMagic[8] = {'L', 'L', 'M', 'K', 'T', 'O', 'K', '\0'};
constexpr uint32_t kLlmcMagic16 = 20240520, kLlmcMagic32 = 20240801;
constexpr size_t kLlmcHeaderBytes = 256 * sizeof(int32_t);

uint64_t align8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

template <class T>
void put_le(unsigned char* p, T v) {
  std::memcpy(p, &v, sizeof v);  // the supported targets are little-endian
}
template <class T>
T get_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

void pack_tokens(const uint32_t* ids, size_t n, uint32_t token_bytes, std::string& out) {
  out.resize(n * token_bytes);
  unsigned char* p = reinterpret_cast<unsigned char*>(out.data());
  if (token_bytes == 2)
    for (size_t i = 0; i < n; ++i) put_le<uint16_t>(p + 2 * i, static_cast<uint16_t>(ids[i]));
  else
    for (size_t i = 0; i < n; ++i) put_le<uint32_t>(p + 4 * i, ids[i]);
}

uint32_t token_bytes_for(uint64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

// ---- Writer ----------------------------------------------------------------------------------

struct ShardWriter::Hasher {
  XXH3_state_t* state = XXH3_createState();
  Hasher() { XXH3_64bits_reset(state); }
  ~Hasher() { XXH3_freeState(state); }
};

ShardWriter::ShardWriter(const std::string& path, uint64_t vocab_size, uint32_t token_bytes,
                         uint64_t tokenizer_hash)
    : path_(path), hash_(std::make_unique<Hasher>()) {
  if (token_bytes != 2 && token_bytes != 4)
    throw Error(path, "token size must be 2 or 4 bytes, not " + std::to_string(token_bytes));
  if (vocab_size == 0) throw Error(path, "vocabulary size 0");
  if (token_bytes == 2 && vocab_size > 65536)
    throw Error(path, "a vocabulary of " + std::to_string(vocab_size) +
                          " ids does not fit 16-bit tokens (use 32-bit tokens)");
  info_.token_bytes = token_bytes;
  info_.vocab_size = vocab_size;
  info_.tokenizer_hash = tokenizer_hash;
  if (path.empty() || path == "-") throw Error(path, "a shard must be written to a file");
  out_ = OutputStream::open(path, false, true);
  out_->write(std::string(kShardHeaderBytes, '\0'));  // filled in by finish()
}

ShardWriter::~ShardWriter() = default;  // without finish(), the temporary file is removed

void ShardWriter::put(const void* data, size_t n) {
  XXH3_64bits_update(hash_->state, data, n);
  out_->write(std::string_view(static_cast<const char*>(data), n));
}

void ShardWriter::add_document(const uint32_t* ids, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (ids[i] >= info_.vocab_size)
      throw Error(path_, "token id " + std::to_string(ids[i]) + " is outside the vocabulary of " +
                             std::to_string(info_.vocab_size));
  pack_tokens(ids, n, info_.token_bytes, buf_);
  put(buf_.data(), buf_.size());
  info_.tokens += n;
  ends_.push_back(info_.tokens);
}

void ShardWriter::finish() {
  uint64_t end = kShardHeaderBytes + info_.tokens * info_.token_bytes;
  info_.index_offset = align8(end);
  static const char zeros[8] = {};
  if (info_.index_offset > end) put(zeros, info_.index_offset - end);
  info_.documents = ends_.size();
  put(ends_.data(), ends_.size() * sizeof(uint64_t));
  info_.checksum = XXH3_64bits_digest(hash_->state);

  unsigned char h[kShardHeaderBytes] = {};
  std::memcpy(h, kMagic, 8);
  put_le<uint32_t>(h + 8, kShardVersion);
  put_le<uint32_t>(h + 12, info_.token_bytes);
  put_le<uint64_t>(h + 16, info_.vocab_size);
  put_le<uint64_t>(h + 24, info_.tokens);
  put_le<uint64_t>(h + 32, info_.documents);
  put_le<uint64_t>(h + 40, info_.checksum);
  put_le<uint64_t>(h + 48, info_.index_offset);
  put_le<uint64_t>(h + 56, info_.tokenizer_hash);
  put_le<uint64_t>(h + 64, XXH3_64bits(h, 64));
  out_->write_at(0, std::string_view(reinterpret_cast<const char*>(h), sizeof h));
  out_->commit();
}

// ---- Reader ----------------------------------------------------------------------------------

ShardReader::ShardReader(const std::string& path, bool verify)
    : path_(path), file_(std::make_unique<MappedFile>(path)), map_(file_->data()), map_size_(file_->size()) {
  if (map_size_ >= 8 && std::memcmp(map_, kMagic, 8) == 0) parse_llmkit();
  else if (map_size_ >= 4 && (get_le<uint32_t>(map_) == kLlmcMagic16 || get_le<uint32_t>(map_) == kLlmcMagic32))
    parse_llmc();
  else
    throw Error(path, "not a token shard (no llmkit or llm.c magic)");
  if (verify && info_.format == ShardInfo::Format::llmkit && !checksum_ok())
    throw Error(path, "damaged shard: the payload checksum does not match (bytes changed after writing)");
}

ShardReader::~ShardReader() = default;

void ShardReader::parse_llmkit() {
  auto damaged = [&](const std::string& what) { return Error(path_, "damaged shard: " + what); };
  if (map_size_ < kShardHeaderBytes)
    throw damaged("truncated header (" + std::to_string(map_size_) + " bytes)");
  if (get_le<uint64_t>(map_ + 64) != XXH3_64bits(map_, 64)) throw damaged("header checksum mismatch");
  info_.format = ShardInfo::Format::llmkit;
  info_.version = get_le<uint32_t>(map_ + 8);
  if (info_.version != kShardVersion)
    throw Error(path_, "shard format version " + std::to_string(info_.version) +
                           " is not supported (this llmkit reads version " +
                           std::to_string(kShardVersion) + ")");
  info_.token_bytes = get_le<uint32_t>(map_ + 12);
  info_.vocab_size = get_le<uint64_t>(map_ + 16);
  info_.tokens = get_le<uint64_t>(map_ + 24);
  info_.documents = get_le<uint64_t>(map_ + 32);
  info_.checksum = get_le<uint64_t>(map_ + 40);
  info_.index_offset = get_le<uint64_t>(map_ + 48);
  info_.tokenizer_hash = get_le<uint64_t>(map_ + 56);
  if (info_.token_bytes != 2 && info_.token_bytes != 4)
    throw damaged("token size " + std::to_string(info_.token_bytes));
  if (info_.tokens > (map_size_ - kShardHeaderBytes) / info_.token_bytes ||
      info_.index_offset != align8(kShardHeaderBytes + info_.tokens * info_.token_bytes) ||
      info_.documents > (map_size_ - std::min<uint64_t>(info_.index_offset, map_size_)) / 8)
    throw damaged("sizes do not fit the file (" + std::to_string(map_size_) + " bytes for " +
                  std::to_string(info_.tokens) + " tokens and " + std::to_string(info_.documents) +
                  " documents): truncated?");
  uint64_t expect = info_.index_offset + info_.documents * 8;
  if (expect != map_size_)
    throw damaged("file is " + std::to_string(map_size_) + " bytes, the header says " +
                  std::to_string(expect) + (map_size_ < expect ? " (truncated)" : ""));
  tokens_ = map_ + kShardHeaderBytes;
  index_ = reinterpret_cast<const uint64_t*>(map_ + info_.index_offset);
  uint64_t prev = 0;
  for (uint64_t d = 0; d < info_.documents; ++d) {
    if (index_[d] < prev || index_[d] > info_.tokens)
      throw damaged("document index entry " + std::to_string(d) + " is out of order");
    prev = index_[d];
  }
  if (info_.documents > 0 && prev != info_.tokens)
    throw damaged("the document index ends at token " + std::to_string(prev) + " of " +
                  std::to_string(info_.tokens));
}

void ShardReader::parse_llmc() {
  if (map_size_ < kLlmcHeaderBytes) throw Error(path_, "damaged llm.c file: truncated header");
  info_.format = ShardInfo::Format::llmc;
  uint32_t magic = get_le<uint32_t>(map_);
  info_.version = get_le<uint32_t>(map_ + 4);
  info_.token_bytes = magic == kLlmcMagic16 ? 2 : 4;
  if ((magic == kLlmcMagic16 && info_.version != 1) || (magic == kLlmcMagic32 && info_.version != 7))
    throw Error(path_, "llm.c file version " + std::to_string(info_.version) + " is not supported");
  info_.tokens = get_le<uint32_t>(map_ + 8);
  uint64_t expect = kLlmcHeaderBytes + info_.tokens * info_.token_bytes;
  if (expect != map_size_)
    throw Error(path_, "damaged llm.c file: " + std::to_string(map_size_) + " bytes, the header says " +
                           std::to_string(expect));
  tokens_ = map_ + kLlmcHeaderBytes;
}

void ShardReader::read(uint64_t begin, size_t n, uint32_t* out) const {
  if (begin > info_.tokens || n > info_.tokens - begin)
    throw Error(path_, "token range past the end of the shard");
  if (info_.token_bytes == 4) {
    std::memcpy(out, tokens_ + begin * 4, n * 4);
    return;
  }
  const uint16_t* p = reinterpret_cast<const uint16_t*>(tokens_) + begin;
  for (size_t i = 0; i < n; ++i) out[i] = p[i];
}

uint64_t ShardReader::document_end(uint64_t d) const {
  if (d >= info_.documents) throw Error(path_, "no document " + std::to_string(d));
  return index_[d];
}

bool ShardReader::checksum_ok() const {
  if (info_.format != ShardInfo::Format::llmkit) return true;
  return XXH3_64bits(map_ + kShardHeaderBytes, map_size_ - kShardHeaderBytes) == info_.checksum;
}

}  // namespace llmkit
