// Helpers the unit tests share: seeded normal samples, an fp16 read, and a thread count for one
// call.
#pragma once
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "llmkit/ggml.hpp"

namespace llmkit::test {

// n samples of N(0, scale^2) from std::mt19937(seed).
inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 r(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(r);
  return v;
}

// The IEEE half at p (unaligned) as a float.
inline float h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return ggml::fp16_to_fp32(h);
}

// Runs f with n OpenMP threads, then restores the count.
template <class F>
void with_threads(int n, F f) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(before);
}

}  // namespace llmkit::test
