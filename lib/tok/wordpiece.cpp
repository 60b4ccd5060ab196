// WordPiece: see llmkit/wordpiece.hpp. The character classes are BERT's tokenization.py's
// (_is_whitespace, _is_control, _is_punctuation, _is_chinese_char) on ICU's character database.
#include "llmkit/wordpiece.hpp"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <map>
#include <queue>
#include <set>

#include "llmkit/error.hpp"
#include "llmkit/io.hpp"

namespace llmkit {

namespace {

bool is_whitespace(UChar32 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || u_charType(c) == U_SPACE_SEPARATOR; }

// Every "C" category, as BERT's: control, format, unassigned, private use, surrogate.
bool is_control(UChar32 c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  const int8_t t = u_charType(c);
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_UNASSIGNED || t == U_PRIVATE_USE_CHAR || t == U_SURROGATE;
}

bool is_punctuation(UChar32 c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (u_charType(c)) {
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION: return true;
    default: return false;
  }
}

bool is_chinese(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

void append_utf8(std::string& s, UChar32 c) {
  char buf[4];
  int32_t n = 0;
  UBool error = false;
  U8_APPEND(reinterpret_cast<uint8_t*>(buf), n, 4, c, error);
  if (!error) s.append(buf, static_cast<size_t>(n));
}

// A character of the normalized text and the source bytes it came from.
struct Char {
  UChar32 c;
  uint32_t begin, end;
};

// One source character lower-cased and stripped of its accents (full case mapping, then NFD
// without the nonspacing marks), as BERT's _run_strip_accents after str.lower().
void lower_strip(UChar32 c, uint32_t b, uint32_t e, std::vector<Char>& out) {
  static const icu::Normalizer2* nfd = [] {
    UErrorCode st = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFDInstance(st);
    if (U_FAILURE(st)) throw Error("", "ICU: no NFD normalizer");
    return n;
  }();
  icu::UnicodeString s(c);
  s.toLower(icu::Locale::getRoot());
  UErrorCode st = U_ZERO_ERROR;
  const icu::UnicodeString d = nfd->normalize(s, st);
  if (U_FAILURE(st)) return;
  for (int32_t i = 0; i < d.length();) {
    const UChar32 x = d.char32At(i);
    i += U16_LENGTH(x);
    if (u_charType(x) != U_NON_SPACING_MARK) out.push_back({x, b, e});
  }
}

}  // namespace

void bert_pre_tokenize(std::string_view text, const BertNormalizer& n, std::vector<std::string>& words,
                       std::vector<std::pair<uint32_t, uint32_t>>* spans) {
  words.clear();
  if (spans) spans->clear();
  std::vector<Char> word, chunk, chars;
  auto flush = [&] {
    if (word.empty()) return;
    std::string w;
    for (const Char& ch : word) append_utf8(w, ch.c);
    words.push_back(std::move(w));
    if (spans) spans->emplace_back(word.front().begin, word.back().end);
    word.clear();
  };
  // A run of characters between whitespace (and CJK ideographs): NFC first (cased; lower-casing
  // and accent stripping make it moot), its characters then spanning the whole run when that
  // changed them; then lower-cased and stripped, and split at punctuation.
  auto run = [&] {
    if (chunk.empty()) return;
    if (!n.lowercase) {
      static const icu::Normalizer2* nfc = [] {
        UErrorCode st = U_ZERO_ERROR;
        const icu::Normalizer2* x = icu::Normalizer2::getNFCInstance(st);
        if (U_FAILURE(st)) throw Error("", "ICU: no NFC normalizer");
        return x;
      }();
      icu::UnicodeString u;
      for (const Char& ch : chunk) u.append(ch.c);
      UErrorCode st = U_ZERO_ERROR;
      if (!nfc->isNormalized(u, st) && U_SUCCESS(st)) {
        const icu::UnicodeString v = nfc->normalize(u, st);
        const uint32_t b = chunk.front().begin, e = chunk.back().end;
        chunk.clear();
        for (int32_t i = 0; i < v.length();) {
          const UChar32 x = v.char32At(i);
          i += U16_LENGTH(x);
          chunk.push_back({x, b, e});
        }
      }
    }
    for (const Char& c : chunk) {
      chars.clear();
      if (n.lowercase) lower_strip(c.c, c.begin, c.end, chars);
      else chars.push_back(c);
      for (const Char& ch : chars) {
        if (is_punctuation(ch.c)) {
          flush();
          word.push_back(ch);
          flush();
        } else {
          word.push_back(ch);
        }
      }
    }
    flush();
    chunk.clear();
  };
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t len = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < len;) {
    const uint32_t b = static_cast<uint32_t>(i);
    UChar32 c;
    U8_NEXT(s, i, len, c);
    const uint32_t e = static_cast<uint32_t>(i);
    if (c < 0) c = 0xFFFD;  // invalid UTF-8: dropped below, as a U+FFFD is
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      run();
      continue;
    }
    if (n.chinese_chars && is_chinese(c)) {  // a word of its own
      run();
      word.push_back({c, b, e});
      flush();
      continue;
    }
    chunk.push_back({c, b, e});
  }
  run();
}

WordPiece::WordPiece(std::vector<std::string> vocab, BertNormalizer n, std::string unk) : vocab_(std::move(vocab)), norm_(n) {
  for (size_t i = 0; i < vocab_.size(); ++i) {
    ids_[vocab_[i]] = static_cast<int>(i);  // a repeated line: its last id, as BertTokenizer's load_vocab keeps
    longest_ = std::max(longest_, vocab_[i].size());
  }
  const auto it = ids_.find(unk);
  if (it == ids_.end()) throw Error("", "a WordPiece vocabulary without " + unk);
  unk_ = it->second;
  for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    if (const auto s = ids_.find(t); s != ids_.end()) specials_.emplace_back(t, s->second);
}

namespace {
// A vocab.txt's lines, a trailing '\r' dropped.
std::vector<std::string_view> vocab_lines(std::string_view bytes) {
  std::vector<std::string_view> lines;
  for (size_t at = 0; at < bytes.size();) {
    size_t end = bytes.find('\n', at);
    if (end == std::string_view::npos) end = bytes.size();
    std::string_view line = bytes.substr(at, end - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    at = end + 1;
  }
  return lines;
}
}  // namespace

bool WordPiece::looks_like_vocab(std::string_view bytes) {
  if (bytes.empty() || bytes.find('\0') != std::string_view::npos) return false;
  for (std::string_view line : vocab_lines(bytes))
    if (line == "[UNK]") return true;
  return false;
}

WordPiece WordPiece::from_bytes(std::string_view bytes, const std::string& path, BertNormalizer n) {
  if (!looks_like_vocab(bytes)) throw Error(path, "not a WordPiece vocab.txt (text, one token a line, one of them [UNK])");
  std::vector<std::string> vocab;
  for (std::string_view line : vocab_lines(bytes)) vocab.emplace_back(line);
  return WordPiece(std::move(vocab), n);
}

WordPiece WordPiece::load(const std::string& path, BertNormalizer n) { return from_bytes(read_file(path), path, n); }

int WordPiece::id(const std::string& token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

const std::string& WordPiece::token(uint32_t id) const {
  if (id >= vocab_.size()) throw Error("", "no token " + std::to_string(id));
  return vocab_[id];
}

void WordPiece::encode(std::string_view text, std::vector<uint32_t>& ids, std::vector<std::pair<uint32_t, uint32_t>>* spans) const {
  ids.clear();
  if (spans) spans->clear();
  // BertTokenizer's special tokens stand for themselves where the text spells them ("[MASK]"),
  // never split or lower-cased; the text between them is encoded as usual.
  size_t at = 0;
  while (at <= text.size()) {
    size_t next = std::string_view::npos;
    int special = -1;
    for (const auto& [t, i] : specials_) {
      const size_t p = text.find(t, at);
      if (p < next || (p == next && p != std::string_view::npos && t.size() > vocab_[static_cast<size_t>(special)].size()))
        next = p, special = i;
    }
    const size_t end = next == std::string_view::npos ? text.size() : next;
    encode_words(text.substr(at, end - at), static_cast<uint32_t>(at), ids, spans);
    if (special < 0) break;
    ids.push_back(static_cast<uint32_t>(special));
    if (spans) spans->emplace_back(static_cast<uint32_t>(next), static_cast<uint32_t>(next + vocab_[static_cast<size_t>(special)].size()));
    at = next + vocab_[static_cast<size_t>(special)].size();
  }
}

void WordPiece::encode_words(std::string_view text, uint32_t offset, std::vector<uint32_t>& ids,
                             std::vector<std::pair<uint32_t, uint32_t>>* spans) const {
  thread_local std::vector<std::string> words;
  thread_local std::vector<std::pair<uint32_t, uint32_t>> wspans;
  bert_pre_tokenize(text, norm_, words, &wspans);
  for (auto& [b, e] : wspans) b += offset, e += offset;
  std::vector<int32_t> cps;  // byte offsets of the word's code points, and its end
  std::vector<uint32_t> pieces;
  std::vector<std::pair<int32_t, int32_t>> at;
  for (size_t w = 0; w < words.size(); ++w) {
    const std::string& word = words[w];
    cps.clear();
    for (int32_t i = 0, len = static_cast<int32_t>(word.size()); i < len;) {
      cps.push_back(i);
      U8_FWD_1(reinterpret_cast<const uint8_t*>(word.data()), i, len);
    }
    const int n = static_cast<int>(cps.size());
    cps.push_back(static_cast<int32_t>(word.size()));
    pieces.clear();
    at.clear();
    bool bad = n > 100;
    std::string sub;
    for (int start = 0; start < n && !bad;) {
      int end = n, found = -1;
      for (; end > start; --end) {
        const size_t bytes = static_cast<size_t>(cps[end] - cps[start]);
        if (bytes + (start > 0 ? 2 : 0) > longest_) continue;
        sub.assign(start > 0 ? "##" : "");
        sub.append(word, static_cast<size_t>(cps[start]), bytes);
        if ((found = id(sub)) >= 0) break;
      }
      if (found < 0) bad = true;
      else pieces.push_back(static_cast<uint32_t>(found)), at.emplace_back(start, end), start = end;
    }
    if (bad) {
      ids.push_back(static_cast<uint32_t>(unk_));
      if (spans) spans->push_back(wspans[w]);
      continue;
    }
    for (size_t p = 0; p < pieces.size(); ++p) {
      ids.push_back(pieces[p]);
      // A piece's bytes in the source: the word's span when normalisation changed its length
      // (lower-casing, stripped accents), else the piece's own bytes.
      if (spans) {
        const auto [b, e] = wspans[w];
        if (e - b == word.size()) spans->emplace_back(b + static_cast<uint32_t>(cps[at[p].first]), b + static_cast<uint32_t>(cps[at[p].second]));
        else spans->push_back(wspans[w]);
      }
    }
  }
}

std::string WordPiece::decode(const uint32_t* ids, size_t n) const {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = token(ids[i]);
    if (t.size() > 2 && t.compare(0, 2, "##") == 0) out += t.substr(2);
    else out += (out.empty() ? "" : " ") + t;
  }
  // BertTokenizer's clean_up_tokenization.
  static const std::pair<const char*, const char*> kFix[] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                                                             {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kFix) {
    const std::string f = from, t = to;
    for (size_t p = out.find(f); p != std::string::npos; p = out.find(f, p + t.size())) out.replace(p, f.size(), t);
  }
  return out;
}

// ---- Training ----

std::vector<std::string> train_wordpiece(const std::unordered_map<std::string, int64_t>& word_counts, size_t vocab_size,
                                         const std::vector<std::string>& specials, int64_t min_frequency) {
  // Symbols by id; words as symbol sequences.
  std::vector<std::string> symbol;
  std::unordered_map<std::string, int> symbol_id;
  auto intern = [&](const std::string& s) {
    const auto [it, fresh] = symbol_id.emplace(s, static_cast<int>(symbol.size()));
    if (fresh) symbol.push_back(s);
    return it->second;
  };
  // The alphabet first, in byte order, so that ids do not depend on the hash map's order.
  std::vector<std::pair<std::string, int64_t>> words(word_counts.begin(), word_counts.end());
  std::sort(words.begin(), words.end());
  std::set<std::string> alphabet;
  std::vector<std::vector<int>> seqs(words.size());
  std::vector<std::vector<std::string>> spelled(words.size());
  for (size_t w = 0; w < words.size(); ++w) {
    const std::string& word = words[w].first;
    for (int32_t i = 0, len = static_cast<int32_t>(word.size()); i < len;) {
      const int32_t b = i;
      U8_FWD_1(reinterpret_cast<const uint8_t*>(word.data()), i, len);
      std::string s = (b > 0 ? "##" : "") + word.substr(static_cast<size_t>(b), static_cast<size_t>(i - b));
      alphabet.insert(s);
      spelled[w].push_back(std::move(s));
    }
  }
  std::vector<std::string> vocab(specials);
  std::set<std::string> in_vocab(specials.begin(), specials.end());
  for (const std::string& s : alphabet) {
    intern(s);
    if (in_vocab.insert(s).second) vocab.push_back(s);
  }
  for (size_t w = 0; w < words.size(); ++w)
    for (const std::string& s : spelled[w]) seqs[w].push_back(intern(s));
  spelled.clear();

  // Pair counts and where each pair occurs; a max-heap of (count, pair) with stale entries
  // skipped when popped.
  using Pair = std::pair<int, int>;
  std::map<Pair, int64_t> count;
  std::map<Pair, std::set<size_t>> where;
  for (size_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < seqs[w].size(); ++i) {
      const Pair p{seqs[w][i], seqs[w][i + 1]};
      count[p] += words[w].second;
      where[p].insert(w);
    }
  auto better = [&](const std::pair<int64_t, Pair>& a, const std::pair<int64_t, Pair>& b) {
    if (a.first != b.first) return a.first < b.first;
    // ties: the smaller pair in byte order wins (is "greater" for the heap)
    const auto ka = std::make_pair(symbol[static_cast<size_t>(a.second.first)], symbol[static_cast<size_t>(a.second.second)]);
    const auto kb = std::make_pair(symbol[static_cast<size_t>(b.second.first)], symbol[static_cast<size_t>(b.second.second)]);
    return ka > kb;
  };
  std::priority_queue<std::pair<int64_t, Pair>, std::vector<std::pair<int64_t, Pair>>, decltype(better)> heap(better);
  for (const auto& [p, c] : count) heap.push({c, p});
  while (vocab.size() < vocab_size && !heap.empty()) {
    const auto [c, p] = heap.top();
    heap.pop();
    const auto it = count.find(p);
    if (it == count.end() || it->second != c) continue;  // stale
    if (c < min_frequency) break;
    const std::string& b = symbol[static_cast<size_t>(p.second)];
    const std::string merged = symbol[static_cast<size_t>(p.first)] + (b.compare(0, 2, "##") == 0 ? b.substr(2) : b);
    const int m = intern(merged);
    if (in_vocab.insert(merged).second) vocab.push_back(merged);
    const std::set<size_t> affected = where[p];
    std::map<Pair, int64_t> delta;
    for (size_t w : affected) {
      std::vector<int>& s = seqs[w];
      const int64_t f = words[w].second;
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[{s[i], s[i + 1]}] -= f;
      std::vector<int> t;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == p.first && s[i + 1] == p.second) t.push_back(m), ++i;
        else t.push_back(s[i]);
      }
      s.swap(t);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        delta[{s[i], s[i + 1]}] += f;
        where[{s[i], s[i + 1]}].insert(w);
      }
    }
    for (const auto& [q, d] : delta) {
      if (d == 0) continue;
      const int64_t now = (count[q] += d);
      if (now <= 0) {
        count.erase(q);
        where.erase(q);
      } else {
        heap.push({now, q});
      }
    }
    count.erase(p);
    where.erase(p);
  }
  return vocab;
}

}  // namespace llmkit
