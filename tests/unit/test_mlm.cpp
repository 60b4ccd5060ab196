// BERT's dynamic masking (llmkit/mlm.hpp): its statistics, specials left alone, whole words,
// and the same masks for the same (seed, step, row).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "llmkit/mlm.hpp"

using namespace llmkit;

namespace {
std::vector<std::string> vocab() {
  std::vector<std::string> v = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (int i = 0; i < 200; ++i) v.push_back("w" + std::to_string(i));
  for (int i = 0; i < 100; ++i) v.push_back("##c" + std::to_string(i));
  return v;
}
}  // namespace

TEST_CASE("MLM masking: 15% chosen, 80/10/10, specials never, the same per seed and new per step", "[mlm]") {
  const MlmVocab v = MlmVocab::from_pieces(vocab());
  CHECK(v.mask_id == 4);
  CHECK(v.ordinary.size() == 300);
  const MlmConfig c;
  const int T = 128, rows = 400;
  int64_t tokens = 0, chosen = 0, masked = 0, random = 0, kept = 0;
  for (int r = 0; r < rows; ++r) {
    std::vector<int32_t> in(T), t(T);
    for (int i = 0; i < T; ++i) in[i] = i == 0 ? 2 : i == T - 1 ? 3 : 5 + (r * 131 + i * 17) % 300;
    std::vector<int32_t> out = in;
    mlm_mask(out.data(), t.data(), T, v, c, 7, 3, static_cast<uint64_t>(r));
    CHECK(out[0] == 2);
    CHECK(t[0] == -1);
    CHECK(out[T - 1] == 3);
    for (int i = 1; i < T - 1; ++i) {
      ++tokens;
      if (t[i] < 0) {
        REQUIRE(out[i] == in[i]);
        continue;
      }
      REQUIRE(t[i] == in[i]);
      ++chosen;
      if (out[i] == 4) ++masked;
      else if (out[i] == in[i]) ++kept;
      else {
        ++random;
        REQUIRE(out[i] >= 5);
      }
    }
    // deterministic; another step, another mask
    std::vector<int32_t> again = in, t2(T), other = in, t3(T);
    mlm_mask(again.data(), t2.data(), T, v, c, 7, 3, static_cast<uint64_t>(r));
    REQUIRE(again == out);
    REQUIRE(t2 == t);
    mlm_mask(other.data(), t3.data(), T, v, c, 7, 4, static_cast<uint64_t>(r));
    if (r == 0) CHECK(t3 != t);
  }
  const double p = static_cast<double>(chosen) / static_cast<double>(tokens);
  INFO("chosen " << p << ", of them [MASK] " << double(masked) / chosen << ", random " << double(random) / chosen << ", kept "
                 << double(kept) / chosen);
  CHECK(std::abs(p - 0.15) < 0.01);
  CHECK(std::abs(static_cast<double>(masked) / chosen - 0.8) < 0.02);
  // a random draw may give the token itself back (1 in 300): it then counts as kept
  CHECK(std::abs(static_cast<double>(random) / chosen - 0.1) < 0.02);
  CHECK(std::abs(static_cast<double>(kept) / chosen - 0.1) < 0.02);
}

TEST_CASE("MLM masking: a whole word is chosen or not as one", "[mlm]") {
  const MlmVocab v = MlmVocab::from_pieces(vocab());
  MlmConfig c;
  c.whole_word = true;
  const int T = 300;
  std::vector<int32_t> in(T), t(T);
  for (int i = 0; i < T; ++i) in[i] = i % 3 == 0 ? 5 + i % 200 : 205 + i % 100;  // a word, then two ## pieces
  std::vector<int32_t> out = in;
  mlm_mask(out.data(), t.data(), T, v, c, 1, 1, 0);
  int words = 0, chosen = 0;
  for (int i = 0; i < T; i += 3) {
    ++words;
    const bool a = t[i] >= 0, b = t[i + 1] >= 0, d = t[i + 2] >= 0;
    CHECK(a == b);
    CHECK(b == d);
    chosen += a;
  }
  CHECK(chosen > 0);
  CHECK(chosen < words);
  CHECK_THROWS(MlmVocab::from_pieces({"a", "b"}));  // no [MASK]
}
