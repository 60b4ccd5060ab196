// Post-training examples as training rows; see llmkit/examples.hpp.
#include "llmkit/examples.hpp"
#include "llmkit/mpi.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <random>
#include <set>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"
#include "llmkit/log.hpp"
#include "llmkit/stats.hpp"
#include "llmkit/tok.hpp"

namespace llmkit {

RowEncoder chat_rows(const ChatEncoder& encoder) {
  return [&encoder](std::string_view line, const std::string& where) {
    ExampleGroup g;
    g.examples.push_back(encoder.encode(parse_chat_row(line, where)));
    return g;
  };
}

RowEncoder preference_rows(const ChatEncoder& encoder) {
  return [&encoder](std::string_view line, const std::string& where) {
    const PreferenceRow pr = parse_preference_row(line, where);
    ExampleGroup g;
    g.examples.push_back(encoder.encode(pr.chosen));
    g.examples.push_back(encoder.encode(pr.rejected));
    g.value = static_cast<float>(pr.margin);
    return g;
  };
}

void for_each_row(const std::vector<std::string>& files, bool strict, Stats& stats,
                  const std::function<void(std::string_view line, const std::string& where)>& parse, const std::function<void()>& use,
                  const std::function<bool()>& more) {
  // Every rank reads the same rows: rank 0 alone says which it skipped.
  int warned = Comm::world().rank() == 0 ? 0 : 1 << 30;
  for (const std::string& path : files) {
    auto lines = open_lines(path);
    std::string_view line;
    bool too_long = false;
    while ((!more || more()) && lines->next(line, too_long)) {
      const std::string where = path + ":" + std::to_string(lines->line_number());
      if (!too_long && line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      stats.add("rows_in");
      try {
        if (too_long) throw Error(where, "line too long");
        parse(line, where);
      } catch (const Error& e) {
        if (strict) throw;
        stats.drop("malformed");
        if (warned++ < 20) LLMKIT_WARN("%s: %s: skipped (--strict stops instead)", e.where().c_str(), e.what());
        continue;
      }
      use();
    }
  }
  if (warned > 20 && warned < (1 << 30)) LLMKIT_WARN("%d more rows skipped", warned - 20);
}

ExampleSet::ExampleSet(const std::vector<std::string>& files, const ChatEncoder& encoder, const ExampleOptions& opts,
                       Stats& stats)
    : ExampleSet(files, chat_rows(encoder), opts, stats) {}

ExampleSet::ExampleSet(const std::vector<std::string>& files, const RowEncoder& encode, const ExampleOptions& opts, Stats& stats)
    : opts_(opts) {
  if (opts_.seq_len < 1) throw UsageError("--seq-len must be at least 1");
  ExampleGroup g;
  for_each_row(
      files, opts_.strict, stats,
      [&](std::string_view line, const std::string& where) {
        g = encode(line, where);
        if (static_cast<int>(g.examples.size()) != opts_.group) throw Error(where, "not a row of this kind");
      },
      [&] { add(g, stats); },  // too long with --no-truncate: an error, whatever --strict says
      [&] { return opts_.limit <= 0 || static_cast<int64_t>(groups()) < opts_.limit; });
  if (examples() == 0)
    throw Error(files.empty() ? "" : files[0], files.size() == 1 ? "no example to train on" : "no example to train on in these files");
  make_rows();
}

ExampleSet::ExampleSet(std::vector<ChatExample> examples, const ExampleOptions& opts, Stats& stats) : opts_(opts) {
  for (size_t i = 0; i + static_cast<size_t>(opts_.group) <= examples.size(); i += static_cast<size_t>(opts_.group)) {
    ExampleGroup g;
    g.examples.assign(examples.begin() + static_cast<long>(i), examples.begin() + static_cast<long>(i) + opts_.group);
    add(g, stats);
  }
  if (this->examples() == 0) throw Error("", "no example to train on");
  make_rows();
}

// An example of n tokens takes n - 1 positions (inputs 0..n-2, targets 1..n-1); longer than a
// row, its first seq_len + 1 tokens are kept (or it is an error). A group is kept whole or not
// at all.
void ExampleSet::add(const ExampleGroup& g, Stats& stats) {
  const size_t room = static_cast<size_t>(opts_.seq_len) + (opts_.whole ? 0 : 1);
  std::vector<size_t> kept;
  std::vector<int64_t> trained_of;
  for (const ChatExample& ex : g.examples) {
    const size_t n = ex.tokens.size();
    if (n > room && !opts_.truncate)
      throw Error(ex.where, std::to_string(n) + " tokens, more than --seq-len " + std::to_string(opts_.seq_len) +
                                (opts_.whole ? "" : " + 1") + " (without --no-truncate the example is cut to fit)");
    kept.push_back(std::min(n, room));
    int64_t trained = 0;
    for (size_t i = 1; i < kept.back(); ++i) trained += ex.trained[i];
    trained_of.push_back(trained);
    if (trained == 0) {  // what was trained is all past the cut
      if (opts_.strict) throw Error(ex.where, "nothing trained is left within --seq-len " + std::to_string(opts_.seq_len));
      stats.drop("nothing_trained_within_seq_len");
      return;
    }
  }
  for (size_t e = 0; e < g.examples.size(); ++e) {
    const ChatExample& ex = g.examples[e];
    const size_t n = kept[e];
    if (n < ex.tokens.size()) {
      stats.add("examples_truncated");
      stats.add("tokens_truncated", static_cast<int64_t>(ex.tokens.size() - n));
    }
    tokens_.insert(tokens_.end(), ex.tokens.begin(), ex.tokens.begin() + static_cast<long>(n));
    trained_.insert(trained_.end(), ex.trained.begin(), ex.trained.begin() + static_cast<long>(n));
    trained_[offsets_.back()] = 0;
    offsets_.push_back(tokens_.size());
    where_.push_back(ex.where);
    trained_total_ += trained_of[e];
    stats.add("examples");
    stats.add("data_trained_tokens", trained_of[e]);
    stats.add("data_tokens", static_cast<int64_t>(n));
  }
  values_.push_back(g.value);
}

ChatExample ExampleSet::example(size_t i) const {
  ChatExample ex;
  ex.tokens.assign(tokens_.begin() + static_cast<long>(offsets_[i]), tokens_.begin() + static_cast<long>(offsets_[i + 1]));
  ex.trained.assign(trained_.begin() + static_cast<long>(offsets_[i]), trained_.begin() + static_cast<long>(offsets_[i + 1]));
  ex.where = where_[i];
  return ex;
}

// One example a row, or best-fit decreasing: longest first, each into the row whose free room
// fits it most tightly (a new row when none does). Deterministic: ties go to the lower index.
void ExampleSet::make_rows() {
  if (opts_.group < 1 || (opts_.group > 1 && opts_.packing)) throw UsageError("packing keeps one example a group");
  const size_t n = examples();
  auto positions = [&](size_t i) { return static_cast<int>(offsets_[i + 1] - offsets_[i]) - (opts_.whole ? 0 : 1); };
  auto trained_of = [&](size_t i) {
    int64_t t = 0;
    for (uint64_t k = offsets_[i] + 1; k < offsets_[i + 1]; ++k) t += trained_[k];
    return t;
  };
  rows_.clear();
  if (!opts_.packing) {
    rows_.resize(n);
    for (size_t i = 0; i < n; ++i) rows_[i] = {{static_cast<uint32_t>(i)}, positions(i), trained_of(i)};
    return;
  }
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return positions(a) > positions(b); });
  std::set<std::pair<int, size_t>> free;  // (room left, row)
  for (uint32_t e : order) {
    const int len = positions(e);
    auto it = free.lower_bound({len, 0});
    size_t r;
    if (it == free.end()) {
      r = rows_.size();
      rows_.push_back({});
    } else {
      r = it->second;
      free.erase(it);
    }
    Row& row = rows_[r];
    row.examples.push_back(e);
    row.used += len;
    row.trained += trained_of(e);
    if (opts_.seq_len - row.used > 0) free.insert({opts_.seq_len - row.used, r});
  }
}

const std::vector<uint32_t>& ExampleSet::epoch_order(uint64_t epoch, uint64_t seed) const {
  if (cached_epoch_ != epoch || cached_seed_ != seed) {
    order_.resize(rows_.size() / static_cast<size_t>(opts_.group));
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<uint32_t>(i);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + epoch + 1);
    for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[rng() % i]);  // Fisher-Yates
    cached_epoch_ = epoch;
    cached_seed_ = seed;
  }
  return order_;
}

size_t ExampleSet::row_at(uint64_t cursor, uint64_t seed) const {
  const uint64_t R = rows_.size(), G = static_cast<uint64_t>(opts_.group);
  const uint64_t at = cursor % R;
  return static_cast<size_t>(epoch_order(cursor / R, seed)[at / G] * G + at % G);
}

int64_t ExampleSet::trained_in(uint64_t cursor, uint64_t n, uint64_t seed) const {
  int64_t t = 0;
  for (uint64_t i = 0; i < n; ++i) t += rows_[row_at(cursor + i, seed)].trained;
  return t;
}

RowBatch ExampleSet::batch(uint64_t cursor, int B, uint64_t seed) const {
  RowBatch rb;
  rb.B = B;
  rb.T = opts_.seq_len;
  const size_t NT = static_cast<size_t>(B) * rb.T;
  rb.tokens.assign(NT, kEosId);  // padding: any id in the vocabulary, never a target
  rb.targets.assign(NT, -1);
  if (opts_.packing) rb.starts.resize(NT);
  rb.first_example.resize(static_cast<size_t>(B));
  rb.values.resize(static_cast<size_t>(B));
  rb.used.resize(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b) {
    const Row& row = rows_[row_at(cursor + static_cast<uint64_t>(b), seed)];
    rb.first_example[static_cast<size_t>(b)] = row.examples.front();
    rb.values[static_cast<size_t>(b)] = group_value(row.examples.front());
    const size_t base = static_cast<size_t>(b) * rb.T;
    int t = 0;
    for (uint32_t e : row.examples) {
      const uint64_t o = offsets_[e], len = offsets_[e + 1] - o - (opts_.whole ? 0 : 1);
      for (uint64_t i = 0; i < len; ++i) {
        rb.tokens[base + static_cast<size_t>(t) + i] = tokens_[o + i];
        if (!opts_.whole && trained_[o + i + 1]) {
          rb.targets[base + static_cast<size_t>(t) + i] = tokens_[o + i + 1];
          ++rb.trained;
        }
        if (opts_.packing) rb.starts[base + static_cast<size_t>(t) + i] = t;
      }
      t += static_cast<int>(len);
    }
    rb.real += t;
    rb.used[static_cast<size_t>(b)] = t;
    for (int p = t; opts_.packing && p < rb.T; ++p) rb.starts[base + static_cast<size_t>(p)] = p;  // padding: alone
  }
  return rb;
}

std::string ExampleSet::fingerprint() const {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the tokens, the masks and the boundaries
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 0x100000001b3ull;
    }
  };
  for (int32_t t : tokens_) mix(static_cast<uint32_t>(t));
  for (uint8_t m : trained_) mix(m);
  for (uint64_t o : offsets_) mix(o);
  for (float v : values_) mix(std::bit_cast<uint32_t>(v));
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

double ExampleSet::padding_fraction() const {
  int64_t used = 0;
  for (const Row& r : rows_) used += r.used;
  return 1.0 - static_cast<double>(used) / (static_cast<double>(rows_.size()) * opts_.seq_len);
}

}  // namespace llmkit
