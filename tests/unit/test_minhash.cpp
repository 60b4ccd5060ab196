// MinHash-LSH (lib/text/minhash.cpp): shingling and its normalisation, the signature against a
// 128-bit reference, estimated against exact Jaccard at known edit rates, band keys, the LSH
// candidate probability.
#include <catch2/catch.hpp>

#include <xxhash.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "llmkit/error.hpp"
#include "llmkit/minhash.hpp"
#include "llmkit/words.hpp"

using namespace llmkit::text;

namespace {

std::vector<uint64_t> shingles_of(std::string_view text, const MinHashConfig& cfg = {}) {
  std::vector<uint64_t> out;
  shingle_hashes(text, cfg, out);
  return out;
}

std::vector<uint64_t> signature_of(std::string_view text, const MinHashConfig& cfg = {}) {
  std::vector<uint64_t> sig;
  minhash_signature(shingles_of(text, cfg), cfg, sig);
  return sig;
}

// A word no other i gives: base-16 digits of i written with the letters k..z.
std::string uword(size_t i) {
  std::string w;
  for (int k = 0; k < 6; ++k, i /= 16) w += static_cast<char>('k' + i % 16);
  return w;
}

std::string join(const std::vector<std::string>& words) {
  std::string t;
  for (size_t i = 0; i < words.size(); ++i) t += (i ? " " : "") + words[i];
  return t;
}

}  // namespace

TEST_CASE("minhash: English shingles are word 5-grams, blind to case and punctuation") {
  const std::string text = "The quick brown fox jumps over the lazy dog near the old river bank";
  auto base = shingles_of(text);
  CHECK(base.size() == 14 - 5 + 1);
  CHECK(std::is_sorted(base.begin(), base.end()));

  CHECK(shingles_of("THE Quick, brown fox -- jumps over the LAZY dog; near the old river bank!") == base);
  CHECK(shingles_of("  the quick\tbrown fox\n\njumps over the lazy dog near the old river bank.  ") == base);
  // A changed word is seen: the 4 shingles that hold the 4th word change (6 of 14 shared).
  auto edited = shingles_of("The quick brown cat jumps over the lazy dog near the old river bank");
  CHECK(edited.size() == base.size());
  CHECK(jaccard(base, edited) == Approx(6.0 / 14.0));

  // The shingle is the simplified words joined by one space, hashed with the seed.
  MinHashConfig cfg;
  cfg.ngram = 3;
  std::string_view first = "the quick brown";
  auto three = shingles_of("The quick brown", cfg);
  REQUIRE(three.size() == 1);
  CHECK(three[0] == XXH3_64bits_withSeed(first.data(), first.size(), cfg.seed));
}

TEST_CASE("minhash: numbers and diacritics are normalised as datatrove does") {
  CHECK(shingles_of("in 2024 there were 3.5 cats here") == shingles_of("in 17 there were 100 cats here"));
  CHECK(shingles_of("in 2024 there were 3.5 cats here") != shingles_of("in 2024 there were many cats here"));
  CHECK(shingles_of("Café crème brûlée à la carte today") == shingles_of("cafe creme brulee a la carte today"));
}

TEST_CASE("minhash: short, empty and odd texts") {
  CHECK(shingles_of("").empty());
  CHECK(shingles_of(" ... !!! ,,, \n").empty());
  auto two = shingles_of("Hello, world!");
  REQUIRE(two.size() == 1);
  std::string_view whole = "hello world";
  CHECK(two[0] == XXH3_64bits_withSeed(whole.data(), whole.size(), 1));
  // Invalid UTF-8 decodes to U+FFFD and is shingled like any other letter.
  CHECK(shingles_of("bad \xff\xfe bytes in this short text here").size() == 4);
  // A repeated 5-gram is one shingle.
  CHECK(shingles_of("a b c d e a b c d e").size() == 5);
}

TEST_CASE("minhash: CJK text gives character n-grams") {
  const std::string zh = "我们今天在公园里，看到了很多美丽的花朵和树。";
  std::string letters = "我们今天在公园里看到了很多美丽的花朵和树";
  REQUIRE(count_code_points(letters) == 20);
  auto s = shingles_of(zh);
  CHECK(s.size() == 20 - 5 + 1);
  CHECK(shingles_of(letters) == s);  // punctuation removed
  std::string_view gram = "我们今天在";
  CHECK(std::binary_search(s.begin(), s.end(), XXH3_64bits_withSeed(gram.data(), gram.size(), 1)));
  MinHashConfig cfg;
  cfg.cjk_ngram = 3;
  CHECK(shingles_of(zh, cfg).size() == 18);
}

TEST_CASE("minhash: signature equals the minimum of (a*x+b) mod 2^61-1 computed in 128 bits") {
  MinHashConfig cfg;
  std::vector<uint64_t> a, b;
  minhash_coefficients(cfg, a, b);
  REQUIRE(a.size() == 112);
  const uint64_t p = (uint64_t{1} << 61) - 1;
  std::mt19937_64 rng(7);
  std::vector<uint64_t> shingles = {0, 1, p - 1, p, p + 1, ~uint64_t{0}};
  for (int i = 0; i < 200; ++i) shingles.push_back(rng());
  std::vector<uint64_t> sig;
  minhash_signature(shingles, cfg, sig);
  REQUIRE(sig.size() == 112);
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i] >= 1);
    CHECK(a[i] < p);
    CHECK(b[i] < p);
    uint64_t expected = ~uint64_t{0};
    for (uint64_t x : shingles) {
      unsigned __int128 v = static_cast<unsigned __int128>(a[i]) * (x % p) + b[i];
      expected = std::min(expected, static_cast<uint64_t>(v % p));
    }
    CHECK(sig[i] == expected);
  }
  std::vector<uint64_t> none;
  minhash_signature({}, cfg, none);
  CHECK(none == std::vector<uint64_t>(112, ~uint64_t{0}));
}

TEST_CASE("minhash: signatures are deterministic per seed; band keys follow the text") {
  const std::string text = "Near duplicates are found by comparing the minimum hashes of shingle sets";
  MinHashConfig cfg, other;
  other.seed = 2;
  auto sig = signature_of(text, cfg);
  CHECK(signature_of(text, cfg) == sig);
  auto sig2 = signature_of(text, other);
  size_t same = 0;
  for (size_t i = 0; i < sig.size(); ++i) same += sig[i] == sig2[i];
  CHECK(same < 10);

  std::vector<uint64_t> keys, keys_again, keys_other;
  band_keys(sig, cfg, keys);
  band_keys(signature_of(text, cfg), cfg, keys_again);
  CHECK(keys.size() == 14);
  CHECK(keys == keys_again);
  band_keys(signature_of("A different text about something else that shares no five-gram at all", cfg),
            cfg, keys_other);
  for (size_t i = 0; i < keys.size(); ++i) CHECK(keys[i] != keys_other[i]);
  // Equal rows in different bands still give different keys.
  std::vector<uint64_t> flat(112, 42), flat_keys;
  band_keys(flat, cfg, flat_keys);
  CHECK(flat_keys[0] != flat_keys[1]);
  CHECK_THROWS_AS(band_keys(std::vector<uint64_t>(111, 0), cfg, keys), llmkit::Error);
}

TEST_CASE("minhash: estimated Jaccard tracks exact Jaccard at known edit rates") {
  MinHashConfig cfg;
  std::mt19937 rng(12345);
  size_t next_word = 0;
  double previous_exact = 1.0;
  for (double rate : {0.02, 0.05, 0.2, 0.5}) {
    double exact_sum = 0, estimated_sum = 0;
    const int pairs = 6;
    for (int pair = 0; pair < pairs; ++pair) {
      std::vector<std::string> words;
      for (int i = 0; i < 800; ++i) words.push_back(uword(next_word++));
      std::vector<std::string> edited = words;
      std::vector<size_t> positions(words.size());
      for (size_t i = 0; i < positions.size(); ++i) positions[i] = i;
      std::shuffle(positions.begin(), positions.end(), rng);
      for (size_t k = 0; k < static_cast<size_t>(rate * words.size()); ++k)
        edited[positions[k]] = uword(next_word++);
      auto sa = shingles_of(join(words), cfg), sb = shingles_of(join(edited), cfg);
      std::vector<uint64_t> ga, gb;
      minhash_signature(sa, cfg, ga);
      minhash_signature(sb, cfg, gb);
      exact_sum += jaccard(sa, sb);
      estimated_sum += estimated_jaccard(ga, gb);
    }
    double exact = exact_sum / pairs, estimated = estimated_sum / pairs;
    INFO("rate " << rate << " exact " << exact << " estimated " << estimated);
    CHECK(std::abs(estimated - exact) < 0.1);
    CHECK(exact < previous_exact);
    previous_exact = exact;
  }
}

TEST_CASE("minhash: exact Jaccard, mismatched signatures, bad configs") {
  CHECK(jaccard({1, 2, 3}, {2, 3, 4}) == Approx(0.5));
  CHECK(jaccard({1, 2, 3}, {4, 5}) == 0.0);
  CHECK(jaccard({}, {}) == 1.0);
  CHECK(jaccard({1}, {}) == 0.0);
  CHECK(estimated_jaccard({1, 2, 3, 4}, {1, 9, 3, 9}) == Approx(0.5));
  CHECK_THROWS_AS(estimated_jaccard({1, 2}, {1}), llmkit::Error);
  MinHashConfig bad;
  bad.rows = 0;
  std::vector<uint64_t> out;
  CHECK_THROWS_AS(minhash_signature({1}, bad, out), llmkit::Error);
  bad = MinHashConfig{};
  bad.ngram = 0;
  CHECK_THROWS_AS(shingle_hashes("text", bad, out), llmkit::Error);
}

TEST_CASE("minhash: LSH candidate probability") {
  // 1 - (1 - 0.8^8)^14 = 0.92353...
  CHECK(lsh_candidate_probability(0.8, 14, 8) == Approx(0.9235).margin(0.0005));
  CHECK(lsh_candidate_probability(0.0, 14, 8) == 0.0);
  CHECK(lsh_candidate_probability(1.0, 14, 8) == 1.0);
  double previous = -1;
  for (int i = 0; i <= 100; ++i) {
    double p = lsh_candidate_probability(i / 100.0, 14, 8);
    CHECK(p >= previous);
    previous = p;
  }
  CHECK(lsh_candidate_probability(0.5, 14, 8) < 0.06);
}
