// safetensors files: writer and memory-mapped reader; see llmkit/safetensors.hpp for the layout.
#include "llmkit/safetensors.hpp"


#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <tuple>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"

namespace llmkit {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is mapped as is");

namespace {

using Json = nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr char kMetadataKey[] = "__metadata__";

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {{DType::f32, "F32", 4}, {DType::f16, "F16", 2},
                                 {DType::bf16, "BF16", 2}, {DType::i32, "I32", 4},
                                 {DType::i64, "I64", 8},   {DType::u8, "U8", 1}};

const DTypeInfo& dtype_info(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i;
  throw Error("", "unknown dtype " + std::to_string(static_cast<int>(d)));
}

template <class T>
T get_le(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // little-endian target (static_assert above); maybe unaligned
  return v;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string range_string(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// Bytes of `elements` values of `d`; an Error("", ...) on overflow.
uint64_t tensor_bytes(uint64_t elements, DType d) {
  uint64_t bytes;
  if (__builtin_mul_overflow(elements, dtype_size(d), &bytes))
    throw Error("", "shape too large: its size overflows 64 bits");
  return bytes;
}

// Element count and byte size of a tensor to write; an Error naming the path when the shape or
// the data pointer is wrong.
uint64_t view_bytes(const std::string& path, const TensorView& t, DType d) {
  try {
    uint64_t bytes = tensor_bytes(shape_elements(t.shape), d);
    if (bytes > 0 && t.data == nullptr) throw Error("", "no data");
    return bytes;
  } catch (const Error& e) {
    throw Error(path, "tensor " + t.name + ": " + e.what());
  }
}

// ---- Writer helpers ----------------------------------------------------------------------------

// The header JSON for `tensors` stored as `dtypes`, padded with spaces so that the buffer after
// it starts at a multiple of 8. Fills `bytes` with each tensor's size.
std::string make_header(const std::string& path, const std::vector<TensorView>& tensors,
                        const std::vector<DType>& dtypes,
                        const std::map<std::string, std::string>& metadata,
                        std::vector<uint64_t>& bytes) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h[kMetadataKey] = metadata;
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    if (t.name.empty() || t.name == kMetadataKey)
      throw Error(path, "invalid tensor name \"" + t.name + "\"");
    if (!seen.insert(t.name).second) throw Error(path, "duplicate tensor name " + t.name);
    bytes.push_back(view_bytes(path, t, dtypes[i]));
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = dtype_name(dtypes[i]);
    e["shape"] = t.shape;
    e["data_offsets"] = nlohmann::ordered_json::array({offset, offset + bytes.back()});
    h[t.name] = std::move(e);
    offset += bytes.back();
  }
  std::string s;
  try {
    s = h.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const Json::exception&) {
    throw Error(path, "tensor names and metadata must be valid UTF-8");
  }
  s.append((8 - (8 + s.size()) % 8) % 8, ' ');
  return s;
}

using Emit = std::function<void(OutputStream&, const TensorView&, uint64_t bytes)>;

// Writes the length, the header and, through `emit`, each tensor's data; commits at the end.
void write_file(const std::string& path, const std::vector<TensorView>& tensors,
                const std::vector<DType>& dtypes,
                const std::map<std::string, std::string>& metadata, const Emit& emit) {
  if (path.empty() || path == "-") throw Error(path, "safetensors must be written to a file");
  if (has_suffix(path, ".zst")) throw Error(path, "a safetensors file cannot be compressed");
  std::vector<uint64_t> bytes;
  std::string header = make_header(path, tensors, dtypes, metadata, bytes);
  uint64_t n = header.size();
  auto out = OutputStream::open(path, false, true);
  out->write(std::string_view(reinterpret_cast<const char*>(&n), sizeof n));
  out->write(header);
  for (size_t i = 0; i < tensors.size(); ++i) emit(*out, tensors[i], bytes[i]);
  out->commit();
}

// Writes `n` floats as `dtype`, converting a chunk at a time.
void write_floats(OutputStream& out, const float* src, uint64_t n, DType dtype) {
  if (dtype == DType::f32) {
    out.write(std::string_view(reinterpret_cast<const char*>(src), n * sizeof(float)));
    return;
  }
  std::vector<uint16_t> buf(std::min<uint64_t>(n, 1 << 16));
  for (uint64_t at = 0; at < n; at += buf.size()) {
    size_t m = static_cast<size_t>(std::min<uint64_t>(buf.size(), n - at));
    for (size_t i = 0; i < m; ++i)
      buf[i] = dtype == DType::bf16 ? f32_to_bf16(src[at + i]) : f32_to_f16(src[at + i]);
    out.write(std::string_view(reinterpret_cast<const char*>(buf.data()), m * 2));
  }
}

// ---- Reader helpers ----------------------------------------------------------------------------

// Strips nlohmann's "[json.exception.parse_error.101] " prefix.
std::string json_message(const Json::exception& e) {
  std::string s = e.what();
  size_t p = s.find("] ");
  return p == std::string::npos ? s : s.substr(p + 2);
}

// Parses the header, refusing duplicate keys (nlohmann would keep the last one silently).
Json parse_header_json(const std::string& path, const char* p, size_t n) {
  if (n == 0 || p[0] != '{') throw Error(path, "the header is not a JSON object");
  std::vector<std::set<std::string>> keys;  // the keys of each open object
  auto check = [&](int, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) keys.emplace_back();
    if (event == Json::parse_event_t::object_end) keys.pop_back();
    if (event == Json::parse_event_t::key && !keys.back().insert(parsed.get<std::string>()).second)
      throw Error(path, (keys.size() == 1 ? "duplicate tensor name " : "duplicate key ") +
                            parsed.get<std::string>() + " in the header");
    return true;
  };
  try {
    Json h = Json::parse(p, p + n, check);
    if (!h.is_object()) throw Error(path, "the header is not a JSON object");
    return h;
  } catch (const Json::exception& e) {
    throw Error(path, "invalid JSON header: " + json_message(e));
  }
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const Json& j) {
  if (!j.is_object()) throw Error(path, std::string(kMetadataKey) + " is not a JSON object");
  std::map<std::string, std::string> m;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string())
      throw Error(path, std::string(kMetadataKey) + ": the value of " + key + " is not a string");
    m[key] = value.get<std::string>();
  }
  return m;
}

// A JSON array of non-negative integers that fit int64; false for anything else.
bool get_dims(const Json& j, std::vector<uint64_t>& out) {
  if (!j.is_array()) return false;
  for (const auto& v : j) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > uint64_t{INT64_MAX}) return false;
    out.push_back(v.get<uint64_t>());
  }
  return true;
}

}  // namespace

// ---- DTypes and conversions --------------------------------------------------------------------

size_t dtype_size(DType d) { return dtype_info(d).size; }

const char* dtype_name(DType d) { return dtype_info(d).name; }

DType parse_dtype(const std::string& name) {
  for (const auto& i : kDTypes)
    if (name == i.name) return i.dtype;
  throw Error("", "dtype " + name + " is not supported (F32, F16, BF16, I32, I64 or U8)");
}

uint64_t shape_elements(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("", "negative dimension in shape " + shape_string(shape));
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
      throw Error("", "shape " + shape_string(shape) + " is too large");
  }
  return n;
}

uint16_t f32_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x0040);  // NaN
  x += 0x7FFF + ((x >> 16) & 1);  // round to nearest even; a carry into the exponent is right
  return static_cast<uint16_t>(x >> 16);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_f16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  uint32_t a = x & 0x7FFFFFFF;
  if (a > 0x7F800000) return sign | 0x7E00 | static_cast<uint16_t>((a >> 13) & 0x1FF);  // NaN
  int exp = static_cast<int>(a >> 23) - 127 + 15;  // the half's biased exponent
  if (exp >= 31) return sign | 0x7C00;             // >= 2^16 (or inf): infinity
  if (exp < -10) return sign;                      // < 2^-25: rounds to zero
  uint32_t mant = (a & 0x7FFFFF) | 0x800000;       // 24 bits with the implicit one
  int shift = exp >= 1 ? 13 : 14 - exp;            // subnormal halves: fewer mantissa bits
  uint32_t h = mant >> shift;
  uint32_t rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (exp >= 1) h = (static_cast<uint32_t>(exp) << 10) | (h & 0x3FF);
  if (rest > half || (rest == half && (h & 1))) ++h;  // a carry rounds up to the next binade/inf
  return sign | static_cast<uint16_t>(h);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000 | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    exp = 1;
    for (; !(mant & 0x400); mant <<= 1) --exp;  // normalize a subnormal
    mant &= 0x3FF;
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

// ---- Writer ------------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<DType> dtypes;
  for (const auto& t : tensors) dtypes.push_back(t.dtype);
  write_file(path, tensors, dtypes, metadata,
             [](OutputStream& out, const TensorView& t, uint64_t bytes) {
               out.write(std::string_view(static_cast<const char*>(t.data), bytes));
             });
}

void write_safetensors_f32(const std::string& path, const std::vector<TensorView>& floats,
                           DType dtype, const std::map<std::string, std::string>& metadata) {
  if (dtype != DType::f32 && dtype != DType::bf16 && dtype != DType::f16)
    throw Error(path, std::string("float32 tensors cannot be stored as ") + dtype_name(dtype));
  std::vector<DType> dtypes(floats.size(), dtype);
  write_file(path, floats, dtypes, metadata,
             [dtype](OutputStream& out, const TensorView& t, uint64_t bytes) {
               write_floats(out, static_cast<const float*>(t.data), bytes / dtype_size(dtype),
                            dtype);
             });
}

// ---- Reader ------------------------------------------------------------------------------------

struct SafetensorsFile::Span {
  uint64_t begin, end;
  const std::string* name;
};

SafetensorsFile::SafetensorsFile(const std::string& path)
    : path_(path), file_(std::make_unique<MappedFile>(path)), map_(file_->data()), map_size_(file_->size()) {
  parse_header();
}

SafetensorsFile::~SafetensorsFile() = default;

void SafetensorsFile::parse_header() {
  if (map_size_ < 8)
    throw Error(path_, "truncated: " + std::to_string(map_size_) +
                           " bytes, too short for the header length");
  header_bytes_ = get_le<uint64_t>(map_);
  if (header_bytes_ > kMaxHeaderBytes)
    throw Error(path_, "header length " + std::to_string(header_bytes_) +
                           " is over the limit of 100 MB: not a safetensors file?");
  if (header_bytes_ > map_size_ - 8)
    throw Error(path_, "truncated: the header length is " + std::to_string(header_bytes_) +
                           " bytes, the file has " + std::to_string(map_size_ - 8) +
                           " after it");
  buffer_bytes_ = map_size_ - 8 - header_bytes_;
  Json h = parse_header_json(path_, reinterpret_cast<const char*>(map_ + 8), header_bytes_);
  std::vector<Span> spans;
  for (const auto& [key, value] : h.items()) {
    if (key == kMetadataKey) metadata_ = parse_metadata(path_, value);
    else add_tensor(key, value, spans);
  }
  check_tiling(spans);
}

void SafetensorsFile::add_tensor(const std::string& name, const Json& entry,
                                 std::vector<Span>& spans) {
  auto bad = [&](const std::string& what) { return Error(path_, "tensor " + name + ": " + what); };
  if (!entry.is_object()) throw bad("not a JSON object with dtype, shape and data_offsets");
  auto field = [&](const char* key) -> const Json& {
    if (!entry.contains(key)) throw bad(std::string("no ") + key);
    return entry.at(key);
  };
  Entry e;
  const Json& dtype = field("dtype");
  if (!dtype.is_string()) throw bad("dtype is not a string");
  std::vector<uint64_t> dims, offsets;
  if (!get_dims(field("shape"), dims)) throw bad("shape is not a list of non-negative integers");
  if (!get_dims(field("data_offsets"), offsets) || offsets.size() != 2)
    throw bad("data_offsets is not a pair of non-negative integers");
  uint64_t begin = offsets[0], end = offsets[1], need;
  try {
    e.dtype = parse_dtype(dtype.get<std::string>());
    e.shape.assign(dims.begin(), dims.end());
    need = tensor_bytes(shape_elements(e.shape), e.dtype);
  } catch (const Error& err) {
    throw bad(err.what());
  }
  if (begin > end || end > buffer_bytes_)
    throw bad("data_offsets " + range_string(begin, end) + " out of range: the data buffer has " +
              std::to_string(buffer_bytes_) + " bytes" + (begin <= end ? " (truncated?)" : ""));
  if (end - begin != need)
    throw bad("data_offsets " + range_string(begin, end) + " hold " +
              std::to_string(end - begin) + " bytes, shape " + shape_string(e.shape) + " of " +
              dtype_name(e.dtype) + " needs " + std::to_string(need));
  e.data = map_ + 8 + header_bytes_ + begin;
  e.bytes = static_cast<size_t>(need);
  auto it = entries_.emplace(name, std::move(e)).first;
  spans.push_back({begin, end, &it->first});
}

void SafetensorsFile::check_tiling(std::vector<Span>& spans) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return std::tie(a.begin, a.end, *a.name) < std::tie(b.begin, b.end, *b.name);
  });
  uint64_t at = 0;
  const std::string* prev = nullptr;
  for (const Span& s : spans) {
    if (s.begin < at)
      throw Error(path_, "tensors " + *prev + " and " + *s.name + " overlap (data_offsets " +
                             range_string(s.begin, s.end) + " begin before " +
                             std::to_string(at) + ")");
    if (s.begin > at)
      throw Error(path_, "a hole of " + std::to_string(s.begin - at) + " bytes in the data " +
                             (prev ? "after tensor " + *prev : "before tensor " + *s.name));
    at = s.end;
    prev = s.name;
    order_.push_back(*s.name);
  }
  if (at != buffer_bytes_)
    throw Error(path_, std::to_string(buffer_bytes_ - at) +
                           " bytes at the end of the data belong to no tensor");
}

bool SafetensorsFile::has(const std::string& name) const { return entries_.count(name) > 0; }

const SafetensorsFile::Entry& SafetensorsFile::get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error(path_, "no tensor " + name);
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const { return order_; }

void SafetensorsFile::read_f32(const std::string& name, float* out, size_t count,
                               const std::vector<int64_t>& shape) const {
  const Entry& e = get(name);
  if (!shape.empty() && shape != e.shape)
    throw Error(path_, "tensor " + name + ": shape " + shape_string(e.shape) + " expected " +
                           shape_string(shape));
  uint64_t n = shape_elements(e.shape);  // validated when opened
  if (n != count)
    throw Error(path_, "tensor " + name + ": " + std::to_string(n) + " elements, expected " +
                           std::to_string(count));
  if (n == 0) return;
  const unsigned char* p = e.data;
  switch (e.dtype) {
    case DType::f32:
      std::memcpy(out, p, n * sizeof(float));
      break;
    case DType::bf16:
      for (uint64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(get_le<uint16_t>(p + 2 * i));
      break;
    case DType::f16:
      for (uint64_t i = 0; i < n; ++i) out[i] = f16_to_f32(get_le<uint16_t>(p + 2 * i));
      break;
    default:
      throw Error(path_, "tensor " + name + ": dtype " + dtype_name(e.dtype) +
                             " cannot be read as float32");
  }
  // A tensor is read once: its file pages need not stay in the resident set (a model's
  // weights loaded would otherwise count twice until the file is closed).
  release_mapped_pages(p, e.bytes);
}

}  // namespace llmkit
