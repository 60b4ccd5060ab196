// ggml's block types and GGUF files: conversions against hand values, every type's decoding
// against a decoder written here from the layout (ggml-common.h), quantization errors within
// the format's bounds, GGUF round trips, and broken files refused.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "llmkit/error.hpp"
#include "llmkit/ggml.hpp"
#include "llmkit/gguf.hpp"
#include "llmkit/quant.hpp"
#include "../../lib/quant/ggml_value.hpp"
#include "util.hpp"

using namespace llmkit;
using test::h2f;
using test::randn;
namespace gg = llmkit::ggml;

TEST_CASE("ggml: half and bfloat16 as IEEE rounds them", "[quant]") {
  CHECK(gg::fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(gg::fp32_to_fp16(-2.0f) == 0xc000);
  CHECK(gg::fp32_to_fp16(65504.0f) == 0x7bff);
  CHECK(gg::fp32_to_fp16(65520.0f) == 0x7c00);       // rounds to infinity
  CHECK(gg::fp32_to_fp16(65519.99f) == 0x7bff);
  CHECK(gg::fp32_to_fp16(0.1f) == 0x2e66);
  CHECK(gg::fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);  // the smallest subnormal
  CHECK(gg::fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // a tie: to even, 0
  CHECK(gg::fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units: to even, 2
  CHECK(gg::fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // a tie at 1: to even
  CHECK(gg::fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);
  // Every half that is a number comes back as itself.
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN
    if (gg::fp32_to_fp16(gg::fp16_to_fp32(static_cast<uint16_t>(h))) != h) FAIL("half " << h);
  }
  CHECK(std::isnan(gg::fp16_to_fp32(gg::fp32_to_fp16(std::nanf("")))));
  CHECK(gg::fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(gg::fp32_to_bf16(1.00390625f) == 0x3f80);  // a tie: to even
  CHECK(gg::fp32_to_bf16(1.01171875f) == 0x3f82);
  CHECK(gg::bf16_to_fp32(0x4049) == 3.140625f);
}

TEST_CASE("ggml: each block type decodes as its layout says, and quantizes within its bounds", "[quant]") {
  const std::vector<float> x = randn(512, 3, 0.05f);
  for (const char* name : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16", "F32"}) {
    INFO(name);
    gg::Type t;
    REQUIRE(gg::parse_type(name, t));
    std::vector<uint8_t> q(gg::row_bytes(t, 512));
    gg::quantize(t, x.data(), q.data(), 512);
    std::vector<float> y(512);
    gg::dequantize(t, q.data(), y.data(), 512);
    // An independent decoder from the block layouts.
    std::vector<float> ref(512);
    const uint8_t* b = q.data();
    if (t == gg::Type::q8_0) {
      for (int i = 0; i < 16; ++i, b += 34)
        for (int j = 0; j < 32; ++j) ref[i * 32 + j] = h2f(b) * static_cast<float>(static_cast<int8_t>(b[2 + j]));
    } else if (t == gg::Type::q4_0) {
      for (int i = 0; i < 16; ++i, b += 18)
        for (int j = 0; j < 32; ++j) ref[i * 32 + j] = h2f(b) * static_cast<float>(((j < 16 ? b[2 + j] : b[2 + j - 16] >> 4) & 15) - 8);
    } else if (t == gg::Type::q4_1 || t == gg::Type::q5_0 || t == gg::Type::q5_1) {
      const bool has_min = t != gg::Type::q5_0, five = t != gg::Type::q4_1;
      const size_t bytes = 2 + (has_min ? 2 : 0) + (five ? 4 : 0) + 16;
      for (int i = 0; i < 16; ++i, b += bytes) {
        const float d = h2f(b), m = has_min ? h2f(b + 2) : 0.0f;
        uint32_t qh = 0;
        if (five) std::memcpy(&qh, b + (has_min ? 4 : 2), 4);
        for (int j = 0; j < 32; ++j) {
          int q = (j < 16 ? b[bytes - 16 + j] : b[bytes - 16 + j - 16] >> 4) & 15;
          if (five) q |= ((qh >> j) & 1) << 4;  // value j's fifth bit is bit j
          ref[i * 32 + j] = has_min ? static_cast<float>(q) * d + m : static_cast<float>(q - 16) * d;
        }
      }
    } else if (t == gg::Type::q4_k || t == gg::Type::q5_k) {
      const bool five = t == gg::Type::q5_k;
      for (int i = 0; i < 2; ++i, b += five ? 176 : 144) {
        const float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t* s = b + 4;
        for (int j = 0; j < 256; ++j) {
          const int g = j / 32;  // the sub-block: its 6-bit scale and min
          const int sc = g < 4 ? s[g] & 63 : (s[g + 4] & 15) | ((s[g - 4] >> 6) << 4);
          const int mn = g < 4 ? s[g + 4] & 63 : (s[g + 4] >> 4) | ((s[g] >> 6) << 4);
          const int pair = j / 64, in = j % 64;  // 32 bytes hold two sub-blocks: low, then high nibbles
          const uint8_t byte = (five ? b + 48 : b + 16)[pair * 32 + in % 32];
          int qv = in < 32 ? byte & 15 : byte >> 4;
          if (five) qv += ((b[16 + in % 32] >> (2 * pair + (in >= 32))) & 1) << 4;
          ref[i * 256 + j] = d * static_cast<float>(sc) * static_cast<float>(qv) - dmin * static_cast<float>(mn);
        }
      }
    } else if (t == gg::Type::q6_k) {
      for (int i = 0; i < 2; ++i, b += 210) {
        const float d = h2f(b + 208);
        for (int j = 0; j < 256; ++j) {
          const int half = j / 128, r = j % 128, l = r % 32, quarter = r / 32;  // 4 interleaved groups of 32
          const uint8_t lo = b[half * 64 + l + (quarter & 1) * 32];
          const int low = quarter < 2 ? lo & 15 : lo >> 4;
          const int high = (b[128 + half * 32 + l] >> (2 * quarter)) & 3;
          const int8_t sc = static_cast<int8_t>(b[192 + j / 16]);
          ref[i * 256 + j] = d * static_cast<float>(sc) * static_cast<float>((low | (high << 4)) - 32);
        }
      }
    } else {
      ref = y;  // the float types: checked by the conversions above
    }
    for (int j = 0; j < 512; ++j) CHECK(y[j] == ref[j]);
    // The error against the values: within half a step of each format (plus the scales' fp16).
    double se = 0, sx = 0;
    for (int j = 0; j < 512; ++j) se += (y[j] - x[j]) * (y[j] - x[j]), sx += x[j] * x[j];
    const double rel = std::sqrt(se / sx);
    const double bound = t == gg::Type::q8_0 ? 0.01 : t == gg::Type::q6_k ? 0.03
                       : t == gg::Type::q5_k || t == gg::Type::q5_0 || t == gg::Type::q5_1 ? 0.07 : t == gg::Type::f16 ? 1e-3
                       : t == gg::Type::bf16 ? 5e-3 : t == gg::Type::f32 ? 0 : 0.13;
    CHECK(rel <= bound);
  }
  // All zero: zero blocks, decoded as zeros; a row that is not whole blocks is refused.
  std::vector<float> z(256, 0.0f), back(256, 1.0f);
  std::vector<uint8_t> q(gg::row_bytes(gg::Type::q6_k, 256));
  gg::quantize(gg::Type::q6_k, z.data(), q.data(), 256);
  gg::dequantize(gg::Type::q6_k, q.data(), back.data(), 256);
  CHECK(back == z);
  CHECK_THROWS_AS(gg::row_bytes(gg::Type::q4_k, 128), Error);
}

TEST_CASE("gguf: written, read back, and broken files refused", "[quant]") {
  const std::string dir = (std::filesystem::temp_directory_path() / "llmkit-gguf-test").string();
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/t.gguf";
  GgufWriter w;
  w.set("general.architecture", GgufValue::text("llama"));
  w.set("x.count", GgufValue::u32v(7));
  w.set("x.eps", GgufValue::f32v(1e-5f));
  w.set("x.flag", GgufValue::boolv(true));
  w.set("x.names", GgufValue::texts({"a", "bb", ""}));
  w.set("x.ids", GgufValue::numbers(GgufValue::i32, {-1, 2, 3}));
  const std::vector<float> a = randn(64 * 3, 5), b = randn(256 * 2, 6);
  w.add_tensor("a", {64, 3}, gg::Type::f32, a.data());
  w.add_tensor("b", {256, 2}, gg::Type::q4_k, b.data());
  w.write(path);
  {
    const GgufFile f(path);
    CHECK(f.version() == 3);
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_number("x.count") == 7);
    CHECK(static_cast<float>(f.get_number("x.eps")) == 1e-5f);
    CHECK(f.find("x.flag")->num == 1);
    CHECK(f.find("x.names")->strs == std::vector<std::string>{"a", "bb", ""});
    CHECK(f.find("x.ids")->nums == std::vector<double>{-1, 2, 3});
    REQUIRE(f.tensors().size() == 2);
    CHECK(f.values(*f.tensor("a")) == a);
    CHECK(f.tensor("b")->offset % 32 == 0);
    CHECK(f.tensor("b")->bytes == 288);
    std::vector<float> qb(512);
    std::vector<uint8_t> blocks(288);
    gg::quantize(gg::Type::q4_k, b.data(), blocks.data(), 512);
    gg::dequantize(gg::Type::q4_k, blocks.data(), qb.data(), 512);
    CHECK(f.values(*f.tensor("b")) == qb);
    CHECK_THROWS_AS(f.get_string("x.count"), Error);
    CHECK_THROWS_AS(f.get_number("missing"), Error);
  }
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto broken = [&](const std::string& content) {
    std::ofstream(dir + "/b.gguf", std::ios::binary) << content;
    try {
      GgufFile f(dir + "/b.gguf");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  for (size_t cut : {size_t(3), size_t(20), size_t(100), bytes.size() / 2, bytes.size() - 1}) {
    INFO("cut at " << cut);
    CHECK(broken(bytes.substr(0, cut)) != "accepted");
  }
  CHECK_THAT(broken("GGUX" + bytes.substr(4)), Catch::Contains("no GGUF magic"));
  std::string huge = bytes;
  const uint64_t lots = 1ull << 60;
  std::memcpy(&huge[16], &lots, 8);  // the metadata count
  CHECK_THAT(broken(huge), Catch::Contains("larger than the file"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("ggml: an importance per column lowers the importance-weighted error of Q4_0, Q4_K, Q5_K and Q6_K", "[quant]") {
  const int n = 2048;
  for (gg::Type t : {gg::Type::q4_0, gg::Type::q4_k, gg::Type::q5_k, gg::Type::q6_k}) {
    INFO(gg::traits(t).name);
    CHECK(gg::uses_importance(t));
    double plain_err = 0, weighted_err = 0;
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      const std::vector<float> x = randn(n, seed);
      // A few columns matter far more than the rest, as outlier activation channels do.
      std::vector<float> imp(n);
      std::mt19937 r(seed + 100);
      std::lognormal_distribution<float> d(0.0f, 1.5f);
      for (float& v : imp) v = d(r);
      std::vector<uint8_t> plain(gg::row_bytes(t, n)), weighted(plain.size());
      gg::quantize(t, x.data(), plain.data(), n);
      gg::quantize(t, x.data(), weighted.data(), n, imp.data());
      std::vector<float> a(n), b(n);
      gg::dequantize(t, plain.data(), a.data(), n);
      gg::dequantize(t, weighted.data(), b.data(), n);
      for (int i = 0; i < n; ++i) {
        plain_err += imp[i] * (x[i] - a[i]) * (x[i] - a[i]);
        weighted_err += imp[i] * (x[i] - b[i]) * (x[i] - b[i]);
        REQUIRE(std::fabs(x[i] - b[i]) < 1.0f);  // still a quantization of x
      }
    }
    INFO("weighted error without " << plain_err << ", with " << weighted_err);
    CHECK(weighted_err < 0.9 * plain_err);
  }
  // Types that take no importance quantize as without it.
  const std::vector<float> x = randn(256, 9), imp(256, 3.0f);
  for (gg::Type t : {gg::Type::q8_0, gg::Type::q4_1, gg::Type::q5_0}) {
    std::vector<uint8_t> a(gg::row_bytes(t, 256)), b(a.size());
    gg::quantize(t, x.data(), a.data(), 256);
    gg::quantize(t, x.data(), b.data(), 256, imp.data());
    CHECK(a == b);
  }
}

TEST_CASE("ggml: each value's code and grid are the decoder's, and a code set changes that value alone", "[quant]") {
  const int n = 512;
  for (gg::Type t : {gg::Type::q8_0, gg::Type::q4_0, gg::Type::q4_1, gg::Type::q5_0, gg::Type::q5_1, gg::Type::q4_k, gg::Type::q5_k,
                     gg::Type::q6_k}) {
    INFO(gg::traits(t).name);
    const std::vector<float> x = randn(n, 21);
    std::vector<uint8_t> q(gg::row_bytes(t, n));
    gg::quantize(t, x.data(), q.data(), n);
    std::vector<float> y(n), z(n);
    gg::dequantize(t, q.data(), y.data(), n);
    std::mt19937 rng(5);
    for (int j = 0; j < n; ++j) {
      const gg::Grid g = gg::grid_at(t, q.data(), j);
      const int c = gg::code_at(t, q.data(), j);
      REQUIRE(c >= 0);
      REQUIRE(c <= g.qmax);
      REQUIRE(g.value(c) == y[j]);
      // nearest: no code of the grid is closer to a value than the one it picks
      const float v = x[j] + 0.3f * std::uniform_real_distribution<float>(-1, 1)(rng);
      const int best = g.nearest(v);
      for (int k = 0; k <= g.qmax; ++k) REQUIRE(std::fabs(g.value(best) - v) <= std::fabs(g.value(k) - v) * (1 + 1e-6f) + 1e-7f);
      // another code: this value moves to it, no other value moves
      const int other = (c + 1 + static_cast<int>(rng() % static_cast<unsigned>(g.qmax))) % (g.qmax + 1);
      std::vector<uint8_t> p = q;
      gg::set_code(t, p.data(), j, other);
      REQUIRE(gg::code_at(t, p.data(), j) == other);
      gg::dequantize(t, p.data(), z.data(), n);
      for (int k = 0; k < n; ++k) REQUIRE(z[k] == (k == j ? g.value(other) : y[k]));
      gg::set_code(t, p.data(), j, c);
      REQUIRE(p == q);
    }
  }
  std::vector<uint8_t> f(64);
  CHECK_THROWS(gg::grid_at(gg::Type::f16, f.data(), 0));
}

namespace {
// tr(D H D^T) in double, D the dequantized bytes minus w.
double output_error(gg::Type t, const std::vector<uint8_t>& q, const std::vector<float>& w, int rows, int cols, const std::vector<float>& h) {
  std::vector<float> y(cols);
  const size_t rb = gg::row_bytes(t, cols);
  double e = 0;
  for (int r = 0; r < rows; ++r) {
    gg::dequantize(t, q.data() + rb * r, y.data(), cols);
    std::vector<double> d(cols);
    for (int i = 0; i < cols; ++i) d[i] = double(y[i]) - w[static_cast<size_t>(r) * cols + i];
    for (int i = 0; i < cols; ++i)
      for (int j = 0; j < cols; ++j) e += d[i] * h[static_cast<size_t>(i) * cols + j] * d[j];
  }
  return e;
}
}  // namespace

TEST_CASE("GPTQ: lower output error than rounding to nearest on correlated inputs; plain rounding where inputs are independent", "[quant]") {
  const int rows = 24, cols = 512, N = 2048;
  // Inputs whose columns are correlated (z mixed by a random matrix) and of unequal scale, as a
  // layer's activations are; H = sum x x^T.
  const std::vector<float> z = randn(static_cast<size_t>(N) * cols, 31), mix = randn(static_cast<size_t>(cols) * cols, 32, 0.06f);
  std::vector<float> x(z.size());
  for (int n = 0; n < N; ++n)
    for (int j = 0; j < cols; ++j) {
      float v = z[static_cast<size_t>(n) * cols + j] * (1.0f + 3.0f * (j % 17 == 0));
      for (int k = 0; k < 8; ++k) v += mix[static_cast<size_t>(j) * cols + (j + 1 + 37 * k) % cols] * z[static_cast<size_t>(n) * cols + (j + 1 + 37 * k) % cols] * 10;
      x[static_cast<size_t>(n) * cols + j] = v;
    }
  std::vector<float> H(static_cast<size_t>(cols) * cols, 0.0f);
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < cols; ++i)
      for (int j = 0; j < cols; ++j) H[static_cast<size_t>(i) * cols + j] += x[static_cast<size_t>(n) * cols + i] * x[static_cast<size_t>(n) * cols + j];
  const std::vector<float> w = randn(static_cast<size_t>(rows) * cols, 33, 0.05f);
  for (gg::Type t : {gg::Type::q8_0, gg::Type::q4_0, gg::Type::q5_1, gg::Type::q4_k, gg::Type::q5_k, gg::Type::q6_k}) {
    INFO(gg::traits(t).name);
    const GptqResult r = gptq_quantize(t, w.data(), rows, cols, H);
    REQUIRE(r.bytes.size() == gg::row_bytes(t, cols) * rows);
    const double e = output_error(t, r.bytes, w, rows, cols, H);
    CHECK(std::fabs(e - r.output_error) <= 1e-3 * e);
    CHECK(r.output_error < 0.8 * r.rtn_output_error);
    CHECK(r.output_error < 0.8 * r.plain_output_error);
    // still a quantization of w: every value within a few steps of it
    std::vector<float> y(static_cast<size_t>(rows) * cols);
    for (int row = 0; row < rows; ++row) gg::dequantize(t, r.bytes.data() + gg::row_bytes(t, cols) * row, y.data() + static_cast<size_t>(row) * cols, cols);
    for (size_t i = 0; i < y.size(); ++i) REQUIRE(std::fabs(y[i] - w[i]) < 0.2f);
  }
  // Independent inputs of equal scale (H = N I): no error to spread, so GPTQ rounds each value
  // to the nearest code of the scales the quantizer chose, as that quantizer itself does.
  std::vector<float> I(static_cast<size_t>(cols) * cols, 0.0f), ones(cols, 1.0f);
  for (int i = 0; i < cols; ++i) I[static_cast<size_t>(i) * cols + i] = N;
  for (gg::Type t : {gg::Type::q8_0, gg::Type::q4_k, gg::Type::q6_k}) {
    INFO(gg::traits(t).name);
    const GptqResult r = gptq_quantize(t, w.data(), rows, cols, I);
    std::vector<uint8_t> plain(r.bytes.size());
    for (int row = 0; row < rows; ++row)
      gg::quantize(t, w.data() + static_cast<size_t>(row) * cols, plain.data() + gg::row_bytes(t, cols) * row, cols,
                   gg::uses_importance(t) ? ones.data() : nullptr);
    int differ = 0;
    for (int j = 0; j < rows * cols; ++j) differ += gg::code_at(t, r.bytes.data(), j) != gg::code_at(t, plain.data(), j);
    // Q8_0's quantizer rounds with its scale before fp16 rounds it: a few codes not the nearest
    CHECK(differ <= rows * cols / (t == gg::Type::q8_0 ? 50 : 500));
    CHECK(r.output_error <= r.rtn_output_error * 1.001);
  }
  CHECK_THROWS(gptq_quantize(gg::Type::f16, w.data(), rows, cols, H));
  CHECK_THROWS(gptq_quantize(gg::Type::q4_k, w.data(), rows, 100, std::vector<float>(100 * 100, 1.0f)));
}

TEST_CASE("NF4: double-quantized block scales, the nearest level, and one decoder for the CPU and the GPU", "[quant]") {
  CHECK(gg::row_bytes(gg::Type::nf4, 512) == 8 + 8 * 33);
  CHECK_THROWS(gg::row_bytes(gg::Type::nf4, 100));
  CHECK(!gg::is_known(static_cast<uint32_t>(gg::Type::nf4)));  // never read from a GGUF file
  for (int q = 0; q < 15; ++q) CHECK(gg::nf4_level(q) < gg::nf4_level(q + 1));
  CHECK(gg::nf4_level(7) == 0.0f);
  CHECK(gg::nf4_level(0) == -1.0f);
  CHECK(gg::nf4_level(15) == 1.0f);
  for (int n : {64, 512, 4096}) {
    INFO("n " << n);
    std::vector<float> x = randn(static_cast<size_t>(n), 40 + n, 0.02f);
    x[3] = 0.3f;  // an outlier: its block's scale is far from the others'
    std::vector<uint8_t> q(gg::row_bytes(gg::Type::nf4, n));
    std::vector<float> y(n);
    gg::quantize(gg::Type::nf4, x.data(), q.data(), n);
    gg::dequantize(gg::Type::nf4, q.data(), y.data(), n);
    float step, mean;
    std::memcpy(&step, q.data(), 4);
    std::memcpy(&mean, q.data() + 4, 4);
    for (int b = 0; b < n / 64; ++b) {
      float amax = 0;
      for (int j = 0; j < 64; ++j) amax = std::max(amax, std::fabs(x[b * 64 + j]));
      const float stored = step * static_cast<float>(static_cast<int8_t>(q[8 + 33 * b])) + mean;
      REQUIRE(std::fabs(stored - amax) <= 0.5f * step * 1.0001f + 1e-7f);  // the scale's own 8-bit error
      for (int j = 0; j < 64; ++j) {
        const float v = x[b * 64 + j], got = y[b * 64 + j];
        // the nearest level of v / stored (clamped to [-1, 1]): no level is nearer
        const float t = std::clamp(v / stored, -1.0f, 1.0f);
        for (int l = 0; l < 16; ++l) REQUIRE(std::fabs(got / stored - t) <= std::fabs(gg::nf4_level(l) - t) + 1e-6f);
        REQUIRE(gg::layout::row_value(gg::Type::nf4, q.data(), b * 64 + j) == got);
      }
    }
  }
  std::vector<float> zero(128, 0.0f), y(128, 1.0f);
  std::vector<uint8_t> q(gg::row_bytes(gg::Type::nf4, 128));
  gg::quantize(gg::Type::nf4, zero.data(), q.data(), 128);
  gg::dequantize(gg::Type::nf4, q.data(), y.data(), 128);
  CHECK(y == zero);
}
