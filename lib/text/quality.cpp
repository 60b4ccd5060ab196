// Document quality rules of llm-clean, reproducing datatrove's filters; see llmkit/quality.hpp.
// The C4 stage is in quality_c4.cpp, FineWeb's in quality_fineweb.cpp.
#include "llmkit/quality.hpp"

// xxHash inlined: the hashes here are of short words and lines, where a call costs as much.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>

#include "quality_rules.hpp"

namespace llmkit::text {

namespace {

// An open-addressing hash table of (64-bit key, 32-bit value) that is reused from one document
// to the next: reset() makes it empty in O(1) by moving to a new generation, so no memory is
// allocated or cleared per document once it has grown to the largest size needed.
class ReusedTable {
 public:
  struct Slot {
    uint64_t key;
    uint32_t value;
    uint32_t generation;
  };

  // Empty, with room for `n` entries at a load of at most 1/2.
  void reset(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > slots_.size()) {
      slots_.assign(cap, Slot{0, 0, 0});
      generation_ = 0;
    }
    mask_ = cap - 1;
    if (++generation_ == 0) {  // wrapped: old stamps could look current
      std::fill(slots_.begin(), slots_.end(), Slot{0, 0, 0});
      generation_ = 1;
    }
  }

  size_t capacity() const { return mask_ + 1; }

  // The slot holding `key` (hashed as `hash`) if `same(slot)` finds it, else the free slot
  // where it goes (generation != current, so `is_new` says which).
  template <class Same>
  Slot& find(uint64_t hash, Same&& same, bool& is_new) {
    for (size_t at = hash & mask_;; at = (at + 1) & mask_) {
      Slot& s = slots_[at];
      if (s.generation != generation_) {
        s.generation = generation_;
        is_new = true;
        return s;
      }
      if (same(s)) {
        is_new = false;
        return s;
      }
    }
  }

 private:
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  uint32_t generation_ = 0;
};

uint64_t mix64(uint64_t x) {  // a bijective finaliser (splitmix64), so distinct keys stay distinct
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t hash_bytes(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

// A word of up to 16 bytes as two 64-bit numbers that determine it (with its length): its
// first 8 bytes and its last 8 (overlapping when it is shorter than 16), or, under 8 bytes, its
// bytes and 0; and a hash of them. Longer words hash with XXH3 and compare as bytes.
struct WordKey {
  uint64_t a = 0, b = 0, hash = 0;
};

uint64_t load64(const char* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}

WordKey finish_key(uint64_t a, uint64_t b, size_t n) {
  // wyhash's multiply-fold: each bit of the high half depends on every bit of both factors.
  const __uint128_t m = static_cast<__uint128_t>(a ^ 0x2d358dccaa6c78a5ull) * (b ^ n ^ 0x8bb84b93962eacc9ull);
  return WordKey{a, b, static_cast<uint64_t>(m) ^ static_cast<uint64_t>(m >> 64)};
}

WordKey word_key(std::string_view w) {
  const char* p = w.data();
  const size_t n = w.size();
  if (n > 16) {
    WordKey k;
    k.hash = k.a = XXH3_64bits(p, n);
    return k;
  }
  uint64_t a = 0, b = 0;
  if (n >= 8) {
    a = load64(p);
    b = load64(p + n - 8);
  } else {
    std::memcpy(&a, p, n);
  }
  return finish_key(a, b, n);
}

// word_key(w), the same key, for a word of at most 16 bytes with at least 8 bytes of its text
// on either side, without branches on its length (which mispredict on prose): two 8-byte loads
// that may reach outside the word but not outside the text, then the bytes not its own cleared.
WordKey word_key_within(std::string_view w) {
  const char* p = w.data();
  const size_t n = w.size();
  const uint64_t first = load64(p), last = load64(p + n - 8);
  const bool long8 = n >= 8;
  const uint64_t a = long8 ? first : first & ((uint64_t(1) << (8 * n)) - 1);  // n < 8 here: shift < 64
  const uint64_t b = long8 ? last : 0;
  return finish_key(a, b, n);
}

// The word ids of a document: an open-addressing table whose slots hold a word's WordKey and
// length, so that finding a word touches one slot (words over 16 bytes are compared as bytes,
// through `vocab`). Reused from document to document like ReusedTable; it starts small and
// doubles as the vocabulary grows, since most documents have far fewer distinct words than
// words and a small table stays in cache.
class WordTable {
 public:
  // Empty, with room for `n` words at a load of at most 1/2.
  void reset(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > slots_.size()) {
      slots_.assign(cap, Slot{});
      generation_ = 0;
    }
    mask_ = cap - 1;
    if (++generation_ == 0) {  // wrapped: old stamps could look current
      std::fill(slots_.begin(), slots_.end(), Slot{});
      generation_ = 1;
    }
    vocab_.clear();
    keys_.clear();
  }

  // The id of word `w` (key `k`), `is_new` if it was not there (it gets the next id).
  uint32_t find_or_add(std::string_view w, const WordKey& k, bool& is_new) {
    const uint16_t len = static_cast<uint16_t>(std::min<size_t>(w.size(), 0xFFFF));
    for (size_t at = k.hash & mask_;; at = (at + 1) & mask_) {
      Slot& s = slots_[at];
      if (s.generation != generation_) {
        is_new = true;
        const uint32_t id = static_cast<uint32_t>(vocab_.size());
        s = Slot{k.a, k.b, id, len, generation_};
        vocab_.push_back(w);
        keys_.push_back(k);
        if (2 * vocab_.size() > mask_ + 1) grow();
        return id;
      }
      if (s.len == len && s.a == k.a && s.b == k.b && (w.size() <= 16 || vocab_[s.id] == w)) {
        is_new = false;
        return s.id;
      }
    }
  }

 private:
  struct Slot {
    uint64_t a = 0, b = 0;  // WordKey (for words over 16 bytes: a is the hash)
    uint32_t id = 0;
    uint16_t len = 0, generation = 0;
  };

  void grow() {  // double, put the words back
    size_t cap = 2 * (mask_ + 1);
    if (cap > slots_.size()) slots_.resize(cap);
    mask_ = cap - 1;
    if (++generation_ == 0) generation_ = 1;
    std::fill(slots_.begin(), slots_.begin() + ptrdiff_t(cap), Slot{});  // stamps of all generations go
    for (uint32_t id = 0; id < vocab_.size(); ++id) {
      const WordKey& k = keys_[id];
      size_t at = k.hash & mask_;
      while (slots_[at].generation == generation_) at = (at + 1) & mask_;
      slots_[at] = Slot{k.a, k.b, id, static_cast<uint16_t>(std::min<size_t>(vocab_[id].size(), 0xFFFF)), generation_};
    }
  }

  std::vector<Slot> slots_;
  std::vector<std::string_view> vocab_;  // each word, by id
  std::vector<WordKey> keys_;
  size_t mask_ = 0;
  uint16_t generation_ = 0;
};

}  // namespace

// ---- shared helpers (quality_rules.hpp) ---------------------------------------------------

DupCount find_duplicates(const std::vector<std::string_view>& items) {
  // datatrove gopher_repetition_filter.find_duplicates: every repeat of an element already
  // seen counts once, with its length in characters.
  thread_local ReusedTable seen;
  seen.reset(items.size());
  DupCount dup;
  for (size_t i = 0; i < items.size(); ++i) {
    std::string_view item = items[i];
    uint64_t h = hash_bytes(item);
    bool is_new;
    auto& slot = seen.find(h, [&](const ReusedTable::Slot& s) { return s.key == h && items[s.value] == item; }, is_new);
    if (is_new) {
      slot.key = h;
      slot.value = static_cast<uint32_t>(i);
    } else {
      ++dup.elements;
      dup.chars += count_code_points_fast(item);
    }
  }
  return dup;
}

size_t count_substring(std::string_view text, std::string_view needle) {
  // Python str.count: non-overlapping occurrences, so "...." holds one "...".
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

bool ends_sentence(char32_t c, bool cjk) {
  if (is_terminal_punctuation(c)) return true;
  // llmkit: in zh/ja/ko text a sentence may also end inside closing corner brackets or with
  // an ellipsis (……); datatrove's set has only the Unicode Sentence_Terminal marks, " and ”.
  return cjk && (c == U'」' || c == U'』' || c == U'…');
}

// ---- GopherRepetitionFilter -----------------------------------------------------------------

namespace {

// The n-grams of a document as ids: equal ids for equal word sequences. Words get ids in
// order of first occurrence; the n-gram at i then gets the id of the pair (id of the
// (n-1)-gram at i, id of word i+n-1), so each n costs one pass with a table of integer pairs
// and no n-gram is ever hashed or compared as bytes. An n-gram whose (n-1)-gram prefix occurs
// once occurs once too, so only the positions of repeated (n-1)-grams ("active") are looked
// at; the others hold an n-gram that occurs once and needs no id.
class NgramIndex {
 public:
  explicit NgramIndex(const GopherWords& gw) : words_(gw.words), s_(scratch()) {
    const std::vector<std::string_view>& words = gw.words;
    const size_t n = words.size();
    s_.ids.resize(n);
    s_.word_ids.resize(n);
    s_.chars_before.resize(n + 1);
    s_.counts.resize(n);
    s_.firsts.resize(n);
    s_.chars_before[0] = 0;
    s_.words.reset(std::min<size_t>(n, 512));
    uint32_t* ids = s_.ids.data();
    uint32_t* word_ids = s_.word_ids.data();
    uint32_t* counts = s_.counts.data();
    uint32_t* firsts = s_.firsts.data();
    size_t* chars_before = s_.chars_before.data();
    uint32_t vocab = 0;
    // Words at least 8 bytes from both ends of the text they were found in (the span from the
    // first word to the last) have their keys read without branches on their length.
    const char* lo = n ? words.front().data() + 8 : nullptr;
    const char* hi = n ? words.back().data() + words.back().size() - 8 : nullptr;
    for (size_t i = 0; i < n; ++i) {
      std::string_view w = words[i];
      bool is_new;
      const bool inside = w.size() <= 16 && w.data() >= lo && w.data() + w.size() <= hi;
      const uint32_t id = s_.words.find_or_add(w, inside ? word_key_within(w) : word_key(w), is_new);
      if (is_new) {
        vocab = id + 1;
        counts[id] = 0;
        firsts[id] = static_cast<uint32_t>(i);
      }
      ids[i] = word_ids[i] = id;
      ++counts[id];
      chars_before[i + 1] = chars_before[i] + gw.chars[i];
    }
    distinct_ = vocab;
    s_.active.resize(n);
    uint32_t* active = s_.active.data();
    size_t n_active = 0;
    for (size_t i = 0; i < n; ++i) {  // written always, kept when repeated: no branch
      active[n_active] = static_cast<uint32_t>(i);
      n_active += counts[ids[i]] > 1;
    }
    s_.active.resize(n_active);
    for (uint32_t id = 0; id < vocab; ++id) {
      max_count_ = std::max<size_t>(max_count_, counts[id]);
      max_word_mass_ = std::max<size_t>(max_word_mass_, size_t(counts[id]) * gw.chars[firsts[id]]);
    }
  }

  // Of the words: the highest count, and the highest count times characters of one word.
  size_t max_count() const { return max_count_; }
  size_t max_word_mass() const { return max_word_mass_; }

  // From words (n = 1) straight to n-grams for n = `to` > 1, without the levels between: an
  // n-gram can repeat only where all its n words repeat, so only those positions are looked
  // at, keyed by their n word ids (compared exactly with the n-gram's first occurrence).
  void jump_to(size_t to) {
    const size_t n = to;
    uint32_t* ids = s_.ids.data();
    const uint32_t* word_ids = s_.word_ids.data();
    uint32_t* counts = s_.counts.data();
    uint32_t* firsts = s_.firsts.data();
    std::vector<uint32_t>& active = s_.active;
    // Candidates: positions p with p .. p+n-1 all repeated words.
    size_t kept = 0;
    for (size_t a = 0; a < active.size();) {
      size_t b = a + 1;
      while (b < active.size() && active[b] == active[b - 1] + 1) ++b;
      for (size_t k = a; k + n <= b; ++k) active[kept++] = active[k];  // active[k] .. active[k]+n-1 in the run
      a = b;
    }
    active.resize(kept);
    s_.table.reset(kept);
    uint32_t next = 0;
    for (uint32_t p : active) {
      uint64_t h = 0;  // a polynomial in the ids, then mixed (the table compares the ids)
      for (size_t j = 0; j < n; ++j) h = h * 0x9e3779b97f4a7c15ull + word_ids[p + j];
      h = mix64(h);
      bool is_new;
      auto& slot = s_.table.find(h, [&](const ReusedTable::Slot& e) {
        return e.key == h && std::equal(word_ids + p, word_ids + p + n, word_ids + firsts[e.value]);
      }, is_new);
      if (is_new) {
        slot.key = h;
        slot.value = next;
        counts[next] = 0;
        firsts[next] = p;
        ++next;
      }
      ids[p] = slot.value;
      ++counts[slot.value];
    }
    kept = 0;
    for (uint32_t p : active)
      if (counts[ids[p]] > 1) active[kept++] = p;
    active.resize(kept);
    distinct_ = next;
    n_ = n;
  }

  size_t size() const { return words_.size(); }
  size_t chars(size_t i, size_t n) const { return s_.chars_before[i + n] - s_.chars_before[i]; }

  // Moves to n-grams for n = current + 1.
  void grow() {
    const size_t n = ++n_;
    const size_t m = size() >= n ? size() - n + 1 : 0;
    uint32_t* ids = s_.ids.data();
    const uint32_t* word_ids = s_.word_ids.data();
    uint32_t* counts = s_.counts.data();
    uint32_t* firsts = s_.firsts.data();
    uint32_t* active = s_.active.data();
    size_t n_active = s_.active.size();
    while (n_active > 0 && active[n_active - 1] >= m) --n_active;  // no n-gram starts there
    s_.table.reset(n_active);
    uint32_t next = 0;
    for (size_t k = 0; k < n_active; ++k) {
      uint32_t i = active[k];
      uint64_t key = (uint64_t(ids[i]) << 32) | word_ids[i + n - 1];
      bool is_new;
      auto& slot = s_.table.find(mix64(key), [&](const ReusedTable::Slot& e) { return e.key == key; }, is_new);
      if (is_new) {
        slot.key = key;
        slot.value = next;
        counts[next] = 0;
        firsts[next] = i;
        ++next;
      }
      ids[i] = slot.value;
      ++counts[slot.value];
    }
    // Keep the positions whose n-gram repeats.
    size_t kept = 0;
    for (size_t k = 0; k < n_active; ++k)
      if (counts[ids[active[k]]] > 1) active[kept++] = active[k];
    s_.active.resize(kept);
    distinct_ = next;
  }

  size_t n() const { return n_; }
  size_t distinct() const { return distinct_; }  // ids at this n (of active positions)
  const std::vector<uint32_t>& repeated_positions() const { return s_.active; }  // ascending
  const uint32_t* ids() const { return s_.ids.data(); }        // of each repeated position
  const uint32_t* counts() const { return s_.counts.data(); }  // of each id
  const uint32_t* firsts() const { return s_.firsts.data(); }  // of each id

 private:
  // Reused from document to document (one index per thread at a time). counts and firsts are
  // indexed by id, ids by position.
  struct Scratch {
    std::vector<uint32_t> word_ids, ids, counts, firsts, active;
    std::vector<size_t> chars_before;  // code points in words[0..i)
    WordTable words;
    ReusedTable table;
  };
  static Scratch& scratch() {
    thread_local Scratch s;
    return s;
  }

  const std::vector<std::string_view>& words_;
  Scratch& s_;
  size_t n_ = 1, distinct_ = 0;
  size_t max_count_ = 0, max_word_mass_ = 0;
};

// datatrove find_top_duplicate(get_n_grams(words, n)): characters of the most frequent n-gram
// (" ".join of its words, so n-1 spaces) times its count. Counter.most_common(1) breaks ties
// by first occurrence; so do we: ids are numbered in order of first occurrence, so the first
// id with the highest count; when nothing repeats, the first n-gram.
size_t top_ngram_chars(const NgramIndex& ix) {
  const size_t n = ix.n();
  if (ix.repeated_positions().empty()) return ix.chars(0, n) + n - 1;
  const uint32_t* counts = ix.counts();
  size_t best = 0;
  for (size_t id = 1; id < ix.distinct(); ++id)
    if (counts[id] > counts[best]) best = id;
  return (ix.chars(ix.firsts()[best], n) + n - 1) * counts[best];
}

// datatrove find_all_duplicate(words, n): walk the words; an n-gram seen before adds its
// characters ("".join, no spaces) and the walk jumps past it, so overlapping repeats of a
// repeated span are not counted twice; a new n-gram is remembered and the walk steps by one.
// Only the positions of repeated n-grams can do anything but step by one, so the walk visits
// those alone, skipping the ones it has jumped past.
// llmkit: n-grams are compared as word sequences; datatrove compares the joined strings,
// so it also takes ["ab", "c"] for a repeat of ["a", "bc"].
size_t all_duplicate_chars(const NgramIndex& ix) {
  const auto& positions = ix.repeated_positions();
  if (positions.empty()) return 0;
  const uint32_t* ids = ix.ids();
  const size_t n = ix.n();
  thread_local std::vector<uint8_t> seen_buffer;
  seen_buffer.assign(ix.distinct(), 0);
  uint8_t* seen = seen_buffer.data();
  size_t repeated = 0, idx = 0;
  for (uint32_t p : positions) {
    if (p < idx) continue;  // jumped past
    idx = p;
    uint32_t id = ids[idx];
    if (seen[id]) {
      repeated += ix.chars(idx, n);
      idx += n;
    } else {
      seen[id] = 1;
      ++idx;
    }
  }
  return repeated;
}

// Whether a duplicated n-gram rule for n > ix.n() can still fire, from a bound on what the
// index at its current level c = ix.n() already knows; when none can, the index need not
// grow further (the bound only skips rules that cannot fire, so the decisions are those of
// growing all the way to n = 10). A repeated m-gram (m > c) at q contains repeated c-grams at
// q .. q+m-c, so it lies in a run of consecutive repeated c-gram positions of length
// L >= m-c+1; find_all_duplicate counts characters of repeated m-grams only, which lie in the
// words [s, s+L-1+c) of such runs [s, s+L).
bool dup_rules_could_fire(const NgramIndex& ix, double text_chars, const QualityThresholds& cfg) {
  const size_t c = ix.n();
  const auto& pos = ix.repeated_positions();
  double covered[11] = {0};  // covered[m]: characters in the spans of runs long enough for m
  for (size_t a = 0; a < pos.size();) {
    size_t b = a + 1;
    while (b < pos.size() && pos[b] == pos[b - 1] + 1) ++b;
    const size_t len = b - a;
    const double span = double(ix.chars(pos[a], len - 1 + c));
    for (size_t m = std::max<size_t>(c + 1, 5); m <= 10 && len >= m - c + 1; ++m) covered[m] += span;
    a = b;
  }
  for (size_t m = std::max<size_t>(c + 1, 5); m <= 10; ++m)
    if (covered[m] / text_chars > cfg.dup_n_grams[m - 5]) return true;
  return false;
}

// Whether a top n-gram rule (n = 2..4) can fire, from the words alone. The most frequent
// n-gram (w1 .. wn) occurs at most as often as each of its words, so its characters times its
// count, count * (chars(w1) + ... + chars(wn) + n-1), are at most n times the largest
// count * chars of a word plus n-1 times the largest count; or, when no n-gram repeats, the
// first n-gram's characters. For most documents this rules all three out, and the index goes
// straight to 5-grams.
bool top_rules_could_fire(const NgramIndex& ix, double text_chars, const QualityThresholds& cfg) {
  for (size_t n = 2; n <= 4; ++n) {
    if (ix.size() < n) continue;  // no n-grams: the rule is skipped
    double bound = double(n * ix.max_word_mass() + (n - 1) * ix.max_count());
    bound = std::max(bound, double(ix.chars(0, n) + n - 1));
    if (bound / text_chars > cfg.top_n_grams[n - 2]) return true;
  }
  return false;
}

std::string gopher_repetition(std::string_view text, const TextLines& text_lines,
                              const std::vector<const char*>& soft, const GopherWords& words,
                              const QualityThresholds& cfg) {
  double text_chars = static_cast<double>(count_code_points_fast(text));
  if (text_chars == 0) return "";  // datatrove divides by len(text); the quality rules drop it

  thread_local std::vector<std::string_view> parts;
  split_on_newline_runs_into(py_strip(text), 2, parts);  // re.split(r"\n{2,}", text.strip())
  DupCount para = find_duplicates(parts);
  if (cfg.dup_para_frac && double(para.elements) / double(parts.size()) > cfg.dup_para_frac)
    return "dup_para_frac";
  if (cfg.dup_para_char_frac && double(para.chars) / text_chars > cfg.dup_para_char_frac)
    return "dup_para_char_frac";

  newline_runs_from(text_lines, parts);        // re.split("\n+", text)
  merge_soft_breaks(parts, soft);              // a wrapped paragraph is one line
  DupCount line = find_duplicates(parts);
  if (cfg.dup_line_frac && double(line.elements) / double(parts.size()) > cfg.dup_line_frac)
    return "dup_line_frac";
  if (cfg.dup_line_char_frac && double(line.chars) / text_chars > cfg.dup_line_char_frac)
    return "dup_line_char_frac";

  NgramIndex ix(words);
  if (top_rules_could_fire(ix, text_chars, cfg)) {
    for (size_t k = 0; k < 3; ++k) {
      size_t n = k + 2;
      ix.grow();
      if (ix.size() < n) continue;  // no n-grams
      if (double(top_ngram_chars(ix)) / text_chars > cfg.top_n_grams[k])
        return "top_" + std::to_string(n) + "_gram";
    }
  }
  for (size_t k = 0; k < 6; ++k) {
    size_t n = k + 5;
    if (!dup_rules_could_fire(ix, text_chars, cfg)) return "";
    if (ix.n() == 1)
      ix.jump_to(5);
    else
      ix.grow();
    if (double(all_duplicate_chars(ix)) / text_chars > cfg.dup_n_grams[k])
      return "duplicated_" + std::to_string(n) + "_n_grams";
  }
  return "";
}

// ---- GopherQualityFilter ----------------------------------------------------------------------

bool is_english(std::string_view lang) {
  return lang.empty() || lang.substr(0, lang.find_first_of("-_")) == "en";
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

bool starts_with_bullet(std::string_view line) {
  // starts_with(py_lstrip(line), "•" or "-"), without stripping every line.
  for (size_t i = 0; i < line.size();) {
    unsigned char b = static_cast<unsigned char>(line[i]);
    if (b < 0x80) {
      if (!(ascii::kClass[b] & ascii::kSpace)) return b == '-';
      ++i;
      continue;
    }
    size_t j = i;
    if (!py_isspace(next_code_point_multibyte(line, j))) return starts_with(line.substr(i), "•");
    i = j;
  }
  return false;
}

// The line rules: bullets (lines starting with • or -) and lines ending with an ellipsis.
std::string gopher_line_rules(std::string_view text, const TextLines& text_lines,
                              const std::vector<const char*>& soft, const QualityThresholds& cfg) {
  thread_local std::vector<std::string_view> lines;
  splitlines_from(text, text_lines, lines);
  merge_soft_breaks(lines, soft);
  if (lines.empty()) return "";  // datatrove divides by len(lines)
  size_t bullets = 0, ellipsis_ends = 0;
  for (std::string_view line : lines) {
    std::string_view tail = py_rstrip(line);
    bullets += starts_with_bullet(line);
    ellipsis_ends += ends_with(tail, "...") || ends_with(tail, "…");
  }
  double n = static_cast<double>(lines.size());
  if (cfg.max_bullet_lines_ratio && double(bullets) / n > cfg.max_bullet_lines_ratio)
    return "too_many_bullets";
  if (cfg.max_ellipsis_lines_ratio && double(ellipsis_ends) / n > cfg.max_ellipsis_lines_ratio)
    return "too_many_end_ellipsis";
  return "";
}

// Distinct stop words among the words, counted up to `enough`. The Gopher paper asks for "at
// least two of the following English words", so a word counts once however often it comes.
// llmkit: a whitespace word is matched without the punctuation at its ends ("the," "(with"),
// still case-sensitively as in datatrove.
size_t count_stop_words(const std::vector<std::string_view>& words, const std::vector<std::string>& stop_words,
                        size_t enough) {
  size_t longest = 0;
  for (const auto& s : stop_words) longest = std::max(longest, s.size());
  uint64_t found = 0;  // bit k: stop_words[k] seen (the lists have fewer than 64 words)
  size_t n_found = 0;
  for (std::string_view w : words) {
    if (w.size() > longest + 8) continue;  // too long even with punctuation around it
    w = trim_punctuation(w);
    if (w.size() > longest || w.empty()) continue;
    for (size_t k = 0; k < stop_words.size() && k < 64; ++k) {
      if (w != stop_words[k]) continue;
      if (!(found >> k & 1)) {
        found |= uint64_t(1) << k;
        if (++n_found >= enough) return n_found;
      }
      break;
    }
  }
  return n_found;
}

// Every rule counts Gopher's words (split_gopher_words: whitespace-delimited, or ICU's word
// segments for zh/ja/ko), all of them: the document length, the mean word length, the '#' and
// ellipsis ratios, the share of words with a letter. datatrove instead counts the tokens of a
// word tokenizer, which makes every comma and bracket a "word" without a letter, so English
// prose with ordinary punctuation fell under the 80% alphabetic threshold.
std::string gopher_quality(std::string_view text, const TextLines& text_lines,
                           const std::vector<const char*>& soft, const GopherWords& gw,
                           const QualityThresholds& cfg, bool stop_words_apply, bool* stop_words_fail) {
  const std::vector<std::string_view>& words = gw.words;
  const size_t chars = gw.total_chars, alpha_words = gw.alpha_words;
  const double n_words = static_cast<double>(words.size());
  if (cfg.min_doc_words && n_words < cfg.min_doc_words) return "short_doc";
  if (cfg.max_doc_words && n_words > cfg.max_doc_words) return "long_doc";
  if (words.empty()) return "";  // the ratios below divide by the word count

  double mean = double(chars) / n_words;
  // llmkit: one reason for both bounds (datatrove: below_/above_avg_threshold).
  if ((cfg.min_avg_word_length && mean < cfg.min_avg_word_length) ||
      (cfg.max_avg_word_length && mean > cfg.max_avg_word_length))
    return "mean_word_length";

  if (cfg.max_symbol_word_ratio && double(count_substring(text, "#")) / n_words > cfg.max_symbol_word_ratio)
    return "too_many_hashes";
  double ellipses = double(count_substring(text, "...") + count_substring(text, "…"));
  if (cfg.max_symbol_word_ratio && ellipses / n_words > cfg.max_symbol_word_ratio)
    return "too_many_ellipsis";

  if (std::string r = gopher_line_rules(text, text_lines, soft, cfg); !r.empty()) return r;

  if (cfg.max_non_alpha_words_ratio && double(alpha_words) / n_words < cfg.max_non_alpha_words_ratio)
    return "below_alpha_threshold";

  if (cfg.min_stop_words > 0 && (stop_words_apply || stop_words_fail) && !cfg.stop_words.empty()) {
    size_t enough = static_cast<size_t>(std::ceil(cfg.min_stop_words));
    // llmkit: "too_few_stop_words"; datatrove calls this reason gopher_enough_stop_words.
    if (double(count_stop_words(words, cfg.stop_words, enough)) < cfg.min_stop_words) {
      if (!stop_words_fail) return "too_few_stop_words";
      *stop_words_fail = true;  // reported, not applied: the caller's other language goes on
    }
  }
  return "";
}

bool c4_rules_off(const QualityThresholds& t) {
  return !t.filter_no_terminal_punct && !t.remove_citations && t.min_num_sentences == -1 &&
         t.min_words_per_line == -1 && t.max_word_length == -1 && !t.filter_lorem_ipsum &&
         !t.filter_javascript && !t.filter_curly_bracket && !t.filter_policy;
}

}  // namespace

// ---- the pipeline -------------------------------------------------------------------------------

namespace {

// The stages of check_quality for the language `eff`. With `english_stop_words` given (for a
// language other than English that is not CJK and has no thresholds of its own), the stop-word
// rule is also looked at as English would have it, where English would reach it, and it
// reports instead of dropping: the one difference between the two verdicts.
std::string run_stages(std::string& text, const std::string& eff, const QualityConfig& cfg,
                       bool* english_stop_words) {
  const QualityThresholds* own = cfg.thresholds_for(eff);
  const QualityThresholds& t = own ? *own : cfg;
  const bool cjk = is_cjk_language(eff);
  // The default stop words are Gopher's English ones: for another language without its own
  // thresholds the rule would drop every document, so it is skipped.
  const bool stop_words_apply = own != nullptr || is_english(eff);
  // Which line breaks are a filler's (hard_wrap.cpp), and Gopher's words, found once and
  // shared by the stages (in buffers reused from document to document); the same pass counts
  // the tokenizer's words for FineWeb. CJK words are found in the text with its wrapped lines
  // joined, since a filler may break a Chinese line inside a word.
  thread_local TextLines lines;
  thread_local std::vector<const char*> soft;
  thread_local GopherWords words;
  thread_local std::string joined;
  size_t icu_segments = 0;
  bool have_lines = false, have_words = false;
  // The text's lines and soft breaks, found once for every stage (again after C4 rewrites).
  auto get_lines = [&]() -> const TextLines& {
    if (!have_lines) {
      split_text_lines(text, lines);
      find_soft_breaks(lines, soft);
    }
    have_lines = true;
    return lines;
  };
  auto get_words = [&]() -> const GopherWords& {
    if (have_words) return words;
    std::string_view source = text;
    get_lines();
    if (cjk && !soft.empty()) {
      join_soft_breaks(text, soft, joined);
      source = joined;
    }
    icu_segments = 0;
    split_gopher_words_counted(source, cjk, words, &icu_segments);
    have_words = true;
    return words;
  };

  if (cfg.gopher_repetition) {
    const TextLines& l = get_lines();
    if (std::string r = gopher_repetition(text, l, soft, get_words(), t); !r.empty())
      return "gopher_repetition:" + r;
  }
  if (cfg.gopher_quality) {
    const TextLines& l = get_lines();
    if (std::string r = gopher_quality(text, l, soft, get_words(), t, stop_words_apply, english_stop_words); !r.empty())
      return "gopher_quality:" + r;
  }
  if (cfg.c4 && !c4_rules_off(t)) {
    bool changed = false;
    const TextLines& l = get_lines();
    if (std::string r = c4_quality(text, l, soft, cjk ? nullptr : &get_words(), eff, t, changed); !r.empty())
      return "c4:" + r;
    if (changed) have_lines = have_words = false;  // they pointed into the old text
  }
  if (cfg.fineweb) {
    TokenizerWords tw;
    if (cjk) {
      get_words();
      tw.at_least = icu_segments;
    } else {
      tw.whitespace_words = &get_words().words;
      tw.at_least = words.words.size();
    }
    const TextLines& l = get_lines();
    if (std::string r = fineweb_quality(text, l, soft, tw, eff, t); !r.empty()) return "fineweb:" + r;
  }
  return "";
}

}  // namespace

std::string check_quality(std::string& text, std::string_view lang, const QualityConfig& cfg) {
  // Decide the language once: it chooses the thresholds and how words are found.
  return run_stages(text, effective_language(text, lang), cfg, nullptr);
}

bool NonCjkVerdicts::covers(std::string_view lang, const QualityConfig& cfg) {
  return !lang.empty() && !is_cjk_language(lang) && cfg.thresholds_for(lang) == nullptr;
}

const std::string& NonCjkVerdicts::for_language(std::string_view lang) const {
  return is_english(lang) ? english : other;
}

NonCjkVerdicts check_quality_non_cjk(std::string& text, const QualityConfig& cfg) {
  NonCjkVerdicts v;
  bool english_stop_words = false;
  // "un" (CLD2's unknown) stands for every language other than English the verdicts cover.
  v.other = run_stages(text, "un", cfg, &english_stop_words);
  v.english = english_stop_words ? "gopher_quality:too_few_stop_words" : v.other;
  return v;
}

namespace {

void add_threshold_params(QualityThresholds& c, const std::string& prefix, std::vector<Param>& p) {
  auto add = [&](const std::string& name, double* value, const std::string& help) {
    p.push_back({prefix + name, value, help});
  };
  add("gopher_repetition.dup_line_frac", &c.dup_line_frac, "max fraction of duplicate lines (0: off)");
  add("gopher_repetition.dup_para_frac", &c.dup_para_frac, "max fraction of duplicate paragraphs (0: off)");
  add("gopher_repetition.dup_line_char_frac", &c.dup_line_char_frac, "max share of characters in duplicate lines (0: off)");
  add("gopher_repetition.dup_para_char_frac", &c.dup_para_char_frac, "max share of characters in duplicate paragraphs (0: off)");
  for (int n = 2; n <= 4; ++n)
    add("gopher_repetition.top_" + std::to_string(n) + "_grams", &c.top_n_grams[n - 2],
        "max share of characters in the most frequent " + std::to_string(n) + "-gram");
  for (int n = 5; n <= 10; ++n)
    add("gopher_repetition.dup_" + std::to_string(n) + "_grams", &c.dup_n_grams[n - 5],
        "max share of characters in repeated " + std::to_string(n) + "-grams");
  add("gopher_quality.min_doc_words", &c.min_doc_words, "min words (0: off)");
  add("gopher_quality.max_doc_words", &c.max_doc_words, "max words (0: off)");
  add("gopher_quality.min_avg_word_length", &c.min_avg_word_length, "min mean word length, characters (0: off)");
  add("gopher_quality.max_avg_word_length", &c.max_avg_word_length, "max mean word length, characters (0: off)");
  add("gopher_quality.max_symbol_word_ratio", &c.max_symbol_word_ratio, "max '#' or ellipses per word (0: off)");
  add("gopher_quality.max_bullet_lines_ratio", &c.max_bullet_lines_ratio, "max fraction of lines starting with a bullet (0: off)");
  add("gopher_quality.max_ellipsis_lines_ratio", &c.max_ellipsis_lines_ratio, "max fraction of lines ending with an ellipsis (0: off)");
  add("gopher_quality.max_non_alpha_words_ratio", &c.max_non_alpha_words_ratio, "min fraction of words with a letter (0: off)");
  add("gopher_quality.min_stop_words", &c.min_stop_words, "min distinct stop words (0: off)");
  add("c4.filter_no_terminal_punct", &c.filter_no_terminal_punct, "1: drop lines without terminal punctuation");
  add("c4.remove_citations", &c.remove_citations, "1: remove [1], [edit], [citation needed]");
  add("c4.min_num_sentences", &c.min_num_sentences, "min sentences after line removal (-1: off)");
  add("c4.min_words_per_line", &c.min_words_per_line, "drop lines with fewer words (-1: off)");
  add("c4.max_word_length", &c.max_word_length, "drop lines with a longer word, characters (-1: off)");
  add("c4.filter_lorem_ipsum", &c.filter_lorem_ipsum, "1: drop documents with \"lorem ipsum\"");
  add("c4.filter_javascript", &c.filter_javascript, "1: drop lines with \"javascript\"");
  add("c4.filter_curly_bracket", &c.filter_curly_bracket, "1: drop documents with '{'");
  add("c4.filter_policy", &c.filter_policy, "1: drop lines about cookies, terms of use, privacy policy");
  add("fineweb.line_punct_thr", &c.line_punct_thr, "min fraction of lines ending in terminal punctuation");
  add("fineweb.line_punct_exclude_zero", &c.line_punct_exclude_zero, "1: keep documents where no line ends so");
  add("fineweb.short_line_thr", &c.short_line_thr, "max fraction of short lines (1: off)");
  add("fineweb.short_line_length", &c.short_line_length, "a short line has at most this many characters");
  add("fineweb.char_duplicates_ratio", &c.char_duplicates_ratio, "max share of characters in duplicate lines");
  add("fineweb.new_line_ratio", &c.new_line_ratio, "max newlines per word");
}

}  // namespace

std::vector<Param> quality_params(QualityConfig& c) {
  std::vector<Param> p;
  add_threshold_params(c, "", p);
  for (auto& l : c.languages) add_threshold_params(l.thresholds, l.lang + ".", p);
  return p;
}

}  // namespace llmkit::text
