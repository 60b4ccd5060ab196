// Examples as training rows (lib/model/examples.cpp): truncation, best-fit-decreasing packing,
// the seeded epoch order, and batches whose targets and sequence starts follow the masks.
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>

#include "llmkit/error.hpp"
#include "llmkit/examples.hpp"
#include "llmkit/stats.hpp"

using namespace llmkit;

namespace {

// Example i: tokens 100*i + k; every other token trained after the first.
std::vector<ChatExample> make(const std::vector<int>& lengths) {
  std::vector<ChatExample> out;
  for (size_t i = 0; i < lengths.size(); ++i) {
    ChatExample ex;
    for (int k = 0; k < lengths[i]; ++k) {
      ex.tokens.push_back(static_cast<int32_t>(100 * i + static_cast<size_t>(k)));
      ex.trained.push_back(k > 0 && k % 2 == 1);
    }
    ex.where = "f:" + std::to_string(i + 1);
    out.push_back(ex);
  }
  return out;
}

}  // namespace

TEST_CASE("examples: long ones are cut to the row or refused; nothing-trained-left ones dropped", "[examples]") {
  ExampleOptions o;
  o.seq_len = 8;
  Stats st;
  ExampleSet set(make({5, 12, 9, 30}), o, st);
  CHECK(set.examples() == 4);
  CHECK(st.get("examples_truncated") == 2);
  CHECK(st.get("tokens_truncated") == 3 + 21);
  CHECK(set.example(1).tokens.size() == 9);
  o.truncate = false;
  Stats st2;
  try {
    ExampleSet(make({5, 12}), o, st2);
    FAIL("a long example accepted with truncation off");
  } catch (const Error& e) {
    CHECK(e.where() == "f:2");
    CHECK_THAT(e.what(), Catch::Contains("12 tokens, more than --seq-len 8 + 1"));
  }
  // Trained tokens only past the cut: nothing left to train.
  auto late = make({20});
  for (size_t k = 0; k < 20; ++k) late[0].trained[k] = k >= 15;
  late.push_back(make({4})[0]);
  o.truncate = true;
  Stats st3;
  ExampleSet kept(late, o, st3);
  CHECK(kept.examples() == 1);
  CHECK(st3.dropped("nothing_trained_within_seq_len") == 1);
}

TEST_CASE("examples: packing is best-fit decreasing; every example once per epoch; batches follow the masks", "[examples]") {
  std::mt19937 rng(3);
  std::vector<int> lengths;
  for (int i = 0; i < 300; ++i) lengths.push_back(2 + static_cast<int>(rng() % (i % 10 == 0 ? 60 : 12)));  // many short, few long
  ExampleOptions o;
  o.seq_len = 64;
  o.packing = true;
  Stats st;
  ExampleSet packed(make(lengths), o, st);
  o.packing = false;
  ExampleSet padded(make(lengths), o, st);
  CHECK(padded.rows() == 300);
  int64_t positions = 0;
  for (int n : lengths) positions += n - 1;
  const size_t lower_bound = static_cast<size_t>((positions + 63) / 64);
  INFO("rows " << packed.rows() << ", at least " << lower_bound << "; padding " << packed.padding_fraction() << " vs "
               << padded.padding_fraction());
  CHECK(packed.rows() <= lower_bound + 2);  // best-fit decreasing on many small items is near optimal
  CHECK(packed.padding_fraction() < 0.05);
  CHECK(padded.padding_fraction() > 0.7);
  CHECK(packed.trained_tokens() == padded.trained_tokens());
  // An epoch of rows: every example exactly once; the next epoch another order, the same rows.
  const uint64_t R = packed.rows();
  std::multiset<int32_t> firsts;
  std::vector<size_t> order0, order1;
  int64_t trained = 0;
  for (uint64_t c = 0; c < R; c += 4) {
    const int B = static_cast<int>(std::min<uint64_t>(4, R - c));
    RowBatch b = packed.batch(c, B, 7);
    trained += b.trained;
    CHECK(b.trained == packed.trained_in(c, static_cast<uint64_t>(B), 7));
    for (int r = 0; r < B; ++r)
      for (int t = 0; t < b.T; ++t) {
        const size_t at = static_cast<size_t>(r) * b.T + static_cast<size_t>(t);
        const int s = b.starts[at];
        REQUIRE(s <= t);
        if (s == t && (t == 0 || b.starts[at - 1] != t) && b.tokens[at] % 100 == 0 && b.tokens[at] >= 0 &&
            (b.targets[at] >= 0 || b.tokens[at + (t + 1 < b.T ? 1 : 0)] == b.tokens[at] + 1))
          firsts.insert(b.tokens[at]);  // an example's first token opens its sequence
        if (b.targets[at] >= 0) {
          CHECK(b.targets[at] == b.tokens[at] + 1);  // the next token of the same example
          CHECK(b.targets[at] % 2 == 1);             // only the trained ones
        }
      }
  }
  CHECK(trained == packed.trained_tokens());
  CHECK(firsts.size() == 300);
  for (uint64_t c = 0; c < R; ++c) order0.push_back(packed.row_at(c, 7)), order1.push_back(packed.row_at(R + c, 7));
  CHECK(order0 != order1);
  CHECK(std::set<size_t>(order0.begin(), order0.end()).size() == R);
  CHECK(std::multiset<size_t>(order0.begin(), order0.end()) == std::multiset<size_t>(order1.begin(), order1.end()));
  CHECK(packed.row_at(5, 7) == packed.row_at(5, 7));
  CHECK(packed.row_at(5, 8) != packed.row_at(5, 7));  // another seed, another order (for these rows)
  // Unpacked rows: no starts, padding after the example.
  RowBatch u = padded.batch(0, 2, 1);
  CHECK(u.starts.empty());
  CHECK(u.real < 2 * 64);
}
