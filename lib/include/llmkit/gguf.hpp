// GGUF files (lib/quant/gguf.cpp), version 3, as ggml's gguf.md describes them: a header
// ("GGUF", version, tensor count, metadata count), typed key/value metadata, tensor infos (name,
// dimensions innermost first, ggml type, offset in the data section), then the tensors' data,
// each at a multiple of general.alignment (32 by default) from the data section's start, which
// is itself aligned. Little-endian throughout. The reader maps the file and checks every count,
// length and offset against its size, so that a truncated or hostile file is an Error naming it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llmkit/ggml.hpp"

namespace llmkit {

struct GgufValue {
  enum Type : uint32_t { u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12 };
  Type type = u32;
  Type elem = u32;     // of an array
  double num = 0;      // any number or bool (u64/i64 beyond 2^53 are not exact)
  std::string str;
  std::vector<double> nums;          // an array of numbers or bools
  std::vector<std::string> strs;     // an array of strings

  static GgufValue u32v(uint32_t v) { return number(u32, v); }
  static GgufValue i32v(int32_t v) { return number(i32, v); }
  static GgufValue f32v(float v) { return number(f32, v); }
  static GgufValue boolv(bool v) { return number(boolean, v ? 1 : 0); }
  static GgufValue text(std::string s) {
    GgufValue g;
    g.type = string;
    g.str = std::move(s);
    return g;
  }
  static GgufValue number(Type t, double v) {
    GgufValue g;
    g.type = t;
    g.num = v;
    return g;
  }
  static GgufValue numbers(Type elem, std::vector<double> v) {
    GgufValue g;
    g.type = array;
    g.elem = elem;
    g.nums = std::move(v);
    return g;
  }
  static GgufValue texts(std::vector<std::string> v) {
    GgufValue g;
    g.type = array;
    g.elem = string;
    g.strs = std::move(v);
    return g;
  }
  // A short text of the value for `llm-quant inspect` (arrays: their type and length, and the
  // first elements).
  std::string describe() const;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> ne;  // dimensions, innermost (a row's length) first
  ggml::Type type = ggml::Type::f32;
  uint64_t offset = 0;      // in the data section
  size_t bytes = 0;
  int64_t elements() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufValue* find(const std::string& key) const;
  const GgufTensor* tensor(const std::string& name) const;
  // Typed metadata; an Error naming the file and the key when missing or of another type.
  std::string get_string(const std::string& key) const;
  double get_number(const std::string& key) const;
  // A tensor's bytes (in the mapping) and its values as float.
  const uint8_t* data(const GgufTensor& t) const { return base_ + data_start_ + t.offset; }
  std::vector<float> values(const GgufTensor& t) const;
  uint64_t file_size() const { return size_; }

 private:
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0, data_start_ = 0, alignment_ = 32;
  uint32_t version_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensor> tensors_;
};

class GgufWriter {
 public:
  void set(const std::string& key, GgufValue v);  // replaces a key already set
  // A tensor of ne (innermost first) values in `type`, quantized from `values` (row by row).
  // importance: ne[0] values applied to every row (ggml::quantize's), or null.
  void add_tensor(const std::string& name, std::vector<int64_t> ne, ggml::Type type, const float* values,
                  const float* importance = nullptr);
  // A tensor whose bytes are quantized already (row_bytes(type, ne[0]) per row).
  void add_tensor_bytes(const std::string& name, std::vector<int64_t> ne, ggml::Type type, std::vector<uint8_t> bytes);
  // Writes the file (to a temporary name, then renamed).
  void write(const std::string& path) const;
  size_t tensor_bytes() const;

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensor> tensors_;
  std::vector<std::vector<uint8_t>> data_;
};

}  // namespace llmkit
