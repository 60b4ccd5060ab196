// ggml's tensor types (lib/quant/ggml.cpp): the block layouts of llama.cpp's GGUF files, byte for
// byte as ggml-common.h declares them, with quantization that writes the same bytes as ggml's
// reference quantizers (quantize_row_*_ref in ggml-quants.c) and the dequantization its readers
// apply. A row of n values is n / block_size blocks, each block_bytes long:
//   F32, F16, BF16   one value per "block"
//   Q8_0   32 values: d (fp16), 32 x int8;                  x = d q
//   Q4_0   32 values: d (fp16), 16 bytes of 4-bit q;        x = d (q - 8); value j in the low
//          nibble of byte j, value j + 16 in its high nibble
//   Q4_1   32 values: d, m (fp16), 16 bytes of 4-bit q;     x = d q + m
//   Q5_0   32 values: d (fp16), 4 bytes of fifth bits (value j: bit j), 16 of low nibbles;
//          x = d (q - 16)
//   Q5_1   32 values: d, m (fp16), 4 bytes of fifth bits, 16 of low nibbles; x = d q + m
//   Q4_K   256 values: d, dmin (fp16), 12 bytes of eight 6-bit scales and mins, 128 bytes of
//          4-bit q;  x = d sc q - dmin m per 32 values
//   Q5_K   256 values: d, dmin, 12 bytes of scales and mins, 32 bytes of high bits, 128 of low
//          nibbles
//   Q6_K   256 values: 128 bytes of low nibbles, 64 of high 2 bits, 16 int8 scales, d (fp16);
//          x = d sc (q - 32) per 16 values
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace llmkit::ggml {

enum class Type : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  bf16 = 30,
  // llmkit's own, never in a GGUF file: QLoRA's 4-bit NormalFloat (Dettmers et al. 2023) with
  // double quantization, a base's in-memory type (llm-sft --qlora nf4). A row of n values:
  // the absmax scales' fp32 step and mean, then per 64 values one byte of the absmax (int8,
  // step times code plus mean) and 32 bytes of 4-bit indexes into nf4_level (value 2i in the
  // low nibble of byte i, 2i+1 in the high); x = nf4_level(q) absmax. 4.125 bits per weight
  // plus 64 bits a row.
  nf4 = 1000,
};
// The 16 NormalFloat levels, q = 0..15: quantiles of N(0, 1) scaled to [-1, 1] with an exact
// zero, as bitsandbytes tabulates them.
float nf4_level(int q);
constexpr int kNF4Block = 64;
constexpr size_t kNF4RowHeader = 8;

struct TypeTraits {
  const char* name;  // as llama.cpp prints it: F32, Q4_K, ...
  int block;         // values per block
  size_t bytes;      // bytes per block
};

// The traits of a type this library reads and writes; an Error for any other (its number).
// NF4's bytes are per block; its rows add kNF4RowHeader (row_bytes counts it).
const TypeTraits& traits(Type t);
bool is_known(uint32_t type);
// F32, f32, Q8_0, q8_0, ...: false for a name that is not one of the types above.
bool parse_type(const std::string& name, Type& t);
// Bytes of a row of n values (n a multiple of the block size: an Error otherwise).
size_t row_bytes(Type t, int64_t n);

// n values (a multiple of the type's block) into blocks, as ggml's reference quantizer does;
// with `importance` (n values, an importance matrix's row: the mean square of each input
// column's activations) as llama-quantize does with --imatrix for the types that use one (Q4_0,
// Q4_K, Q5_K, Q6_K: ggml's quantize_row_*_impl), the others ignoring it.
void quantize(Type t, const float* x, void* out, int64_t n, const float* importance = nullptr);
bool uses_importance(Type t);
// Blocks back into n values.
void dequantize(Type t, const void* in, float* y, int64_t n);

// Where value j of a row of blocks lies: x = scale (q - zero) + min (computed in that order,
// giving dequantize's bits) for an integer code q in [0, qmax], the block's scales fixed
// (Q8_0's int8 codes shifted by 128). For GPTQ, which rounds one value at a time on the grid
// its block's scales give.
struct Grid {
  float scale = 0, min = 0;
  int zero = 0, qmax = 0;
  float value(int q) const { return scale * static_cast<float>(q - zero) + min; }
  int nearest(float x) const;  // the code whose value is nearest x (clamped to the range)
};
Grid grid_at(Type t, const void* row, int64_t j);  // t a block type (not F32, F16, BF16)
int code_at(Type t, const void* row, int64_t j);
void set_code(Type t, void* row, int64_t j, int q);
// IEEE half and bfloat16 as ggml converts them: round to nearest even (bf16: NaN kept quiet).
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);
float bf16_to_fp32(uint16_t h);

}  // namespace llmkit::ggml
