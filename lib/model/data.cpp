// Training data from token shards; see llmkit/data.hpp.
#include "llmkit/data.hpp"

#include <glob.h>
#include <xxhash.h>

#include <algorithm>

#include "llmkit/error.hpp"

namespace llmkit {

std::vector<std::string> expand_shard_patterns(const std::vector<std::string>& patterns) {
  std::vector<std::string> out;
  for (const auto& p : patterns) {
    glob_t g{};
    int rc = ::glob(p.c_str(), GLOB_ERR, nullptr, &g);
    if (rc == GLOB_NOMATCH || g.gl_pathc == 0) {
      globfree(&g);
      throw Error(p, "no token shard matches");
    }
    std::vector<std::string> found(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

TokenData::TokenData(const std::vector<std::string>& paths, int seq_len, bool verify)
    : T_(seq_len), paths_(paths) {
  if (seq_len < 1) throw Error("", "sequence length must be at least 1");
  for (const auto& p : paths) {
    auto s = std::make_unique<ShardReader>(p, verify);
    const ShardInfo& info = s->info();
    if (info.tokenizer_hash) {
      if (tok_hash_ && tok_hash_ != info.tokenizer_hash)
        throw Error(p, "made with another tokenizer than " + paths_[0]);
      tok_hash_ = info.tokenizer_hash;
    }
    vocab_ = std::max(vocab_, info.vocab_size);
    first_.push_back(total_);
    uint64_t n = info.tokens > 0 ? (info.tokens - 1) / static_cast<uint64_t>(T_) : 0;
    total_ += n;
    tokens_ += info.tokens;
    shards_.push_back(std::move(s));
  }
  if (total_ == 0)
    throw Error(paths.empty() ? "" : paths[0], "no window of " + std::to_string(T_ + 1) +
                                                   " tokens in the shards (too few tokens)");
}

void TokenData::window(uint64_t index, int32_t* inputs, int32_t* targets) const {
  if (index >= total_) throw Error("", "window " + std::to_string(index) + " out of range");
  size_t s = static_cast<size_t>(std::upper_bound(first_.begin(), first_.end(), index) - first_.begin() - 1);
  uint64_t begin = (index - first_[s]) * static_cast<uint64_t>(T_);
  std::vector<uint32_t> buf(static_cast<size_t>(T_) + 1);
  shards_[s]->read(begin, buf.size(), buf.data());
  for (int t = 0; t < T_; ++t) {
    inputs[t] = static_cast<int32_t>(buf[static_cast<size_t>(t)]);
    targets[t] = static_cast<int32_t>(buf[static_cast<size_t>(t) + 1]);
  }
}

// A bijection of [0, n): a 4-round Feistel network on the smallest even power of two holding
// n, keyed by (seed, epoch), walked until it lands inside [0, n) (cycle walking). O(1) memory.
uint64_t TokenData::shuffled_index(uint64_t i, uint64_t seed) const {
  const uint64_t n = total_, epoch = i / n;
  uint64_t x = i % n;
  int bits = 2;
  while ((uint64_t{1} << bits) < n) bits += 2;
  const int half = bits / 2;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t key[4];
  for (int r = 0; r < 4; ++r) {
    uint64_t in[3] = {seed, epoch, static_cast<uint64_t>(r)};
    key[r] = XXH3_64bits(in, sizeof in);
  }
  do {
    uint64_t l = x >> half, rr = x & mask;
    for (int r = 0; r < 4; ++r) {
      uint64_t in[2] = {rr, key[r]};
      uint64_t f = XXH3_64bits(in, sizeof in) & mask;
      uint64_t nl = rr;
      rr = l ^ f;
      l = nl;
    }
    x = (l << half) | rr;
  } while (x >= n);
  return x;
}

void TokenData::shuffled(uint64_t i, uint64_t seed, int32_t* inputs, int32_t* targets) const {
  window(shuffled_index(i, seed), inputs, targets);
}

}  // namespace llmkit
