// safetensors files (https://github.com/huggingface/safetensors): the tensor format of the
// Hugging Face ecosystem, written and read by llmkit's model commands.
//
// Layout:
//   0   8  N: the header length, u64 little-endian
//   8   N  the header: a UTF-8 JSON object. Each key is a tensor name mapping to
//            {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
//          with [begin, end) relative to the byte buffer after the header; an optional key
//          "__metadata__" maps to an object of string -> string. The header may end in spaces
//          (0x20): writers pad it so that the buffer starts at a multiple of 8.
//   8+N    the byte buffer: the tensors' data, little-endian, row-major.
//
// The reader is strict, as the reference implementation: N at most 100 MB and within the file;
// a JSON object with no duplicate keys; for each tensor a known dtype, a shape of non-negative
// integers, and data_offsets holding exactly product(shape) x dtype size bytes inside the buffer;
// the tensors, sorted by offset, tile the buffer with no overlap, no hole and nothing after the
// last. A shape [] is a scalar (one element); a shape with a 0 is an empty tensor (no bytes).
// Every violation is an Error naming the file and what is wrong.
//
// Only the dtypes of DType are handled; a file holding another (F64, I8, U16, F8_E4M3, ...) is
// refused with an Error naming the tensor and its dtype.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace llmkit {

class MappedFile;

enum class DType { f32, f16, bf16, i32, i64, u8 };

size_t dtype_size(DType d);
const char* dtype_name(DType d);             // "F32", "F16", "BF16", "I32", "I64", "U8"
DType parse_dtype(const std::string& name);  // an Error("", ...) for other names

// bfloat16 and IEEE half <-> float32. Both narrowing conversions round to nearest even, turn
// values too large into infinity and keep a NaN a (quiet) NaN with its sign.
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // subnormal halves below 2^-14, 65504 the largest finite value
float f16_to_f32(uint16_t h);

// Elements of a shape (1 for the scalar shape []); an Error("", ...) for a negative dimension
// or a product that overflows.
uint64_t shape_elements(const std::vector<int64_t>& shape);

// A tensor to write.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // product(shape) * dtype_size(dtype) bytes, little-endian
};

// Writes a safetensors file atomically (temporary name, renamed at the end): the header lists
// the tensors in the order given ("__metadata__" first, when metadata is not empty) and is padded
// with spaces so the buffer starts 8-byte aligned; the data follows in the same order. A
// duplicate or empty name, the name "__metadata__", or a path that is stdout or ends in .zst is
// an Error naming the path.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The same for float32 tensors, stored as `dtype` (F32, BF16 or F16; rounding to nearest even):
// each view's data is product(shape) floats, and its dtype is ignored.
void write_safetensors_f32(const std::string& path, const std::vector<TensorView>& floats,
                           DType dtype, const std::map<std::string, std::string>& metadata = {});

// A safetensors file, memory-mapped read-only and validated by the constructor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // data points into the mapping: valid while the file object lives. The buffer starts 8-byte
  // aligned when the writer padded the header (llmkit and the reference writer do), and a tensor
  // is aligned when the sizes before it keep it so (write_safetensors keeps the order given, so
  // an odd-sized U8 tensor misaligns what follows it). read_f32 copies and does not care.
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    const unsigned char* data;
    size_t bytes;
  };
  bool has(const std::string& name) const;
  const Entry& get(const std::string& name) const;  // an Error naming file and tensor if missing
  std::vector<std::string> names() const;           // in data-offset order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Copies a tensor as float32 (from F32, BF16 or F16), checking that it has `count` elements
  // and, when `shape` is not empty, exactly that shape ("tensor X: shape [..] expected [..]").
  void read_f32(const std::string& name, float* out, size_t count,
                const std::vector<int64_t>& shape = {}) const;
  const std::string& path() const { return path_; }

 private:
  struct Span;
  void parse_header();
  void add_tensor(const std::string& name, const nlohmann::json& entry,
                  std::vector<Span>& spans);
  void check_tiling(std::vector<Span>& spans);
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  const unsigned char* map_ = nullptr;  // file_'s bytes
  size_t map_size_ = 0;
  uint64_t header_bytes_ = 0;
  uint64_t buffer_bytes_ = 0;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace llmkit
