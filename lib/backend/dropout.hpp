// Dropout's mask as a function of (seed, element index), the same on every backend, so that a
// backward pass regenerates its forward's mask instead of storing it, and the CPU and the GPU
// drop the same elements (internal to lib/backend and lib/model).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define LLMKIT_HOST_DEVICE __host__ __device__
#else
#define LLMKIT_HOST_DEVICE
#endif

namespace llmkit {

// splitmix64 of (seed, i): a 64-bit draw that is a function of its arguments only (dropout's
// masks, MLM's masking).
LLMKIT_HOST_DEVICE inline uint64_t counter_hash(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Whether element i keeps its value under dropout with probability p: counter_hash(seed, i)'s
// top 24 bits as a uniform number in [0, 1) against p.
LLMKIT_HOST_DEVICE inline bool dropout_keeps(uint64_t seed, uint64_t i, float p) {
  return static_cast<float>(counter_hash(seed, i) >> 40) * (1.0f / 16777216.0f) >= p;
}

}  // namespace llmkit
