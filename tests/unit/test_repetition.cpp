// The Gopher repetition n-gram rules of llm-clean (lib/text/quality.cpp: the word ids, the
// n-gram index and the bounds that skip levels) against datatrove's definitions written plainly
// over strings, on random documents made to repeat: words of every length class the word keys
// treat differently (under 4, 4..7, 8..16 and over 16 bytes, non-ASCII), documents short enough
// that every word is near an end of the text and long ones, thresholds drawn at random.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "llmkit/quality.hpp"

using namespace llmkit::text;

namespace {

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// datatrove's find_top_duplicate(get_n_grams(words, n)): characters of the most frequent n-gram
// (joined by spaces) times its count; ties go to the first n-gram seen (Counter.most_common).
size_t top_ngram_chars(const std::vector<std::string>& words, size_t n) {
  std::map<std::vector<std::string>, std::pair<size_t, size_t>> seen;  // n-gram -> (count, first)
  size_t best_count = 0, best_first = 0;
  for (size_t i = 0; i + n <= words.size(); ++i) {
    std::vector<std::string> g(words.begin() + long(i), words.begin() + long(i + n));
    auto& [count, first] = seen.try_emplace(g, 0, i).first->second;
    ++count;
    if (count > best_count || (count == best_count && first < best_first)) {
      best_count = count;
      best_first = first;
    }
  }
  size_t chars = n - 1;
  for (size_t j = 0; j < n; ++j) chars += code_points(words[best_first + j]);
  return chars * best_count;
}

// datatrove's find_all_duplicate(words, n), with n-grams compared as word sequences (llmkit).
size_t all_duplicate_chars(const std::vector<std::string>& words, size_t n) {
  std::map<std::vector<std::string>, bool> unique;
  size_t repeated = 0;
  for (size_t idx = 0; idx + n <= words.size();) {
    std::vector<std::string> g(words.begin() + long(idx), words.begin() + long(idx + n));
    if (unique.count(g)) {
      for (const auto& w : g) repeated += code_points(w);
      idx += n;
    } else {
      unique[g] = true;
      ++idx;
    }
  }
  return repeated;
}

// The first n-gram rule of GopherRepetitionFilter that fires on words joined by single spaces.
std::string reference_reason(const std::vector<std::string>& words, const QualityThresholds& t) {
  std::string text;
  for (size_t i = 0; i < words.size(); ++i) text += (i ? " " : "") + words[i];
  const double chars = double(code_points(text));
  for (size_t n = 2; n <= 4; ++n)
    if (words.size() >= n && double(top_ngram_chars(words, n)) / chars > t.top_n_grams[n - 2])
      return "gopher_repetition:top_" + std::to_string(n) + "_gram";
  for (size_t n = 5; n <= 10; ++n)
    if (double(all_duplicate_chars(words, n)) / chars > t.dup_n_grams[n - 5])
      return "gopher_repetition:duplicated_" + std::to_string(n) + "_n_grams";
  return "";
}

}  // namespace

TEST_CASE("gopher_repetition's n-gram rules agree with datatrove's definitions on random documents", "[quality]") {
  // A vocabulary with words of every length class; some words differ only in their last byte
  // or their first, so that a key that missed a byte would merge them.
  std::vector<std::string> vocab = {"a", "b", "of", "to", "the", "and", "was", "from", "with", "that",
                                    "seven", "eight", "letters", "letterz", "abcdefgh", "abcdefgi", "bbcdefgh",
                                    "fifteen-letters", "fifteen-letterz", "sixteen-letters!", "sixteen-letters?",
                                    "seventeen-letters", "seventeen-letterz", "a-much-longer-word-of-many-bytes",
                                    "caf\xC3\xA9", "\xC3\xA9t\xC3\xA9", "na\xC3\xAFve-r\xC3\xA9sum\xC3\xA9s"};
  uint64_t state = 42;
  auto next = [&](uint64_t bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (state >> 33) % bound;
  };
  int fired = 0, kept = 0;
  for (int round = 0; round < 600; ++round) {
    // Words from a vocabulary of random size (small ones repeat a lot), with a phrase copied
    // in now and then so that long n-grams repeat too.
    const size_t length = 1 + next(round % 3 == 0 ? 12 : 400), distinct = 2 + next(vocab.size() - 1);
    std::vector<std::string> words;
    while (words.size() < length) {
      if (words.size() > 12 && next(8) == 0) {
        const size_t from = next(words.size() - 10), len = 5 + next(6);
        for (size_t j = 0; j < len && words.size() < length; ++j) words.push_back(words[from + j]);
      } else {
        words.push_back(vocab[next(distinct)]);
      }
    }
    QualityConfig cfg;
    cfg.gopher_quality = cfg.c4 = cfg.fineweb = false;
    cfg.dup_line_frac = cfg.dup_para_frac = cfg.dup_line_char_frac = cfg.dup_para_char_frac = 0;  // off
    for (double& t : cfg.top_n_grams) t = 0.05 + 0.9 * double(next(1000)) / 1000;
    for (double& t : cfg.dup_n_grams) t = 0.05 + 0.9 * double(next(1000)) / 1000;
    std::string text;
    for (size_t i = 0; i < words.size(); ++i) text += (i ? " " : "") + words[i];
    const std::string expected = reference_reason(words, cfg);
    INFO("round " << round << ": " << text.substr(0, 300));
    CHECK(check_quality(text, "en", cfg) == expected);
    (expected.empty() ? kept : fired) += 1;
  }
  // Both outcomes are exercised, not only one.
  CHECK(fired > 100);
  CHECK(kept > 100);
}
