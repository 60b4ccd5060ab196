// Training data from token shards (llmkit .tok and llm.c .bin, memory-mapped): windows of
// seq_len + 1 tokens, in a deterministic shuffled order, cut into global batches that are the
// same set of sequences whatever the rank count and micro-batch.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/shard.hpp"

namespace llmkit {

// Expands glob patterns ('data/train-*.tok') into sorted paths; a pattern that matches nothing
// is an Error naming it.
std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns);

class TokenData {
 public:
  // Window k of a shard is its tokens [k*T, k*T + T + 1): consecutive windows share one token,
  // so every token but the last of a shard is predicted once per epoch.
  TokenData(const std::vector<std::string>& paths, int seq_len, bool verify = true);
  uint64_t windows() const { return total_; }
  uint64_t tokens() const { return tokens_; }
  uint64_t vocab_size() const { return vocab_; }  // the largest the shards declare (0: unknown)
  uint64_t tokenizer_hash() const { return tok_hash_; }
  const std::vector<std::string>& paths() const { return paths_; }

  // Window `index` of the sequential order: inputs (T) and targets (T, shifted by one).
  void window(uint64_t index, int32_t* inputs, int32_t* targets) const;
  // The shuffled order: sequence i (counting across epochs) is window perm_epoch(i % windows);
  // each epoch a fresh permutation from (seed, epoch).
  void shuffled(uint64_t i, uint64_t seed, int32_t* inputs, int32_t* targets) const;
  uint64_t shuffled_index(uint64_t i, uint64_t seed) const;

 private:
  int T_;
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<ShardReader>> shards_;
  std::vector<uint64_t> first_;  // first global window of each shard
  uint64_t total_ = 0, tokens_ = 0, vocab_ = 0, tok_hash_ = 0;
};

}  // namespace llmkit
