// safetensors files (lib/model/safetensors.cpp): round trips, the layout checked against the
// specification byte by byte, bf16 and f16 conversions, damaged files and writer errors.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/safetensors.hpp"

using namespace llmkit;

namespace {

std::string temp_path(const std::string& name) {
  return "/tmp/llmkit-test-" + std::to_string(::getpid()) + "-" + name;
}

// The message of the Error opening `path` throws ("" when it opens), checking where().
std::string error_of(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    CHECK(e.where() == path);
    return e.what();
  }
  return "";
}

// Runs `f`, expecting an Error at `path`; returns its message.
template <class F>
std::string error_at(const std::string& path, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.where() == path);
    return e.what();
  }
  return "";
}

uint64_t le64(const std::string& s, size_t at) {
  uint64_t v;
  std::memcpy(&v, s.data() + at, 8);
  return v;
}

// A file by hand: the 8-byte length, `header` as given, then `buffer`.
std::string raw_file(const std::string& header, const std::string& buffer) {
  uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header + buffer;
}

std::string bytes_of(const void* p, size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

bool is_nan16(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }

// Tensors of every kind the round trip covers.
struct Sample {
  std::vector<float> w = {1.5f, -2.0f, 0.25f, 3.0e-3f, 1e6f, -0.0f};
  std::vector<int64_t> ids = {-1, 0, 1LL << 40, INT64_MAX, INT64_MIN};
  std::vector<uint8_t> bytes = {1, 2, 3};
  float scalar = 42.5f;
  std::vector<TensorView> views() const {
    return {{"model.w", DType::f32, {2, 3}, w.data()},
            {"ids", DType::i64, {5}, ids.data()},
            {"bytes", DType::u8, {3}, bytes.data()},
            {"scalar", DType::f32, {}, &scalar},
            {"empty", DType::f32, {0}, nullptr}};
  }
  std::map<std::string, std::string> metadata() const {
    return {{"format", "pt"}, {"step", "100"}};
  }
};

}  // namespace

TEST_CASE("safetensors files round-trip tensors of each dtype, scalars, empty tensors and metadata",
          "[safetensors]") {
  Sample s;
  std::string path = temp_path("rt.safetensors");
  write_safetensors(path, s.views(), s.metadata());
  {
    SafetensorsFile f(path);
    CHECK(f.path() == path);
    CHECK(f.metadata() == s.metadata());
    CHECK(f.names() == std::vector<std::string>{"model.w", "ids", "bytes", "scalar", "empty"});
    for (const auto& v : s.views()) {
      REQUIRE(f.has(v.name));
      const auto& e = f.get(v.name);
      CHECK(e.dtype == v.dtype);
      CHECK(e.shape == v.shape);
      REQUIRE(e.bytes == shape_elements(v.shape) * dtype_size(v.dtype));
      if (e.bytes > 0) CHECK(std::memcmp(e.data, v.data, e.bytes) == 0);
    }
    CHECK_FALSE(f.has("nope"));
    std::vector<float> w(6);
    f.read_f32("model.w", w.data(), 6, {2, 3});
    CHECK(w == s.w);
    CHECK(std::signbit(w[5]));
    float x = 0;
    f.read_f32("scalar", &x, 1);
    CHECK(x == 42.5f);
    f.read_f32("empty", nullptr, 0, {0});
  }

  for (DType dt : {DType::bf16, DType::f16, DType::f32}) {
    // The views' dtypes are ignored: the data is float32.
    write_safetensors_f32(
        path, {{"a", DType::i32, {3, 2}, s.w.data()}, {"b", DType::u8, {}, &s.scalar}}, dt);
    SafetensorsFile f(path);
    CHECK(f.metadata().empty());
    CHECK(f.get("a").dtype == dt);
    CHECK(f.get("a").bytes == 6 * dtype_size(dt));
    std::vector<float> a(6);
    f.read_f32("a", a.data(), 6, {3, 2});
    for (size_t i = 0; i < 6; ++i) {
      float want = dt == DType::bf16   ? bf16_to_f32(f32_to_bf16(s.w[i]))
                   : dt == DType::f16 ? f16_to_f32(f32_to_f16(s.w[i]))
                                      : s.w[i];
      CHECK(a[i] == want);
    }
    float b = 0;
    f.read_f32("b", &b, 1);
    CHECK(b == 42.5f);  // exact in all three
  }
  std::remove(path.c_str());
}

TEST_CASE("The layout of a written safetensors file follows the specification", "[safetensors]") {
  Sample s;
  std::string path = temp_path("layout.safetensors");
  write_safetensors(path, s.views(), s.metadata());
  std::string file = read_file(path);
  REQUIRE(file.size() >= 8);
  uint64_t n = le64(file, 0);
  REQUIRE(8 + n <= file.size());
  CHECK((8 + n) % 8 == 0);  // the data starts 8-byte aligned
  std::string header = file.substr(8, n);
  CHECK(header.front() == '{');
  size_t close = header.find_last_not_of(' ');
  CHECK(header[close] == '}');  // padded with spaces only
  CHECK(n - close - 1 < 8);

  auto j = nlohmann::ordered_json::parse(header);  // keys in file order
  REQUIRE(j.is_object());
  REQUIRE(j.size() == 6);
  auto it = j.begin();
  CHECK(it.key() == "__metadata__");
  CHECK(it.value() == nlohmann::ordered_json({{"format", "pt"}, {"step", "100"}}));
  const std::string buffer = file.substr(8 + n);
  uint64_t offset = 0;
  for (const auto& v : s.views()) {
    ++it;
    REQUIRE(it.key() == v.name);
    const auto& e = it.value();
    CHECK(e.size() == 3);
    CHECK(e["dtype"] == dtype_name(v.dtype));
    CHECK(e["shape"].get<std::vector<int64_t>>() == v.shape);
    auto off = e["data_offsets"].get<std::vector<uint64_t>>();
    REQUIRE(off.size() == 2);
    CHECK(off[0] == offset);  // in the order given, no gaps
    uint64_t bytes = shape_elements(v.shape) * dtype_size(v.dtype);
    CHECK(off[1] == offset + bytes);
    REQUIRE(off[1] <= buffer.size());
    CHECK(buffer.substr(off[0], bytes) == (bytes ? bytes_of(v.data, bytes) : ""));
    offset = off[1];
  }
  CHECK(offset == buffer.size());  // nothing after the last tensor
  CHECK(j["scalar"]["shape"].is_array());
  CHECK(j["scalar"]["shape"].empty());
  CHECK(std::string(dtype_name(DType::bf16)) == "BF16");

  write_safetensors(path, {{"x", DType::u8, {1}, "z"}});  // no metadata: no __metadata__ key
  file = read_file(path);
  n = le64(file, 0);
  CHECK((8 + n) % 8 == 0);
  CHECK(nlohmann::json::parse(file.substr(8, n)) ==
        nlohmann::json::parse(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})"));
  CHECK(file.substr(8 + n) == "z");
  std::remove(path.c_str());
}

TEST_CASE("Files from other writers are read: unpadded headers, no tensors", "[safetensors]") {
  std::string path = temp_path("other.safetensors");
  float v[2] = {1.0f, -3.0f};
  // 51 header bytes: the data starts unaligned, which a reader must accept.
  std::string h = R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  write_file_atomic(path, raw_file(h, bytes_of(v, 8)));
  {
    SafetensorsFile f(path);
    float got[2];
    f.read_f32("b", got, 2);
    CHECK(got[0] == 1.0f);
    CHECK(got[1] == -3.0f);
    CHECK(f.metadata().empty());
  }
  write_file_atomic(path, raw_file("{}      ", ""));
  {
    SafetensorsFile f(path);
    CHECK(f.names().empty());
  }
  // Zero-byte tensors may share an offset; names() follows the offsets.
  h = R"({"z":{"dtype":"I32","shape":[0,4],"data_offsets":[4,4]},)"
      R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
      R"("c":{"dtype":"F16","shape":[2],"data_offsets":[4,8]},)"
      R"("__metadata__":{"k":"v"}})";
  write_file_atomic(path, raw_file(h, "abcdefgh"));
  {
    SafetensorsFile f(path);
    CHECK(f.names() == std::vector<std::string>{"a", "z", "c"});
    CHECK(f.metadata().at("k") == "v");
  }
  std::remove(path.c_str());
}

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN and infinity", "[safetensors]") {
  CHECK(f32_to_bf16(1.0f) == 0x3F80);
  CHECK(f32_to_bf16(-2.5f) == 0xC020);
  CHECK(bf16_to_f32(0x3F80) == 1.0f);
  CHECK(bf16_to_f32(0xC020) == -2.5f);
  CHECK(f32_to_bf16(0.0f) == 0x0000);
  CHECK(f32_to_bf16(-0.0f) == 0x8000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa.
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);
  CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 0x3F81);
  CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) - std::ldexp(1.0f, -20)) == 0x3F80);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(f32_to_bf16(inf) == 0x7F80);
  CHECK(f32_to_bf16(-inf) == 0xFF80);
  CHECK(std::isinf(bf16_to_f32(0x7F80)));
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds past the largest
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  float low_nan = std::bit_cast<float>(uint32_t{0x7F800001});  // payload only in the low bits
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(low_nan))));
  float neg_nan = std::bit_cast<float>(uint32_t{0xFFC00000});
  CHECK(f32_to_bf16(neg_nan) == 0xFFC0);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every bf16 survives the trip through float32
    uint16_t b = static_cast<uint16_t>(h);
    float f = bf16_to_f32(b);
    if (std::isnan(f)) REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
    else REQUIRE(f32_to_bf16(f) == b);
  }
}

TEST_CASE("f16 conversion: range, overflow to infinity, subnormals, ties to even",
          "[safetensors]") {
  CHECK(f32_to_f16(1.0f) == 0x3C00);
  CHECK(f32_to_f16(-2.0f) == 0xC000);
  CHECK(f32_to_f16(0.5f) == 0x3800);
  CHECK(f32_to_f16(-0.0f) == 0x8000);
  CHECK(f16_to_f32(0x3C00) == 1.0f);
  CHECK(f16_to_f32(0xC000) == -2.0f);
  CHECK(f32_to_f16(65504.0f) == 0x7BFF);
  CHECK(f16_to_f32(0x7BFF) == 65504.0f);
  CHECK(f32_to_f16(65519.0f) == 0x7BFF);  // below the halfway point to 65536
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // halfway: rounds to even, which is infinity
  CHECK(f32_to_f16(1e6f) == 0x7C00);
  CHECK(f32_to_f16(-1e6f) == 0xFC00);
  CHECK(f32_to_f16(std::numeric_limits<float>::infinity()) == 0x7C00);
  CHECK(std::isinf(f16_to_f32(0xFC00)));
  CHECK(f16_to_f32(0xFC00) < 0);
  CHECK(is_nan16(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(is_nan16(f32_to_f16(std::bit_cast<float>(uint32_t{0x7F800001}))));
  CHECK(std::isnan(f16_to_f32(0x7E00)));
  // Normal ties: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
  // Subnormals: multiples of 2^-24 below 2^-14.
  CHECK(f32_to_f16(std::ldexp(1.0f, -14)) == 0x0400);
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_f32(0x03FF) == 1023 * std::ldexp(1.0f, -24));
  CHECK(f32_to_f16(1023 * std::ldexp(1.0f, -24)) == 0x03FF);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);       // halfway to 2^-24: even is 0
  CHECK(f32_to_f16(1.5f * std::ldexp(1.0f, -25)) == 0x0001);
  CHECK(f32_to_f16(3 * std::ldexp(1.0f, -25)) == 0x0002);    // 1.5 x 2^-24: even is 2
  CHECK(f32_to_f16(-5 * std::ldexp(1.0f, -25)) == 0x8002);   // -2.5 x 2^-24
  CHECK(f32_to_f16(1023.75f * std::ldexp(1.0f, -24)) == 0x0400);  // rounds up into the normals
  CHECK(f32_to_f16(std::ldexp(1.0f, -30)) == 0x0000);
  CHECK(f32_to_f16(std::numeric_limits<float>::denorm_min()) == 0x0000);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every half survives the trip through float32
    uint16_t b = static_cast<uint16_t>(h);
    float f = f16_to_f32(b);
    if (is_nan16(b)) REQUIRE(std::isnan(f));
    if (is_nan16(b)) REQUIRE(is_nan16(f32_to_f16(f)));
    else REQUIRE(f32_to_f16(f) == b);
  }
}

TEST_CASE("Damaged safetensors files are errors that name the file and the damage",
          "[safetensors]") {
  Sample s;
  std::string path = temp_path("damaged.safetensors");
  write_safetensors(path, s.views(), s.metadata());
  const std::string good = read_file(path);
  CHECK(error_of(path).empty());

  write_file_atomic(path, good.substr(0, good.size() - 3));  // the last bytes of the data
  std::string msg = error_of(path);
  CHECK_THAT(msg, Catch::Contains("data_offsets [71, 71] out of range: the data buffer has 68"));
  CHECK_THAT(msg, Catch::Contains("truncated"));
  write_file_atomic(path, good.substr(0, 5));
  CHECK_THAT(error_of(path), Catch::Contains("truncated: 5 bytes"));
  std::string longer = good;
  uint64_t too_long = good.size();
  std::memcpy(longer.data(), &too_long, 8);
  write_file_atomic(path, longer);
  CHECK_THAT(error_of(path), Catch::Contains("truncated: the header length is"));
  uint64_t absurd = uint64_t{1} << 40;
  std::memcpy(longer.data(), &absurd, 8);
  write_file_atomic(path, longer);
  CHECK_THAT(error_of(path), Catch::Contains("over the limit of 100 MB"));

  auto check = [&](const std::string& header, const std::string& buffer, const char* want) {
    write_file_atomic(path, raw_file(header, buffer));
    CHECK_THAT(error_of(path), Catch::Contains(want));
  };
  const std::string b8 = "12345678", b12 = "123456789abc";
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", b8, "invalid JSON header");
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}x)", b8, "invalid JSON header");
  check(R"([1, 2])", "", "not a JSON object");
  check("", "", "not a JSON object");
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
        b12, "tensors a and b overlap");
  check(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
        b12, "a hole of 4 bytes in the data after tensor a");
  check(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", b8,
        "a hole of 4 bytes in the data before tensor b");
  check(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", b8,
        "4 bytes at the end of the data belong to no tensor");
  check(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", b8,
        "tensor a: data_offsets [0, 8] hold 8 bytes, shape [3] of F32 needs 12");
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", b8,
        "tensor a: data_offsets [8, 0] out of range");
  check(R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", b8,
        "tensor a: dtype F64 is not supported");
  check(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", b8,
        "tensor a: shape is not a list of non-negative integers");
  check(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", b8,
        "tensor a: shape is not a list");
  check(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", b8,
        "tensor a: data_offsets is not a pair");
  check(R"({"a":{"dtype":"F32","shape":[2]}})", b8, "tensor a: no data_offsets");
  check(R"({"a":[1]})", b8, "tensor a: not a JSON object");
  check(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
        R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
        b8, "duplicate tensor name a");
  check(R"({"__metadata__":{"n":1},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", b8,
        "__metadata__: the value of n is not a string");
  check(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", b8,
        "tensor a: shape [4294967296, 4294967296] is too large");

  std::remove(path.c_str());
  CHECK_THAT(error_of(path), Catch::Contains("cannot open"));
}

TEST_CASE("Lookups of missing tensors and reads with the wrong shape are errors",
          "[safetensors]") {
  Sample s;
  std::string path = temp_path("lookup.safetensors");
  write_safetensors(path, s.views(), s.metadata());
  SafetensorsFile f(path);
  std::vector<float> out(6);
  CHECK_THAT(error_at(path, [&] { f.get("lm_head.weight"); }),
             Catch::Equals("no tensor lm_head.weight"));
  CHECK_THAT(error_at(path, [&] { f.read_f32("missing", out.data(), 6); }),
             Catch::Contains("no tensor missing"));
  CHECK_THAT(error_at(path, [&] { f.read_f32("model.w", out.data(), 6, {3, 2}); }),
             Catch::Equals("tensor model.w: shape [2, 3] expected [3, 2]"));
  CHECK_THAT(error_at(path, [&] { f.read_f32("model.w", out.data(), 5); }),
             Catch::Equals("tensor model.w: 6 elements, expected 5"));
  CHECK_THAT(error_at(path, [&] { f.read_f32("ids", out.data(), 5); }),
             Catch::Contains("dtype I64 cannot be read as float32"));
  std::remove(path.c_str());
}

TEST_CASE("The safetensors writer refuses bad names and leaves no partial file",
          "[safetensors]") {
  std::string path = temp_path("refused.safetensors");
  std::remove(path.c_str());
  float x[2] = {1, 2};
  CHECK_THAT(error_at(path, [&] {
               write_safetensors(path, {{"a", DType::f32, {1}, x}, {"a", DType::f32, {1}, x + 1}});
             }),
             Catch::Contains("duplicate tensor name a"));
  CHECK_THAT(error_at(path, [&] {
               write_safetensors(path, {{"__metadata__", DType::f32, {1}, x}});
             }),
             Catch::Contains("invalid tensor name"));
  CHECK_THAT(error_at(path, [&] { write_safetensors(path, {{"a", DType::f32, {-1}, x}}); }),
             Catch::Contains("tensor a: negative dimension"));
  CHECK_THAT(error_at(path, [&] { write_safetensors(path, {{"a", DType::f32, {2}, nullptr}}); }),
             Catch::Contains("tensor a: no data"));
  CHECK_THAT(error_at(path, [&] {
               write_safetensors_f32(path, {{"a", DType::f32, {2}, x}}, DType::i32);
             }),
             Catch::Contains("cannot be stored as I32"));
  CHECK_THAT(error_at(path, [&] {
               write_safetensors(path, {{"a", DType::f32, {1}, x}}, {{"bad", "\xff"}});
             }),
             Catch::Contains("valid UTF-8"));
  CHECK_FALSE(file_size(path) > 0);  // nothing under the final name
  std::string zst = path + ".zst";
  CHECK_THAT(error_at(zst, [&] { write_safetensors(zst, {{"a", DType::f32, {1}, x}}); }),
             Catch::Contains("cannot be compressed"));
  CHECK_THROWS_WITH(parse_dtype("F64"), Catch::Contains("not supported"));
  CHECK(parse_dtype("BF16") == DType::bf16);
  CHECK(dtype_size(DType::i64) == 8);
}
