// Post-training examples as training rows (lib/model/examples.cpp): chat data files read and
// tokenized with their loss masks (llmkit/chat.hpp), examples longer than a row truncated or
// refused, and rows made of them either one example each (padded) or packed best-fit
// decreasing, several examples a row with positions and attention kept apart (backend.hpp's
// `starts`). The rows of every epoch come in an order seeded by (seed, epoch), the same on
// every rank, so a step's batch is known to all and resumable from a row cursor.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/chat.hpp"

namespace llmkit {

class Stats;

struct ExampleOptions {
  int seq_len = 1024;      // positions a row holds: an example of n tokens takes n - 1
  bool packing = false;
  bool truncate = true;    // false: an example longer than a row is an error
  bool strict = false;     // a malformed row stops the run instead of being skipped
  int64_t limit = 0;       // groups read at most; 0: all
  std::string text_field = "text";
  // Examples a data row makes: 1 (a chat row), 2 (a preference pair: chosen, rejected). The
  // examples of a group stay together: dropped together, and with group > 1 (no packing) one
  // row each, consecutive, in every epoch's order.
  int group = 1;
  // Whole examples as inputs, no targets (a reward model reads the score after the last
  // token): an example of n tokens takes n positions, and seq_len tokens at most are kept.
  bool whole = false;
};

// What a data row makes: `group` examples, and a value for them (a pair's margin).
struct ExampleGroup {
  std::vector<ChatExample> examples;
  float value = 0;
};
// Parses and tokenizes one data row (JSONL); an Error naming `where` when it cannot.
using RowEncoder = std::function<ExampleGroup(std::string_view line, const std::string& where)>;
// Chat rows (llmkit-chat(5)) through a chat encoder: one example a row.
RowEncoder chat_rows(const ChatEncoder& encoder);
// Preference rows: chosen then rejected, the margin as the value.
RowEncoder preference_rows(const ChatEncoder& encoder);

// A batch of rows, [B, T] each: inputs, targets (-1: not trained), and for packed rows the
// sequence starts (empty otherwise).
struct RowBatch {
  int B = 0, T = 0;
  std::vector<int32_t> tokens, targets, starts;
  int64_t trained = 0;  // targets >= 0
  int64_t real = 0;     // positions holding an example's token (the rest is padding)
  std::vector<uint32_t> first_example;  // per row: the index of its first example
  std::vector<float> values;            // per row: its first example's group value
  std::vector<int32_t> used;            // per row: the positions its examples take
};

// The data rows of JSONL(.zst) files in order, blank lines left out: parse(line, where) for
// each (where is FILE:LINE), then use() when it succeeded. An Error from parse (or a line too
// long) skips the row, counted in stats as malformed with a warning (the first 20 named, then
// how many more), or with strict is thrown; errors from use() are not caught. Reading stops
// when more() says no. Every post-training data file is read through this.
void for_each_row(const std::vector<std::string>& files, bool strict, Stats& stats,
                  const std::function<void(std::string_view line, const std::string& where)>& parse, const std::function<void()>& use,
                  const std::function<bool()>& more = nullptr);

class ExampleSet {
 public:
  // Reads and tokenizes every row of the files (JSONL, .zst). Malformed rows and rows the
  // template cannot render are skipped with a warning naming FILE:LINE and counted in stats
  // (rows_skipped), or stop the run with `strict`. An Error when nothing is left.
  ExampleSet(const std::vector<std::string>& files, const ChatEncoder& encoder, const ExampleOptions& opts, Stats& stats);
  ExampleSet(const std::vector<std::string>& files, const RowEncoder& encode, const ExampleOptions& opts, Stats& stats);
  // From examples already tokenized (tests), in groups of opts.group.
  ExampleSet(std::vector<ChatExample> examples, const ExampleOptions& opts, Stats& stats);

  size_t examples() const { return offsets_.size() - 1; }
  size_t groups() const { return examples() / static_cast<size_t>(opts_.group); }
  float group_value(size_t example) const { return values_[example / static_cast<size_t>(opts_.group)]; }
  size_t rows() const { return rows_.size(); }
  int64_t trained_tokens() const { return trained_total_; }
  // The example's tokens and mask (after truncation).
  ChatExample example(size_t i) const;

  // Row number `cursor` of the endless stream epoch 0, epoch 1, ...: each epoch every row once,
  // in an order seeded by (seed, epoch).
  size_t row_at(uint64_t cursor, uint64_t seed) const;
  // Rows cursor .. cursor + B - 1 of the stream as a batch.
  RowBatch batch(uint64_t cursor, int B, uint64_t seed) const;
  // Trained targets in rows cursor .. cursor + n - 1 (a step's loss normaliser).
  int64_t trained_in(uint64_t cursor, uint64_t n, uint64_t seed) const;
  // A hash of the examples' tokens and masks, in hex: whether two sets hold the same data.
  std::string fingerprint() const;
  // Fraction of the rows' positions that hold padding.
  double padding_fraction() const;

 private:
  void add(const ExampleGroup& g, Stats& stats);
  void make_rows();
  const std::vector<uint32_t>& epoch_order(uint64_t epoch, uint64_t seed) const;

  ExampleOptions opts_;
  std::vector<int32_t> tokens_;
  std::vector<uint8_t> trained_;
  std::vector<uint64_t> offsets_{0};
  std::vector<std::string> where_;
  std::vector<float> values_;  // per group
  struct Row {
    std::vector<uint32_t> examples;
    int used = 0;      // positions taken
    int64_t trained = 0;
  };
  std::vector<Row> rows_;
  int64_t trained_total_ = 0;
  mutable uint64_t cached_epoch_ = UINT64_MAX, cached_seed_ = 0;
  mutable std::vector<uint32_t> order_;
};

}  // namespace llmkit
