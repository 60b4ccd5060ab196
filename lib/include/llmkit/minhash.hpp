// MinHash-LSH near-duplicate detection (lib/text/minhash.cpp): shingles, signatures, band keys.
// The defaults are FineWeb's (datatrove MinhashConfig): 5-gram shingles, 14 bands of 8 rows.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace llmkit::text {

struct MinHashConfig {
  int ngram = 5;             // word n-grams (FineWeb: 5)
  int cjk_ngram = 5;         // character n-grams for CJK-dominated text
  int bands = 14, rows = 8;  // bands * rows hash functions (112)
  uint64_t seed = 1;         // seeds the shingle hash and the hash functions
};

// The 64-bit hashes (XXH3, seeded with cfg.seed) of the text's shingles, sorted and unique,
// written to `out` (cleared first).
//
// The text is simplified as datatrove's simplify_text does for MinhashDedup: lower-cased;
// numbers (\d+(\.\d+)?) replaced by "0"; punctuation (datatrove's PUNCTUATION set) replaced by
// a space; whitespace runs collapsed to one space and trimmed; diacritics dropped (NFD, then
// nonspacing marks removed). A shingle is `ngram` consecutive words (split on the spaces),
// joined by one space. Text in which CJK letters dominate (effective_language) has no spaces
// between words, so its shingles are `cjk_ngram` consecutive code points, spaces left out.
// A text shorter than n words (code points) gives one shingle of the whole simplified text;
// a text that simplifies to nothing gives no shingles.
void shingle_hashes(std::string_view text, const MinHashConfig& cfg, std::vector<uint64_t>& out);

// The MinHash signature of a shingle set, bands * rows values written to `sig`: value i is the
// minimum over the shingles x of h_i(x) = (a_i * x + b_i) mod (2^61 - 1), x first reduced
// mod 2^61 - 1. No shingles give a signature of all UINT64_MAX.
void minhash_signature(const std::vector<uint64_t>& shingles, const MinHashConfig& cfg,
                       std::vector<uint64_t>& sig);

// The coefficients a_i (in [1, p)) and b_i (in [0, p)) of the hash functions, drawn from
// splitmix64 seeded with cfg.seed. Exposed so that tests can recompute a signature.
void minhash_coefficients(const MinHashConfig& cfg, std::vector<uint64_t>& a,
                          std::vector<uint64_t>& b);

// One key per band for LSH bucketing: XXH3 of the band's `rows` values, seeded with the band
// index, so that equal rows in different bands give different keys.
void band_keys(const std::vector<uint64_t>& sig, const MinHashConfig& cfg,
               std::vector<uint64_t>& keys);

// Exact Jaccard similarity of two sorted unique vectors; 1 when both are empty.
double jaccard(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b);

// Fraction of equal slots in two signatures of the same length (throws llmkit::Error
// otherwise); 1 when both are empty.
double estimated_jaccard(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b);

// Probability that two documents with Jaccard similarity s share at least one band:
// 1 - (1 - s^rows)^bands.
double lsh_candidate_probability(double s, int bands, int rows);

}  // namespace llmkit::text
