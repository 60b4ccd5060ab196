// GGUF v3 reading and writing; see llmkit/gguf.hpp.
#include "llmkit/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "llmkit/error.hpp"

namespace llmkit {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian

size_t value_size(GgufValue::Type t) {
  switch (t) {
    case GgufValue::u8: case GgufValue::i8: case GgufValue::boolean: return 1;
    case GgufValue::u16: case GgufValue::i16: return 2;
    case GgufValue::u32: case GgufValue::i32: case GgufValue::f32: return 4;
    case GgufValue::u64: case GgufValue::i64: case GgufValue::f64: return 8;
    default: return 0;
  }
}

// A bounds-checked cursor over the mapping.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t size, const std::string& path) : p_(p), size_(size), path_(path) {}
  uint64_t at() const { return at_; }
  void need(uint64_t n, const char* what) const {
    if (n > size_ - at_)
      throw Error(path_, std::string("truncated: ") + what + " at byte " + std::to_string(at_) + " runs past the end (" +
                             std::to_string(size_) + " bytes)");
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  std::string str(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + at_), n);
    at_ += n;
    return s;
  }
  double number(GgufValue::Type t, const char* what) {
    switch (t) {
      case GgufValue::u8: return get<uint8_t>(what);
      case GgufValue::i8: return get<int8_t>(what);
      case GgufValue::boolean: return get<uint8_t>(what) != 0;
      case GgufValue::u16: return get<uint16_t>(what);
      case GgufValue::i16: return get<int16_t>(what);
      case GgufValue::u32: return get<uint32_t>(what);
      case GgufValue::i32: return get<int32_t>(what);
      case GgufValue::f32: return get<float>(what);
      case GgufValue::u64: return static_cast<double>(get<uint64_t>(what));
      case GgufValue::i64: return static_cast<double>(get<int64_t>(what));
      case GgufValue::f64: return get<double>(what);
      default: throw Error(path_, std::string("value type ") + std::to_string(t) + " of " + what + " is not a number");
    }
  }

 private:
  const uint8_t* p_;
  uint64_t size_, at_ = 0;
  const std::string& path_;
};

const char* type_name(GgufValue::Type t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  return t <= GgufValue::f64 ? names[t] : "?";
}

std::string number_text(GgufValue::Type t, double v) {
  if (t == GgufValue::boolean) return v != 0 ? "true" : "false";
  char b[40];
  std::snprintf(b, sizeof b, t == GgufValue::f32 || t == GgufValue::f64 ? "%.9g" : "%.0f", v);
  return b;
}

}  // namespace

std::string GgufValue::describe() const {
  if (type == string) return "\"" + (str.size() > 60 ? str.substr(0, 57) + "..." : str) + "\"";
  if (type != array) return number_text(type, num) + " (" + type_name(type) + ")";
  std::string s = std::string("[") + type_name(elem) + " x " + std::to_string(elem == string ? strs.size() : nums.size()) + "]";
  const size_t n = elem == string ? strs.size() : nums.size();
  for (size_t i = 0; i < std::min<size_t>(n, 4); ++i) s += " " + (elem == string ? "\"" + strs[i] + "\"" : number_text(elem, nums[i]));
  if (n > 4) s += " ...";
  return s;
}

int64_t GgufTensor::elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

GgufFile::GgufFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0 || st.st_size < 24) {
    ::close(fd);
    throw Error(path, "is not a GGUF file (shorter than its header)");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw Error(path, std::string("cannot map: ") + std::strerror(errno));
  base_ = static_cast<const uint8_t*>(m);
  try {
    Cursor c(base_, size_, path_);
    if (c.get<uint32_t>("magic") != kMagic) throw Error(path, "is not a GGUF file (no GGUF magic)");
    version_ = c.get<uint32_t>("version");
    if (version_ != 2 && version_ != 3) throw Error(path, "GGUF version " + std::to_string(version_) + ": llmkit reads versions 2 and 3");
    const uint64_t n_tensors = c.get<uint64_t>("tensor count"), n_kv = c.get<uint64_t>("metadata count");
    // Every entry takes at least 8 bytes: counts beyond the file are lies.
    if (n_tensors > size_ / 8 || n_kv > size_ / 8) throw Error(path, "tensor or metadata count larger than the file can hold");
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key = c.str("a metadata key");
      GgufValue v;
      const uint32_t t = c.get<uint32_t>("a value type");
      if (t > GgufValue::f64) throw Error(path, "metadata " + key + ": unknown value type " + std::to_string(t));
      v.type = static_cast<GgufValue::Type>(t);
      if (v.type == GgufValue::string) {
        v.str = c.str(key.c_str());
      } else if (v.type == GgufValue::array) {
        const uint32_t e = c.get<uint32_t>("an array's type");
        if (e > GgufValue::f64 || e == GgufValue::array) throw Error(path, "metadata " + key + ": array of unsupported type " + std::to_string(e));
        v.elem = static_cast<GgufValue::Type>(e);
        const uint64_t n = c.get<uint64_t>("an array's length");
        if (v.elem == GgufValue::string) {
          if (n > (size_ - c.at()) / 8) throw Error(path, "metadata " + key + ": " + std::to_string(n) + " strings cannot fit");
          v.strs.reserve(n);
          for (uint64_t k = 0; k < n; ++k) v.strs.push_back(c.str(key.c_str()));
        } else {
          c.need(n * value_size(v.elem), key.c_str());
          v.nums.reserve(n);
          for (uint64_t k = 0; k < n; ++k) v.nums.push_back(c.number(v.elem, key.c_str()));
        }
      } else {
        v.num = c.number(v.type, key.c_str());
      }
      if (key == "general.alignment") {
        if (v.type != GgufValue::u32 || v.num == 0 || (static_cast<uint64_t>(v.num) & (static_cast<uint64_t>(v.num) - 1)) != 0)
          throw Error(path, "general.alignment must be a u32 power of two");
        alignment_ = static_cast<uint64_t>(v.num);
      }
      kv_.emplace_back(std::move(key), std::move(v));
    }
    for (uint64_t i = 0; i < n_tensors; ++i) {
      GgufTensor t;
      t.name = c.str("a tensor name");
      const uint32_t nd = c.get<uint32_t>("a tensor's dimensions");
      if (nd < 1 || nd > 4) throw Error(path, "tensor " + t.name + ": " + std::to_string(nd) + " dimensions");
      for (uint32_t d = 0; d < nd; ++d) {
        const uint64_t n = c.get<uint64_t>("a dimension");
        if (n == 0 || n > (1ull << 40)) throw Error(path, "tensor " + t.name + ": dimension " + std::to_string(n));
        t.ne.push_back(static_cast<int64_t>(n));
      }
      const uint32_t type = c.get<uint32_t>("a tensor type");
      if (!ggml::is_known(type))
        throw Error(path, "tensor " + t.name + " has ggml type " + std::to_string(type) +
                              ", which llmkit does not read (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
      t.type = static_cast<ggml::Type>(type);
      t.offset = c.get<uint64_t>("a tensor offset");
      if (t.offset % alignment_ != 0) throw Error(path, "tensor " + t.name + ": offset " + std::to_string(t.offset) + " is not aligned");
      int64_t rows = 1;
      for (size_t d = 1; d < t.ne.size(); ++d) {
        if (rows > (1ll << 40) / t.ne[d]) throw Error(path, "tensor " + t.name + " is too large");
        rows *= t.ne[d];
      }
      if (t.ne[0] % ggml::traits(t.type).block != 0)
        throw Error(path, "tensor " + t.name + ": rows of " + std::to_string(t.ne[0]) + " values are not whole " + ggml::traits(t.type).name +
                              " blocks of " + std::to_string(ggml::traits(t.type).block));
      const size_t row = ggml::row_bytes(t.type, t.ne[0]);
      t.bytes = row * static_cast<size_t>(rows);
      tensors_.push_back(std::move(t));
    }
    data_start_ = (c.at() + alignment_ - 1) / alignment_ * alignment_;
    for (const GgufTensor& t : tensors_)
      if (data_start_ > size_ || t.offset > size_ - data_start_ || t.bytes > size_ - data_start_ - t.offset)
        throw Error(path, "truncated: tensor " + t.name + "'s data (" + std::to_string(t.bytes) + " bytes at " +
                              std::to_string(data_start_ + t.offset) + ") runs past the end (" + std::to_string(size_) + " bytes)");
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(base_), size_);
    base_ = nullptr;
    throw;
  }
}

GgufFile::~GgufFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : kv_)
    if (k == key) return &v;
  return nullptr;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  for (const GgufTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error(path_, "has no " + key);
  if (v->type != GgufValue::string) throw Error(path_, key + " is not a string");
  return v->str;
}

double GgufFile::get_number(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) throw Error(path_, "has no " + key);
  if (v->type == GgufValue::string || v->type == GgufValue::array) throw Error(path_, key + " is not a number");
  return v->num;
}

std::vector<float> GgufFile::values(const GgufTensor& t) const {
  std::vector<float> out(static_cast<size_t>(t.elements()));
  const size_t row = ggml::row_bytes(t.type, t.ne[0]);
  const int64_t rows = t.elements() / t.ne[0];
  for (int64_t r = 0; r < rows; ++r)
    ggml::dequantize(t.type, data(t) + static_cast<size_t>(r) * row, out.data() + static_cast<size_t>(r * t.ne[0]), t.ne[0]);
  return out;
}

// ---- Writing ----

void GgufWriter::set(const std::string& key, GgufValue v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> ne, ggml::Type type, const float* values,
                            const float* importance) {
  const size_t row = ggml::row_bytes(type, ne[0]);
  int64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
  std::vector<uint8_t> bytes(row * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    ggml::quantize(type, values + static_cast<size_t>(r * ne[0]), bytes.data() + static_cast<size_t>(r) * row, ne[0], importance);
  add_tensor_bytes(name, std::move(ne), type, std::move(bytes));
}

void GgufWriter::add_tensor_bytes(const std::string& name, std::vector<int64_t> ne, ggml::Type type, std::vector<uint8_t> bytes) {
  GgufTensor t;
  t.name = name;
  t.ne = std::move(ne);
  t.type = type;
  t.bytes = ggml::row_bytes(type, t.ne[0]) * static_cast<size_t>(t.elements() / t.ne[0]);
  if (bytes.size() != t.bytes)
    throw Error(name, "has " + std::to_string(bytes.size()) + " bytes, its shape and type " + std::to_string(t.bytes));
  uint64_t offset = 0;
  if (!tensors_.empty()) offset = (tensors_.back().offset + tensors_.back().bytes + 31) / 32 * 32;
  t.offset = offset;
  tensors_.push_back(std::move(t));
  data_.push_back(std::move(bytes));
}

size_t GgufWriter::tensor_bytes() const {
  size_t n = 0;
  for (const GgufTensor& t : tensors_) n += t.bytes;
  return n;
}

namespace {
class Out {
 public:
  explicit Out(std::FILE* f) : f_(f) {}
  template <typename T>
  void put(T v) {
    write(&v, sizeof v);
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    write(s.data(), s.size());
  }
  void number(GgufValue::Type t, double v) {
    switch (t) {
      case GgufValue::u8: case GgufValue::boolean: put<uint8_t>(static_cast<uint8_t>(v)); break;
      case GgufValue::i8: put<int8_t>(static_cast<int8_t>(v)); break;
      case GgufValue::u16: put<uint16_t>(static_cast<uint16_t>(v)); break;
      case GgufValue::i16: put<int16_t>(static_cast<int16_t>(v)); break;
      case GgufValue::u32: put<uint32_t>(static_cast<uint32_t>(v)); break;
      case GgufValue::i32: put<int32_t>(static_cast<int32_t>(v)); break;
      case GgufValue::f32: put<float>(static_cast<float>(v)); break;
      case GgufValue::u64: put<uint64_t>(static_cast<uint64_t>(v)); break;
      case GgufValue::i64: put<int64_t>(static_cast<int64_t>(v)); break;
      case GgufValue::f64: put<double>(v); break;
      default: break;
    }
  }
  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) failed_ = true;
    at_ += n;
  }
  void pad(uint64_t align) {
    static const uint8_t zeros[64] = {};
    while (at_ % align) write(zeros, std::min<uint64_t>(sizeof zeros, align - at_ % align));
  }
  bool failed() const { return failed_; }

 private:
  std::FILE* f_;
  uint64_t at_ = 0;
  bool failed_ = false;
};
}  // namespace

void GgufWriter::write(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  struct Cleanup {  // a failed or interrupted write leaves no partial file
    const std::string& tmp;
    bool done = false;
    ~Cleanup() {
      if (!done) std::remove(tmp.c_str());
    }
  } cleanup{tmp};
  if (!f) throw Error(path, std::string("cannot write: ") + std::strerror(errno));
  Out o(f);
  o.put<uint32_t>(kMagic);
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors_.size());
  o.put<uint64_t>(kv_.size());
  for (const auto& [key, v] : kv_) {
    o.str(key);
    o.put<uint32_t>(v.type);
    if (v.type == GgufValue::string) {
      o.str(v.str);
    } else if (v.type == GgufValue::array) {
      o.put<uint32_t>(v.elem);
      if (v.elem == GgufValue::string) {
        o.put<uint64_t>(v.strs.size());
        for (const std::string& s : v.strs) o.str(s);
      } else {
        o.put<uint64_t>(v.nums.size());
        for (double x : v.nums) o.number(v.elem, x);
      }
    } else {
      o.number(v.type, v.num);
    }
  }
  for (const GgufTensor& t : tensors_) {
    o.str(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) o.put<uint64_t>(static_cast<uint64_t>(d));
    o.put<uint32_t>(static_cast<uint32_t>(t.type));
    o.put<uint64_t>(t.offset);
  }
  o.pad(32);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    o.write(data_[i].data(), data_[i].size());
    o.pad(32);
  }
  const bool bad = o.failed() || std::fflush(f) != 0 || ::fsync(fileno(f)) != 0;
  std::fclose(f);
  if (bad) {
    std::remove(tmp.c_str());
    throw Error(path, "write failed (disk full?)");
  }
  std::filesystem::rename(tmp, path);
  cleanup.done = true;
}

}  // namespace llmkit
